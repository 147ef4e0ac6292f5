"""The one list of ingest source kinds. Parsing and pre-flight (spec.py), ingest, the local runner's cache key and
`dermpipe submit`'s fingerprint all ask it; none tests a prefix of its own.

Adding a kind: its module declares a SourceKind (dermpipe.data.sources.kind) and KINDS names it; nothing else
changes. Kinds are asked in this order (the first claim wins) and the error for an unrecognised source lists their
forms in it.
"""

from __future__ import annotations

from dermpipe.data.sources import demo, gcs, isic, kaggle, local
from dermpipe.data.sources.kind import SourceKind

KINDS: tuple[SourceKind, ...] = (demo.KIND, local.FOLDER, local.ZIP, kaggle.KIND, isic.KIND, gcs.KIND)


def claim(source: str, *, on_this_machine: bool = True) -> tuple[SourceKind, str] | None:
    """The first kind that claims the source string, with the location it names; None when none does.

    on_this_machine=False skips the kinds that name a path, for a source a cluster will read from its own disks.
    """
    text = source.strip()
    for kind in KINDS:
        if kind.on_this_machine and not on_this_machine:
            continue
        location = kind.claim(text)
        if location is not None:
            return kind, location
    return None


def named(name: str) -> SourceKind:
    """The kind called `name` (Source.kind, the ingest summary's source_kind)."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(f"no source kind {name!r}; the kinds are {', '.join(k.name for k in KINDS)}")


def forms() -> str:
    """How each kind is written, for the error that refuses an unrecognised source."""
    written = [kind.form for kind in KINDS]
    return ", ".join(written[:-1]) + " or " + written[-1] if len(written) > 1 else written[0]
