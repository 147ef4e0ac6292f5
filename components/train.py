"""train: transfer learning with augmentation and class weights, then optional fine-tuning, with early stopping.

Phase 1 trains the head on a frozen backbone (or the whole network when training from scratch); phase 2 thaws the
top `fine_tune_layers` backbone layers (BatchNorm stays frozen, as Keras' transfer-learning guide advises) and
trains at `fine_tune_learning_rate`. The Model artifact is a folder: model.keras + training.json.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from dermpipe import config
from dermpipe.componentkit import stage_component


@dataclass(frozen=True)
class TrainParams:
    backbone: str = "efficientnet_b0"
    weights: str = "none"
    image_size: int = 224
    batch_size: int = 32
    epochs: int = 10
    fine_tune_epochs: int = 0
    fine_tune_layers: int = 20
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    patience: int = 3
    class_weighting: bool = True
    seed: int = 42


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """sklearn's 'balanced' weights for the classes present; classes absent from training get weight 1."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    result = {i: 1.0 for i in range(n_classes)}
    result.update({int(c): float(w) for c, w in zip(present, weights, strict=True)})
    return result


def set_trainable(backbone_layers: list, top_n: int | None) -> int:
    """Freeze every backbone layer, then thaw the top `top_n` non-BatchNorm ones (None: all). Returns thawed count."""
    import keras

    thawed = 0
    for index, layer in enumerate(backbone_layers):
        in_top = top_n is None or index >= len(backbone_layers) - top_n
        layer.trainable = in_top and not isinstance(layer, keras.layers.BatchNormalization)
        thawed += int(layer.trainable and bool(layer.weights))
    return thawed


def _fit(model, train_ds, val_ds, *, epochs: int, learning_rate: float, patience: int, weights, verbose: int):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, patience // 2)),
    ]
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=weights, shuffle=False,
                        callbacks=callbacks, verbose=verbose)
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def train_model(train: pd.DataFrame, val: pd.DataFrame, dataset_dir: Path, params: TrainParams, *, verbose: int = 2):
    """Train and return (model, report) where report holds the history of each phase and the validation metrics."""
    import keras

    from dermpipe.imagedata import make_dataset
    from dermpipe.metrics import evaluate_predictions
    from dermpipe.models import build_classifier, resolve_weights

    if train.empty or val.empty:
        raise ValueError(f"training needs rows in both splits; got train={len(train)} val={len(val)}")
    keras.utils.set_random_seed(params.seed)
    n_classes = len(config.CLASSES)
    model, backbone_layers = build_classifier(
        params.backbone, params.image_size, n_classes, weights=params.weights, seed=params.seed
    )
    pretrained = resolve_weights(params.weights) is not None
    train_ds = make_dataset(train, dataset_dir, image_size=params.image_size, batch_size=params.batch_size,
                            shuffle=True, seed=params.seed)
    val_ds = make_dataset(val, dataset_dir, image_size=params.image_size, batch_size=params.batch_size)
    weights = class_weights(train["label_index"].to_numpy(), n_classes) if params.class_weighting else None
    phases: dict[str, dict[str, list[float]]] = {}
    set_trainable(backbone_layers, top_n=0 if pretrained else None)
    phases["head" if pretrained else "full"] = _fit(
        model, train_ds, val_ds, epochs=params.epochs, learning_rate=params.learning_rate,
        patience=params.patience, weights=weights, verbose=verbose,
    )
    if pretrained and params.fine_tune_epochs > 0:
        set_trainable(backbone_layers, top_n=params.fine_tune_layers)
        phases["fine_tune"] = _fit(
            model, train_ds, val_ds, epochs=params.fine_tune_epochs, learning_rate=params.fine_tune_learning_rate,
            patience=params.patience, weights=weights, verbose=verbose,
        )
    val_prob = model.predict(make_dataset(val, dataset_dir, image_size=params.image_size,
                                          batch_size=params.batch_size, with_labels=False), verbose=0)
    val_eval = evaluate_predictions(val["label_index"].to_numpy(), val_prob, config.CLASSES)
    report = {
        "params": asdict(params),
        "classes": list(config.CLASSES),
        "class_weights": weights,
        "history": phases,
        "epochs_run": sum(len(h["loss"]) for h in phases.values()),
        "train_rows": len(train),
        "val_rows": len(val),
        "validation": val_eval.headline(),
    }
    return model, report


def run(raw: Dataset, train: Dataset, val: Dataset, model: Model, stats: Metrics, params: TrainParams) -> None:
    from dermpipe.lineage import annotate, log_metrics

    trained, report = train_model(pd.read_parquet(train.path), pd.read_parquet(val.path), Path(raw.path), params)
    out = Path(model.path)
    out.mkdir(parents=True, exist_ok=True)
    trained.save(out / "model.keras")
    (out / "training.json").write_text(json.dumps(report, indent=1))
    annotate(model, {
        "framework": "keras", "format": "keras-v3", "file": "model.keras", "classes": list(config.CLASSES),
        "params": asdict(params), "epochs_run": report["epochs_run"], "train_rows": report["train_rows"],
        "dataset_uri": raw.uri, "train_uri": train.uri, "val_uri": val.uri,
        **{f"val_{k}": round(v, 4) for k, v in report["validation"].items()},
    })
    final = {k: values[-1] for k, values in list(report["history"].values())[-1].items() if k != "learning_rate"}
    log_metrics(stats, {"epochs_run": report["epochs_run"], **{f"final_{k}": v for k, v in final.items()},
                        **{f"val_{k}": v for k, v in report["validation"].items()}})


@stage_component(base_image=config.GPU_IMAGE)
def train(
    raw: Input[Dataset], train_split: Input[Dataset], val_split: Input[Dataset], model: Output[Model],
    stats: Output[Metrics], backbone: str = "efficientnet_b0", weights: str = "none", image_size: int = 224,
    batch_size: int = 32, epochs: int = 10, fine_tune_epochs: int = 0, fine_tune_layers: int = 20,
    learning_rate: float = 1e-3, fine_tune_learning_rate: float = 1e-4, patience: int = 3,
    class_weighting: bool = True, seed: int = 42,
):
    """Augment-and-train the classifier (runs on a GPU node on KFP/Vertex, on the CPU locally)."""
    from dermpipe.components.train import TrainParams, run

    params = TrainParams(backbone, weights, image_size, batch_size, epochs, fine_tune_epochs, fine_tune_layers,
                         learning_rate, fine_tune_learning_rate, patience, class_weighting, seed)
    run(raw, train_split, val_split, model, stats, params)
