"""train: transfer learning with in-model augmentation and class balancing, then optional fine-tuning.

Phase 1 trains the head on a frozen backbone (or the whole network when training from scratch); phase 2 thaws the
top `fine_tune_layers` backbone layers (BatchNorm stays frozen, as Keras' transfer-learning guide advises) and
trains at `fine_tune_learning_rate`. Each epoch the validation balanced accuracy (BMA, the ISIC metric) is computed
with sklearn; early stopping watches it (or val_loss). Every epoch is checkpointed (BackupAndRestore) into
`<model folder>/checkpoints` (or `<model URI>-checkpoints` when the artifact URI is remote, e.g. gs://: KFP keeps
the URI of a task's outputs across retries but not its local folder), so a retried task resumes after the last
finished epoch, and a finished phase is not re-run.

The Model artifact is a folder: model.keras, training.json, the SavedModel of dermpipe.model.export (saved_model.pb,
variables/: TF Serving and Vertex serve the folder directly) and tensorboard/ logs. On a GPU node the run uses
mixed_float16, MirroredStrategy over all the node's GPUs and, when asked, XLA.
"""

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from kfp.dsl import HTML, Dataset, Metrics, Model

from dermpipe import config

LOSSES = ("crossentropy", "focal")
MONITORS = ("val_balanced_accuracy", "val_loss")
LR_SCHEDULES = ("plateau", "cosine", "constant")


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
    class_balance: str = "weights"  # weights | oversample | none
    seed: int = 42
    loss: str = "crossentropy"  # crossentropy | focal
    focal_gamma: float = 2.0
    monitor: str = "val_balanced_accuracy"  # or val_loss
    lr_schedule: str = "plateau"  # plateau | cosine | constant
    jit_compile: bool = False
    mixed_precision: str = "auto"  # auto (on when a GPU is present) | on | off
    cache: str = "auto"  # auto | memory | none | a file prefix
    deterministic: bool = False
    metadata_fusion: bool = False  # age, sex and site as a second input branch (dermpipe.model.metadata_inputs)

    def check(self) -> None:
        from dermpipe.data.images import CLASS_BALANCES

        for field_name, value, allowed in (("class_balance", self.class_balance, CLASS_BALANCES),
                                           ("loss", self.loss, LOSSES), ("monitor", self.monitor, MONITORS),
                                           ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
                                           ("mixed_precision", self.mixed_precision, ("auto", "on", "off"))):
            if value not in allowed:
                raise ValueError(f"train parameter {field_name}={value!r} is not supported; "
                                 f"choose one of {list(allowed)}")


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


# ---------------------------------------------------------------- run-time environment (GPU, precision, strategy)

@dataclass(frozen=True)
class Runtime:
    gpus: int
    mixed_precision: bool
    replicas: int
    strategy: object


def runtime(mixed_precision: str) -> Runtime:
    """mixed_float16 when a GPU is present (or forced), MirroredStrategy over all GPUs of the node when several."""
    import keras
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))
    mixed = mixed_precision == "on" or (mixed_precision == "auto" and gpus > 0)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    strategy = tf.distribute.MirroredStrategy() if gpus > 1 else tf.distribute.get_strategy()
    return Runtime(gpus, mixed, int(strategy.num_replicas_in_sync), strategy)


# ---------------------------------------------------------------- callbacks

def make_loss(name: str, gamma: float):
    """The training loss; labels are one-hot for focal loss (Keras' focal loss is categorical), sparse otherwise."""
    import keras

    if name == "focal":
        return keras.losses.CategoricalFocalCrossentropy(gamma=gamma)
    return keras.losses.SparseCategoricalCrossentropy()


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
            if not self.quiet:
                shown = " ".join(f"{k} {row[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy",
                                                              "val_balanced_accuracy", "learning_rate") if k in row)
                print(f"[train {self.phase}] epoch {epoch + 1}/{self.epochs} {shown} "
                      f"({seconds:.1f}s, {row['images_per_second']:.0f} img/s)", flush=True)

    return ValidationScores, EpochLog


# ---------------------------------------------------------------- one phase

@dataclass
class Phase:
    name: str
    epochs: int
    learning_rate: float


def _history_columns(rows: list[dict]) -> dict[str, list[float]]:
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


