"""What every stage writes about itself: code version, content hashes, artifact metadata."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dermpipe import __version__

CODE_VERSION_ENV = "DERMPIPE_CODE_VERSION"
# Set on every task of a compiled pipeline (pipelines/compile.py): the container image the task runs and the git
# commit the pipeline was compiled from, so each artifact names both in the KFP/Vertex lineage views.
IMAGE_ENV = "DERMPIPE_IMAGE"
GIT_COMMIT_ENV = "DERMPIPE_GIT_COMMIT"


@functools.cache
def source_hash() -> str:
    """sha256 (12 hex) over dermpipe's own Python sources, so any code change shows in lineage and breaks caches."""
    from importlib.util import find_spec

    # components/ and pipelines/ are found by name, not imported: the library never imports the layers above it
    package_roots = [Path(__file__).resolve().parents[1]] + [
        Path(find_spec(name).origin).parent for name in ("dermpipe.components", "dermpipe.pipelines")]
    digest = hashlib.sha256()
    for root in package_roots:
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def code_version() -> str:
    """`<version>+<source hash>`; inside a pipeline task the value the pipeline factory pinned wins."""
    return os.environ.get(CODE_VERSION_ENV) or f"{__version__}+{source_hash()}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def git_identity(checkout: Path | None = None) -> dict[str, Any]:
    """{"git_commit", "git_dirty"} of the checkout dermpipe runs from ("" and False outside a git checkout, e.g. an
    installed package in an image)."""
    import subprocess

    checkout = checkout or Path(__file__).resolve().parents[2]
    identity: dict[str, Any] = {"git_commit": "", "git_dirty": False}
    try:
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode == 0:
            status = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10)
            identity.update(git_commit=commit.stdout.strip(), git_dirty=bool(status.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    return identity


def annotate(artifact: Any, values: Mapping[str, Any]) -> None:
    """Put values into a KFP artifact's metadata (what the KFP/Vertex lineage views show), with the code version and,
    in a compiled pipeline, the task's image and the git commit it was compiled from."""
    artifact.metadata.update({k: _jsonable(v) for k, v in values.items()})
    artifact.metadata.setdefault("code_version", code_version())
    for key, env in (("image", IMAGE_ENV), ("git_commit", GIT_COMMIT_ENV)):
        if os.environ.get(env):
            artifact.metadata.setdefault(key, os.environ[env])


def log_metrics(metrics: Any, values: Mapping[str, float | int]) -> None:
    """Log scalar values on a KFP Metrics artifact (drawn as a table in the pipeline UI) and mirror them to its file."""
    for name, value in values.items():
        metrics.log_metric(name, float(value))
    write_metadata_file(metrics)


def write_metadata_file(artifact: Any) -> None:
    """Metrics live in artifact metadata; the file at artifact.path mirrors them so the artifact exists on disk
    (kfp.local's cache treats an artifact without a file as missing and would re-run the task)."""
    path = Path(artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(dict(artifact.metadata)), indent=1, sort_keys=True))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (isinstance(value, Iterable) and not isinstance(value, (str, bytes))):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # KFP metadata is a protobuf Struct, which refuses NaN (e.g. a sensitivity with no positives)
    return value
