"""The training loop: train_model runs the phases (head or full, then fine-tuning), each fitted with resume."""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermpipe import config
from dermpipe.model.training.callbacks import phase_callbacks, phase_history
from dermpipe.model.training.inputs import TrainingInputs, training_inputs
from dermpipe.model.training.report import metadata_report, training_report
from dermpipe.model.training.resume import remove_state
from dermpipe.model.training.runtime import Runtime, TrainSettings, op_determinism, runtime


def class_weights(labels: np.ndarray, n_classes: int, power: float = 1.0) -> dict[int, float]:
    """sklearn's 'balanced' weights for the classes present, raised to `power` (0.5: class_balance=sqrt_weights);
    classes absent from training get weight 1."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels) ** power
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


def make_loss(name: str, gamma: float):
    """The training loss; labels are one-hot for focal loss (Keras' focal loss is categorical), sparse otherwise."""
    import keras

    if name == "focal":
        return keras.losses.CategoricalFocalCrossentropy(gamma=gamma)
    return keras.losses.SparseCategoricalCrossentropy()


# ---------------------------------------------------------------- one phase

@dataclass
class Phase:
    name: str
    epochs: int
    learning_rate: float


def _compile(model, phase: Phase, params: TrainSettings, loss_fn, runtime_: Runtime, steps_per_epoch: int) -> None:
    import keras

    with runtime_.strategy.scope():
        rate = phase.learning_rate
        if params.lr_schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(phase.learning_rate,
                                                          decay_steps=phase.epochs * steps_per_epoch)
        model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss_fn, metrics=["accuracy"],
                      jit_compile=params.jit_compile)


def _fit_phase(model, phase: Phase, data, params: TrainSettings, *, checkpoints: str, tensorboard: Path | None,
               steps_per_epoch: int, images_per_epoch: int, weights, runtime_: Runtime, quiet: bool,
               extra_callbacks=()) -> tuple[dict[str, list[float]], int | None]:
    """Compile and fit one phase with checkpoint/resume; a finished phase (marker file) only reloads its weights.
    Returns (the phase's history, the epoch it resumed at or None)."""
    import tensorflow as tf

    done_weights = f"{checkpoints}/{phase.name}.done.weights.h5"
    history_file = f"{checkpoints}/{phase.name}.history.json"
    if tf.io.gfile.exists(done_weights):
        model.load_weights(done_weights)
        if not quiet:
            print(f"[train {phase.name}] phase finished before a retry: weights reloaded from {done_weights}")
        return phase_history(history_file), None

    train_ds, val_images, val_labels = data
    one_hot = params.loss == "focal"
    loss_fn = make_loss(params.loss, params.focal_gamma)
    _compile(model, phase, params, loss_fn, runtime_, steps_per_epoch)
    ds = train_ds.map(lambda x, y: (x, _one_hot(y))) if one_hot else train_ds
    callbacks = phase_callbacks(phase.name, phase.epochs, params, (val_images, val_labels), loss_fn,
                                checkpoints=checkpoints, history_file=history_file, tensorboard=tensorboard,
                                images_per_epoch=images_per_epoch, quiet=quiet, dataset=ds,
                                extra_callbacks=extra_callbacks)
    model.fit(ds, epochs=phase.epochs, class_weight=weights, callbacks=callbacks, shuffle=False, verbose=0)
    model.save_weights(done_weights)
    remove_state(f"{checkpoints}/{phase.name}")  # only now: a kill before the marker resumes from the last epoch
    return phase_history(history_file), callbacks[-1 - len(extra_callbacks)].resumed_at


def _one_hot(labels):
    import tensorflow as tf

    return tf.one_hot(labels, len(config.CLASSES))


# ---------------------------------------------------------------- the whole training

def train_model(train: pd.DataFrame, val: pd.DataFrame, dataset_dir: Path, params: TrainSettings, *,
                out_dir: Path | None = None, checkpoint_dir: str | None = None, quiet: bool = False,
                extra_callbacks=(), verbose: int | None = None, shards_dir: Path | None = None):
    """Train and return (model, report): the history of each phase and the validation metrics.

    `checkpoint_dir` (default `<out_dir>/checkpoints`, else a temporary folder) holds the per-epoch backup a retried
    run resumes from. `verbose=0` is the same as quiet=True (kept for callers of the earlier signature).
    With `shards_dir` (the prepare stage's output) training and validation read the TFRecord shards instead of the
    image files.
    """
    params.check()
    quiet = quiet or verbose == 0
    if train.empty or val.empty:
        raise ValueError(f"training needs rows in both splits; got train={len(train)} val={len(val)}")
    with op_determinism(params.deterministic):
        return _train(train, val, dataset_dir, params, out_dir=out_dir, checkpoint_dir=checkpoint_dir, quiet=quiet,
                      extra_callbacks=extra_callbacks, shards_dir=shards_dir)


