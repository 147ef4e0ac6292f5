"""A folder or a `.zip` archive on the machine that runs ingest, in the Kaggle ISIC 2019 layout (the CSVs and the
image folder are found at any depth by ingest's find_layout); and the zip extraction the Kaggle download shares."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from dermpipe.data.sources.errors import IngestError
from dermpipe.data.sources.kind import Fetched, FetchRequest, SourceKind


def extract_zip(archive: Path, staging: Path) -> Path:
    """Extract a zip archive (a zip source, a Kaggle download), refusing members that would land outside the
    staging folder."""
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            target = (staging / member).resolve()
            if not str(target).startswith(str(staging.resolve())):
                raise IngestError(f"{archive}: member {member!r} would be written outside the extraction folder")
        zf.extractall(staging)
    return staging


def claim_folder(text: str) -> str | None:
    path = Path(text).expanduser()
    return str(path.resolve()) if path.is_dir() else None


def claim_zip(text: str) -> str | None:
    path = Path(text).expanduser()
    return str(path.resolve()) if path.is_file() and zipfile.is_zipfile(path) else None


def why_not_a_path(text: str) -> str:
    """Why `text`, read as a path (what any unrecognised source is taken for), is no source."""
    path = Path(text).expanduser()
    if not path.exists():
        return "it does not exist"
    return "it is a file but not a zip archive" if path.is_file() else "it is neither a folder nor a file"


def folder_fingerprint(location: str) -> str:
    """Every file's relative name, size and modification time: any added, removed or rewritten file changes it."""
    root = Path(location)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def zip_fingerprint(location: str) -> str:
    """The archive's size and modification time (reading 9 GB to hash it would cost more than ingest saves)."""
    stat = Path(location).stat()
    return hashlib.sha256(f"{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def fetch_folder(location: str, request: FetchRequest) -> Fetched:
    return Fetched(Path(location))


def fetch_zip(location: str, request: FetchRequest) -> Fetched:
    return Fetched(extract_zip(Path(location), request.scratch), scratch=True)


FOLDER = SourceKind(name="local", form="an existing folder", claim=claim_folder, fetch=fetch_folder,
                    fingerprint=folder_fingerprint, on_this_machine=True)
ZIP = SourceKind(name="zip", form="a .zip archive", claim=claim_zip, fetch=fetch_zip, fingerprint=zip_fingerprint,
                 on_this_machine=True)
