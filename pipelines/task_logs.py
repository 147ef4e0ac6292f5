"""Where a local run's output goes: each task's full log in a file, progress and state changes to an observer.

kfp.local prints everything to the caller's stdout: its INFO log (every task's executor input and outputs, the bulk
of a run's ~2,000 lines) and each task subprocess's output, line by line. During a run `sys.stdout` is a LogRouter:
a line belongs to the task that is running in this thread (kfp.local runs tasks one at a time; its handler and
prints happen in the thread that executes the task) and goes to `$DERMPIPE_HOME/runs/<run id>/logs/<task>.log`;
lines outside any task go to `pipeline.log`. Progress lines (dermpipe.componentkit.PROGRESS_PREFIX) and the task's
start and end reach the observer, which draws the progress (dermpipe.cli.progress); with `echo` every line is also
written through, as before (`dermpipe run --verbose`).
"""

from __future__ import annotations

import collections
import io
import json
import re
import threading
from pathlib import Path
from typing import Any, Protocol, TextIO

from dermpipe.componentkit import PROGRESS_PREFIX

# A line that reports a warning: Python's `...Warning:` lines, logging's WARNING level, TensorFlow's `W0000 ...`.
WARNING_LINE = re.compile(r"(\b[A-Z]\w*Warning\b|\bWARNING\b|^W\d{4} )")
# Lines that say WARNING but report nothing: absl prints this one as TF starts in every task's process.
NOT_A_WARNING = re.compile(r"All log messages before absl::InitializeLog\(\) is called are written to STDERR")
TAIL_LINES = 200


class Observer(Protocol):
    """What the local runner tells whoever shows a run's progress."""

    def task_started(self, name: str) -> None: ...

    def task_progress(self, name: str, fields: dict[str, Any]) -> None: ...

    def task_finished(self, task: Any, log: Path | None, tail: list[str]) -> None: ...


class TaskLog:
    """One task's log file, its last lines (to name a failure's cause) and its count of warning lines."""

    def __init__(self, name: str, path: Path | None) -> None:
        self.name, self.path, self.warnings = name, path, 0
        self.lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def line(self, text: str) -> None:
        self.lines.append(text)
        if WARNING_LINE.search(text) and not NOT_A_WARNING.search(text):
            self.warnings += 1
        if self._file is not None:
            self._file.write(text + "\n")
            self._file.flush()  # a killed run keeps its logs

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def parse_progress(text: str) -> dict[str, Any] | None:
    """The fields of a progress line, or None for any other line (or a garbled one)."""
    index = text.find(PROGRESS_PREFIX)
    if index < 0:
        return None
    try:
        fields = json.loads(text[index + len(PROGRESS_PREFIX):])
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


class LogRouter(io.TextIOBase):
    """The `sys.stdout` of a local run: splits what is written into lines and hands each to its task's log."""

    def __init__(self, logs_dir: Path | None, observer: Observer | None = None, echo: TextIO | None = None) -> None:
        self.logs_dir, self.observer, self.echo = logs_dir, observer, echo
        self.pipeline = TaskLog("pipeline", None)  # written to pipeline.log once the run's folder is known
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def current(self) -> TaskLog | None:
        return getattr(self._local, "task", None)

    def start(self, name: str, logs_dir: Path | None) -> TaskLog:
        """Lines written in this thread now belong to task `name` (logs_dir: the run's logs folder)."""
        self.logs_dir = logs_dir
        task = TaskLog(name, logs_dir / f"{name}.log" if logs_dir else None)
        self._local.task, self._local.partial = task, ""
        if self.observer is not None:
            self.observer.task_started(name)
        return task

    def stop(self) -> TaskLog | None:
        self._flush_partial()
        task = self.current
        self._local.task = None
        if task is not None:
            task.close()
        return task

    def write(self, text: str) -> int:
        if self.echo is not None:
            self.echo.write(text)
        with self._lock:
            pending = getattr(self._local, "partial", "") + text
            *complete, self._local.partial = pending.replace("\r\n", "\n").split("\n")
        for line in complete:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        if self.echo is not None:
            self.echo.flush()

    def _flush_partial(self) -> None:
        rest = getattr(self._local, "partial", "")
        self._local.partial = ""
        if rest:
            self._line(rest)

    def _line(self, line: str) -> None:
        task = self.current or self.pipeline
        task.line(line)
        fields = parse_progress(line)
        if fields is not None and self.observer is not None and self.current is not None:
            self.observer.task_progress(task.name, fields)

    def write_pipeline_log(self, logs_dir: Path) -> Path | None:
        """pipeline.log: kfp.local's lines outside any task (the run's start and end), written at the end."""
        self._flush_partial()
        if not self.pipeline.lines:
            return None
        logs_dir.mkdir(parents=True, exist_ok=True)
        path = logs_dir / "pipeline.log"
        path.write_text("\n".join(self.pipeline.lines) + "\n", encoding="utf-8")
        return path
