"""What every stage shares: the decorator that makes it a KFP lightweight component on dermpipe's own image, and
`param`, the field of a stage's parameter dataclass (default + help), and `check_choice`, the check of a field that
takes one of a few values."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import field
from typing import Any

from dermpipe import config


def stage_component(*, base_image: str = config.BASE_IMAGE) -> Callable:
    """dsl.component with dermpipe's image and no runtime `pip install kfp` (the image has it).

    Inside a running task (_KFP_RUNTIME=true) kfp.dsl has no `component`; the stage module is then imported only for
    its logic, so the decorator leaves the function as it is.
    """
    if os.environ.get("_KFP_RUNTIME", "false") == "true":
        return lambda func: func
    from kfp import dsl

    return dsl.component(base_image=base_image, install_kfp_package=False)


def param(default: Any, help: str) -> Any:
    """A stage parameter's default and help in one place: the dataclass field that `dermpipe run`'s options are
    derived from and that the component and pipeline signatures are checked against (the parameter agreement test)."""
    return field(default=default, metadata={"help": help})


def check_choice(stage: str, name: str, value: str, allowed: tuple[str, ...]) -> None:
    """`value` is one of `allowed`, else an error naming the stage's parameter and the choices."""
    if value not in allowed:
        raise ValueError(f"{stage} parameter {name}={value!r} is not supported; choose one of {list(allowed)}")


# Progress lines a task prints for the local runner (dermpipe.pipelines.task_logs), which turns them into the live
# progress of `dermpipe run`: one line, `[dermpipe-progress] {json}`, readable in a log as well.
PROGRESS_PREFIX = "[dermpipe-progress] "


def report_progress(**fields: Any) -> None:
    """Print one progress line (flushed: kfp.local reads the task's output line by line as it comes)."""
    import json

    print(PROGRESS_PREFIX + json.dumps(fields, sort_keys=True), flush=True)


class CountProgress:
    """`done` of `total` items of a task's step, reported at most every `every` seconds and once at the end."""

    def __init__(self, step: str, total: int, unit: str = "images", every: float = 1.0) -> None:
        import time

        self.step, self.total, self.unit, self.every = step, total, unit, every
        self.done, self._clock, self._last = 0, time.monotonic, 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self._clock()
        if self.done >= self.total or now - self._last >= self.every:
            self._last = now
            report_progress(step=self.step, done=self.done, total=self.total, unit=self.unit)
