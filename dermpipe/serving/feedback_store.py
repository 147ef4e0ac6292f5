"""Ground-truth feedback: validate labels for logged predictions and store the valid ones in one submission.

Each submitted label gets one outcome, nothing is dropped silently:
- accepted: written to the label store (dermpipe.serving.labels), all of one submission in one atomic file;
- duplicate: the request id already carries this diagnosis (stored, or earlier in the same submission): not written
  twice, reported as already known;
- refused, with the reason: a missing field, an unknown request id (not in the prediction log), a diagnosis outside
  the ISIC 2019 classes, an unknown source, a date that is not YYYY-MM-DD or lies in the future, or a conflict (the
  request id is already labelled with another diagnosis, or the submission itself gives it two diagnoses: then
  every label of that request id in the submission is refused, since the store cannot tell which one is right).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import pandas as pd

from dermpipe import config
from dermpipe.serving.labels import LABEL_FIELDS, LABEL_SOURCES, Label, append_labels, read_labels
from dermpipe.serving.prediction_log import log_files
from dermpipe.storage import read_bytes

ACCEPTED, DUPLICATE, REFUSED = "accepted", "duplicate", "refused"


@dataclass(frozen=True)
class Outcome:
    index: int  # position in the submission (row of a file, item of the JSON list)
    request_id: str
    status: str  # accepted | duplicate | refused
    reason: str = ""


@dataclass
class FeedbackResult:
    outcomes: list[Outcome]
    uri: str | None = None  # the label file written (None when nothing was accepted)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = {s: sum(o.status == s for o in self.outcomes) for s in (ACCEPTED, DUPLICATE, REFUSED)}

    def to_dict(self) -> dict:
        return {**self.counts, "uri": self.uri, "labels": [asdict(o) for o in self.outcomes]}


def parse_label(raw: Mapping[str, object], today: dt.date) -> Label | str:
    """The Label of one submitted item, or why it cannot be one (fields, vocabulary, date)."""
    if not isinstance(raw, Mapping):
        return f"expected an object with {', '.join(LABEL_FIELDS)}; got {type(raw).__name__}"
    values = {k: "" if raw.get(k) is None else str(raw.get(k)).strip() for k in LABEL_FIELDS}
    missing = [k for k in LABEL_FIELDS if not values[k]]
    if missing:
        return f"missing {', '.join(missing)} (a label needs {', '.join(LABEL_FIELDS)})"
    extra = sorted(set(raw) - set(LABEL_FIELDS))
    if extra:
        return f"unknown field(s) {', '.join(map(str, extra))}; a label has {', '.join(LABEL_FIELDS)}"
    if values["diagnosis"] not in config.CLASSES:
        return f"unknown diagnosis {values['diagnosis']!r}; expected one of {', '.join(config.CLASSES)} (ISIC 2019)"
    if values["source"] not in LABEL_SOURCES:
        return f"unknown source {values['source']!r}; expected one of {', '.join(LABEL_SOURCES)}"
    try:
        day = dt.date.fromisoformat(values["date"])
    except ValueError:
        day = None
    if day is None or len(values["date"]) != 10:
        return f"date {values['date']!r} is not an ISO date YYYY-MM-DD (the day the result was obtained)"
    if day > today:
        return f"date {values['date']} is in the future (today is {today.isoformat()} UTC)"
    return Label(**values)


def _unknown_reason(request_id: str, known: set[str]) -> str:
    parts = sorted(k for k in known if k.startswith(f"{request_id}-"))
    if parts:
        return (f"request id {request_id!r} was a request of {len(parts)} images, logged per image: label "
                f"{', '.join(parts[:3])}{' ...' if len(parts) > 3 else ''} instead")
    return (f"unknown request id {request_id!r}: no prediction in the log has it (check the id the server "
            "answered; a prediction reaches the log within the server's flush interval)")


def _batch_conflicts(labels: list[tuple[int, Label]]) -> dict[str, list[int]]:
    """Request ids that this submission gives two or more diagnoses, with the positions involved."""
    seen: dict[str, set[str]] = {}
    for _, label in labels:
        seen.setdefault(label.request_id, set()).add(label.diagnosis)
    return {rid: [i for i, lab in labels if lab.request_id == rid] for rid, diag in seen.items() if len(diag) > 1}


def _described(stored: Mapping[str, str]) -> str:
    return f"{stored['diagnosis']} ({stored['source']}, {stored['date']}, received {stored['received_at']})"


def validate(items: list[Mapping[str, object]], known_ids: set[str], stored: pd.DataFrame,
             today: dt.date | None = None) -> tuple[list[Outcome], list[Label]]:
    """(one outcome per item, the labels to write) for a submission against the log's ids and the stored labels."""
    today = today or dt.datetime.now(dt.UTC).date()
    outcomes: dict[int, Outcome] = {}
    parsed: list[tuple[int, Label]] = []
    for i, raw in enumerate(items):
        label = parse_label(raw, today)
        rid = str(raw.get("request_id") or "") if isinstance(raw, Mapping) else ""
        if isinstance(label, str):
            outcomes[i] = Outcome(i, rid, REFUSED, label)
        elif label.request_id not in known_ids:
            outcomes[i] = Outcome(i, rid, REFUSED, _unknown_reason(label.request_id, known_ids))
        else:
            parsed.append((i, label))
    conflicts = _batch_conflicts(parsed)
    known = {r["request_id"]: r for r in stored.to_dict("records")}
    accepted: list[Label] = []
    for i, label in parsed:
        rid, before = label.request_id, known.get(label.request_id)
        if rid in conflicts:
            outcomes[i] = Outcome(i, rid, REFUSED, f"conflicting labels for {rid!r} in this submission (items "
                                  f"{', '.join(map(str, conflicts[rid]))}); resubmit the one that is right")
        elif before is not None and before["diagnosis"] != label.diagnosis:
            outcomes[i] = Outcome(i, rid, REFUSED, f"conflict: {rid!r} is already labelled {_described(before)}; "
                                  "labels are append-only, so a correction needs the store's owner")
        elif before is not None:
            outcomes[i] = Outcome(i, rid, DUPLICATE, f"already labelled {_described(before)}; not written twice")
        else:
            outcomes[i] = Outcome(i, rid, ACCEPTED)
            accepted.append(label)
            known[rid] = {**asdict(label), "received_at": "earlier in this submission"}  # a repeat: duplicate
    return [outcomes[i] for i in range(len(items))], accepted


