"""What every source kind declares, so that parsing, pre-flight, caching and ingest ask one registry
(dermpipe.data.sources.registry) instead of each testing prefixes of their own.

Import-light on purpose: the pre-flight (`dermpipe run`, `dermpipe submit`) imports every kind's module to recognise a
source string, so a kind's module imports pandas, TensorFlow or a cloud client only inside the functions that read
data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FetchRequest:
    """What ingest hands a kind's fetch: the source as written (the download cache is keyed on it), a scratch folder
    beside the artifact that the kind may fill, whether to show progress, and the demo's size."""

    source: str
    scratch: Path
    quiet: bool = True
    demo_images: int = 400


@dataclass(frozen=True)
class Fetched:
    """A folder in the Kaggle `andrewmvd/isic-2019` layout that ingest places into the artifact.

    transfer: download_* counts for the ingest Metrics; download_cache: the folder is a download-cache mirror whose
    recorded hashes ingest reuses for the manifest; scratch: the folder is the request's scratch, removed once placed.
    """

    folder: Path
    transfer: dict[str, object] = field(default_factory=dict)
    download_cache: bool = False
    scratch: bool = False


def no_check(location: str, *, local: bool) -> None:
    """A kind with nothing to check before ingest reads it (recognising it was the check)."""


@dataclass(frozen=True)
class SourceKind:
    """One kind of ingest source.

    name: Source.kind and the ingest summary's source_kind. form: how a user writes it, listed by the error for an
    unrecognised source. claim: the location if the source string is this kind, else None (the registry asks the
    kinds in order). fetch: the source brought into a folder in the Kaggle layout. check: the pre-flight, raising
    ValueError or StorageError with a message that says what to do (`local`: this machine will run ingest and needs
    the credentials). fingerprint: a short digest that changes when the data does (ingest's cache key), raising
    like check; None: the source string is the key. on_this_machine: the source names a path on the machine that runs
    ingest, so a cluster run neither checks nor fingerprints it here.
    """

    name: str
    form: str
    claim: Callable[[str], str | None]
    fetch: Callable[[str, FetchRequest], Fetched]
    check: Callable[..., None] = no_check
    fingerprint: Callable[[str], str] | None = None
    on_this_machine: bool = False


def prefixed(prefix: str, *, keep: bool = False) -> Callable[[str], str | None]:
    """A claim for sources written `<prefix><location>`; `keep`: the location is the whole string (gs://...)."""

    def claim(text: str) -> str | None:
        if not text.startswith(prefix):
            return None
        return text if keep else text[len(prefix):]

    return claim
