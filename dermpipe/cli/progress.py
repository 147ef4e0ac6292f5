"""`dermpipe run`'s live progress: one line per task (state, elapsed seconds, cache hit), an epoch bar with the
latest validation BMA inside train, images processed inside merge and prepare.

On a terminal it is a rich Live display redrawn in place; elsewhere (CI, a pipe, a file) plain lines, one per state
change, so a log stays short and greppable. Both get their events from the local runner
(dermpipe.pipelines.task_logs.Observer); a failed task shows its last lines and the path of its full log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

FAILURE_LINES = 15
SYMBOLS = {"running": "…", "succeeded": "✓", "cached": "↺", "failed": "✗"}


@dataclass
class TaskState:
    """What is shown for one task."""

    name: str
    state: str = "running"  # running | succeeded | cached | failed
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None  # set when finished
    progress: dict[str, Any] = field(default_factory=dict)  # the task's latest progress line

    def elapsed(self) -> float:
        return self.seconds if self.seconds is not None else time.monotonic() - self.started

    def detail(self) -> str:
        """`epoch 3/12  val BMA 0.412`, `resumed at epoch 4/12`, or `validating 120/400 images`."""
        p = self.progress
        if "epoch" in p:
            bma = p.get("val_balanced_accuracy")
            text = f"{p.get('step', 'train')} epoch {p['epoch']}/{p['epochs']}"
            return text + (f"  val BMA {bma:.3f}" if isinstance(bma, int | float) else "")
        if "resumed_at" in p:
            return f"resumed at epoch {p['resumed_at']}/{p['epochs']}"
        if "done" in p:
            return f"{p.get('step', '')} {p['done']}/{p['total']} {p.get('unit', '')}".strip()
        return ""

    def fraction(self) -> float | None:
        p = self.progress
        if "epoch" in p and p.get("epochs"):
            return p["epoch"] / p["epochs"]
        if "done" in p and p.get("total"):
            return p["done"] / p["total"]
        return None


def _state(task: Any) -> str:
    if task.status != "success":
        return "failed"
    return "cached" if task.cached else "succeeded"


def failure_lines(name: str, log: Path | None, tail: list[str]) -> list[str]:
    """The last lines of a failed task's log and where the whole log is."""
    shown = [line for line in tail if line.strip()][-FAILURE_LINES:]
    return [f"{name} failed; its last lines:", *(f"  | {line}" for line in shown),
            f"  full log: {log}" if log else "  (no log file)"]


class PlainProgress:
    """One line per state change: for CI logs and pipes."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.tasks = out, {}

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def task_started(self, name: str) -> None:
        self.tasks[name] = TaskState(name)
        self._print(f"{name}: running")

    def task_progress(self, name: str, fields: dict[str, Any]) -> None:
        state = self.tasks.setdefault(name, TaskState(name))
        state.progress = fields
        if "resumed_at" in fields:  # a state change too: training continues, not restarts
            self._print(f"{name}: {state.detail()}")

    def task_finished(self, task: Any, log: Path | None, tail: list[str]) -> None:
        state = self.tasks.setdefault(task.name, TaskState(task.name))
        state.state, state.seconds = _state(task), task.seconds
        suffix = " (cache hit)" if state.state == "cached" else ""
        self._print(f"{task.name}: {state.state} in {task.seconds:.1f}s{suffix}")
        if state.state == "failed":
            for line in failure_lines(task.name, log, tail):
                self._print(line)

    def close(self) -> None:
        """Nothing is drawn in place."""


class LiveProgress(PlainProgress):
    """The same events drawn in place with rich: the task list with elapsed time and a bar for the running one."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__(out)
        self.console = Console(file=out)
        self.live = Live(console=self.console, get_renderable=self._render, refresh_per_second=4,
                         redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def _render(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        for state in self.tasks.values():
            fraction = state.fraction() if state.state == "running" else None
            bar = ProgressBar(total=1.0, completed=fraction, width=20) if fraction is not None else ""
            cached = "cache hit" if state.state == "cached" else ""
            grid.add_row(SYMBOLS[state.state], state.name, f"{state.elapsed():6.1f}s", cached, bar, state.detail())
        return grid

    def task_started(self, name: str) -> None:
        self.tasks[name] = TaskState(name)

    def task_progress(self, name: str, fields: dict[str, Any]) -> None:
        self.tasks.setdefault(name, TaskState(name)).progress = fields

    def task_finished(self, task: Any, log: Path | None, tail: list[str]) -> None:
        state = self.tasks.setdefault(task.name, TaskState(task.name))
        state.state, state.seconds = _state(task), task.seconds
        if state.state == "failed":
            for line in failure_lines(task.name, log, tail):
                self.console.print(line, markup=False, highlight=False)

    def close(self) -> None:
        self.live.stop()


def make_progress(out: TextIO) -> PlainProgress:
    """Live on a terminal, plain lines elsewhere."""
    return LiveProgress(out) if out.isatty() else PlainProgress(out)
