"""Submit compiled dermpipe pipelines to Kubeflow Pipelines (kfp.Client) or Vertex AI Pipelines (aiplatform), and
watch them: run status with each task's state, run lists, `--wait` that streams task state changes.

Both backends are used through their official clients only; tests point kfp.Client at a local stub of the KFP
v2beta1 REST API and replace aiplatform.PipelineJob with a recorder.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dermpipe.orchestration.errors import SubmitError
from dermpipe.orchestration.parameters import check_params, package_parameters

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

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


def remote_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the backend said no or could not be reached" (shown as errors, not tracebacks)."""
    import urllib3
    from google.api_core import exceptions as google_errors
    from google.auth import exceptions as auth_errors
    from kfp_server_api import ApiException

    return (SubmitError, ApiException, urllib3.exceptions.HTTPError, google_errors.GoogleAPIError,
            auth_errors.GoogleAuthError)


# ---------------------------------------------------------------- parameters


def set_caching(package: Path, out: Path, tasks: dict[str, bool] | None = None, *, everything: bool | None = None
                ) -> Path:
    """A copy of the package with caching switched per task (`tasks`) or on every task (`everything`)."""
    documents = [d for d in yaml.safe_load_all(Path(package).read_text()) if d]
    spec = documents[0]
    dags = [spec["root"].get("dag", {})] + [c.get("dag", {}) for c in spec.get("components", {}).values()]
    for dag in dags:
        for name, task in dag.get("tasks", {}).items():
            enabled = everything if everything is not None else (tasks or {}).get(name)
            if enabled is not None:
                task["cachingOptions"] = {"enableCache": True} if enabled else {}  # absent = false in the IR
    out.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return out


def without_cache(package: Path, out: Path) -> Path:
    """A copy of the package with caching off on every task (what `--no-cache` uploads to KFP: a run created from a
    pipeline version keeps the version's per-task caching settings, so the override must be in the version)."""
    return set_caching(package, out, everything=False)


def gcs_fingerprint(uri: str, client: Any = None) -> str:
    """dermpipe.data.sources.gcs.fingerprint of the prefix (names, sizes, checksums); SubmitError if it is empty or
    cannot be listed."""
    from dermpipe.data.sources.gcs import EmptyPrefixError, fingerprint
    from dermpipe.storage import StorageError

    try:
        return fingerprint(uri, client)
    except EmptyPrefixError as err:
        raise SubmitError(f"{uri}: no objects found; check the bucket and prefix (gcloud storage ls {uri})") from err
    except StorageError as err:  # no such bucket, listing refused, no credentials: the message says which
        raise SubmitError(str(err)) from err


def fingerprint_source(params: dict[str, Any], package: Path, out: Path) -> tuple[dict[str, Any], Path, str]:
    """For a gs:// source: pass its fingerprint as `source_fingerprint` and let ingest use the cache, so an unchanged
    data set is not copied again while any change to it is. Returns (params, package, what was done)."""
    declared = package_parameters(package)
    source = str(params.get("source", declared.get("source", {}).get("defaultValue", "")))
    if not source.startswith("gs://") or "source_fingerprint" in params or "source_fingerprint" not in declared:
        return params, package, ""
    try:
        fingerprint = gcs_fingerprint(source)
    except remote_errors() as err:
        return params, package, f"could not fingerprint {source} ({err}); ingest runs without cache"
    cached = set_caching(package, out, {"ingest": True})
    return ({**params, "source_fingerprint": fingerprint}, cached,
            f"source {source} fingerprint {fingerprint}: ingest reuses its cache while the data is unchanged")


