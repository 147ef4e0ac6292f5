"""One backend interface for Kubeflow Pipelines and Vertex AI Pipelines: submit, status, runs and schedules.

The CLI (`dermpipe submit/status/runs/schedule`), the retraining trigger and anything else that starts or watches a
run hold a `Backend` from `connect(kind, settings)` and never ask which one it is: the implementations have the same
method signatures (a test compares them), and what differs between the services (how --no-cache is applied, the
cron dialect, where a service account goes) is decided inside them.

kfp and vertex live here. `local` (the local runner, kfp.local on this machine) lives in dermpipe.pipelines, above
this layer, so it cannot be imported from here: it is registered as the package entry point `local` of the group
`dermpipe.backends` (pyproject.toml), the way plugins are, and `connect` loads it from there. The compiled training
pipeline the trigger submits comes the same way (group `dermpipe.compilers`, entry point `training`).
"""

from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermpipe.orchestration.errors import SubmitError

BACKENDS = ("kfp", "vertex")
FINAL_STATES = ("succeeded", "failed", "canceled", "cancelled", "skipped", "error")


@dataclass
class RunStatus:
    """A remote run as both backends report it, states normalised to lower case (running, succeeded, failed...)."""

    run_id: str
    name: str
    state: str
    created: str = ""
    finished: str = ""
    url: str = ""
    tasks: dict[str, str] = field(default_factory=dict)
    error: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)  # what the run produced, when the backend knows (local)

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


@dataclass
class ScheduleInfo:
    """A KFP recurring run or a Vertex AI PipelineJobSchedule."""

    schedule_id: str
    name: str
    cron: str
    state: str  # enabled | paused
    pipeline: str = ""


@dataclass(frozen=True)
class BackendSettings:
    """Where the backend is: the CLI's connection flags (and the retrain component's parameters) in one place.

    kfp uses host (and namespace); vertex uses project, region and pipeline_root. service_account and pipeline_root
    apply to every run and schedule the backend starts. in_cluster: talk to the KFP API of the cluster this process
    runs in (a pipeline task), so no host is needed.
    """

    host: str = ""
    namespace: str | None = None
    project: str = ""
    region: str = ""
    pipeline_root: str = ""
    service_account: str | None = None
    in_cluster: bool = False


class Backend(abc.ABC):
    """What dermpipe does with a remote pipeline service. Implementations: KfpBackend, VertexBackend."""

    kind: str = ""

    @abc.abstractmethod
    def submit(self, package: Path, params: dict[str, Any], *, name: str, experiment: str, cache: bool = True
               ) -> RunStatus:
        """Start one run of the compiled package; cache=False runs every task even when a cached result exists."""

    @abc.abstractmethod
    def status(self, run_id: str) -> RunStatus:
        """The run's state and each task's."""

    @abc.abstractmethod
    def runs(self, limit: int = 20, experiment: str | None = None) -> list[RunStatus]:
        """dermpipe's runs, newest first."""

    @abc.abstractmethod
    def create_schedule(self, package: Path, params: dict[str, Any], *, name: str, cron: str, experiment: str
                        ) -> ScheduleInfo:
        """Run the package on a five-field cron (converted to the service's dialect inside)."""

    @abc.abstractmethod
    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule, with its cron and state."""

    @abc.abstractmethod
    def pause_schedule(self, key: str) -> ScheduleInfo:
        """Stop starting runs (key: the schedule's id or name)."""

    @abc.abstractmethod
    def resume_schedule(self, key: str) -> ScheduleInfo:
        """Start runs again; missed ones are not back-filled."""

    @abc.abstractmethod
    def delete_schedule(self, key: str) -> ScheduleInfo:
        """Remove the schedule; its past runs stay."""


def find_schedule(items: list[ScheduleInfo], key: str) -> ScheduleInfo:
    """The one schedule whose id (or its last path segment) or name is `key`; SubmitError listing them otherwise."""
    matches = [s for s in items if key in (s.schedule_id, s.name) or s.schedule_id.endswith(f"/{key}")]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(f"{s.name} ({s.schedule_id})" for s in items) or "none"
    if not matches:
        raise SubmitError(f"no schedule {key!r}; existing schedules: {names}")
    raise SubmitError(f"{len(matches)} schedules are named {key!r}; use the id. Existing: {names}")


def iso_time(value: Any) -> str:
    """A service's timestamp as ISO text; '' when absent (KFP reports "not finished" as the epoch)."""
    if value is None or value == "":
        return ""
    if isinstance(value, dt.datetime):
        if value.year <= 1970:
            return ""
        return value.isoformat(timespec="seconds")
    return str(value)