def _request_ids(data: bytes) -> set[str]:
    """The request ids of one log file: pyarrow parses that one field only (2.7x faster than the whole lines);
    line by line when a line is malformed (a torn write), skipping it."""
    import pyarrow as pa
    import pyarrow.json as pa_json

    only_ids = pa_json.ParseOptions(explicit_schema=pa.schema([("request_id", pa.string())]),
                                    unexpected_field_behavior="ignore")
    try:
        table = pa_json.read_json(pa.py_buffer(data), read_options=pa_json.ReadOptions(block_size=1 << 24),
                                  parse_options=only_ids)
        return {str(rid) for rid in table.column("request_id").drop_null().to_pylist()}
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    ids = set()
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("request_id"):
            ids.add(str(record["request_id"]))
    return ids


def logged_request_ids(log_root: str, model_name: str) -> set[str]:
    """Every request id in the prediction log, all days (empty when there is no log yet)."""
    try:
        files = log_files(log_root, model_name)
    except FileNotFoundError:
        return set()
    return set().union(*(_request_ids(read_bytes(path)) for path in files))


def submit_feedback(log_root: str, model_name: str, items: Iterable[Mapping[str, object]], *,
                    known_ids: set[str] | None = None, received_at: str | None = None,
                    audit: Mapping[str, str] | None = None) -> FeedbackResult:
    """Validate `items` and write the accepted labels as one submission; `known_ids`: the log's request ids when
    the caller has them (else read from the log); `audit`: who sent them (labels.append_labels)."""
    items = list(items)
    ids = logged_request_ids(log_root, model_name) if known_ids is None else known_ids
    outcomes, accepted = validate(items, ids, read_labels(log_root, model_name))
    uri = append_labels(log_root, model_name, accepted, received_at=received_at, audit=audit) if accepted else None
    return FeedbackResult(outcomes, uri)