def run_name(pipeline: str, now: dt.datetime | None = None) -> str:
    """dermpipe-training-20261125-210501: sortable, unique per second, valid on both backends."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{pipeline}-{stamp}"


def normalise_state(state: Any) -> str:
    """KFP `SUCCEEDED` / Vertex `PipelineState.PIPELINE_STATE_SUCCEEDED` / task `State.SUCCEEDED` -> `succeeded`."""
    text = getattr(state, "name", None) or str(state or "unknown")
    text = text.rsplit(".", 1)[-1]
    for prefix in ("PIPELINE_STATE_", "RUNTIME_STATE_"):
        text = text.removeprefix(prefix)
    return text.lower()


def submit_run(remote: Any, package: Path, params: dict[str, Any], *, workdir: Path, name: str | None = None,
               experiment: str = "dermpipe", cache: bool = True, fingerprint: bool = True,
               service_account: str | None = None, pipeline_root: str | None = None,
               echo: Callable[[str], None] = print) -> RunStatus:
    """Check the parameters, fingerprint a gs:// source, apply --no-cache, and start the run on `remote`.

    Caching: by default the compiled per-task settings apply (everything cached but ingest); a fingerprinted source
    lets ingest use the cache too; `cache=False` turns every task off (on KFP inside the uploaded version, since a
    run created from a version keeps its settings; on Vertex through enable_caching=False).
    """
    from dermpipe.pipelines.compile import pipeline_name

    params = check_params(params, package)
    if fingerprint and cache:
        params, package, note = fingerprint_source(params, package, workdir / "fingerprinted.yaml")
        if note:
            echo(note)
    label = name or run_name(pipeline_name(package))
    if isinstance(remote, KfpBackend):
        if not cache:
            package = without_cache(package, workdir / "uncached.yaml")
        return remote.submit(package, params, name=label, experiment=experiment, service_account=service_account,
                             pipeline_root=pipeline_root)
    return remote.submit(package, params, name=label, enable_caching=None if cache else False)


# ---------------------------------------------------------------- watching


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


# ---------------------------------------------------------------- Kubeflow Pipelines


class KfpBackend:
    """Kubeflow Pipelines through kfp.Client: pipelines and versions, experiments, runs, recurring runs."""

    def __init__(self, host: str, namespace: str | None = None, client: Any = None):
        if client is None:
            import warnings

            import kfp

            try:
                with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later": we need >= 2 anyway
                    warnings.simplefilter("ignore", FutureWarning)
                    client = kfp.Client(host=host, namespace=namespace or "kubeflow")
            except Exception as err:  # noqa: BLE001 (the client raises many kinds; all mean "cannot reach")
                raise SubmitError(f"cannot reach Kubeflow Pipelines at {host}: {err}. Check --host (e.g. "
                                  "http://localhost:8080 after `kubectl port-forward -n kubeflow "
                                  "svc/ml-pipeline-ui 8080:80`) and your credentials.") from err
        self.client = client
        self.host = host
        self.namespace = namespace

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

    def submit(self, package: Path, params: dict[str, Any], *, name: str, experiment: str,
               enable_caching: bool | None = None, service_account: str | None = None,
               pipeline_root: str | None = None) -> RunStatus:
        from dermpipe.pipelines.compile import pipeline_name

        pipeline_id, version_id = self.upload(package, pipeline_name(package), name)
        run = self.client.run_pipeline(
            experiment_id=self.experiment_id(experiment), job_name=name, params=params, pipeline_id=pipeline_id,
            version_id=version_id, enable_caching=enable_caching, service_account=service_account,
            pipeline_root=pipeline_root or None)
        return RunStatus(run.run_id, name, normalise_state(run.state or "pending"),
                         url=f"{self.host.rstrip('/')}/#/runs/details/{run.run_id}")

    def status(self, run_id: str) -> RunStatus:
        return self._status(self.client.get_run(run_id))

    def runs(self, limit: int = 20, experiment: str | None = None) -> list[RunStatus]:
        experiment_id = self.client.get_experiment(experiment_name=experiment, namespace=self.namespace
                                                   ).experiment_id if experiment else None
        response = self.client.list_runs(page_size=limit, sort_by="created_at desc", experiment_id=experiment_id,
                                         namespace=self.namespace)
        return [self._status(run) for run in response.runs or []]

    def _status(self, run: Any) -> RunStatus:
        details = getattr(run, "run_details", None)
        tasks = {}
        for task in getattr(details, "task_details", None) or []:
            name = task.display_name or task.task_id
            if name and not name.startswith(("root", "condition-")):
                tasks[name] = normalise_state(task.state)
        error = getattr(getattr(run, "error", None), "message", "") or ""
        return RunStatus(run.run_id, run.display_name or "", normalise_state(run.state),
                         created=_iso(run.created_at), finished=_iso(run.finished_at),
                         url=f"{self.host.rstrip('/')}/#/runs/details/{run.run_id}", tasks=tasks, error=error)


# ---------------------------------------------------------------- Vertex AI Pipelines


@dataclass(frozen=True)
class VertexTarget:
    project: str
    region: str
    pipeline_root: str = ""
    service_account: str | None = None

    def check(self) -> None:
        if not self.project or not self.region:
            raise SubmitError("Vertex AI needs --project and --region (e.g. --project my-proj --region us-central1)")
        if self.pipeline_root and not self.pipeline_root.startswith("gs://"):
            raise SubmitError(f"--pipeline-root {self.pipeline_root!r}: Vertex AI writes artifacts to Cloud Storage; "
                              "pass gs://BUCKET/dermpipe/artifacts (the bucket the Terraform in infra/ creates)")


def vertex_job_id(name: str) -> str:
    """Vertex job ids are [a-z0-9-], at most 128 characters, starting with a letter."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "dermpipe"
    return (cleaned if cleaned[0].isalpha() else f"run-{cleaned}")[:128]


