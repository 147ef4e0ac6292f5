"""tf.data input for the image stages: decode, resize to the training resolution, batch, prefetch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf


def image_paths(table: pd.DataFrame, dataset_dir: Path | str) -> list[str]:
    root = Path(dataset_dir)
    return [str(root / rel) for rel in table["path"]]


def decode_resize(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """JPEG/PNG file -> float32 RGB in [0, 255] at image_size x image_size (aspect ratio not kept, as in ISIC work)."""
    raw = tf.io.read_file(path)
    image = tf.io.decode_image(raw, channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.ensure_shape(image, (image_size, image_size, 3))


def make_dataset(
    table: pd.DataFrame,
    dataset_dir: Path | str,
    *,
    image_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 42,
    with_labels: bool = True,
) -> tf.data.Dataset:
    """(images, labels) batches, or images only; deterministic order unless shuffle, seeded when shuffled."""
    paths = image_paths(table, dataset_dir)
    ds = tf.data.Dataset.from_tensor_slices(paths)
    if with_labels:
        labels = table["label_index"].to_numpy(np.int32)
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(labels)))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if with_labels:
        ds = ds.map(lambda p, y: (decode_resize(p, image_size), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda p: decode_resize(p, image_size), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def load_images(table: pd.DataFrame, dataset_dir: Path | str, image_size: int) -> np.ndarray:
    """All images of a (small) table as one float32 array, for explanation galleries."""
    return np.stack([decode_resize(tf.constant(p), image_size).numpy() for p in image_paths(table, dataset_dir)])
