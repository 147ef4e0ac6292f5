"""What an ingest source string names, and whether ingest could read it: parsed and checked without reading data.

Kept free of pandas, kfp and TensorFlow (so are the kinds' modules it reaches through the registry): ingest calls
these first, and `dermpipe run`'s pre-flight calls the same functions before anything starts
(dermpipe.pipelines.preflight), so a mistyped source fails in milliseconds with the message ingest would have given
after the pipeline had started.
"""

from __future__ import annotations

from dataclasses import dataclass

from dermpipe.data.sources import registry
from dermpipe.data.sources.errors import IngestError
from dermpipe.data.sources.local import FOLDER, why_not_a_path
from dermpipe.storage import StorageError


@dataclass(frozen=True)
class Source:
    kind: str  # a SourceKind's name (dermpipe.data.sources.registry.KINDS)
    location: str


def parse_source(source: str) -> Source:
    """The kind and location of `demo`, a folder, a .zip, `kaggle:<owner/dataset>`, `isic:<collection>`,
    `gs://bucket/prefix` or any other registered kind; IngestError naming the forms when no kind claims it."""
    found = registry.claim(source)
    if found is None:
        raise _unrecognised(source)
    return Source(found[0].name, found[1])


def check_source(source: str, *, local: bool = True) -> Source:
    """`source` parsed and checked as ingest would before downloading: a local folder or zip must exist (`local`
    only: a cluster run reads its own file system), a remote source must be well formed and have credentials."""
    found = registry.claim(source, on_this_machine=local)
    if found is None:
        if not local:  # a path on the cluster's own disks: its ingest reads (and checks) it there
            return Source(FOLDER.name, source.strip())
        raise _unrecognised(source)
    kind, location = found
    try:
        kind.check(location, local=local)
    except IngestError:
        raise
    except (ValueError, StorageError) as err:  # KaggleSourceError, IsicSourceError, GcsSourceError, StorageError
        raise IngestError(str(err)) from err
    return Source(kind.name, location)


def _unrecognised(source: str) -> IngestError:
    return IngestError(f"source {source!r}: {why_not_a_path(source.strip())}; expected {registry.forms()}")
