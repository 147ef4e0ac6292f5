"""Artifact files on disk: whether an artifact is a local file or folder, what the artifact page lists of it, and the
rules for serving its files: only inside the artifact's own file or folder, with a content type and a strict CSP."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.responses import FileResponse

from dermpipe.lineage.store import Artifact

REMOTE = ("gs://", "s3://", "http")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEXT_TYPES = ("system.Markdown", "system.Metrics", "system.ClassificationMetrics")
MAX_LISTED = 200
MAX_TEXT = 200_000
# HTML artifacts are shown in a sandboxed frame: no scripts, nothing fetched from elsewhere.
HTML_CSP = "sandbox; default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'; font-src data:"


class UnsafePath(ValueError):
    """A requested file path that leaves the artifact it was asked under."""


def safe_path(root: Path, relative: str) -> Path:
    """root/relative, refusing anything that resolves outside root (.., absolute paths, symlinks out)."""
    base = root.resolve()
    target = (base / relative).resolve() if relative else base
    if target != base and not target.is_relative_to(base):
        raise UnsafePath(f"{relative!r} is outside the artifact folder {base}")
    return target


def is_local(artifact: Artifact) -> bool:
    return not artifact.uri.startswith(REMOTE) and Path(artifact.uri).exists()


def local_view(artifact: Artifact) -> dict[str, Any]:
    """The artifact page's view of the artifact's files: local, is_file, files (a folder's first 200, sorted),
    images (those of them that are pictures) and text (a local Markdown file's start)."""
    path = Path(artifact.uri)
    local = is_local(artifact)
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())[:MAX_LISTED] \
        if local and path.is_dir() else []
    text = path.read_text(errors="replace")[:MAX_TEXT] if local and path.is_file() and \
        artifact.type == "system.Markdown" else ""
    return {"local": local, "is_file": local and path.is_file(), "files": files,
            "images": [f for f in files if f.lower().endswith(IMAGE_SUFFIXES)], "text": text}


def file_target(artifact: Artifact, relative: str) -> Path:
    """The file to serve for /files/{artifact id}/{relative}: 404 unless it is a local file of the artifact, 403
    where the path leaves the artifact's folder."""
    root = Path(artifact.uri)
    if not is_local(artifact):
        raise HTTPException(404, f"artifact {artifact.id} is not a local file: {artifact.uri}")
    try:
        target = safe_path(root, relative) if root.is_dir() else root
    except UnsafePath as err:
        raise HTTPException(403, str(err)) from err
    if root.is_file() and relative:
        raise HTTPException(404, f"artifact {artifact.id} is a single file; no {relative!r} under it")
    if not target.is_file():
        raise HTTPException(404, f"no file {relative!r} in artifact {artifact.id} ({artifact.uri})")
    return target


def media_type(artifact: Artifact, target: Path) -> str:
    """text/html for an HTML artifact's own file, else by file name; text/plain for unknown files of text types."""
    media = "text/html" if artifact.type == "system.HTML" and target == Path(artifact.uri) else \
        mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if media == "application/octet-stream" and artifact.type in TEXT_TYPES:
        media = "text/plain"
    return media


def file_response(artifact: Artifact, relative: str) -> FileResponse:
    target = file_target(artifact, relative)
    return FileResponse(target, media_type=media_type(artifact, target),
                        headers={"Content-Security-Policy": HTML_CSP, "X-Content-Type-Options": "nosniff"})
