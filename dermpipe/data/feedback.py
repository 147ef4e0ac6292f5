"""Retraining on feedback: labelled, logged images become extra ISIC 2019 rows of the ingested data set.

The feedback folder is `<log_root>/<model name>` of `dermpipe serve --log-root --log-images`: it holds the prediction
log (date=YYYY-MM-DD/*.jsonl, each line with its request_id, image_uri, metadata, lesion_id, patient_id) and the
label store (labels/*.jsonl, written by `dermpipe feedback` or POST /v1/feedback). Each labelled request id with a
logged image taken within `retention_days` becomes one row: image `FB_<request id>`, the label's diagnosis, the
request's metadata, and as lesion_id the request's lesion_id, else `patient:<patient_id>`, else none (split then
groups it by content hash), so split keeps a lesion, or a patient, on one side. Every label that does not become a
row is counted and listed with its reason in feedback.json, never dropped silently.

The label-file format is read here (serving/labels.py writes it and reads it through read_label_files), because
the data layer may not import serving.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from dermpipe import config, storage

LABELS_DIR = "labels"
STORE_COLUMNS = ("request_id", "diagnosis", "source", "date", "received_at", "submission_id")
# who sent a label: the token's name or the OS user, how ("bearer", "os-user", "none": an open loopback server) and
# from where (the client's IP, or the host `dermpipe feedback` ran on); files written before they existed read ""
AUDIT_COLUMNS = ("submitted_by", "auth", "client")
LOG_COLUMNS = ("request_id", "timestamp", "image_uri", "age_approx", "sex", "anatom_site_general", "lesion_id",
               "patient_id")
PREFIX = "FB_"  # image names of feedback rows: never an ISIC id (ISIC_...)
JPEG_SUFFIXES = (".jpg", ".jpeg")


def label_files(labels_folder: str) -> list[str]:
    """URIs of the stored submissions, oldest first (their names start with the compact received_at)."""
    return [storage.join(labels_folder, name) for name in storage.list_names(labels_folder)
            if name.endswith(".jsonl") and not name.startswith(".")]


def _parse_label_file(uri: str) -> list[dict]:
    records = []
    for number, line in enumerate(storage.read_text(uri).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{uri}: line {number} is not JSON ({err.msg}); label files are written whole by "
                             "dermpipe feedback: was this file edited by hand?") from err
        missing = [c for c in STORE_COLUMNS if c not in record]
        if missing:
            raise ValueError(f"{uri}: line {number} lacks {', '.join(missing)} (expected {', '.join(STORE_COLUMNS)})")
        records.append({c: str(record.get(c, "")) for c in (*STORE_COLUMNS, *AUDIT_COLUMNS)})
    return records


def read_label_files(labels_folder: str) -> pd.DataFrame:
    """Every stored label, oldest submission first (an empty frame with STORE_COLUMNS and AUDIT_COLUMNS when there is
    none)."""
    records = [r for uri in label_files(labels_folder) for r in _parse_label_file(uri)]
    return pd.DataFrame.from_records(records, columns=[*STORE_COLUMNS, *AUDIT_COLUMNS]).astype(str)


def read_logged(folder: str, request_ids: set[str]) -> pd.DataFrame:
    """The prediction-log lines (LOG_COLUMNS) of these request ids, from every day partition of the folder."""
    found = []
    for day in (n for n in storage.list_names(folder) if n.startswith("date=")):
        for name in (n for n in storage.list_names(storage.join(folder, day)) if n.endswith(".jsonl")):
            for line in storage.read_text(storage.join(folder, day, name)).splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn line (a crash mid-write) is the drift monitor's to count; it has no label
                if record.get("request_id") in request_ids:
                    found.append({c: record.get(c) for c in LOG_COLUMNS})
    return pd.DataFrame.from_records(found, columns=list(LOG_COLUMNS))


def _usable_labels(labels: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """One label per request id; ids the store holds with two diagnoses (concurrent submissions) are skipped."""
    skipped = []
    diagnoses = labels.groupby("request_id")["diagnosis"].nunique()
    for rid in sorted(diagnoses[diagnoses > 1].index):
        found = sorted(set(labels.loc[labels["request_id"] == rid, "diagnosis"]))
        skipped.append({"request_id": rid, "reason": f"conflicting stored labels {', '.join(found)}"})
    kept = labels[labels["request_id"].map(diagnoses) == 1].drop_duplicates("request_id", keep="first")
    return kept.reset_index(drop=True), skipped


def _group(row: pd.Series) -> str | None:
    if isinstance(row["lesion_id"], str) and row["lesion_id"]:
        return row["lesion_id"]
    if isinstance(row["patient_id"], str) and row["patient_id"]:
        return f"patient:{row['patient_id']}"
    return None


def _skip_reason(line: pd.Series | None, cutoff: dt.datetime | None) -> str:
    if line is None:
        return "no prediction-log line (request id not logged in this folder)"
    uri = line["image_uri"]
    if not isinstance(uri, str) or not uri:
        return "the image was not logged (serve with --log-images to retrain on feedback)"
    if cutoff is not None and pd.Timestamp(line["timestamp"]).to_pydatetime() < cutoff:
        return f"predicted {str(line['timestamp'])[:10]}, before the retention window (from {cutoff.date()})"
    if not uri.lower().endswith(JPEG_SUFFIXES):
        return f"{uri.rsplit('.', 1)[-1].upper()} image: ISIC 2019 training takes JPEG"
    return ""


def feedback_rows(folder: str, retention_days: int, now: dt.datetime | None = None,
                  ) -> tuple[pd.DataFrame, list[dict]]:
    """(one row per usable label: image, label, request_id, image_uri, metadata, lesion_id, patient_id, source,
    date; every other label with its reason) of a feedback folder."""
    labels, skipped = _usable_labels(read_label_files(storage.join(folder, LABELS_DIR)))
    logged = read_logged(folder, set(labels["request_id"])).drop_duplicates("request_id").set_index("request_id")
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(days=retention_days) if retention_days > 0 else None
    rows = []
    for label in labels.itertuples(index=False):
        line = logged.loc[label.request_id] if label.request_id in logged.index else None
        reason = _skip_reason(line, cutoff)
        if reason:
            skipped.append({"request_id": label.request_id, "reason": reason})
            continue
        rows.append({"image": f"{PREFIX}{label.request_id}", "label": label.diagnosis,
                     "request_id": label.request_id, "source": label.source, "date": label.date,
                     **{c: line[c] for c in LOG_COLUMNS if c != "request_id"}})
    table = pd.DataFrame.from_records(rows, columns=["image", "label", "request_id", "source", "date",
                                                     *LOG_COLUMNS[1:]])
    if not table.empty:
        table["group"] = table.apply(_group, axis=1)
    return table, skipped


def feedback_fingerprint(folder: str, retention_days: int, today: dt.date | None = None) -> str:
    """Changes when a label submission arrives or the retention window moves (ingest's cache key): the label store
    is append-only, so the names of its files identify its state."""
    if not folder:
        return ""
    names = label_files(storage.join(folder, LABELS_DIR))
    window = (today or dt.datetime.now(dt.UTC).date()).isoformat() if retention_days > 0 else ""
    text = "|".join([folder, str(retention_days), window, *names])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _rewrite_csv(path: Path, extra: pd.DataFrame) -> None:
    """Append rows to an ingested CSV by writing a new file over it (the old one may be a hard link to the
    source's own file, which must not change)."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    merged = pd.concat([table, extra.astype(object).where(extra.notna(), "")], ignore_index=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        merged[list(table.columns)].to_csv(handle, index=False)
    os.replace(handle.name, path)


def _csv_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ground-truth rows, metadata rows) in the ISIC 2019 CSV layouts; ages to ISIC's steps of 5 years."""
    truth = pd.DataFrame({"image": table["image"]})
    for name in config.GROUND_TRUTH_COLUMNS[1:]:
        truth[name] = (table["label"] == name).map({True: "1.0", False: "0.0"})
    age = pd.to_numeric(table["age_approx"], errors="coerce")
    meta = pd.DataFrame({"image": table["image"], "age_approx": (age / 5).round().mul(5).map(
        lambda a: "" if pd.isna(a) else f"{a:.1f}"), "anatom_site_general": table["anatom_site_general"],
        "lesion_id": table["group"], "sex": table["sex"]})
    return truth, meta[list(config.METADATA_COLUMNS)]


def _place_images(table: pd.DataFrame, out_dir: Path, skipped: list[dict]) -> pd.DataFrame:
    """Copy each row's logged image into the data set's image folder without its metadata (a log written before the
    server stripped it may still hold some: the kinds removed go in the row's metadata_removed); a missing image is
    skipped with its reason."""
    from dermpipe.data.image_privacy import MetadataError, strip_metadata

    kept, removed = [], []
    for i, row in table.iterrows():
        try:
            data = storage.read_bytes(row["image_uri"])
        except FileNotFoundError:
            skipped.append({"request_id": row["request_id"], "reason": f"logged image {row['image_uri']} is gone "
                                                                      "(deleted, or outside the bucket's retention)"})
            continue
        try:
            stripped = strip_metadata(data)
        except MetadataError as err:
            skipped.append({"request_id": row["request_id"], "reason": f"logged image {row['image_uri']} is "
                                                                      f"unreadable ({err})"})
            continue
        target = out_dir / config.IMAGE_SUBDIR / f"{row['image']}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(stripped.data)
        kept.append(i)
        removed.append(list(stripped.kinds))
    return table.loc[kept].reset_index(drop=True).assign(metadata_removed=removed)


def add_feedback(out_dir: Path, folder: str, retention_days: int, now: dt.datetime | None = None,
                 ) -> dict[str, object]:
    """Add the feedback folder's labelled images to the ingested data set in out_dir (images, both CSVs) and write
    feedback.json (every row added, every label skipped with its reason); returns the feedback_* counts."""
    if not storage.exists(storage.join(folder, LABELS_DIR)):
        raise FileNotFoundError(f"feedback_log_root {folder}: no {LABELS_DIR}/ folder; expected <log root>/<model "
                                "name> of `dermpipe serve --log-root`, where `dermpipe feedback` stores labels")
    table, skipped = feedback_rows(folder, retention_days, now)
    table = _place_images(table, out_dir, skipped) if not table.empty else table
    if not table.empty:
        truth, meta = _csv_rows(table)
        _rewrite_csv(out_dir / config.GROUND_TRUTH_CSV, truth)
        _rewrite_csv(out_dir / config.METADATA_CSV, meta)
    counts = {"feedback_rows_added": len(table), "feedback_labels_skipped": len(skipped),
              "feedback_labels_read": len(table) + len(skipped),
              "feedback_images_with_metadata": int(table.get("metadata_removed", pd.Series(dtype=object))
                                                   .map(bool).sum())}
    report = {"folder": folder, "retention_days": retention_days, **counts,
              "rows": table.drop(columns=["image_uri"], errors="ignore").astype(object)
                           .where(table.notna(), None).to_dict("records"),
              "skipped": skipped}
    (out_dir / "feedback.json").write_text(json.dumps(report, indent=1, default=str))
    return counts
