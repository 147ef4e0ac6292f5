"""Cloud commands of the `dermpipe` CLI: compile, submit, status, remote run lists and schedules.

Registered on the main app by dermpipe/cli/main.py (`cli_cloud.register(app)`). Logic lives in
dermpipe.pipelines.compile and in dermpipe.orchestration (one Backend interface for kfp and vertex: submit, status,
runs, schedules); this module only maps flags to it and prints, and never asks which backend it holds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from dermpipe import config
from dermpipe.orchestration.connect import BACKEND_HELP
from dermpipe.pipelines.placement import Placement

DEFAULT_PLACEMENT = Placement()  # the compile flags' defaults (one source: pipelines/placement.py)

# Connection options shared by submit, status, runs and schedule (Typer allows reusing an option declaration).
HOST = typer.Option(None, "--host", envvar="KF_PIPELINES_ENDPOINT",
                    help="kfp: the KFP API endpoint, e.g. http://localhost:8080 or https://HOST/pipeline")
NAMESPACE = typer.Option(None, help="kfp: Kubernetes namespace (multi-user Kubeflow)")
EXPERIMENT = typer.Option("dermpipe", help="experiment the runs are filed under")
PROJECT = typer.Option(None, envvar="GOOGLE_CLOUD_PROJECT", help="vertex: GCP project id")
REGION = typer.Option("us-central1", envvar="DERMPIPE_REGION", help="vertex: region")
PIPELINE_ROOT = typer.Option(None, envvar="DERMPIPE_PIPELINE_ROOT",
                             help="gs://BUCKET/dermpipe/artifacts (required on vertex; optional on kfp)")
SERVICE_ACCOUNT = typer.Option(None, help="vertex: GCP service account e-mail; kfp: Kubernetes service account")
PARAMS = typer.Option([], "--param", "-p", help="pipeline parameter key=value (repeatable; overrides --config)")
CONFIG_FILE = typer.Option(None, "--config", exists=True, dir_okay=False,
                           help="YAML file of pipeline parameters (a mapping, or one under `parameters:`)")
REGISTRY = typer.Option(None, envvar=config.REGISTRY_ENV,
                        help=f"image registry [default: {config.DEFAULT_IMAGE_REGISTRY}]")
TAG = typer.Option(None, envvar=config.TAG_ENV, help="image tag [default: the package version]")


def preflight_or_exit(params: dict, *, local: bool) -> None:
    """Exit 2 with the stages' own messages when a stage would refuse the parameters (before anything starts);
    `local`: the run happens here, so the source and credentials must be this machine's."""
    from dermpipe.pipelines.preflight import PreflightError, preflight

    try:
        preflight(params, local=local)
    except PreflightError as err:
        typer.echo("dermpipe: pre-flight check failed, nothing was started:\n  " + str(err).replace("\n", "\n  "),
                   err=True)
        raise typer.Exit(2) from err


def _fail(err: Exception, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code)


def _placement(backend: str, accelerator: str | None, accelerator_count: int, train_cpu: str, train_memory: str,
               gke_accelerator: str, spot: bool, retries: int, cache_ingest: bool) -> Placement:
    overrides = {"train_accelerator_count": accelerator_count, "train_cpu": train_cpu, "train_memory": train_memory,
                 "retries": retries, "uncached_tasks": () if cache_ingest else ("ingest",)}
    if accelerator:
        overrides["train_accelerator"] = accelerator
    if backend == "kfp":
        overrides.update(gke_accelerator=gke_accelerator, spot=spot)
    return Placement.for_backend(backend, **overrides)


def _compile(pipeline: str, out: Path, backend: str, registry: str | None, tag: str | None, image: str | None,
             gpu_image: str | None, placement) -> Path:
    from dermpipe.pipelines.compile import CompileError, compile_pipeline

    try:
        return compile_pipeline(pipeline, out, base_image=image or config.image("base", registry, tag),
                                gpu_image=gpu_image or config.image("trainer-gpu", registry, tag), placement=placement)
    except (CompileError, ValueError) as err:
        raise _fail(err, 2) from err


