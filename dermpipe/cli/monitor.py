"""`dermpipe monitor`: drift of served traffic against the reference profile, and performance on fed-back labels."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import typer

from dermpipe import config
from dermpipe.cli import library_warnings
from dermpipe.cli.settings_options import field_values, option_specs, with_options
from dermpipe.monitoring.drift.stage import DriftParams
from dermpipe.monitoring.performance.stage import PerformanceParams


def _out_dir(out: Path | None) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H-%M-%S")
    folder = (out or config.home() / "monitor" / stamp).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _table(result) -> str:
    from dermpipe.monitoring.drift.analysis import P_VALUE_METHODS

    rows = [("column", "method", "drift when", "score", "drifted", "ref n", "cur n")]
    for c in result.columns:
        score = "" if c.score is None else f"{c.score:.4g}"
        rule = f"p < {c.threshold:g}" if c.method in P_VALUE_METHODS else f"score >= {c.threshold:g}"
        verdict = (f"skipped: {c.skipped}" if c.skipped else "not tested" if c.score is None
                   else "DRIFT" if c.drifted else "-")
        rows.append((c.column, c.method, rule, score, verdict, str(c.reference_values), str(c.current_values)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows)


# `dermpipe monitor`'s drift and performance options, from the stages' dataclasses (tests/architecture checks them)
DRIFT_OPTIONS = option_specs(DriftParams)
PERFORMANCE_OPTIONS = option_specs(PerformanceParams)


@with_options(DRIFT_OPTIONS, PERFORMANCE_OPTIONS)
def monitor(
    reference: str = typer.Option(None, help="profile folder, registry version folder <registry>/<model>/<N>, or "
                                             "registry model folder (its current.json version) [default: for a "
                                             "prediction log, the profile of each version that served the window]"),
    current: str = typer.Option(..., help="prediction log root (local or gs://) or a folder of images"),
    registry_root: str = typer.Option(None, help="registry of the served versions' profiles (when --reference is "
                                                 "not given) and test figures [default: the registry --reference "
                                                 "lies in, else $DERMPIPE_HOME/registry]"),
    model_name: str = typer.Option(config.MODEL_NAME, help="the served model's name (its log folder)"),
    since: str = typer.Option("", help="log window start, ISO date/time, UTC (inclusive)"),
    until: str = typer.Option("", help="log window end, ISO date/time, UTC (exclusive)"),
    metadata: Path = typer.Option(None, help="metadata CSV for an image folder (image or image_name, age_approx, "
                                             "sex, anatom_site_general[_challenge])"),
    model: Path = typer.Option(None, help="model.keras for an image folder [default: the reference's]"),
    out: Path = typer.Option(None, help="where drift_report.html, drift.json and performance_report.html go "
                                        "[default: $DERMPIPE_HOME/monitor/<time>]"),
    retrain: bool = typer.Option(False, "--retrain/--no-retrain", help="start a training run when drift is found "
                                                                        "or performance dropped (it says which)"),
    backend: str = typer.Option("local", help="retraining backend: local | kfp | vertex | none"),
    training_params: str = typer.Option("{}", help="training pipeline arguments as a JSON object"),
    kfp_host: str = typer.Option("", help="Kubeflow Pipelines host (backend kfp)"),
    template: str = typer.Option("", help="compiled training.yaml to submit [default: compiled now]"),
    project: str = typer.Option("", help="GCP project (backend vertex)"),
    location: str = typer.Option("", help="GCP region (backend vertex)"),
    pipeline_root: str = typer.Option("", help="gs:// pipeline root (backend vertex)"),
    fail_on_drift: bool = typer.Option(False, help="exit with status 3 when drift is detected (for cron/CI)"),
    fail_on_drop: bool = typer.Option(False, help="exit with status 4 when performance dropped (3 wins on drift "
                                                  "with --fail-on-drift)"),
    **options: Any,
) -> None:
    """Compare current traffic (prediction log window or image folder) with the model's reference profile.

    Without --reference, each model version that served the log window is compared with its own profile (a window
    that spans a promotion gives one comparison per version; drift in any of them is drift). With fed-back labels,
    each served version's performance is judged against its registry test figures (a second retraining trigger)."""
    cfg = DriftParams(**field_values(DRIFT_OPTIONS, options)).config()
    with library_warnings.captured() as caught:  # to warnings.log, counted in drift.json: not between our lines
        startup = _start_tensorflow(current, model_name)
        compared = _read(reference, current, since, until, metadata, model, registry_root, model_name)
        folder = _out_dir(out)
        summary, drifted = _compare_all(compared, cfg, folder)
        log_model = compared[0].reference.model_name if reference else model_name  # the log drift read
        measured = _performance(current, log_model, registry_root, since, until, folder, reference,
                                PerformanceParams(**field_values(PERFORMANCE_OPTIONS, options)))
        names = _triggers(summary, drifted, measured)
        if retrain and names:
            summary["retraining"] = _retrain(backend, training_params, template, names, host=kfp_host,
                                             project=project, region=location, pipeline_root=pipeline_root)
    summary["library_warnings"] = _log_warnings(caught, folder, startup)
    (folder / "drift.json").write_text(json.dumps(summary, indent=1, default=str))
    typer.echo(f"results    {folder / 'drift.json'}")
    if (fail_on_drift and drifted) or (fail_on_drop and measured.dropped):
        raise typer.Exit(3 if fail_on_drift and drifted else 4)


