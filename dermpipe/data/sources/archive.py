"""Zip extraction, shared by the zip source (dermpipe.data.ingest) and the Kaggle download (sources/kaggle.py)."""

import zipfile
from pathlib import Path

from dermpipe.data.sources.errors import IngestError


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
