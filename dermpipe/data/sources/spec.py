"""What an ingest source string names, and whether ingest could read it: parsed and checked without reading data.

Kept free of pandas, kfp and TensorFlow: ingest calls these first, and `dermpipe run`'s pre-flight calls the same
functions before anything starts (dermpipe.pipelines.preflight), so a mistyped source fails in milliseconds with the
message ingest would have given after the pipeline had started.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from dermpipe.data.sources.errors import IngestError

REMOTE_KINDS = ("kaggle", "isic", "gs")
SOURCE_FORMS = ("'demo', an existing folder, a .zip archive, 'kaggle:<owner/dataset>', 'isic:<collection>' or "
                "'gs://bucket/prefix'")


@dataclass(frozen=True)
class Source:
    kind: str  # demo | local | zip | kaggle | isic | gs
    location: str


def parse_source(source: str) -> Source:
    """`demo`, a folder, a .zip, `kaggle:<owner/dataset>`, `isic:<collection>` or `gs://bucket/prefix`."""
    text = source.strip()
    if text == "demo":
        return Source("demo", "")
    if text.startswith("gs://"):
        return Source("gs", text)
    for kind in ("kaggle", "isic"):
        if text.startswith(f"{kind}:"):
            return Source(kind, text.split(":", 1)[1])
    path = Path(text).expanduser()
    if path.is_dir():
        return Source("local", str(path.resolve()))
    if path.is_file() and zipfile.is_zipfile(path):
        return Source("zip", str(path.resolve()))
    found = ("it does not exist" if not path.exists() else
             "it is a file but not a zip archive" if path.is_file() else "it is neither a folder nor a file")
    raise IngestError(f"source {source!r}: {found}; expected {SOURCE_FORMS}")


def check_remote(parsed: Source, source: str, *, local: bool = True) -> None:
    """The kaggle:, isic: or gs:// source is well formed and (`local`) this machine has the credentials it needs;
    raises IngestError with the source's own message, as ingest does."""
    from dermpipe.storage import StorageError

    try:
        if parsed.kind == "kaggle":
            from dermpipe.data.sources.kaggle import check_dataset, credentials_source

            check_dataset(parsed.location)
            if local:
                credentials_source()
        elif parsed.kind == "isic":
            from dermpipe.data.sources.isic import search_params

            search_params(parsed.location)
        elif parsed.kind == "gs":
            from dermpipe.data.sources.gcs import parse_gs_uri
            from dermpipe.storage import check_credentials

            parse_gs_uri(parsed.location)
            if local:
                check_credentials()
    except (ValueError, StorageError) as err:  # KaggleSourceError, IsicSourceError, GcsSourceError, StorageError
        raise IngestError(str(err)) from err


def check_source(source: str, *, local: bool = True) -> Source:
    """`source` parsed and checked as ingest would before downloading: a local folder or zip must exist (`local`
    only: a cluster run reads its own file system), a remote source must be well formed and have credentials."""
    text = source.strip()
    if not local and text != "demo" and not text.startswith(("gs://", *(f"{k}:" for k in REMOTE_KINDS))):
        return Source("local", text)
    parsed = parse_source(source)
    if parsed.kind in REMOTE_KINDS:
        check_remote(parsed, source, local=local)
    return parsed
