"""The `dermpipe` command line: run the pipeline locally, compile it for KFP/Vertex, inspect local runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dermpipe import config
from dermpipe.cli import cloud as cli_cloud

app = typer.Typer(help="dermpipe: ISIC 2019 skin-lesion classification pipeline (Kubeflow Pipelines / Vertex AI).",
                  no_args_is_help=True, add_completion=False)


@app.command()
def run(
    source: str = typer.Option("demo", help="demo | folder or .zip in the Kaggle ISIC 2019 layout | "
                               "kaggle:OWNER/DATASET | isic:COLLECTION_OR_QUERY | gs://BUCKET/PREFIX"),
    epochs: int = typer.Option(12, help="training epochs (early stopping may end sooner)"),
    image_size: int = typer.Option(64, help="training resolution in pixels (224 for real training)"),
    backbone: str = typer.Option("simple_cnn", help="simple_cnn | efficientnet_b0..b4 | mobilenet_v3_small/large | "
                                 "resnet50"),
    weights: str = typer.Option("none", help="none | imagenet | path (local or gs://) of a backbone weights file"),
    batch_size: int = typer.Option(32),
    learning_rate: float = typer.Option(1e-3),
    fine_tune_epochs: int = typer.Option(0, help="epochs of fine-tuning after the head phase (pretrained weights)"),
    patience: int = typer.Option(4, help="early-stopping patience in epochs (on --monitor)"),
    class_balance: str = typer.Option("weights", help="weights | oversample | none"),
    loss: str = typer.Option("crossentropy", help="crossentropy | focal"),
    monitor: str = typer.Option("val_balanced_accuracy", help="early stopping: val_balanced_accuracy | val_loss"),
    lr_schedule: str = typer.Option("plateau", help="plateau (ReduceLROnPlateau) | cosine | constant"),
    jit_compile: bool = typer.Option(False, "--jit-compile/--no-jit-compile", help="XLA-compile the train step"),
    metadata_fusion: bool = typer.Option(False, "--metadata-fusion/--no-metadata-fusion",
                                         help="age, sex and anatomic site as a second model input (off: images only)"),
    quiet_train: bool = typer.Option(False, "--quiet-train", help="no per-epoch progress lines from train"),
    deterministic: bool = typer.Option(False, "--deterministic/--no-deterministic",
                                       help="reproducible training: deterministic ops and input order (slower)"),
    min_balanced_accuracy: float = typer.Option(0.5, help="deploy only if the test BMA point estimate reaches this "
                                                "(the bootstrap lower bound must also beat chance)"),
    max_bma_drop: float = typer.Option(0.02, help="deploy only if a paired bootstrap shows test BMA no worse than "
                                       "the deployed model's by more than this"),
    require_beat_baseline: bool = typer.Option(False, "--require-beat-baseline/--no-require-beat-baseline",
                                               help="also require beating the image-statistics baseline (paired "
                                                    "bootstrap)"),
    tta: bool = typer.Option(True, "--tta/--no-tta", help="also report test-time augmentation (flips)"),
    demo_images: int = typer.Option(400, help="size of the generated demo data set"),
    invalid_images: str = typer.Option("drop", help="drop (and report) or fail on corrupt/non-RGB/bomb images"),
    folds: int = typer.Option(0, help="also assign k cross-validation folds to train+val (0: off)"),
    pipeline_root: Path = typer.Option(None, help="where artifacts go [default: $DERMPIPE_HOME/artifacts]"),
    registry_root: str = typer.Option(None, help="model registry [default: $DERMPIPE_HOME/registry]"),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="reuse outputs of unchanged tasks"),
) -> None:
    """Run the training pipeline locally (kfp.local, no cluster, no GPU needed)."""
    from dermpipe.pipelines.local import run_local

    if invalid_images not in ("drop", "fail"):
        raise typer.BadParameter(f"{invalid_images!r}: expected drop or fail", param_hint="--invalid-images")
    params = {
        "source": source, "epochs": epochs, "image_size": image_size, "backbone": backbone, "weights": weights,
        "batch_size": batch_size, "learning_rate": learning_rate, "fine_tune_epochs": fine_tune_epochs,
        "patience": patience, "min_balanced_accuracy": min_balanced_accuracy, "max_bma_drop": max_bma_drop,
        "require_beat_baseline": require_beat_baseline, "tta": tta, "demo_images": demo_images,
        "invalid_images": invalid_images, "folds": folds,
        "class_balance": class_balance, "loss": loss, "monitor": monitor, "lr_schedule": lr_schedule,
        "jit_compile": jit_compile, "train_quiet": quiet_train, "metadata_fusion": metadata_fusion,
        "deterministic": deterministic,
    }
    if registry_root:
        params["registry_root"] = registry_root
    record = run_local(params, pipeline_root=pipeline_root, cache=cache)
    typer.echo(_summary(record))
    if record.status != "succeeded":
        raise typer.Exit(1)


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
    elif record.status == "succeeded":
        rows.append(("deployed", "no: the model was not blessed (see gate-decision)"))
    rows += _serving(record)
    width = max(len(label) for label, _ in rows) + 2
    return "\n" + "\n".join(f"{label:<{width}}{value}" for label, value in rows)


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
from dermpipe.cli.monitor import register as register_monitor  # noqa: E402 (after app exists)

register_monitor(app)
from dermpipe.cli.lineage import register as _register_lineage  # noqa: E402

_register_lineage(app)


if __name__ == "__main__":
    app()
