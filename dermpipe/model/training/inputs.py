"""Training input: the train and validation datasets, from the image files or the prepare stage's TFRecord shards."""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermpipe import config
from dermpipe.model.training.runtime import TrainSettings


@dataclass
class TrainingInputs:
    train_ds: object  # batches for model.fit, augmented in the model, class balance applied
    n_train: int
    counts: dict[int, int]  # training images per class index
    labels: np.ndarray  # the training labels (in class order with shards), for class weights
    val_images: object  # image batches in val_labels' order
    val_labels: np.ndarray
    steps: int  # batches per epoch


def training_inputs(train: pd.DataFrame, val: pd.DataFrame, dataset_dir: Path, params: TrainSettings,
                    shards_dir: Path | None) -> TrainingInputs:
    """The datasets train_model fits and validates on: read from `shards_dir` when given, else the image files."""
    from dataclasses import replace

    from dermpipe.data.images import InputOptions, training_dataset

    n_classes = len(config.CLASSES)
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
    return TrainingInputs(train_ds, n_train, counts, labels, val_images, val_labels, steps)


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