def compile_(
    pipeline: str = typer.Option("training", help="training | training-cv (folds, ensemble) | monitoring"),
    out: Path = typer.Option(None, help="where to write the KFP IR YAML [default: <pipeline>.yaml]"),
    backend: str = typer.Option("kfp", help="placement for kfp (GKE tolerations, node selector) or vertex"),
    registry: str = REGISTRY,
    tag: str = TAG,
    image: str = typer.Option(None, help="image of every step [default: REGISTRY/base:TAG]"),
    gpu_image: str = typer.Option(None, help="image of the train step [default: REGISTRY/trainer-gpu:TAG]"),
    accelerator: str = typer.Option(None, help="train accelerator [kfp: nvidia.com/gpu; vertex: NVIDIA_TESLA_T4]"),
    accelerator_count: int = typer.Option(DEFAULT_PLACEMENT.train_accelerator_count,
                                          help="GPUs for the train step (0: CPU only)"),
    train_cpu: str = typer.Option(DEFAULT_PLACEMENT.train_cpu),
    train_memory: str = typer.Option(DEFAULT_PLACEMENT.train_memory),
    gke_accelerator: str = typer.Option(DEFAULT_PLACEMENT.gke_accelerator,
                                        help="kfp: GKE node selector cloud.google.com/gke-accelerator "
                                             "(e.g. nvidia-tesla-t4)"),
    spot: bool = typer.Option(DEFAULT_PLACEMENT.spot, help="kfp: tolerate GKE Spot (pre-emptible) GPU nodes"),
    retries: int = typer.Option(DEFAULT_PLACEMENT.retries,
                                help="train retries (back-off 2 min, doubling, at most 1 h) when pre-empted"),
    cache_ingest: bool = typer.Option("ingest" not in DEFAULT_PLACEMENT.uncached_tasks,
                                      help="let ingest be served from cache (only when you pass a "
                                           "source_fingerprint that changes with the data)"),
) -> None:
    """Compile the training or monitoring pipeline to KFP IR YAML for Kubeflow Pipelines or Vertex AI Pipelines."""
    placement = _placement(backend, accelerator, accelerator_count, train_cpu, train_memory, gke_accelerator, spot,
                           retries, cache_ingest)
    path = _compile(pipeline, out or Path(f"{pipeline}.yaml"), backend, registry, tag, image, gpu_image, placement)
    typer.echo(f"wrote {path}")


def _package(pipeline: str, package: Path | None, backend: str, registry: str | None, tag: str | None,
             accelerator: str | None, workdir: Path) -> Path:
    """The package to submit: --package as given, or --pipeline compiled now with the backend's placement."""
    if package is not None:
        return package
    placement = Placement.for_backend(backend, **({"train_accelerator": accelerator} if accelerator else {}))
    return _compile(pipeline, workdir / f"{pipeline}.yaml", backend, registry, tag, None, None, placement)


def _backend(backend: str, host: str | None, namespace: str | None, project: str | None, region: str,
             pipeline_root: str | None, service_account: str | None):
    """The connected Backend (kfp or vertex) for the connection flags; SubmitError names a missing one."""
    from dermpipe.orchestration.backend import BackendSettings
    from dermpipe.orchestration.connect import connect

    return connect(backend, BackendSettings(host=host or "", namespace=namespace, project=project or "",
                                            region=region or "", pipeline_root=pipeline_root or "",
                                            service_account=service_account))


def _print_status(status) -> None:
    typer.echo(f"run      {status.run_id}\nname     {status.name}\nstate    {status.state}")
    for label, value in (("created", status.created), ("finished", status.finished), ("url", status.url),
                         ("error", status.error)):
        if value:
            typer.echo(f"{label:<9}{value}")
    for task, state in sorted(status.tasks.items()):
        typer.echo(f"  {task:<24} {state}")


