"""The `dermpipe` command line: run the pipeline locally, compile it for KFP/Vertex, inspect local runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dermpipe import config
from dermpipe.cli import cloud as cli_cloud
from dermpipe.cli import run_options
from dermpipe.pipelines.parameters import defaults
from dermpipe.pipelines.profiles import DEFAULT_PROFILE, PROFILES, ProfileName, given_params

app = typer.Typer(help="dermpipe: ISIC 2019 skin-lesion classification pipeline (Kubeflow Pipelines / Vertex AI).",
                  no_args_is_help=True, add_completion=False)


PROFILE_HELP = ("parameter profile: laptop (" + ", ".join(f"{k} {v}" for k, v in PROFILES["laptop"].items())
                + "; CPU minutes, not GPU hours) or cluster (the pipeline's own defaults, what a KFP/Vertex run uses)")


@app.command()
@run_options.with_derived_options(PROFILES[DEFAULT_PROFILE])
def run(
    profile: ProfileName = typer.Option(DEFAULT_PROFILE, "--profile", help=PROFILE_HELP),
    config_file: Path = cli_cloud.CONFIG_FILE,
    param: list[str] = cli_cloud.PARAMS,
    pipeline_root: Path = typer.Option(None, help="where artifacts go [default: $DERMPIPE_HOME/artifacts]"),
    registry_root: str = typer.Option(None, help="model registry [default: $DERMPIPE_HOME/registry]"),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="reuse outputs of unchanged tasks"),
    quiet_train: bool = typer.Option(False, "--quiet-train", hidden=True, help="old name of --train-quiet"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="stream every task's full output (kfp.local's log "
                                 "included) instead of the progress; the logs are written either way"),
    fresh: bool = typer.Option(False, "--fresh", help="train from the first epoch: delete the checkpoints killed "
                               "runs left in $DERMPIPE_HOME/checkpoints (not a parameter: the cache is unaffected)"),
    **options: Any,
) -> None:
    """Run the training pipeline locally (kfp.local, no cluster, no GPU needed).

    Parameters: the profile < --config FILE.yaml < --param key=value < the options below. Each option is a pipeline
    parameter (the same names as `submit --config`, with dashes)."""
    from dermpipe.pipelines.local import run_local

    params = _run_params(profile, config_file, param, registry_root, quiet_train, options)
    cli_cloud.preflight_or_exit(params, local=True)
    if fresh:
        import shutil

        shutil.rmtree(config.home() / "checkpoints", ignore_errors=True)
    record = _run_with_progress(run_local, params, pipeline_root, cache, verbose)
    typer.echo(_summary(record))
    if record.status != "succeeded":
        raise typer.Exit(1)


def _run_params(profile: str, config_file: Path | None, pairs: list[str], registry_root: str | None,
                quiet_train: bool, options: dict[str, Any]) -> dict[str, Any]:
    """What `dermpipe run` passes to the local runner: every derived parameter resolved by precedence, and
    registry_root / source_fingerprint only when given (the runner fills them in otherwise)."""
    from dermpipe.orchestration.errors import SubmitError
    from dermpipe.orchestration.parameters import load_params

    explicit = run_options.given(options)
    if quiet_train:
        explicit.setdefault("train_quiet", True)
    if registry_root:
        explicit["registry_root"] = registry_root
    origin = " / ".join(([f"--config {config_file}"] if config_file else []) + (["--param"] if pairs else []))
    try:
        config_values = load_params(config_file, pairs)
        given = given_params(profile, config_values, explicit, config_origin=origin)
    except SubmitError as err:
        typer.echo(f"dermpipe run: {err}", err=True)
        raise typer.Exit(2) from err
    return {**{name: value for name, value in defaults().items() if name not in run_options.NOT_DERIVED}, **given}


def _run_with_progress(run_local, params: dict[str, Any], pipeline_root: Path | None, cache: bool, verbose: bool):
    """The local run with the live progress (or, with --verbose, every line streamed as kfp.local prints it)."""
    import sys

    from dermpipe.cli.progress import make_progress

    if verbose:
        return run_local(params, pipeline_root=pipeline_root, cache=cache, verbose=True)
    progress = make_progress(sys.stdout)
    try:
        return run_local(params, pipeline_root=pipeline_root, cache=cache, observer=progress, verbose=False)
    finally:
        progress.close()


def _logs(record) -> list[tuple[str, str]]:
    """Where every task's full log is, and how many warning lines they hold: quiet output hides nothing."""
    logs = [Path(t.log) for t in record.tasks.values() if getattr(t, "log", "")]
    if not logs:
        return []
    warned = {t.name: t.warnings for t in record.tasks.values() if getattr(t, "warnings", 0)}
    counted = (f"{sum(warned.values())} ({', '.join(f'{name} {n}' for name, n in warned.items())}; "
               "grep -i warning in the logs)" if warned else "none")
    return [("logs", f"{logs[0].parent}/{{{','.join(p.stem for p in logs)}}}.log"), ("warnings", counted)]


