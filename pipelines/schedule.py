"""Schedules: KFP recurring runs and Vertex AI PipelineJobSchedules for dermpipe's pipelines.

The monitoring pipeline is meant to run daily, the training pipeline weekly (see README, "Run it in the cloud").
Cron expressions are the usual five fields (`0 6 * * *`); KFP's scheduler wants six (seconds first), so they are
converted for it. A schedule is named by its id or its display name in pause/resume/delete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermpipe.pipelines.submit import KfpBackend, SubmitError, VertexTarget, vertex_job

SUGGESTED_CRON = {"monitoring": "0 6 * * *", "training": "0 3 * * 1"}  # daily 06:00, Mondays 03:00 (UTC)


@dataclass
class ScheduleInfo:
    schedule_id: str
    name: str
    cron: str
    state: str  # enabled | paused
    pipeline: str = ""


def split_cron(cron: str) -> tuple[str, list[str]]:
    """('TZ=Europe/Paris' or '', the fields) of a cron expression, with a clear error when it is malformed."""
    parts = cron.split()
    tz = parts.pop(0) if parts and parts[0].startswith(("TZ=", "CRON_TZ=")) else ""
    if len(parts) not in (5, 6):
        raise SubmitError(f"--cron {cron!r}: expected 5 fields 'minute hour day-of-month month day-of-week' "
                          "(e.g. '0 6 * * *' daily at 06:00 UTC, '0 3 * * 1' Mondays at 03:00), optionally "
                          "prefixed by TZ=Area/City")
    return tz, parts


def kfp_cron(cron: str) -> str:
    """KFP's scheduler (robfig/cron) takes six fields with seconds first and no time zone prefix."""
    tz, parts = split_cron(cron)
    if tz:
        raise SubmitError(f"--cron {cron!r}: Kubeflow Pipelines schedules in the cluster's time zone (UTC on GKE); "
                          "drop the TZ= prefix and give the time in UTC")
    return " ".join(parts if len(parts) == 6 else ["0", *parts])


def vertex_cron(cron: str) -> str:
    """Vertex AI takes standard five-field cron, optionally prefixed by TZ=."""
    tz, parts = split_cron(cron)
    if len(parts) == 6:
        if parts[0] not in ("0", "00"):
            raise SubmitError(f"--cron {cron!r}: Vertex AI schedules to the minute; use five fields")
        parts = parts[1:]
    return " ".join([tz, *parts] if tz else parts)


def _resolve(items: list[ScheduleInfo], key: str) -> ScheduleInfo:
    matches = [s for s in items if key in (s.schedule_id, s.name) or s.schedule_id.endswith(f"/{key}")]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(f"{s.name} ({s.schedule_id})" for s in items) or "none"
    if not matches:
        raise SubmitError(f"no schedule {key!r}; existing schedules: {names}")
    raise SubmitError(f"{len(matches)} schedules are named {key!r}; use the id. Existing: {names}")


# ---------------------------------------------------------------- Kubeflow Pipelines


