"""Ground truth fed back for logged predictions: an append-only store beside the prediction log.

    <log_root>/<model name>/labels/<received_at, compact>-<submission id>.jsonl

One JSON Lines file per submission, never modified once written: locally a temporary file in the same folder is
fsync'ed and renamed into place (a reader never sees half a file, a failed write leaves nothing); on gs:// one object
is created with `if_generation_match=0`. Each line holds the Label fields plus `received_at`, `submission_id` and the
audit fields (AUDIT_COLUMNS): who sent it (`submitted_by`: a token's name, never the token, or the OS user), how
(`auth`) and from where (`client`).
Validation (known request id, known diagnosis, conflicts) is dermpipe.serving.feedback_store's job; this module only
stores and reads; the file format's reader lives in dermpipe.data.feedback, which retraining uses too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from dermpipe import storage
from dermpipe.data.feedback import AUDIT_COLUMNS, STORE_COLUMNS, read_label_files
from dermpipe.data.feedback import label_files as feedback_files

LABEL_SOURCES = ("biopsy", "consensus", "follow-up")
LABEL_FIELDS = STORE_COLUMNS[:4]  # request_id, diagnosis, source, date (the file format is dermpipe.data.feedback's)


@dataclass(frozen=True)
class Label:
    request_id: str  # the prediction log line's request_id (per image: "<id>" or "<id>-<i>" as logged)
    diagnosis: str  # one of dermpipe.config.CLASSES
    source: str  # one of LABEL_SOURCES
    date: str  # ISO date the result was obtained (YYYY-MM-DD)


def labels_root(log_root: str, model_name: str) -> str:
    """The store's folder: "<log_root>/<model_name>/labels"."""
    return f"{str(log_root).rstrip('/')}/{model_name}/labels"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _create_local(path: Path, data: bytes) -> None:
    """Write a new file atomically: temp file + fsync + os.replace; the temp file is removed when anything fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():  # names carry a random submission id: a clash means a bug, never overwrite
            raise FileExistsError(f"{path}: a label submission with this name already exists")
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def append_labels(log_root: str, model_name: str, labels: list[Label], *, received_at: str | None = None,
                  audit: Mapping[str, str] | None = None) -> str:
    """Store one submission as a new JSON Lines file; returns its URI. Nothing is written for an empty list.
    `audit`: the AUDIT_COLUMNS of whoever sent it (each "" when not given)."""
    if not labels:
        raise ValueError("append_labels: no labels to store (an empty submission writes no file)")
    unknown = sorted(set(audit or {}) - set(AUDIT_COLUMNS))
    if unknown:
        raise ValueError(f"append_labels: unknown audit field(s) {', '.join(unknown)}; expected {AUDIT_COLUMNS}")
    who = {c: str((audit or {}).get(c, "")) for c in AUDIT_COLUMNS}
    received = received_at or _now()
    submission_id = uuid.uuid4().hex
    stamp = "".join(ch for ch in received if ch.isalnum())
    uri = f"{labels_root(log_root, model_name)}/{stamp}-{submission_id}.jsonl"
    text = "".join(json.dumps({**asdict(label), "received_at": received, "submission_id": submission_id, **who},
                              separators=(",", ":")) + "\n" for label in labels)
    if storage.is_gcs(uri):
        if not storage.create_if_absent(uri, text.encode("utf-8")):
            raise FileExistsError(f"{uri}: a label submission with this name already exists")
    else:
        _create_local(Path(uri), text.encode("utf-8"))
    return uri


def label_files(log_root: str, model_name: str) -> list[str]:
    """URIs of the stored submissions, oldest first (names start with the compact received_at)."""
    return feedback_files(labels_root(log_root, model_name))


def read_labels(log_root: str, model_name: str) -> pd.DataFrame:
    """Every stored label, oldest submission first: columns request_id, diagnosis, source, date, received_at,
    submission_id, submitted_by, auth, client (an empty frame with these columns when nothing is stored)."""
    return read_label_files(labels_root(log_root, model_name))
