"""Kubeflow Pipelines through kfp.Client: pipelines and versions, experiments, runs, recurring runs (schedules).

A run or schedule is started from an uploaded pipeline *version*, so what the version holds is what runs: --no-cache
therefore uploads a copy with caching off on every task (a run created from a version keeps the version's per-task
settings), and a schedule's cron is converted to KFP's six-field dialect.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from dermpipe.orchestration.backend import Backend, BackendSettings, RunStatus, ScheduleInfo, find_schedule, iso_time
from dermpipe.orchestration.caching import without_cache
from dermpipe.orchestration.cron import kfp_cron
from dermpipe.orchestration.errors import SubmitError
from dermpipe.orchestration.parameters import pipeline_name
from dermpipe.orchestration.watch import normalise_state


def kfp_client(settings: BackendSettings) -> Any:
    """kfp.Client for settings.host (None in a cluster: the client finds its own API); SubmitError if unreachable."""
    import warnings

    import kfp

    try:
        with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later": we need >= 2 anyway
            warnings.simplefilter("ignore", FutureWarning)
            return kfp.Client(host=settings.host or None, namespace=settings.namespace or "kubeflow")
    except Exception as err:  # noqa: BLE001 (the client raises many kinds; all mean "cannot reach")
        where = settings.host or "the in-cluster API (ml-pipeline.kubeflow)"
        raise SubmitError(f"cannot reach Kubeflow Pipelines at {where}: {err}. Check --host (e.g. "
                          "http://localhost:8080 after `kubectl port-forward -n kubeflow "
                          "svc/ml-pipeline-ui 8080:80`) and your credentials.") from err


class KfpBackend(Backend):
    """Kubeflow Pipelines through kfp.Client."""

    kind = "kfp"

    def __init__(self, settings: BackendSettings, client: Any = None):
        self.settings = settings
        self.client = client if client is not None else kfp_client(settings)
        self.host = settings.host
        self.namespace = settings.namespace

    # ---------------------------------------------------------------- runs

    def submit(self, package: Path, params: dict[str, Any], *, name: str, experiment: str, cache: bool = True
               ) -> RunStatus:
        with tempfile.TemporaryDirectory(prefix="dermpipe-kfp-") as tmp:
            if not cache:
                package = without_cache(package, Path(tmp) / "uncached.yaml")
            pipeline_id, version_id = self.upload(package, pipeline_name(package), name)
        run = self.client.run_pipeline(
            experiment_id=self.experiment_id(experiment), job_name=name, params=params, pipeline_id=pipeline_id,
            version_id=version_id, service_account=self.settings.service_account,
            pipeline_root=self.settings.pipeline_root or None)
        return RunStatus(run.run_id, name, normalise_state(run.state or "pending"), url=self._url(run.run_id))

    def status(self, run_id: str) -> RunStatus:
        return self._status(self.client.get_run(run_id))

    def runs(self, limit: int = 20, experiment: str | None = None) -> list[RunStatus]:
        experiment_id = self.client.get_experiment(experiment_name=experiment, namespace=self.namespace
                                                   ).experiment_id if experiment else None
        response = self.client.list_runs(page_size=limit, sort_by="created_at desc", experiment_id=experiment_id,
                                         namespace=self.namespace)
        return [self._status(run) for run in response.runs or []]

    # ---------------------------------------------------------------- schedules (recurring runs)

    def create_schedule(self, package: Path, params: dict[str, Any], *, name: str, cron: str, experiment: str
                        ) -> ScheduleInfo:
        pipeline = pipeline_name(package)
        sent_cron = kfp_cron(cron)  # before uploading anything: a malformed cron must not leave a version behind
        pipeline_id, version_id = self.upload(package, pipeline, name)
        recurring = self.client.create_recurring_run(
            experiment_id=self.experiment_id(experiment), job_name=name,
            description=f"dermpipe {pipeline} on cron {cron!r}", cron_expression=sent_cron, max_concurrency=1,
            no_catchup=True, params=params, pipeline_id=pipeline_id, version_id=version_id,
            service_account=self.settings.service_account, pipeline_root=self.settings.pipeline_root or None)
        return self._info(recurring)

    def schedules(self) -> list[ScheduleInfo]:
        response = self.client.list_recurring_runs(page_size=100, namespace=self.namespace)
        return [self._info(r) for r in response.recurring_runs or []]

    def pause_schedule(self, key: str) -> ScheduleInfo:
        info = find_schedule(self.schedules(), key)
        self.client.disable_recurring_run(info.schedule_id)
        info.state = "paused"
        return info

    def resume_schedule(self, key: str) -> ScheduleInfo:
        info = find_schedule(self.schedules(), key)
        self.client.enable_recurring_run(info.schedule_id)
        info.state = "enabled"
        return info

    def delete_schedule(self, key: str) -> ScheduleInfo:
        info = find_schedule(self.schedules(), key)
        self.client.delete_recurring_run(info.schedule_id)
        return info

    # ---------------------------------------------------------------- KFP objects

    def upload(self, package: Path, name: str, version: str) -> tuple[str, str]:
        """Upload the package as pipeline `name` (created if new), version `version`; returns the two ids."""
        pipeline_id = self.client.get_pipeline_id(name)
        if pipeline_id is None:
            pipeline_id = self.client.upload_pipeline(str(package), pipeline_name=name,
                                                      namespace=self.namespace).pipeline_id
        version_obj = self.client.upload_pipeline_version(
            str(package), pipeline_version_name=self._free_version_name(pipeline_id, version), pipeline_id=pipeline_id)
        return pipeline_id, version_obj.pipeline_version_id

    def _free_version_name(self, pipeline_id: str, name: str) -> str:
        """`name`, or `name-2`, `name-3`... when the pipeline already has a version of that name (names are unique)."""
        listed = self.client.list_pipeline_versions(pipeline_id, page_size=200).pipeline_versions or []
        taken = {v.display_name for v in listed}
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    def experiment_id(self, experiment: str) -> str:
        return self.client.create_experiment(name=experiment, namespace=self.namespace).experiment_id

    def _url(self, run_id: str) -> str:
        return f"{self.host.rstrip('/')}/#/runs/details/{run_id}" if self.host else ""

    def _status(self, run: Any) -> RunStatus:
        details = getattr(run, "run_details", None)
        tasks = {}
        for task in getattr(details, "task_details", None) or []:
            name = task.display_name or task.task_id
            if name and not name.startswith(("root", "condition-")):
                tasks[name] = normalise_state(task.state)
        error = getattr(getattr(run, "error", None), "message", "") or ""
        return RunStatus(run.run_id, run.display_name or "", normalise_state(run.state),
                         created=iso_time(run.created_at), finished=iso_time(run.finished_at),
                         url=self._url(run.run_id), tasks=tasks, error=error)

    @staticmethod
    def _info(recurring: Any) -> ScheduleInfo:
        trigger = getattr(recurring, "trigger", None)
        cron = getattr(getattr(trigger, "cron_schedule", None), "cron", "") or ""
        status = str(getattr(recurring, "status", "") or getattr(recurring, "mode", "") or "")
        state = "paused" if "DISABLE" in status.upper() else "enabled"
        version = getattr(recurring, "pipeline_version_reference", None)
        return ScheduleInfo(recurring.recurring_run_id, recurring.display_name or "", cron, state,
                            getattr(version, "pipeline_id", "") or "")