class KfpSchedules:
    """KFP recurring runs (the v2beta1 RecurringRunService) through kfp.Client."""

    def __init__(self, backend: KfpBackend):
        self.backend = backend
        self.client = backend.client

    def create(self, package: Path, params: dict[str, Any], *, name: str, cron: str, experiment: str,
               enable_caching: bool | None = None, service_account: str | None = None,
               pipeline_root: str | None = None) -> ScheduleInfo:
        from dermpipe.pipelines.compile import pipeline_name

        pipeline = pipeline_name(package)
        pipeline_id, version_id = self.backend.upload(package, pipeline, name)
        recurring = self.client.create_recurring_run(
            experiment_id=self.backend.experiment_id(experiment), job_name=name,
            description=f"dermpipe {pipeline} on cron {cron!r}", cron_expression=kfp_cron(cron), max_concurrency=1,
            no_catchup=True, params=params, pipeline_id=pipeline_id, version_id=version_id,
            enable_caching=enable_caching, service_account=service_account, pipeline_root=pipeline_root or None)
        return self._info(recurring)

    def list(self, experiment: str | None = None) -> list[ScheduleInfo]:
        experiment_id = self.client.get_experiment(experiment_name=experiment).experiment_id if experiment else None
        response = self.client.list_recurring_runs(page_size=100, experiment_id=experiment_id,
                                                   namespace=self.backend.namespace)
        return [self._info(r) for r in response.recurring_runs or []]

    def pause(self, key: str) -> ScheduleInfo:
        info = _resolve(self.list(), key)
        self.client.disable_recurring_run(info.schedule_id)
        info.state = "paused"
        return info

    def resume(self, key: str) -> ScheduleInfo:
        info = _resolve(self.list(), key)
        self.client.enable_recurring_run(info.schedule_id)
        info.state = "enabled"
        return info

    def delete(self, key: str) -> ScheduleInfo:
        info = _resolve(self.list(), key)
        self.client.delete_recurring_run(info.schedule_id)
        return info

    @staticmethod
    def _info(recurring: Any) -> ScheduleInfo:
        trigger = getattr(recurring, "trigger", None)
        cron = getattr(getattr(trigger, "cron_schedule", None), "cron", "") or ""
        status = str(getattr(recurring, "status", "") or getattr(recurring, "mode", "") or "")
        state = "paused" if "DISABLE" in status.upper() else "enabled"
        version = getattr(recurring, "pipeline_version_reference", None)
        return ScheduleInfo(recurring.recurring_run_id, recurring.display_name or "", cron, state,
                            getattr(version, "pipeline_id", "") or "")


# ---------------------------------------------------------------- Vertex AI


class VertexSchedules:
    """Vertex AI PipelineJobSchedules through google.cloud.aiplatform."""

    def __init__(self, target: VertexTarget):
        target.check()
        self.target = target

    def create(self, package: Path, params: dict[str, Any], *, name: str, cron: str,
               enable_caching: bool | None = None) -> ScheduleInfo:
        from google.cloud import aiplatform

        job = vertex_job(package, params, self.target, name=name, enable_caching=enable_caching)
        schedule = aiplatform.PipelineJobSchedule(pipeline_job=job, display_name=name, project=self.target.project,
                                                  location=self.target.region)
        schedule.create(cron=vertex_cron(cron), max_concurrent_run_count=1,
                        service_account=self.target.service_account)
        return ScheduleInfo(schedule.resource_name, name, vertex_cron(cron), "enabled")

    def list(self) -> list[ScheduleInfo]:
        return [self._info(s) for s in self._schedules()]

    def _schedules(self) -> list[Any]:
        from google.cloud import aiplatform

        return list(aiplatform.PipelineJobSchedule.list(project=self.target.project, location=self.target.region))

    def _get(self, key: str) -> tuple[ScheduleInfo, Any]:
        by_id = {s.resource_name: s for s in self._schedules()}
        info = _resolve([self._info(s) for s in by_id.values()], key)
        return info, by_id[info.schedule_id]

    def pause(self, key: str) -> ScheduleInfo:
        info, schedule = self._get(key)
        schedule.pause()
        info.state = "paused"
        return info

    def resume(self, key: str) -> ScheduleInfo:
        info, schedule = self._get(key)
        schedule.resume(catch_up=False)
        info.state = "enabled"
        return info

    def delete(self, key: str) -> ScheduleInfo:
        info, schedule = self._get(key)
        schedule.delete()
        return info

    @staticmethod
    def _info(schedule: Any) -> ScheduleInfo:
        state = str(getattr(schedule, "state", "")).upper()
        return ScheduleInfo(schedule.resource_name, schedule.display_name, getattr(schedule, "cron", "") or "",
                            "paused" if "PAUSED" in state else "enabled")