def checkpoint_location(model_path: str, model_uri: str) -> str:
    """Where a train task keeps its per-epoch backup: stable across retries of the same run. A remote artifact URI
    (gs://...) gets a sibling `<uri>-checkpoints` written directly (a retried pod starts with an empty local output
    folder on KFP); a local one keeps it inside the artifact folder."""
    if "://" in model_uri and not model_uri.startswith("file://"):
        return model_uri.rstrip("/") + "-checkpoints"
    return f"{model_path.rstrip('/')}/checkpoints"


def _fit_phase(model, phase: Phase, data, params: TrainParams, *, checkpoints: str, tensorboard: Path | None,
               steps_per_epoch: int, images_per_epoch: int, weights, runtime_: Runtime, quiet: bool,
               extra_callbacks=()) -> dict[str, list[float]]:
    """Compile and fit one phase with checkpoint/resume; a finished phase (marker file) only reloads its weights."""
    import keras
    import tensorflow as tf

    done_weights = f"{checkpoints}/{phase.name}.done.weights.h5"
    history_file = f"{checkpoints}/{phase.name}.history.json"
    if tf.io.gfile.exists(done_weights):
        model.load_weights(done_weights)
        if not quiet:
            print(f"[train {phase.name}] phase finished before a retry: weights reloaded from {done_weights}")
        return _history_columns(_read_json(history_file))

    train_ds, val_images, val_labels = data
    one_hot = params.loss == "focal"
    loss_fn = make_loss(params.loss, params.focal_gamma)
    with runtime_.strategy.scope():
        rate = phase.learning_rate
        if params.lr_schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(phase.learning_rate,
                                                          decay_steps=phase.epochs * steps_per_epoch)
        model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss_fn, metrics=["accuracy"],
                      jit_compile=params.jit_compile)
    ValidationScores, EpochLog = _callback_classes()
    mode = "max" if params.monitor == "val_balanced_accuracy" else "min"
    previous = _read_json(history_file) if tf.io.gfile.exists(history_file) else []
    callbacks = [
        ValidationScores(val_images, val_labels, loss_fn, one_hot, len(config.CLASSES)),
        keras.callbacks.EarlyStopping(monitor=params.monitor, mode=mode, patience=params.patience,
                                      restore_best_weights=True),
        keras.callbacks.BackupAndRestore(f"{checkpoints}/{phase.name}", delete_checkpoint=True),
        EpochLog(phase.name, phase.epochs, images_per_epoch, history_file, previous, quiet),
        *extra_callbacks,
    ]
    if params.lr_schedule == "plateau":
        callbacks.insert(2, keras.callbacks.ReduceLROnPlateau(monitor=params.monitor, mode=mode, factor=0.5,
                                                              patience=max(1, params.patience // 2)))
    if tensorboard is not None:
        callbacks.insert(-1 - len(extra_callbacks), keras.callbacks.TensorBoard(
            str(tensorboard / phase.name), histogram_freq=0, write_graph=False, update_freq="epoch"))
    ds = train_ds.map(lambda x, y: (x, _one_hot(y))) if one_hot else train_ds
    model.fit(ds, epochs=phase.epochs, class_weight=weights, callbacks=callbacks, shuffle=False, verbose=0)
    model.save_weights(done_weights)
    return _history_columns(_read_json(history_file))


def _one_hot(labels):
    import tensorflow as tf

    return tf.one_hot(labels, len(config.CLASSES))


# ---------------------------------------------------------------- the whole training

def shard_inputs(shards_dir: Path, train: pd.DataFrame, val: pd.DataFrame, image_size: int, *,
                 metadata: bool = False):
    """(train examples, train count, class counts, val examples, val labels) from the prepare stage's TFRecord
    shards; examples are (PNG bytes, label) pairs in shard order, or ({"image": PNG bytes, "age_approx",
    "sex", "anatom_site_general"}, label) with `metadata` (the shards' raw values: -1 / "" when missing).

    The shards hold JPEGs already centre-cropped to the training resolution, so nothing decodes a full-size original
    again. Images prepare could not decode are missing from the shards (listed in its manifest): counts come from
    the manifest, not the split tables.
    """
    import tensorflow as tf

    from dermpipe.data.shards import load_manifest, shard_files, shard_records

    manifest = load_manifest(shards_dir)
    if int(manifest["image_size"]) != image_size:
        raise ValueError(f"train: the shards in {shards_dir} are {manifest['image_size']} px but image_size is "
                         f"{image_size}; run prepare with the training image_size (the pipeline passes the same "
                         "parameter to both)")
    counts = manifest["counts"]
    for name, table in (("train", train), ("val", val)):
        if not 0 < counts[name]["records"] <= len(table):
            raise ValueError(f"train: {shards_dir} holds {counts[name]['records']} {name} records for a {name} split "
                             f"of {len(table)} rows; the shards were made from another split")
    from dermpipe.model.metadata_inputs import IMAGE_INPUT, METADATA_INPUTS

    def example(record):
        x = {IMAGE_INPUT: record["image"], **{k: record[k] for k in METADATA_INPUTS}} if metadata else record["image"]
        return x, tf.cast(record["label"], tf.int32)

    # TFRecord datasets have unknown cardinality; Keras would then treat an epoch's end as the end of the data.
    examples = shard_records(shard_files(shards_dir, "train")).map(
        example, num_parallel_calls=tf.data.AUTOTUNE
    ).apply(tf.data.experimental.assert_cardinality(counts["train"]["records"]))
    class_counts = {config.CLASSES.index(c): int(n) for c, n in counts["train"]["class_counts"].items()}
    val_examples = shard_records(shard_files(shards_dir, "val")).map(
        example, num_parallel_calls=tf.data.AUTOTUNE
    ).apply(tf.data.experimental.assert_cardinality(counts["val"]["records"]))
    val_labels = np.concatenate([y.numpy() for _, y in val_examples.map(lambda x, y: (0, y)).batch(4096)])
    return examples, counts["train"]["records"], class_counts, val_examples, val_labels


def train_model(train: pd.DataFrame, val: pd.DataFrame, dataset_dir: Path, params: TrainParams, *,
                out_dir: Path | None = None, checkpoint_dir: str | None = None, quiet: bool = False,
                extra_callbacks=(), verbose: int | None = None, shards_dir: Path | None = None):
    """Train and return (model, report): the history of each phase and the validation metrics.

    `checkpoint_dir` (default `<out_dir>/checkpoints`, else a temporary folder) holds the per-epoch backup a retried
    run resumes from. `verbose=0` is the same as quiet=True (kept for callers of the earlier signature).
    With `shards_dir` (the prepare stage's output) training and validation read the TFRecord shards instead of the
    image files.
    """
    import tempfile
    from dataclasses import replace

    import keras

    from dermpipe.data.images import InputOptions, training_dataset
    from dermpipe.model.evaluation.metrics import evaluate_predictions
    from dermpipe.model.zoo import build_classifier, resolve_weights

    params.check()
    quiet = quiet or verbose == 0
    if train.empty or val.empty:
        raise ValueError(f"training needs rows in both splits; got train={len(train)} val={len(val)}")
    if params.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(params.seed)
    env = runtime(params.mixed_precision)
    n_classes = len(config.CLASSES)
    with env.strategy.scope():
        model, backbone_layers = build_classifier(params.backbone, params.image_size, n_classes,
                                                  weights=params.weights, seed=params.seed,
                                                  augment={"xla": True} if params.jit_compile else None,
                                                  metadata_fusion=params.metadata_fusion)
    pretrained = resolve_weights(params.weights) is not None
    jit = params.jit_compile and not params.metadata_fusion
    if params.jit_compile and params.metadata_fusion and not quiet:
        print("[train] jit_compile is ignored with metadata_fusion: the model encodes the metadata strings itself "
              "and XLA cannot compile string ops (Keras trains without XLA)", flush=True)
    options = InputOptions(image_size=params.image_size, batch_size=params.batch_size, shuffle=True, seed=params.seed,
                           cache=params.cache, deterministic=params.deterministic)
    if shards_dir is not None:
        examples, n_train, found, val_examples, val_labels = shard_inputs(shards_dir, train, val, params.image_size,
                                                                          metadata=params.metadata_fusion)
        counts = {c: found.get(c, 0) for c in range(n_classes)}
        labels = np.repeat(np.arange(n_classes), [counts[c] for c in range(n_classes)])
    else:
        labels = train["label_index"].to_numpy()
        counts = {c: int((labels == c).sum()) for c in range(n_classes)}
        examples, n_train = file_examples(train, dataset_dir, params.metadata_fusion), len(train)
        val_examples = file_examples(val, dataset_dir, params.metadata_fusion)
        val_labels = val["label_index"].to_numpy()
    train_ds = training_dataset(examples, options, n_examples=n_train, class_counts=counts,
                                class_balance=params.class_balance)
    steps = math.ceil(n_train / params.batch_size)
    # validation: the same decode as evaluation and serving, in order, uint8 cache; images only (labels known)
    val_options = replace(options, shuffle=False, deterministic=True)
    val_images = training_dataset(val_examples, val_options, n_examples=len(val_labels)).map(lambda x, _y: x)
    weights = class_weights(labels, n_classes) if params.class_balance == "weights" else None
    scratch = None if checkpoint_dir or out_dir else tempfile.TemporaryDirectory(prefix="dermpipe-ckpt-")
    checkpoints = checkpoint_dir or (f"{out_dir}/checkpoints" if out_dir else scratch.name)
    tensorboard = out_dir / "tensorboard" if out_dir else None
    phases = [Phase("head" if pretrained else "full", params.epochs, params.learning_rate)]
    if pretrained and params.fine_tune_epochs > 0:
        phases.append(Phase("fine_tune", params.fine_tune_epochs, params.fine_tune_learning_rate))
    history: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    for phase in phases:
        set_trainable(backbone_layers, top_n=0 if phase.name == "head" else
                      (params.fine_tune_layers if phase.name == "fine_tune" else None))
        history[phase.name] = _fit_phase(
            model, phase, (train_ds, val_images, val_labels), params, checkpoints=checkpoints,
            tensorboard=tensorboard, steps_per_epoch=steps, images_per_epoch=steps * params.batch_size,
            weights=weights, runtime_=env, quiet=quiet, extra_callbacks=extra_callbacks)
    seconds = time.perf_counter() - started
    if scratch is not None:
        scratch.cleanup()
    val_prob = model.predict(val_images, verbose=0)
    val_eval = evaluate_predictions(val_labels, val_prob, config.CLASSES)
    epochs_run = sum(len(h.get("loss", [])) for h in history.values())
    report = {
        "params": asdict(params),
        "classes": list(config.CLASSES),
        "class_weights": weights,
        "class_counts": counts,
        "history": history,
        "epochs_run": epochs_run,
        "train_rows": n_train,
        "val_rows": len(val_labels),
        "input": "tfrecord-shards" if shards_dir is not None else "image-files",
        "validation": val_eval.headline(),
        "runtime": {"gpus": env.gpus, "replicas": env.replicas, "mixed_precision": env.mixed_precision,
                    "jit_compile": jit, "train_seconds": round(seconds, 2)},
    }
    if params.metadata_fusion:
        report["metadata"] = metadata_report(train, val)
    return model, report


def file_examples(table: pd.DataFrame, dataset_dir: Path, metadata: bool):
    """(encoded bytes, label) per row read from the image files, or ({"image": bytes, **raw metadata}, label)."""
    import tensorflow as tf

    from dermpipe.data.images import encoded_examples
    from dermpipe.model.metadata_inputs import IMAGE_INPUT, raw_columns

    examples = encoded_examples(table, dataset_dir)
    if not metadata:
        return examples
    meta = tf.data.Dataset.from_tensor_slices(raw_columns(table))
    return tf.data.Dataset.zip((examples, meta)).map(lambda xy, m: ({IMAGE_INPUT: xy[0], **m}, xy[1]))


def metadata_report(train: pd.DataFrame, val: pd.DataFrame) -> dict[str, object]:
    """What the metadata branch saw: per split the rows whose age, sex or site is missing or outside the ISIC 2019
    vocabulary (all encoded as unknown, none dropped), the values found outside it, and the encoding's columns.
    Counted on the split tables (with shards, images prepare could not decode are in the tables but not trained)."""
    from dermpipe.model.metadata_inputs import FEATURE_NAMES, coverage, unknown_values

    return {"encoding": list(FEATURE_NAMES), "train": coverage(train), "val": coverage(val),
            "unknown_values": unknown_values(pd.concat([train, val], ignore_index=True))}


def metadata_metrics(report: dict) -> dict[str, int]:
    """metadata_<split>_<count> Metrics from the training report (empty without metadata fusion)."""
    meta = report.get("metadata")
    if not meta:
        return {}
    return {f"metadata_{split}_{key}": value for split in ("train", "val") for key, value in meta[split].items()
            if key != "rows"}


# ---------------------------------------------------------------- curves

def curve_metrics(history: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    """Per-epoch loss / val_loss / val_balanced_accuracy as scalar Metrics (epoch numbered across phases)."""
    values: dict[str, float] = {}
    epoch = 0
    for phase_history in history.values():
        for i in range(len(phase_history.get("loss", []))):
            epoch += 1
            for key in ("loss", "val_loss", "val_balanced_accuracy"):
                if key in phase_history:
                    values[f"curve_{key}_epoch_{epoch:03d}"] = phase_history[key][i]
    return values


def curves_html(history: dict[str, dict[str, list[float]]], title: str = "Training curves") -> str:
    """Loss and validation BMA/accuracy per epoch, one line per phase, as a self-contained HTML page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dermpipe.reports import img_tag, page, png_bytes, table

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    rows = []
    for phase, h in history.items():
        n = len(h.get("loss", []))
        epochs = list(range(offset + 1, offset + n + 1))
        for key, ax, style in (("loss", left, "-"), ("val_loss", left, "--"), ("val_balanced_accuracy", right, "-"),
                               ("accuracy", right, ":"), ("val_accuracy", right, "--")):
            if key in h:
                ax.plot(epochs, h[key], style, marker="o", label=f"{phase} {key}")
        rows += [(phase, e, *(h.get(k, [float("nan")] * n)[i] for k in
                              ("loss", "val_loss", "val_balanced_accuracy", "learning_rate")))
                 for i, e in enumerate(epochs)]
        offset += n
    for ax, label in ((left, "loss"), (right, "score")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    body = img_tag(png_bytes(fig), "training curves") + table(
        ["phase", "epoch", "loss", "val_loss", "val_balanced_accuracy", "learning_rate"], rows)
    return page(title, body)


# ---------------------------------------------------------------- the stage

def run(raw: Dataset, train: Dataset, val: Dataset, model: Model, stats: Metrics, curves: HTML | None,
        params: TrainParams, *, quiet: bool = False, shards: Dataset | None = None) -> None:
    import tensorflow as tf

    from dermpipe.lineage.artifacts import annotate, log_metrics
    from dermpipe.model.export import export_serving_model
    from dermpipe.model.metadata_inputs import METADATA_INPUTS

    out = Path(model.path)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = checkpoint_location(model.path, model.uri)
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
    annotate(model, {
        "framework": "keras", "format": "keras-v3+saved_model", "file": "model.keras", "saved_model": ".",
        "serving_signatures": list(serving["signatures"]), "classes": list(config.CLASSES),
        "params": asdict(params), "epochs_run": report["epochs_run"], "train_rows": report["train_rows"],
        "dataset_uri": raw.uri, "train_uri": train.uri, "val_uri": val.uri, "tensorboard": "tensorboard",
        "input": report["input"], "shards_uri": shards.uri if shards is not None else "",
        "runtime": report["runtime"], "metadata_fusion": params.metadata_fusion,
        **({"metadata_inputs": list(METADATA_INPUTS), "metadata_coverage": report["metadata"]}
           if params.metadata_fusion else {}),
        **{f"val_{k}": round(v, 4) for k, v in report["validation"].items()},
    })
    last = list(report["history"].values())[-1]
    final = {k: values[-1] for k, values in last.items()
             if k in ("loss", "accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy")}
    log_metrics(stats, {"epochs_run": report["epochs_run"], "train_seconds": report["runtime"]["train_seconds"],
                        **{f"final_{k}": v for k, v in final.items()},
                        **{f"val_{k}": v for k, v in report["validation"].items()},
                        **metadata_metrics(report), **curve_metrics(report["history"])})