def _start_tensorflow(current: str, model_name: str) -> list[str]:
    """For an image folder, whose features need the model: TensorFlow started with its start-up lines kept for
    warnings.log instead of the terminal (a prediction log needs no model, so nothing is started for one)."""
    from dermpipe.monitoring.log_reader import looks_like_log

    if "://" in current or not Path(current).is_dir() or looks_like_log(current, model_name):
        return []
    return library_warnings.start_tensorflow()


def _log_warnings(caught: list, folder: Path, startup: list[str]) -> dict:
    """The library warnings the analysis raised and TensorFlow's start-up lines, in <out>/warnings.log: one line
    says how many and where."""
    counted = library_warnings.write_log(caught, folder / "warnings.log", startup)
    if caught:
        typer.echo(f"warnings   {counted['count']} from libraries, in {counted['log']}")
    return counted


def _performance(current: str, model_name: str, registry_root: str | None, since: str, until: str, folder: Path,
                 reference: str | None, params: PerformanceParams):
    """Measure and judge each served version on the fed-back labels; echo the table, write the report and JSON. The
    test figures come from --registry-root, else the registry --reference lies in, else the default registry."""
    from dermpipe.monitoring.performance import analysis as stage
    from dermpipe.monitoring.profile_reader import registry_root_of

    root = registry_root or registry_root_of(reference or "", model_name) or str(config.default_registry_root())
    try:
        result = stage.analyse(current, model_name, root, params, since=since, until=until, evidently=True)
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(f"\n{result.message}")
    if result.versions:
        typer.echo("\n".join(stage.coverage_lines(result)))
        typer.echo("\n" + stage.text_table(stage.estimate_rows(result)) + "\n")
    (folder / "performance_report.html").write_text(stage.render_html(result))
    (folder / "performance.json").write_text(json.dumps(result.summary(), indent=1, default=str))
    typer.echo(f"report     {folder / 'performance_report.html'}")
    return result


def _read(reference: str | None, current: str, since: str, until: str, metadata: Path | None, model: Path | None,
          registry_root: str | None, model_name: str) -> list:
    """What to compare: against --reference when given, else against each served version's own profile (an error
    that names what is missing exits 2)."""
    try:
        return _inputs(reference, current, since, until, metadata, model, registry_root, model_name)
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err