def _train(train: pd.DataFrame, val: pd.DataFrame, dataset_dir: Path, params: TrainSettings, *, out_dir: Path | None,
           checkpoint_dir: str | None, quiet: bool, extra_callbacks, shards_dir: Path | None):
    from dermpipe.model.evaluation.metrics import evaluate_predictions

    env = _seeded_runtime(params)
    model, backbone_layers, pretrained = _build_model(params, env, quiet)
    data = training_inputs(train, val, dataset_dir, params, shards_dir)
    power = {"weights": 1.0, "sqrt_weights": 0.5}.get(params.class_balance)
    weights = class_weights(data.labels, len(config.CLASSES), power) if power is not None else None
    history, resumed, seconds = _fit_phases(model, backbone_layers, _phases(params, pretrained), data, params,
                                            weights, env, out_dir=out_dir, checkpoint_dir=checkpoint_dir,
                                            quiet=quiet, extra_callbacks=extra_callbacks)
    val_prob = model.predict(data.val_images, verbose=0)
    val_eval = evaluate_predictions(data.val_labels, val_prob, config.CLASSES)
    report = training_report(
        params, data, history, val_eval.headline(), weights=weights,
        source="tfrecord-shards" if shards_dir is not None else "image-files",
        runtime={"gpus": env.gpus, "replicas": env.replicas, "mixed_precision": env.mixed_precision,
                 "jit_compile": params.jit_compile and not params.metadata_fusion, "train_seconds": round(seconds, 2)})
    report["resumed_at"] = resumed  # {phase: the epoch a resume started at}: empty for a run from the start
    if params.metadata_fusion:
        report["metadata"] = metadata_report(train, val)
    return model, report


def _seeded_runtime(params: TrainSettings) -> Runtime:
    """Seeds set, then the run-time environment (precision policy, strategy); train_model scopes op determinism."""
    import keras

    keras.utils.set_random_seed(params.seed)
    return runtime(params.mixed_precision)


def _build_model(params: TrainSettings, env: Runtime, quiet: bool):
    """(model, backbone layers, whether the backbone starts from pretrained weights), built in the strategy's scope."""
    from dermpipe.model.zoo import build_classifier, resolve_weights

    with env.strategy.scope():
        model, backbone_layers = build_classifier(params.backbone, params.image_size, len(config.CLASSES),
                                                  weights=params.weights, seed=params.seed,
                                                  augment={"xla": True} if params.jit_compile else None,
                                                  metadata_fusion=params.metadata_fusion)
    pretrained = resolve_weights(params.weights) is not None
    if params.jit_compile and params.metadata_fusion and not quiet:
        print("[train] jit_compile is ignored with metadata_fusion: the model encodes the metadata strings itself "
              "and XLA cannot compile string ops (Keras trains without XLA)", flush=True)
    return model, backbone_layers, pretrained


def _phases(params: TrainSettings, pretrained: bool) -> list[Phase]:
    phases = [Phase("head" if pretrained else "full", params.epochs, params.learning_rate)]
    if pretrained and params.fine_tune_epochs > 0:
        phases.append(Phase("fine_tune", params.fine_tune_epochs, params.fine_tune_learning_rate))
    return phases


def _fit_phases(model, backbone_layers: list, phases: list[Phase], data: TrainingInputs, params: TrainSettings,
                weights, env: Runtime, *, out_dir: Path | None, checkpoint_dir: str | None, quiet: bool,
                extra_callbacks=()) -> tuple[dict[str, dict[str, list[float]]], dict[str, int], float]:
    """Fit the phases in turn, each with its layers thawed; returns (history per phase, resumed epoch per resumed
    phase, seconds)."""
    import tempfile

    scratch = None if checkpoint_dir or out_dir else tempfile.TemporaryDirectory(prefix="dermpipe-ckpt-")
    checkpoints = checkpoint_dir or (f"{out_dir}/checkpoints" if out_dir else scratch.name)
    tensorboard = out_dir / "tensorboard" if out_dir else None
    history: dict[str, dict[str, list[float]]] = {}
    resumed: dict[str, int] = {}
    started = time.perf_counter()
    for phase in phases:
        set_trainable(backbone_layers, top_n=0 if phase.name == "head" else
                      (params.fine_tune_layers if phase.name == "fine_tune" else None))
        history[phase.name], resumed_at = _fit_phase(
            model, phase, (data.train_ds, data.val_images, data.val_labels), params, checkpoints=checkpoints,
            tensorboard=tensorboard, steps_per_epoch=data.steps, images_per_epoch=data.steps * params.batch_size,
            weights=weights, runtime_=env, quiet=quiet, extra_callbacks=extra_callbacks)
        if resumed_at is not None:
            resumed[phase.name] = resumed_at
    seconds = time.perf_counter() - started
    if scratch is not None:
        scratch.cleanup()
    return history, resumed, seconds
