"""The train stage: TrainParams, and run(...), which trains, saves model.keras and the SavedModel, and writes the
stage's artifacts. Pre-flight and `dermpipe run --help` import TrainParams, so the training helpers, TensorFlow,
pandas and kfp are imported inside the functions that use them; the helpers read the parameters as
runtime.TrainSettings and do not import this module."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dermpipe import config
from dermpipe.componentkit import check_choice, param
from dermpipe.data.prepare import check_image_size
from dermpipe.model.backbones import check_backbone

if TYPE_CHECKING:
    from kfp.dsl import HTML, Dataset, Metrics, Model

LOSSES = ("crossentropy", "focal")
MONITORS = ("val_balanced_accuracy", "val_loss")
LR_SCHEDULES = ("plateau", "cosine", "constant")


@dataclass(frozen=True)
class TrainParams:
    backbone: str = param("efficientnet_b0", "simple_cnn | small_resnet | efficientnet_b0..b4 | "
                                             "mobilenet_v3_small/large | resnet50")
    weights: str = param("none", "none | imagenet | path (local or gs://) of a backbone weights file")
    image_size: int = param(224, "training resolution in pixels (224 for real training)")
    batch_size: int = param(32, "images per training step")
    epochs: int = param(10, "training epochs (early stopping may end sooner)")
    fine_tune_epochs: int = param(0, "epochs of fine-tuning after the head phase (pretrained weights)")
    fine_tune_layers: int = param(20, "how many top backbone layers fine-tuning unfreezes")
    learning_rate: float = param(1e-3, "learning rate of the head phase")
    fine_tune_learning_rate: float = param(1e-4, "learning rate of the fine-tuning phase")
    patience: int = param(3, "early-stopping patience in epochs (on --monitor)")
    class_balance: str = param("weights", "weights | sqrt_weights | oversample | none")
    seed: int = param(42, "seed of weight initialisation, augmentation and input order")
    loss: str = param("crossentropy", "crossentropy | focal")
    focal_gamma: float = param(2.0, "focusing parameter of the focal loss (with --loss focal)")
    monitor: str = param("val_balanced_accuracy", "early stopping: val_balanced_accuracy | val_loss")
    lr_schedule: str = param("plateau", "plateau (ReduceLROnPlateau) | cosine | constant")
    jit_compile: bool = param(False, "XLA-compile the train step")
    mixed_precision: str = param("auto", "auto (on when a GPU is present) | on | off")
    cache: str = param("auto", "input cache: auto | memory | none | a file prefix")
    deterministic: bool = param(False, "reproducible training: deterministic ops and input order (slower)")
    metadata_fusion: bool = param(False, "age, sex and anatomic site as a second model input (off: images only); "
                                         "see dermpipe.model.metadata_inputs")
    quiet: bool = param(False, "no per-epoch progress lines from train")

    def check(self) -> None:
        """Refuse what train would fail on minutes later: an unknown choice, an impossible size or count."""
        check_backbone(self.backbone)
        for field_name, value, allowed in (("class_balance", self.class_balance, config.CLASS_BALANCES),
                                           ("loss", self.loss, LOSSES), ("monitor", self.monitor, MONITORS),
                                           ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
                                           ("mixed_precision", self.mixed_precision, ("auto", "on", "off"))):
            check_choice("train", field_name, value, allowed)
        check_image_size(self.image_size)
        for field_name, value, least in (("batch_size", self.batch_size, 1), ("epochs", self.epochs, 1),
                                         ("fine_tune_epochs", self.fine_tune_epochs, 0), ("patience", self.patience, 0),
                                         ("fine_tune_layers", self.fine_tune_layers, 0)):
            if value < least:
                raise ValueError(f"train parameter {field_name}={value}: expected at least {least}")
        for field_name, rate in (("learning_rate", self.learning_rate),
                                 ("fine_tune_learning_rate", self.fine_tune_learning_rate)):
            if not rate > 0:
                raise ValueError(f"train parameter {field_name}={rate}: expected a positive learning rate")


def run(raw: Dataset, train: Dataset, val: Dataset, model: Model, stats: Metrics, curves: HTML | None,
        params: TrainParams, *, quiet: bool = False, shards: Dataset | None = None) -> None:
    import pandas as pd
    import tensorflow as tf

    from dermpipe.lineage.artifacts import annotate, log_metrics
    from dermpipe.model.export import export_serving_model
    from dermpipe.model.training.loop import train_model
    from dermpipe.model.training.report import curves_html, stage_metrics
    from dermpipe.model.training.watchdog import exit_with_parent_run

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
    from dermpipe.model.training.callbacks import checkpoint_location
    from dermpipe.model.training.resume import artifact_digest, checkpoint_key, is_remote, local_checkpoints

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
