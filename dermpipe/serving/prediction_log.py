"""The prediction log that `dermpipe serve` writes and the drift monitor reads.

JSON Lines, one object per predicted image, partitioned by day:
    <log_root>/<model name>/date=YYYY-MM-DD/<writer id>.jsonl           local: appended, flushed and fsync'ed
    <log_root>/<model name>/date=YYYY-MM-DD/<writer id>-<seq>.jsonl     gs://: one object per flush (no append on GCS)

Lines are built by a worker thread after the response has gone (`submit`: image statistics cost more than a small
model's forward pass), buffered in memory and written on a timer (`flush_seconds`), when the buffer holds
`max_buffer` lines, and on shutdown. Images are never written unless `log_images` is set; then each goes to
<log_root>/<model name>/date=YYYY-MM-DD/images/<request_id>-<index>.<ext> and the line carries its `image_uri`.
The layout has one owner, here: where a line goes (`partition`) and which files hold a window of days (`log_files`,
which the feedback store and the monitor's reader, dermpipe.monitoring.log_reader, both use).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from dermpipe.storage import exists, list_names

log = logging.getLogger("dermpipe.serve")

LOG_KEYS = ("timestamp", "request_id", "model_name", "model_version", "predicted_class", "confidence",
            "probabilities")
METADATA_KEYS = ("age_approx", "sex", "anatom_site_general")
GROUPING_KEYS = ("lesion_id", "patient_id")  # optional ids a request carries; retraining on feedback keeps them
DECISION_KEYS = ("decision", "operating_point", "ood_score")  # null for a version deployed without clinical.json


def partition(log_root: str, model_name: str, timestamp: str) -> str:
    """The day folder of a line whose ISO-8601 timestamp is `timestamp`."""
    return f"{str(log_root).rstrip('/')}/{model_name}/date={timestamp[:10]}"


def parse_day(value: str, name: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """An ISO date/time (UTC unless it says otherwise) or a look-back such as `24h` or `7d` (now minus that)."""
    if not value:
        return None
    if value[:-1].isdigit() and value[-1:] in ("h", "d"):
        hours = int(value[:-1]) * (24 if value.endswith("d") else 1)
        return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=hours)
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise ValueError(f"--{name} {value!r} is not an ISO date or time (e.g. 2026-11-24 or "
                         "2026-11-24T06:00) nor a look-back such as 24h or 7d") from err
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def log_files(log_root: str, model_name: str, since: str = "", until: str = "") -> list[str]:
    """The JSONL files of the partitions date=YYYY-MM-DD that overlap the window [since, until)."""
    root = log_root.rstrip("/")
    folder = root if any(n.startswith("date=") for n in list_names(root)) else f"{root}/{model_name}"
    if not exists(folder):
        raise FileNotFoundError(f"{log_root}: no prediction log for model {model_name!r} (expected "
                                f"{folder}/date=YYYY-MM-DD/*.jsonl, as written by `dermpipe serve`)")
    start, end = parse_day(since, "since"), parse_day(until, "until")
    files = []
    for name in sorted(n for n in list_names(folder) if n.startswith("date=")):
        try:
            day = dt.date.fromisoformat(name.removeprefix("date="))
        except ValueError:
            continue
        day_start = dt.datetime.combine(day, dt.time(), dt.UTC)  # the partition holds [day_start, +1 day)
        if (start and day_start + dt.timedelta(days=1) <= start) or (end and day_start >= end):
            continue
        files += [f"{folder}/{name}/{f}" for f in list_names(f"{folder}/{name}") if f.endswith(".jsonl")]
    return files


class PredictionLog:
    """Thread-safe buffered JSONL writer, partitioned by the day of each line's timestamp."""

    def __init__(self, log_root: str, model_name: str, *, flush_seconds: float = 2.0, max_buffer: int = 1000,
                 log_images: bool = False, max_pending: int = 256) -> None:
        self.root = str(log_root)
        self.model_name = model_name
        self.flush_seconds = flush_seconds
        self.max_buffer = max_buffer
        self.log_images = log_images
        self.remote = "://" in self.root
        self.writer_id = f"{socket.gethostname()}-{os.getpid()}-{int(time.time())}"
        self.lines_written = 0
        self.write_errors = 0
        self._seq = 0
        self._buffer: list[dict] = []
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs: queue.Queue = queue.Queue(maxsize=max_pending)
        self._worker: threading.Thread | None = None
        self.build_errors = 0

    def start(self) -> PredictionLog:
        self._thread = threading.Thread(target=self._timer, name="prediction-log-flush", daemon=True)
        self._thread.start()
        self._worker = threading.Thread(target=self._work, name="prediction-log-build", daemon=True)
        self._worker.start()
        return self

    def submit(self, build: Callable[[], list[dict]]) -> bool:
        """Queue `build` (returns the lines to append) for the worker; False when the queue is full."""
        if self._worker is None:
            return False
        try:
            self._jobs.put_nowait(build)
        except queue.Full:
            return False
        return True

    def _work(self) -> None:
        while (build := self._jobs.get()) is not None:
            try:
                self.append(build())
            except Exception as err:  # noqa: BLE001 - one bad request must not stop the log
                self.build_errors += 1
                log.error("prediction log: building lines failed (%s)", err)

    def _timer(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def append(self, lines: list[dict]) -> None:
        with self._lock:
            self._buffer.extend(lines)
            full = len(self._buffer) >= self.max_buffer
        if full:
            self.flush()

    def save_image(self, timestamp: str, name: str, data: bytes) -> str:
        folder = f"{partition(self.root, self.model_name, timestamp)}/images"
        path = f"{folder}/{name}"
        if self.remote:
            import tensorflow as tf

            tf.io.gfile.makedirs(folder)
            with tf.io.gfile.GFile(path, "wb") as handle:
                handle.write(data)
        else:
            Path(folder).mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
        return path

    def flush(self) -> int:
        """Write the buffered lines (grouped by day); returns how many were written. Failures are kept for retry."""
        with self._lock:
            lines, self._buffer = self._buffer, []
        if not lines:
            return 0
        by_day: dict[str, list[dict]] = {}
        for line in lines:
            by_day.setdefault(partition(self.root, self.model_name, line["timestamp"]), []).append(line)
        written = 0
        with self._io_lock:
            for folder, day_lines in by_day.items():
                text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in day_lines)
                try:
                    self._write(folder, text)
                    written += len(day_lines)
                except Exception as err:  # noqa: BLE001 - a log outage must not take predictions down
                    self.write_errors += 1
                    log.error("prediction log: could not write %d lines to %s (%s); they stay buffered and are "
                              "retried on the next flush", len(day_lines), folder, err)
                    with self._lock:
                        self._buffer[:0] = day_lines
        self.lines_written += written
        return written

    def _write(self, folder: str, text: str) -> None:
        if self.remote:
            import tensorflow as tf

            self._seq += 1
            tf.io.gfile.makedirs(folder)
            with tf.io.gfile.GFile(f"{folder}/{self.writer_id}-{self._seq:06d}.jsonl", "w") as handle:
                handle.write(text)
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        with open(f"{folder}/{self.writer_id}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        if self._worker is not None:
            self._jobs.put(None)  # after the queued jobs: they are all written
            self._worker.join(timeout=30)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()


def log_line(*, timestamp: str, request_id: str, model_name: str, model_version: int, classes: tuple[str, ...],
             probabilities: list[float], stats: Mapping[str, float], metadata: Mapping[str, object],
             embedding_summary: list[float] | None, decision: Mapping[str, object] | None = None) -> dict:
    """One line of the prediction log (the shared contract: see the module docstring and docs/serving.md, "Prediction
    log"); `decision`: the served decision, operating point and OOD score (dermpipe.serving.decisions), null when the
    version has none."""
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    line: dict[str, object] = {
        "timestamp": timestamp, "request_id": request_id, "model_name": model_name, "model_version": model_version,
        "predicted_class": classes[best], "confidence": float(probabilities[best]),
        "probabilities": [float(p) for p in probabilities], **{k: float(v) for k, v in stats.items()},
        **{k: metadata.get(k) for k in (*METADATA_KEYS, *GROUPING_KEYS)},
        **{k: (decision or {}).get(k) for k in DECISION_KEYS},
    }
    for i, value in enumerate(embedding_summary or ()):
        line[f"emb_{i}"] = float(value)
    return line