def submit(
    pipeline: str = typer.Option("training", help="training | monitoring (compiled now for the backend)"),
    package: Path = typer.Option(None, exists=True, dir_okay=False, help="submit this compiled IR YAML instead"),
    backend: str = typer.Option(..., help=BACKEND_HELP),
    host: str = HOST,
    namespace: str = NAMESPACE,
    experiment: str = EXPERIMENT,
    project: str = PROJECT,
    region: str = REGION,
    pipeline_root: str = PIPELINE_ROOT,
    service_account: str = SERVICE_ACCOUNT,
    param: list[str] = PARAMS,
    config_file: Path = CONFIG_FILE,
    name: str = typer.Option(None, help="run name [default: <pipeline name>-<UTC timestamp>]"),
    registry: str = REGISTRY,
    tag: str = TAG,
    accelerator: str = typer.Option(None, help="train accelerator [kfp: nvidia.com/gpu; vertex: NVIDIA_TESLA_T4]"),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="--no-cache: run every task, ignore the cache"),
    fingerprint: bool = typer.Option(True, "--fingerprint-source/--no-fingerprint-source",
                                     help="gs:// source: list it and pass its fingerprint, so ingest is served from "
                                          "cache only while the data is unchanged"),
    wait: bool = typer.Option(False, help="stream task states until the run ends; exit 1 unless it succeeded"),
    poll: float = typer.Option(15.0, help="seconds between status polls with --wait"),
) -> None:
    """Submit a pipeline run to Kubeflow Pipelines or Vertex AI Pipelines."""
    from dermpipe.orchestration.errors import remote_errors
    from dermpipe.orchestration.parameters import check_params, load_params
    from dermpipe.orchestration.submit import submit_run
    from dermpipe.orchestration.watch import wait_for
    from dermpipe.pipelines.profiles import checked

    try:
        if pipeline == "training" and package is None:  # before compiling: a cluster run would fail the same way
            preflight_or_exit(checked(load_params(config_file, param), "--config/--param"), local=False)
        with tempfile.TemporaryDirectory() as tmp:
            path = _package(pipeline, package, backend, registry, tag, accelerator, Path(tmp))
            params = check_params(load_params(config_file, param), path)  # before connecting: fail fast on typos
            remote = _backend(backend, host, namespace, project, region, pipeline_root, service_account)
            status = submit_run(remote, path, params, workdir=Path(tmp), name=name, experiment=experiment,
                                cache=cache, fingerprint=fingerprint, echo=typer.echo)
        typer.echo(f"submitted {status.name} to {backend}: run {status.run_id}")
        if status.url:
            typer.echo(f"  {status.url}")
        if wait:
            final = wait_for(lambda: remote.status(status.run_id), typer.echo, interval=poll)
            _print_status(final)
            if final.state != "succeeded":
                raise typer.Exit(1)
    except remote_errors() as err:
        raise _fail(err, 2) from err


def status(
    run_id: str = typer.Argument(..., help="run id (local run id, KFP run id, or Vertex job resource name)"),
    backend: str = typer.Option("local", help="local | " + BACKEND_HELP),
    host: str = HOST,
    namespace: str = NAMESPACE,
    project: str = PROJECT,
    region: str = REGION,
    wait: bool = typer.Option(False, help="remote: stream task states until the run ends"),
    poll: float = typer.Option(15.0, help="seconds between polls with --wait"),
) -> None:
    """State of one run and of each of its tasks (local, kfp or vertex)."""
    from dermpipe.orchestration.errors import remote_errors
    from dermpipe.orchestration.watch import wait_for

    if backend == "local":
        from dermpipe.pipelines.local import load_record

        try:
            record = load_record(run_id)
        except FileNotFoundError as err:
            raise _fail(err, 2) from err
        typer.echo(f"run      {record.run_id}\nstate    {record.status}")
        for task in record.tasks.values():
            typer.echo(f"  {task.name:<24} {task.status}{' (cache hit)' if task.cached else ''}")
        return
    try:
        remote = _backend(backend, host, namespace, project, region, None, None)
        current = wait_for(lambda: remote.status(run_id), typer.echo, interval=poll) if wait else remote.status(run_id)
    except remote_errors() as err:
        raise _fail(err, 2) from err
    _print_status(current)


def remote_runs(backend: str, limit: int, host: str | None, namespace: str | None, experiment: str | None,
                project: str | None, region: str) -> None:
    """`dermpipe runs --backend kfp|vertex`: newest first, with state."""
    from dermpipe.orchestration.errors import remote_errors

    try:
        found = _backend(backend, host, namespace, project, region, None, None).runs(limit, experiment)
    except remote_errors() as err:
        raise _fail(err, 2) from err
    if not found:
        typer.echo(f"no runs on {backend} yet; start one with `dermpipe submit --backend {backend} ...`")
        return
    typer.echo(f"{'RUN ID':<40} {'NAME':<40} {'STATE':<10} {'CREATED':<25}")
    for run in found:
        typer.echo(f"{run.run_id:<40} {run.name:<40} {run.state:<10} {run.created:<25}")


