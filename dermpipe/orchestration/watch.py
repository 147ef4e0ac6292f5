"""Watching a remote run: state names as both services spell them, and `--wait`'s poll loop."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from dermpipe.orchestration.backend import RunStatus
from dermpipe.orchestration.errors import SubmitError


def normalise_state(state: Any) -> str:
    """KFP `SUCCEEDED` / Vertex `PipelineState.PIPELINE_STATE_SUCCEEDED` / task `State.SUCCEEDED` -> `succeeded`."""
    text = getattr(state, "name", None) or str(state or "unknown")
    text = text.rsplit(".", 1)[-1]
    for prefix in ("PIPELINE_STATE_", "RUNTIME_STATE_"):
        text = text.removeprefix(prefix)
    return text.lower()


def wait_for(
    get_status: Callable[[], RunStatus],
    echo: Callable[[str], None],
    *,
    interval: float = 10.0,
    timeout: float = 24 * 3600,
    sleep: Callable[[float], None] = time.sleep,
) -> RunStatus:
    """Poll until the run ends, printing every change of the run's or a task's state; returns the final status."""
    seen: dict[str, str] = {}
    started = time.monotonic()
    while True:
        status = get_status()
        for task, state in [("run", status.state), *sorted(status.tasks.items())]:
            if seen.get(task) != state:
                seen[task] = state
                echo(f"{dt.datetime.now(dt.UTC):%H:%M:%S}  {task:<24} {state}")
        if status.done:
            return status
        if time.monotonic() - started > timeout:
            raise SubmitError(f"run {status.run_id} still {status.state} after {timeout:.0f} s; it keeps running, "
                              f"check it later with `dermpipe status {status.run_id}`")
        sleep(interval)