def vertex_job(package: Path, params: dict[str, Any], target: VertexTarget, *, name: str,
               enable_caching: bool | None = None) -> Any:
    """An (unsubmitted) aiplatform.PipelineJob for the package."""
    from google.cloud import aiplatform

    target.check()
    if not target.pipeline_root:
        raise SubmitError("Vertex AI needs --pipeline-root gs://BUCKET/dermpipe/artifacts")
    return aiplatform.PipelineJob(
        display_name=name, template_path=str(package), job_id=vertex_job_id(name), pipeline_root=target.pipeline_root,
        parameter_values=params, enable_caching=enable_caching, project=target.project, location=target.region,
        labels={"app": "dermpipe"})


class VertexBackend:
    """Vertex AI Pipelines through google.cloud.aiplatform."""

    def __init__(self, target: VertexTarget):
        target.check()
        self.target = target

    def submit(self, package: Path, params: dict[str, Any], *, name: str, experiment: str | None = None,
               enable_caching: bool | None = None) -> RunStatus:
        job = vertex_job(package, params, self.target, name=name, enable_caching=enable_caching)
        job.submit(service_account=self.target.service_account, experiment=experiment)
        return RunStatus(job.resource_name, name, "pending", url=_vertex_url(self.target, name))

    def status(self, run_id: str) -> RunStatus:
        from google.cloud import aiplatform

        if not run_id.startswith("projects/"):  # a bare job id, as the console shows it
            run_id = f"projects/{self.target.project}/locations/{self.target.region}/pipelineJobs/{run_id}"
        return self._status(aiplatform.PipelineJob.get(resource_name=run_id, project=self.target.project,
                                                       location=self.target.region))

    def runs(self, limit: int = 20) -> list[RunStatus]:
        from google.cloud import aiplatform

        jobs = aiplatform.PipelineJob.list(filter='labels.app="dermpipe"', order_by="create_time desc",
                                           project=self.target.project, location=self.target.region)
        return [self._status(job) for job in list(jobs)[:limit]]

    def _status(self, job: Any) -> RunStatus:
        tasks = {}
        for task in getattr(job, "task_details", None) or []:
            if task.task_name and not task.task_name.startswith(("root", "condition-")) and \
                    task.task_name != job.display_name:
                tasks[task.task_name] = normalise_state(task.state)
        error = getattr(getattr(job.gca_resource, "error", None), "message", "") if hasattr(job, "gca_resource") \
            else ""
        return RunStatus(job.resource_name, job.display_name, normalise_state(job.state),
                         created=_iso(getattr(job, "create_time", None)),
                         finished=_iso(getattr(getattr(job, "gca_resource", None), "end_time", None)),
                         url=_vertex_url(self.target, job.name), tasks=tasks, error=error or "")


def _vertex_url(target: VertexTarget, job_id: str) -> str:
    return (f"https://console.cloud.google.com/vertex-ai/locations/{target.region}/pipelines/runs/{job_id}"
            f"?project={target.project}")


def _iso(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, dt.datetime):
        if value.year <= 1970:  # KFP reports "not finished" as the epoch
            return ""
        return value.isoformat(timespec="seconds")
    return str(value)
