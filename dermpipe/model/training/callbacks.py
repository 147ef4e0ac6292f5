"""The callbacks of a training phase, where its per-epoch backup lives, and the phase history persisted beside it.

Every epoch is checkpointed (resume.resume_callback) into `<model URI>-checkpoints` when the artifact URI is remote,
e.g. gs:// (KFP keeps the URI of a task's outputs across retries but not its local folder), so a retried task resumes
after the last finished epoch; a local run keys its checkpoints by content instead (stage.checkpoint_folder).
"""

import json
import time
from pathlib import Path

import numpy as np

from dermpipe import config
from dermpipe.componentkit import report_progress
from dermpipe.model.training.resume import is_remote, resume_callback
from dermpipe.model.training.runtime import TrainSettings


def validation_scores(labels: np.ndarray, probabilities: np.ndarray, loss_fn, one_hot: bool,
                      n_classes: int) -> dict[str, float]:
    """val_loss (the training loss, unweighted), val_accuracy and val_balanced_accuracy (sklearn) of one pass."""
    from sklearn.metrics import balanced_accuracy_score

    predicted = probabilities.argmax(axis=1)
    targets = np.eye(n_classes, dtype="float32")[labels] if one_hot else labels
    return {
        "val_loss": float(np.mean(np.asarray(loss_fn(targets, probabilities.astype("float32"))))),
        "val_accuracy": float(np.mean(predicted == labels)),
        "val_balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
    }


def _callback_classes():
    import keras

    class ValidationScores(keras.callbacks.Callback):
        """Predicts the validation set once per epoch and adds val_loss/val_accuracy/val_balanced_accuracy to logs
        (placed first, so early stopping, the LR schedule, TensorBoard and History all see them)."""

        def __init__(self, images, labels, loss_fn, one_hot, n_classes):
            super().__init__()
            self.images, self.labels, self.loss_fn = images, labels, loss_fn  # images: batches, in label order
            self.one_hot, self.n_classes = one_hot, n_classes

        def on_epoch_end(self, epoch, logs=None):
            probabilities = np.asarray(self.model.predict(self.images, verbose=0))
            if logs is not None:
                logs.update(validation_scores(self.labels, probabilities, self.loss_fn, self.one_hot,
                                              self.n_classes))

    class EpochLog(keras.callbacks.Callback):
        """One progress line per epoch (unless quiet) and the phase's history persisted next to its checkpoint,
        so a resumed phase still reports every epoch."""

        def __init__(self, phase, epochs, images_per_epoch, history_file: str, previous: list[dict], quiet: bool):
            super().__init__()
            self.phase, self.epochs, self.images = phase, epochs, images_per_epoch
            self.history_file, self.rows, self.quiet = history_file, list(previous), quiet

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.started
            row = {k: float(v) for k, v in (logs or {}).items()}
            row.update(epoch=epoch + 1, seconds=seconds, images_per_second=self.images / max(seconds, 1e-9))
            self.rows = [r for r in self.rows if r["epoch"] <= epoch] + [row]
            _write_text(self.history_file, json.dumps(self.rows))
            report_progress(step=f"train {self.phase}", epoch=epoch + 1, epochs=self.epochs,
                            val_balanced_accuracy=row.get("val_balanced_accuracy"))
            if not self.quiet:
                shown = " ".join(f"{k} {row[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy",
                                                              "val_balanced_accuracy", "learning_rate") if k in row)
                print(f"[train {self.phase}] epoch {epoch + 1}/{self.epochs} {shown} "
                      f"({seconds:.1f}s, {row['images_per_second']:.0f} img/s)", flush=True)

    return ValidationScores, EpochLog


def phase_callbacks(phase: str, epochs: int, params: TrainSettings, validation, loss_fn, *, checkpoints: str,
                    history_file: str, tensorboard: Path | None, images_per_epoch: int, quiet: bool,
                    dataset=None, extra_callbacks=()) -> list:
    """One phase's callbacks, in order: validation scores, early stopping, [LR on plateau], [TensorBoard], the epoch
    log, the per-epoch backup (resume.resume_callback), then `extra_callbacks`. `validation`: (image batches,
    labels); `dataset`: the training batches fit iterates (fast-forwarded on a resume)."""
    import keras
    import tensorflow as tf

    val_images, val_labels = validation
    ValidationScores, EpochLog = _callback_classes()
    mode = "max" if params.monitor == "val_balanced_accuracy" else "min"
    previous = _read_json(history_file) if tf.io.gfile.exists(history_file) else []
    tracked = {"early_stopping": keras.callbacks.EarlyStopping(monitor=params.monitor, mode=mode,
                                                               patience=params.patience, restore_best_weights=True)}
    if params.lr_schedule == "plateau":
        tracked["plateau"] = keras.callbacks.ReduceLROnPlateau(monitor=params.monitor, mode=mode, factor=0.5,
                                                               patience=max(1, params.patience // 2))
    callbacks = [
        ValidationScores(val_images, val_labels, loss_fn, params.loss == "focal", len(config.CLASSES)),
        *tracked.values(),
        EpochLog(phase, epochs, images_per_epoch, history_file, previous, quiet),
        resume_callback(f"{checkpoints}/{phase}", phase, epochs, tracked, dataset, quiet),  # after the tracked ones
        *extra_callbacks,
    ]
    if tensorboard is not None:
        callbacks.insert(-2 - len(extra_callbacks), keras.callbacks.TensorBoard(
            str(tensorboard / phase), histogram_freq=0, write_graph=False, update_freq="epoch"))
    return callbacks


def checkpoint_location(model_path: str, model_uri: str) -> str:
    """Where a train task keeps its per-epoch backup: stable across retries of the same run. A remote artifact URI
    (gs://...) gets a sibling `<uri>-checkpoints` written directly (a retried pod starts with an empty local output
    folder on KFP); a local one keeps it inside the artifact folder."""
    if is_remote(model_uri):
        return model_uri.rstrip("/") + "-checkpoints"
    return f"{model_path.rstrip('/')}/checkpoints"


# ---------------------------------------------------------------- the phase history beside the checkpoint

def phase_history(history_file: str) -> dict[str, list[float]]:
    """The persisted history of a phase as columns ({metric: per-epoch values}, epoch numbers left out)."""
    rows = _read_json(history_file)
    keys = [k for k in rows[0] if k != "epoch"] if rows else []
    return {k: [float(r.get(k, float("nan"))) for r in rows] for k in keys}


def _write_text(path: str, text: str) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    partial = f"{path}.partial"
    with tf.io.gfile.GFile(partial, "w") as handle:
        handle.write(text)
    tf.io.gfile.rename(partial, path, overwrite=True)  # a kill mid-write never leaves a torn file behind


def _read_json(path: str):
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as handle:
        return json.loads(handle.read())
