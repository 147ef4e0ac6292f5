"""`dermpipe monitor`: drift of served traffic against the reference profile."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer

from dermpipe import config


def _out_dir(out: Path | None) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H-%M-%S")
    return (out or config.home() / "monitor" / stamp).resolve()


def _table(result) -> str:
    from dermpipe.monitoring.drift import P_VALUE_METHODS

    rows = [("column", "method", "drift when", "score", "drifted", "ref n", "cur n")]
    for c in result.columns:
        score = "" if c.score is None else f"{c.score:.4g}"
        rule = f"p < {c.threshold:g}" if c.method in P_VALUE_METHODS else f"score >= {c.threshold:g}"
        verdict = (f"skipped: {c.skipped}" if c.skipped else "not tested" if c.score is None
                   else "DRIFT" if c.drifted else "-")
        rows.append((c.column, c.method, rule, score, verdict, str(c.reference_values), str(c.current_values)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def monitor(
    reference: str = typer.Option(..., help="profile folder, registry version folder <registry>/<model>/<N>, or "
                                            "registry model folder (its current.json version)"),
    current: str = typer.Option(..., help="prediction log root (local or gs://) or a folder of images"),
    since: str = typer.Option("", help="log window start, ISO date/time, UTC (inclusive)"),
    until: str = typer.Option("", help="log window end, ISO date/time, UTC (exclusive)"),
    metadata: Path = typer.Option(None, help="metadata CSV for an image folder (image or image_name, age_approx, "
                                             "sex, anatom_site_general[_challenge])"),
    model: Path = typer.Option(None, help="model.keras for an image folder [default: the reference's]"),
    min_samples: int = typer.Option(30, help="fewer current rows: no decision (insufficient data)"),
    drift_share: float = typer.Option(0.5, help="drift when at least this share of the tested columns drifted"),
    num_method: str = typer.Option("auto", help="numeric columns: auto | ks | wasserstein | psi | ..."),
    num_threshold: float = typer.Option(0.0, help="numeric threshold (0: the method's default)"),
    cat_method: str = typer.Option("auto", help="categorical columns: auto | chisquare | jensenshannon | ..."),
    cat_threshold: float = typer.Option(0.0, help="categorical threshold (0: the method's default)"),
    out: Path = typer.Option(None, help="where drift_report.html and drift.json go "
                                        "[default: $DERMPIPE_HOME/monitor/<time>]"),
    retrain: bool = typer.Option(False, "--retrain/--no-retrain", help="start a training run when drift is found"),
    backend: str = typer.Option("local", help="retraining backend: local | kfp | vertex | none"),
    training_params: str = typer.Option("{}", help="training pipeline arguments as a JSON object"),
    kfp_host: str = typer.Option("", help="Kubeflow Pipelines host (backend kfp)"),
    template: str = typer.Option("", help="compiled training.yaml to submit [default: compiled now]"),
    project: str = typer.Option("", help="GCP project (backend vertex)"),
    location: str = typer.Option("", help="GCP region (backend vertex)"),
    pipeline_root: str = typer.Option("", help="gs:// pipeline root (backend vertex)"),
    fail_on_drift: bool = typer.Option(False, help="exit with status 3 when drift is detected (for cron/CI)"),
) -> None:
    """Compare current traffic (prediction log window or image folder) with the model's reference profile."""
    from dermpipe.monitoring.drift import config_from_params
    from dermpipe.monitoring.drift_stage import read_inputs

    cfg = config_from_params(min_samples, drift_share, num_method, num_threshold, cat_method, cat_threshold)
    try:
        inputs = read_inputs(reference, current, since=since, until=until, metadata_csv=str(metadata or ""),
                             model_file=str(model or ""))
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    result = inputs.compare(cfg)
    folder = _out_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "drift_report.html").write_text(result.html)
    summary = inputs.summary(result)
    _echo_result(inputs, result)
    if retrain and result.drift_detected:
        summary["retraining"] = _retrain(backend, training_params, template, host=kfp_host, project=project,
                                         region=location, pipeline_root=pipeline_root)
    (folder / "drift.json").write_text(json.dumps(summary, indent=1, default=str))
    typer.echo(f"report     {folder / 'drift_report.html'}")
    typer.echo(f"results    {folder / 'drift.json'}")
    if fail_on_drift and result.drift_detected:
        raise typer.Exit(3)


def _echo_result(inputs, result) -> None:
    """Both sides with their row counts, unreadable images, the per-column table and the decision."""
    typer.echo(f"reference  {inputs.reference.folder} ({result.reference_rows} rows)")
    typer.echo(f"current    {inputs.current} ({result.current_rows} rows; " + ", ".join(
        f"{k} {v}" for k, v in inputs.counts.items()) + ")")
    for path, error in inputs.failed:
        typer.echo(f"  unreadable image {path}: {error}")
    typer.echo("\n" + _table(result) + "\n")
    typer.echo(f"decision   {result.message}")


def _retrain(backend: str, training_params: str, template: str, **settings: str) -> dict:
    """Start a training run on `backend` (dermpipe.orchestration.retrain, the trigger the monitoring pipeline's
    retrain task runs too) and say so; returns what was started."""
    from dermpipe.orchestration.backend import BackendSettings
    from dermpipe.orchestration.retrain import parse_params, trigger

    started = trigger(backend, parse_params(training_params), BackendSettings(**settings), template_path=template)
    typer.echo(f"retrain    {backend}: {started.get('run_id', '')} {started.get('status', '')}".rstrip())
    return started


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
