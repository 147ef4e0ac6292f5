"""Vertex AI Pipelines through google.cloud.aiplatform: PipelineJobs and PipelineJobSchedules.

--no-cache is the job's enable_caching=False; runs are found by the `app=dermpipe` label. The KFP experiment has no
Vertex counterpart here (Vertex AI Experiments need a Metadata store and are not used), so `experiment` is accepted
for the shared interface and not sent.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dermpipe.orchestration.backend import Backend, BackendSettings, RunStatus, ScheduleInfo, find_schedule, iso_time
from dermpipe.orchestration.cron import vertex_cron
from dermpipe.orchestration.errors import SubmitError
from dermpipe.orchestration.watch import normalise_state

LABELS = {"app": "dermpipe"}


def check_vertex(settings: BackendSettings) -> None:
    """Project and region are needed to talk to Vertex at all; a pipeline root, if given, must be on GCS."""
    if not settings.project or not settings.region:
        raise SubmitError("Vertex AI needs --project and --region (e.g. --project my-proj --region us-central1; "
                          "`dermpipe monitor` and the monitoring pipeline call them project and location)")
    if settings.pipeline_root and not settings.pipeline_root.startswith("gs://"):
        raise SubmitError(f"--pipeline-root {settings.pipeline_root!r}: Vertex AI writes artifacts to Cloud Storage; "
                          "pass gs://BUCKET/dermpipe/artifacts (the bucket the Terraform in infra/ creates)")


def vertex_job_id(name: str) -> str:
    """Vertex job ids are [a-z0-9-], at most 128 characters, starting with a letter."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "dermpipe"
    return (cleaned if cleaned[0].isalpha() else f"run-{cleaned}")[:128]


def vertex_job(package: Path, params: dict[str, Any], settings: BackendSettings, *, name: str,
               enable_caching: bool | None = None) -> Any:
    """An (unsubmitted) aiplatform.PipelineJob for the package."""
    from google.cloud import aiplatform

    check_vertex(settings)
    if not settings.pipeline_root:
        raise SubmitError("Vertex AI needs --pipeline-root gs://BUCKET/dermpipe/artifacts")
    return aiplatform.PipelineJob(
        display_name=name, template_path=str(package), job_id=vertex_job_id(name),
        pipeline_root=settings.pipeline_root, parameter_values=params, enable_caching=enable_caching,
        project=settings.project, location=settings.region, labels=dict(LABELS))


class VertexBackend(Backend):
    """Vertex AI Pipelines through google.cloud.aiplatform."""

    kind = "vertex"

    def __init__(self, settings: BackendSettings):
        check_vertex(settings)
        self.settings = settings

    # ---------------------------------------------------------------- runs

    def submit(self, package: Path, params: dict[str, Any], *, name: str, experiment: str, cache: bool = True
               ) -> RunStatus:
        job = vertex_job(package, params, self.settings, name=name, enable_caching=None if cache else False)
        job.submit(service_account=self.settings.service_account, experiment=None)
        return RunStatus(job.resource_name, name, "pending", url=self._url(vertex_job_id(name)))

    def status(self, run_id: str) -> RunStatus:
        from google.cloud import aiplatform

        if not run_id.startswith("projects/"):  # a bare job id, as the console shows it
            run_id = f"projects/{self.settings.project}/locations/{self.settings.region}/pipelineJobs/{run_id}"
        return self._status(aiplatform.PipelineJob.get(resource_name=run_id, project=self.settings.project,
                                                       location=self.settings.region))

    def runs(self, limit: int = 20, experiment: str | None = None) -> list[RunStatus]:
        from google.cloud import aiplatform

        jobs = aiplatform.PipelineJob.list(filter='labels.app="dermpipe"', order_by="create_time desc",
                                           project=self.settings.project, location=self.settings.region)
        return [self._status(job) for job in list(jobs)[:limit]]

    # ---------------------------------------------------------------- schedules

    def create_schedule(self, package: Path, params: dict[str, Any], *, name: str, cron: str, experiment: str
                        ) -> ScheduleInfo:
        from google.cloud import aiplatform

        sent_cron = vertex_cron(cron)
        job = vertex_job(package, params, self.settings, name=name)
        schedule = aiplatform.PipelineJobSchedule(pipeline_job=job, display_name=name, project=self.settings.project,
                                                  location=self.settings.region)
        schedule.create(cron=sent_cron, max_concurrent_run_count=1, service_account=self.settings.service_account)
        return ScheduleInfo(schedule.resource_name, name, sent_cron, "enabled")

    def schedules(self) -> list[ScheduleInfo]:
        return [self._info(s) for s in self._schedules()]

    def pause_schedule(self, key: str) -> ScheduleInfo:
        info, schedule = self._get(key)
        schedule.pause()
        info.state = "paused"
        return info

    def resume_schedule(self, key: str) -> ScheduleInfo:
        info, schedule = self._get(key)
        schedule.resume(catch_up=False)
        info.state = "enabled"
        return info

    def delete_schedule(self, key: str) -> ScheduleInfo:
        info, schedule = self._get(key)
        schedule.delete()
        return info

    # ---------------------------------------------------------------- Vertex objects

    def _schedules(self) -> list[Any]:
        from google.cloud import aiplatform

        return list(aiplatform.PipelineJobSchedule.list(project=self.settings.project, location=self.settings.region))

    def _get(self, key: str) -> tuple[ScheduleInfo, Any]:
        by_id = {s.resource_name: s for s in self._schedules()}
        info = find_schedule([self._info(s) for s in by_id.values()], key)
        return info, by_id[info.schedule_id]

    def _url(self, job_id: str) -> str:
        return (f"https://console.cloud.google.com/vertex-ai/locations/{self.settings.region}/pipelines/runs/{job_id}"
                f"?project={self.settings.project}")

    def _status(self, job: Any) -> RunStatus:
        tasks = {}
        for task in getattr(job, "task_details", None) or []:
            if task.task_name and not task.task_name.startswith(("root", "condition-")) and \
                    task.task_name != job.display_name:
                tasks[task.task_name] = normalise_state(task.state)
        resource = getattr(job, "gca_resource", None)
        error = getattr(getattr(resource, "error", None), "message", "") or ""
        return RunStatus(job.resource_name, job.display_name, normalise_state(job.state),
                         created=iso_time(getattr(job, "create_time", None)),
                         finished=iso_time(getattr(resource, "end_time", None)),
                         url=self._url(job.name), tasks=tasks, error=error)

    @staticmethod
    def _info(schedule: Any) -> ScheduleInfo:
        state = str(getattr(schedule, "state", "")).upper()
        return ScheduleInfo(schedule.resource_name, schedule.display_name, getattr(schedule, "cron", "") or "",
                            "paused" if "PAUSED" in state else "enabled")
