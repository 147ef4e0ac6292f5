"""The train stage: run(...) trains, saves model.keras and the SavedModel, and writes the stage's artifacts."""

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from kfp.dsl import HTML, Dataset, Metrics, Model

from dermpipe import config
from dermpipe.model.training.callbacks import checkpoint_location
from dermpipe.model.training.loop import train_model
from dermpipe.model.training.params import TrainParams
from dermpipe.model.training.report import curves_html, stage_metrics
from dermpipe.model.training.resume import artifact_digest, checkpoint_key, is_remote, local_checkpoints
from dermpipe.model.training.watchdog import exit_with_parent_run


def run(raw: Dataset, train: Dataset, val: Dataset, model: Model, stats: Metrics, curves: HTML | None,
        params: TrainParams, *, quiet: bool = False, shards: Dataset | None = None) -> None:
    import tensorflow as tf

    from dermpipe.lineage.artifacts import annotate, log_metrics
    from dermpipe.model.export import export_serving_model

    exit_with_parent_run()
    out = Path(model.path)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = checkpoint_folder(model, {"raw": raw, "train": train, "val": val, "shards": shards}, params)
    trained, report = train_model(pd.read_parquet(train.path), pd.read_parquet(val.path), Path(raw.path), params,
                                  out_dir=out, checkpoint_dir=checkpoints, quiet=quiet,
                                  shards_dir=Path(shards.path) if shards is not None else None)
    trained.save(out / "model.keras")
    serving = export_serving_model(trained, out)  # saved_model.pb + variables/ at the folder's root
    report["serving"] = serving
    (out / "training.json").write_text(json.dumps(report, indent=1))
    if tf.io.gfile.exists(checkpoints):  # training finished: nothing left to resume
        tf.io.gfile.rmtree(checkpoints)
    if curves is not None:
        Path(curves.path).parent.mkdir(parents=True, exist_ok=True)
        Path(curves.path).write_text(curves_html(report["history"]))
    annotate(model, _model_annotations(raw, train, val, shards, params, report))
    log_metrics(stats, stage_metrics(report))


def checkpoint_folder(model: Model, inputs: dict[str, Dataset | None], params: TrainParams) -> str:
    """Where this task keeps its per-epoch state. On a cluster (remote model URI) beside the output, which a
    retried task reuses; the same for a local task whose output folder already holds a state. Otherwise (a local
    run: kfp.local gives every run a new output folder) $DERMPIPE_HOME/checkpoints/<key>, keyed by the inputs'
    content, the parameters and the code version, so the same command after a kill resumes."""
    from dermpipe.lineage.artifacts import code_version

    own = checkpoint_location(model.path, model.uri)
    if is_remote(model.uri) or Path(own).exists():
        return own
    digests = {name: artifact_digest(a.path, a.metadata) for name, a in inputs.items() if a is not None}
    return str(local_checkpoints(checkpoint_key(digests, params, code_version())))


def _model_annotations(raw: Dataset, train: Dataset, val: Dataset, shards: Dataset | None, params: TrainParams,
                       report: dict) -> dict[str, object]:
    from dermpipe.model.metadata_inputs import METADATA_INPUTS

    return {
        "framework": "keras", "format": "keras-v3+saved_model", "file": "model.keras", "saved_model": ".",
        "serving_signatures": list(report["serving"]["signatures"]), "classes": list(config.CLASSES),
        "params": asdict(params), "epochs_run": report["epochs_run"], "train_rows": report["train_rows"],
        "dataset_uri": raw.uri, "train_uri": train.uri, "val_uri": val.uri, "tensorboard": "tensorboard",
        "input": report["input"], "shards_uri": shards.uri if shards is not None else "",
        "runtime": report["runtime"], "metadata_fusion": params.metadata_fusion, "resumed_at": report["resumed_at"],
        **({"metadata_inputs": list(METADATA_INPUTS), "metadata_coverage": report["metadata"]}
           if params.metadata_fusion else {}),
        **{f"val_{k}": round(v, 4) for k, v in report["validation"].items()},
    }