def _summary(record) -> str:
    """What a run produced, one `label  value` line each: the last thing `dermpipe run` prints."""
    run_folder = Path(record.pipeline_root) / record.run_id
    rows = [("run", record.run_id), ("status", record.status),
            ("artifacts", run_folder if run_folder.exists() else "all reused from earlier runs (cache)")]
    if record.error:
        rows.append(("error", record.error))
    cached = [t.name for t in record.tasks.values() if t.cached]
    if cached:
        rows.append(("cached", f"{', '.join(cached)} (unchanged inputs; outputs reused)"))
    rows += [(f"test {key}", f"{value:.4f}") for key, value in record.headline().items()]
    rows += list(record.reports.items())
    model = record.artifact("train", "model")
    if model:
        rows.append(("model", model["uri"]))
    deployed = record.artifact("deploy", "pushed")
    if deployed:
        rows.append(("deployed", f"{deployed['metadata'].get('registry_uri', deployed['uri'])}: "
                                 f"{deployed['metadata'].get('message', '')}"))
        rows.append(("model-card", _model_card(deployed["metadata"])))
    elif record.status == "succeeded":
        rows.append(("deployed", "no: the model was not blessed (see gate-decision)"))
    rows += _serving(record)
    rows += _logs(record)
    width = max(len(label) for label, _ in rows) + 2
    return "\n" + "\n".join(f"{label:<{width}}{value}" for label, value in rows)


def _model_card(pushed: dict[str, Any]) -> str:
    """The deployed version's model card (HTML), or why there is none and how to write it."""
    from dermpipe import storage

    uri, version = str(pushed.get("registry_uri", "")), pushed.get("version")
    version = int(version) if isinstance(version, int | float) else "VERSION"  # KFP metadata numbers are floats
    card = storage.join(uri, config.MODEL_CARD_HTML) if uri else ""
    if card and storage.exists(card):
        return f"{card} (`dermpipe models show {version}`)"
    return f"none in {uri or 'the registry'}; write it with `dermpipe models card {version}`"


def _serving(record) -> list[tuple[str, str]]:
    """The version the registry serves now, read after the run (not what any cached task once said)."""
    from dermpipe.deploy import registry
    root, name = record.params.get("registry_root"), record.params.get("model_name", config.MODEL_NAME)
    if not root:
        return []
    try:
        current = registry.read_current(str(root), str(name))
    except (registry.RegistryError, OSError) as err:
        return [("serving", f"unknown ({err})")]
    return [("serving", f"{name} version {current['version']} ({current['uri']})" if current
             else f"{name}: no version is current in {root}")]


@app.command()
def runs(
    limit: int = typer.Option(20, help="how many runs to list"),
    backend: str = typer.Option("local", help="local | kfp | vertex"),
    host: str = cli_cloud.HOST, namespace: str = cli_cloud.NAMESPACE, experiment: str = typer.Option(None),
    project: str = cli_cloud.PROJECT, region: str = cli_cloud.REGION,
) -> None:
    """List runs, newest first: local ones with status and test balanced accuracy, or those of a KFP/Vertex backend."""
    if backend != "local":
        return cli_cloud.remote_runs(backend, limit, host, namespace, experiment, project, region)
    from dermpipe.pipelines.local import list_records

    records = list_records()[:limit]
    if not records:
        typer.echo(f"no local runs in {config.home()} yet; start one with `dermpipe run`")
        return
    typer.echo(f"{'RUN ID':<50} {'STATUS':<10} {'STARTED':<26} {'TEST BMA':>8}")
    for record in records:
        bma = record.headline().get("balanced_accuracy")
        typer.echo(f"{record.run_id:<50} {record.status:<10} {record.started:<26} "
                   f"{'' if bma is None else f'{bma:.4f}':>8}")


@app.command()
def show(run_id: str, as_json: bool = typer.Option(False, "--json", help="print the whole record as JSON")) -> None:
    """Show one local run: parameters, tasks (status, time, cache hit), artifacts and metrics."""
    from dataclasses import asdict

    from dermpipe.pipelines.local import load_record

    try:
        record = load_record(run_id)
    except FileNotFoundError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    if as_json:
        typer.echo(json.dumps(asdict(record), indent=1, default=str))
        return
    typer.echo(f"run {record.run_id}  [{record.status}]  started {record.started}  finished {record.finished}")
    if record.error:
        typer.echo(f"error: {record.error}")
    typer.echo("params: " + ", ".join(f"{k}={v}" for k, v in record.params.items()))
    for task in record.tasks.values():
        flag = " (cache hit)" if task.cached else ""
        typer.echo(f"\n{task.name}: {task.status}{flag}, {task.seconds:.1f}s")
        for name, out in task.outputs.items():
            if isinstance(out, dict) and "uri" in out:
                typer.echo(f"  {name} [{out['type']}] {out['uri']}")
                if out["type"] in ("system.Metrics",):
                    for key, value in out["metadata"].items():
                        typer.echo(f"      {key} = {value}")
            else:
                typer.echo(f"  {name} = {out}")


cli_cloud.register(app)
from dermpipe.cli import serve as cli_serve  # noqa: E402  (serve + models: deploy and serve, issue 6)

app.command("serve")(cli_serve.serve)
app.add_typer(cli_serve.models_app, name="models")
from dermpipe.cli.benchmark import benchmark_app  # noqa: E402 (frozen benchmark sets, issue 20)

app.add_typer(benchmark_app, name="benchmark")
from dermpipe.cli.monitor import register as register_monitor  # noqa: E402 (after app exists)

register_monitor(app)
from dermpipe.cli.lineage import register as _register_lineage  # noqa: E402

_register_lineage(app)
from dermpipe.cli.predict import register as _register_predict  # noqa: E402

_register_predict(app)
from dermpipe.cli.feedback import register as _register_feedback  # noqa: E402

_register_feedback(app)


if __name__ == "__main__":
    app()