# ---------------------------------------------------------------- schedules

schedule_app = typer.Typer(help="Recurring runs: KFP recurring runs or Vertex AI PipelineJobSchedules.",
                           no_args_is_help=True)


def _print_schedule(verb: str, info) -> None:
    typer.echo(f"{verb} {info.name}  id={info.schedule_id}  cron={info.cron!r}  {info.state}")


@schedule_app.command("create")
def schedule_create(
    cron: str = typer.Option(..., help="5-field cron in UTC, e.g. '0 6 * * *' (daily 06:00), '0 3 * * 1' (Mondays)"),
    pipeline: str = typer.Option("training", help="training | monitoring (compiled now for the backend)"),
    package: Path = typer.Option(None, exists=True, dir_okay=False, help="schedule this compiled IR YAML instead"),
    backend: str = typer.Option(..., help=BACKEND_HELP),
    name: str = typer.Option(None, help="schedule name [default: dermpipe-<pipeline>-schedule]"),
    host: str = HOST,
    namespace: str = NAMESPACE,
    experiment: str = EXPERIMENT,
    project: str = PROJECT,
    region: str = REGION,
    pipeline_root: str = PIPELINE_ROOT,
    service_account: str = SERVICE_ACCOUNT,
    param: list[str] = PARAMS,
    config_file: Path = CONFIG_FILE,
    registry: str = REGISTRY,
    tag: str = TAG,
) -> None:
    """Create a schedule that runs a pipeline on a cron (monitoring daily, training weekly)."""
    from dermpipe.orchestration.errors import remote_errors
    from dermpipe.orchestration.parameters import check_params, load_params, pipeline_name

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = _package(pipeline, package, backend, registry, tag, None, Path(tmp))
            params = check_params(load_params(config_file, param), path)
            remote = _backend(backend, host, namespace, project, region, pipeline_root, service_account)
            info = remote.create_schedule(path, params, name=name or f"{pipeline_name(path)}-schedule", cron=cron,
                                          experiment=experiment)
    except remote_errors() as err:
        raise _fail(err, 2) from err
    _print_schedule("created", info)


@schedule_app.command("list")
def schedule_list(
    backend: str = typer.Option(..., help=BACKEND_HELP),
    host: str = HOST,
    namespace: str = NAMESPACE,
    project: str = PROJECT,
    region: str = REGION,
) -> None:
    """List schedules with their cron and state."""
    from dermpipe.orchestration.errors import remote_errors

    try:
        found = _backend(backend, host, namespace, project, region, None, None).schedules()
    except remote_errors() as err:
        raise _fail(err, 2) from err
    if not found:
        typer.echo(f"no schedules on {backend}; create one with `dermpipe schedule create --backend {backend} ...`")
    for info in found:
        typer.echo(f"{info.schedule_id:<40} {info.name:<40} {info.cron:<16} {info.state}")


def _schedule_action(action: str):
    def command(
        schedule: str = typer.Argument(..., help="schedule id or name"),
        backend: str = typer.Option(..., help=BACKEND_HELP),
        host: str = HOST,
        namespace: str = NAMESPACE,
        project: str = PROJECT,
        region: str = REGION,
    ) -> None:
        from dermpipe.orchestration.errors import remote_errors

        try:
            remote = _backend(backend, host, namespace, project, region, None, None)
            info = getattr(remote, f"{action}_schedule")(schedule)
        except remote_errors() as err:
            raise _fail(err, 2) from err
        _print_schedule({"pause": "paused", "resume": "resumed", "delete": "deleted"}[action], info)

    command.__doc__ = {"pause": "Pause a schedule (no new runs until resumed).",
                       "resume": "Resume a paused schedule (missed runs are not back-filled).",
                       "delete": "Delete a schedule (its past runs stay)."}[action]
    return command


for _action in ("pause", "resume", "delete"):
    schedule_app.command(_action)(_schedule_action(_action))


def register(app: typer.Typer) -> None:
    """Add the cloud commands to the main `dermpipe` app."""
    app.command("compile")(compile_)
    app.command("submit")(submit)
    app.command("status")(status)
    app.add_typer(schedule_app, name="schedule")
