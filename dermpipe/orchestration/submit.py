"""`dermpipe submit` on any backend: check the parameters, fingerprint a gs:// source, name the run, start it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dermpipe.orchestration.backend import Backend, RunStatus
from dermpipe.orchestration.caching import fingerprint_source, pin_split_file
from dermpipe.orchestration.parameters import check_params, pipeline_name


def run_name(pipeline: str, now: dt.datetime | None = None) -> str:
    """dermpipe-training-20261125-210501: sortable, unique per second, valid on both backends."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{pipeline}-{stamp}"


def submit_run(backend: Backend, package: Path, params: dict[str, Any], *, workdir: Path, name: str | None = None,
               experiment: str = "dermpipe", cache: bool = True, fingerprint: bool = True,
               echo: Callable[[str], None] = print) -> RunStatus:
    """Check the parameters, fingerprint a gs:// source, and start the run on `backend`.

    Caching: by default the compiled per-task settings apply (everything cached but ingest); a fingerprinted source
    lets ingest use the cache too; `cache=False` turns every task off (the backend decides how).
    """
    params = check_params(params, package)
    params, note = pin_split_file(params, package)
    if note:
        echo(note)
    if fingerprint and cache:
        params, package, note = fingerprint_source(params, package, workdir / "fingerprinted.yaml")
        if note:
            echo(note)
    label = name or run_name(pipeline_name(package))
    return backend.submit(package, params, name=label, experiment=experiment, cache=cache)