def _inputs(reference: str | None, current: str, since: str, until: str, metadata: Path | None, model: Path | None,
            registry_root: str | None, model_name: str) -> list:
    from dermpipe.monitoring.drift.inputs import read_inputs, read_inputs_by_served_version
    from dermpipe.monitoring.log_reader import looks_like_log

    if reference:
        return [read_inputs(reference, current, since=since, until=until, metadata_csv=str(metadata or ""),
                            model_file=str(model or ""))]
    if "://" not in current and not looks_like_log(current, model_name):
        raise ValueError(f"{current} is not a prediction log of {model_name} (no date= partitions), so no served "
                         "version names the reference: pass --reference (a profile or registry version folder)")
    root = registry_root or str(config.default_registry_root())
    compared = read_inputs_by_served_version(root, model_name, current, since=since, until=until)
    typer.echo("reference  " + ", ".join(f"version {i.counts['model_version']} ({i.counts['version_lines']} lines)"
                                         for i in compared) + f": the served versions' profiles in {root}")
    return compared


def _compare_all(compared: list, cfg, folder: Path) -> tuple[dict, bool]:
    """Compare each side, write its report, echo it; drift.json's content (one comparison: as before; several: one
    entry per served version) and whether any drifted."""
    summaries = []
    for inputs in compared:
        result = inputs.compare(cfg)
        version = inputs.counts.get("model_version")
        name = "drift_report.html" if len(compared) == 1 else f"drift_report_v{version}.html"
        (folder / name).write_text(result.html)
        _echo_result(inputs, result)
        typer.echo(f"report     {folder / name}")
        summaries.append({**inputs.summary(result), "report": str(folder / name)})
    drifted = any(s["drift_detected"] for s in summaries)
    if len(summaries) == 1:
        return summaries[0], drifted
    return {"drift_detected": drifted, "versions": summaries}, drifted


def _echo_result(inputs, result) -> None:
    """Both sides with their row counts, unreadable images, the per-column table and the decision."""
    typer.echo(f"reference  {inputs.reference.folder} ({result.reference_rows} rows)")
    typer.echo(f"current    {inputs.current} ({result.current_rows} rows; " + ", ".join(
        f"{k} {v}" for k, v in inputs.counts.items()) + ")")
    for path, error in inputs.failed:
        typer.echo(f"  unreadable image {path}: {error}")
    typer.echo("\n" + _table(result) + "\n")
    typer.echo(f"decision   {result.message}")
    if inputs.rates:  # a prediction log: the served decisions' refer and OOD rates, beside drift
        from dermpipe.monitoring.decision_rates import rates_lines

        typer.echo("\n".join(rates_lines(inputs.rates)))


def _triggers(summary: dict, drifted: bool, measured) -> list[str]:
    """Which retraining triggers fired: echoed, and kept in drift.json (`performance`, `triggers`)."""
    from dermpipe.monitoring.trigger import fired, reason

    names = fired(drifted, measured.dropped)
    summary.update({"performance": measured.summary(),
                    "triggers": {"drift": drifted, "performance": measured.dropped, "fired": names}})
    typer.echo(f"trigger    {reason(names) or 'none fired (no drift, no performance drop)'}")
    return names


def _retrain(backend: str, training_params: str, template: str, fired: list[str], **settings: str) -> dict:
    """Start a training run on `backend` (dermpipe.orchestration.retrain, the trigger the monitoring pipeline's
    retrain task runs too) and say so and why; returns what was started and the reason."""
    from dermpipe.monitoring.trigger import reason
    from dermpipe.orchestration.backend import BackendSettings
    from dermpipe.orchestration.retrain import parse_params, trigger

    started = trigger(backend, parse_params(training_params), BackendSettings(**settings), template_path=template)
    typer.echo(f"retrain    {backend}: {started.get('run_id', '')} {started.get('status', '')}".rstrip()
               + f" ({reason(fired)})")
    return {**started, "reason": reason(fired)}


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
