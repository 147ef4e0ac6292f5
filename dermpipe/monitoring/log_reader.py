"""The prediction log as the drift monitor reads it: the JSON Lines files of a time window, parsed into records.

The log (dermpipe.serving.prediction_log) is partitioned by day, `<log_root>/<model name>/date=YYYY-MM-DD/*.jsonl`,
local or gs://; a window [since, until) takes ISO dates or times (UTC unless they say otherwise) or look-backs.
"""

import json

import pandas as pd

from dermpipe.serving.prediction_log import log_files, parse_day
from dermpipe.storage import list_names, read_bytes


def parse_jsonl(data: bytes, probabilities: bool = False) -> tuple[pd.DataFrame, int]:
    """(records, malformed line count) of one JSON Lines file: pyarrow's reader, or line by line when a line is bad.
    The probability vectors are left out unless asked for (drift does not read them; performance does)."""
    drop = () if probabilities else ("probabilities",)
    import pyarrow as pa
    import pyarrow.json as pa_json

    try:
        table = pa_json.read_json(pa.py_buffer(data), read_options=pa_json.ReadOptions(block_size=1 << 24))
        return table.drop_columns([c for c in drop if c in table.column_names]).to_pandas(), 0
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    records, malformed = [], 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            malformed += 1
    return pd.DataFrame.from_records(records).drop(columns=list(drop), errors="ignore"), malformed


def read_prediction_log(log_root: str, model_name: str, since: str = "", until: str = "", *,
                        probabilities: bool = False) -> tuple[pd.DataFrame, dict[str, int]]:
    """Log records of the window [since, until) with counts of files, lines read, malformed lines, out of window
    (with each line's probability vector when `probabilities`)."""
    files = log_files(log_root, model_name, since, until)
    frames, malformed = [], 0
    for path in files:
        frame, bad = parse_jsonl(read_bytes(path), probabilities)
        frames.append(frame)
        malformed += bad
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    read = len(table) + malformed
    outside = 0
    if "timestamp" in table:  # ISO strings or (pyarrow) datetimes: one UTC dtype either way
        table["timestamp"] = pd.to_datetime(table["timestamp"], utc=True, errors="coerce", format="ISO8601")
    if not table.empty and "timestamp" in table and (since or until):
        stamps = table["timestamp"]
        keep = pd.Series(True, index=table.index)
        if since:
            keep &= stamps >= pd.Timestamp(parse_day(since, "since"))
        if until:
            keep &= stamps < pd.Timestamp(parse_day(until, "until"))
        outside = int((~keep).sum())
        table = table[keep].reset_index(drop=True)
    return table, {"log_files": len(files), "log_lines": read, "malformed_lines": malformed,
                   "outside_window": outside}


def looks_like_log(folder: str, model_name: str) -> bool:
    """Whether a folder holds a prediction log: date= partitions, or a <model name> folder holding them."""
    names = list_names(folder)
    return any(n.startswith("date=") for n in names) or (
        model_name in names and any(n.startswith("date=") for n in list_names(f"{folder}/{model_name}")))
