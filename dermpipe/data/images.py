"""tf.data input for the image stages: decode, resize to the training resolution, batch, prefetch.

Training input (`training_dataset`) starts from a dataset of (encoded JPEG/PNG bytes, int label) pairs, so files
(`encoded_examples`) and TFRecord shards (map the shard records to (record["image"], record["label"])) plug in the
same way: parallel decode + resize, an in-memory cache of the uint8 pixels when they fit, optional oversampling of
the minority classes, shuffle, batch, prefetch. Augmentation is not here: it runs inside the model (on the GPU).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from dermpipe.config import CLASS_BALANCES


def image_paths(table: pd.DataFrame, dataset_dir: Path | str) -> list[str]:
    root = Path(dataset_dir)
    return [str(root / rel) for rel in table["path"]]


def centre_square(image: tf.Tensor) -> tf.Tensor:
    """The largest centred square of an image: the prepare stage's crop (dermpipe.data.shards.RESIZE_POLICY), applied
    everywhere an image meets the model (training from files, evaluation, serving), so no stage sees another
    geometry. Already-square images (the shards, the demo data) pass unchanged."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    side = tf.minimum(height, width)
    return tf.image.crop_to_bounding_box(image, (height - side) // 2, (width - side) // 2, side, side)


# A residual downscale at or above this factor gets the antialiased resize (a slow kernel in TensorFlow: about 2x the
# cost of a JPEG decode); below it plain bilinear interpolation loses nothing visible and costs a third as much.
ANTIALIAS_FROM = 1.5


def _decode_jpeg_at_scale(data: tf.Tensor, image_size: int) -> tf.Tensor:
    """A JPEG decoded at 1/1, 1/2, 1/4 or 1/8 scale in the DCT domain (libjpeg's scaled IDCT: a proper low-pass, not a
    subsampling): the smallest scale whose short side still covers image_size."""
    shape = tf.io.extract_jpeg_shape(data)
    short = tf.minimum(shape[0], shape[1])
    index = tf.add_n([tf.cast(short >= factor * image_size, tf.int32) for factor in (2, 4, 8)])
    return tf.switch_case(index, [lambda ratio=ratio: tf.io.decode_jpeg(data, channels=3, ratio=ratio)
                                  for ratio in (1, 2, 4, 8)])


def decode_resize_bytes(data: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded JPEG/PNG -> float32 RGB in [0, 255] at image_size x image_size: the one geometry every stage uses
    (prepare's shards, training from files, evaluation, the SavedModel's serving signature).

    JPEGs are decoded at the smallest DCT scale that still covers image_size (a 512x512 JPEG for 224 px decodes at
    256x256), then the centre square is resized: bilinear when the residual downscale is under ANTIALIAS_FROM (always
    the case after a scaled JPEG decode), antialiased bilinear otherwise (large PNGs). Within about one intensity level
    of a full decode + antialiased resize (benchmarks/input_pipeline.py measures it) at half its cost."""
    image = tf.cond(tf.io.is_jpeg(data), lambda: _decode_jpeg_at_scale(data, image_size),
                    lambda: tf.io.decode_image(data, channels=3, expand_animations=False))
    image = centre_square(image)
    size = (image_size, image_size)
    image = tf.cond(tf.shape(image)[0] >= int(ANTIALIAS_FROM * image_size),
                    lambda: tf.image.resize(image, size, antialias=True), lambda: tf.image.resize(image, size))
    return tf.ensure_shape(image, (image_size, image_size, 3))


def to_uint8(pixels: tf.Tensor) -> tf.Tensor:
    """decode_resize_bytes' float pixels rounded (half up) to uint8, the form the cache and the shards store.

    No clip: a bilinear resize, antialiased or not, is a convex combination of uint8 inputs, so its output already
    lies in [0, 255]; adding 0.5 and truncating is the cheapest rounding (a tenth of the decode path's cost went to
    round + clip)."""
    return tf.cast(pixels + 0.5, tf.uint8)


@functools.cache
def bytes_decoder(image_size: int) -> Callable[[bytes], tf.Tensor]:
    """decode_resize_bytes traced once per size, for callers that decode one image at a time (from threads: the
    kernels release the GIL). Errors of a broken file are raised by the call."""
    return tf.function(lambda data: decode_resize_bytes(data, image_size),
                       input_signature=[tf.TensorSpec([], tf.string)])


def decode_resize(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """JPEG/PNG file -> float32 RGB in [0, 255] at image_size x image_size."""
    return decode_resize_bytes(tf.io.read_file(path), image_size)


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


@dataclass(frozen=True)
class InputOptions:
    """How training batches are made. cache: "auto" (in memory when the uint8 pixels fit `cache_budget_mb`),
    "memory", "none", or a file path prefix (tf.data file cache)."""

    image_size: int = 224
    batch_size: int = 32
    shuffle: bool = True
    seed: int | None = 42
    cache: str = "auto"
    cache_budget_mb: int = 4096
    deterministic: bool = True
    shuffle_buffer: int = 10_000


def encoded_examples(table: pd.DataFrame, dataset_dir: Path | str) -> tf.data.Dataset:
    """(encoded bytes, int32 label) per row of a split table, read from the image files in parallel, in table order."""
    paths = tf.data.Dataset.from_tensor_slices(image_paths(table, dataset_dir))
    labels = tf.data.Dataset.from_tensor_slices(table["label_index"].to_numpy(np.int32))
    return tf.data.Dataset.zip((paths, labels)).map(lambda p, y: (tf.io.read_file(p), y),
                                                   num_parallel_calls=tf.data.AUTOTUNE)


def cache_mode(cache: str, n_examples: int | None, image_size: int, budget_mb: int) -> str:
    """The cache to use: "memory", "none" or a file prefix; "auto" caches in memory only when the size is known and
    n * S * S * 3 bytes fits the budget."""
    if cache != "auto":
        return cache
    if n_examples is None:
        return "none"
    return "memory" if n_examples * image_size * image_size * 3 <= budget_mb * (1 << 20) else "none"


def oversample(ds: tf.data.Dataset, class_counts: Mapping[int, int], n_per_epoch: int, seed: int | None,
               prepare: Callable[[tf.data.Dataset, int], tf.data.Dataset] | None = None) -> tf.data.Dataset:
    """Re-sample unbatched (x, label) pairs so every class present is drawn equally often; `n_per_epoch` pairs per
    pass. Each class is filtered out of `ds` on its label first and then `prepare(stream, class)` runs on it (decode,
    cache, shuffle), so a rare class is decoded once, not once per scan. Classes with no examples are left out
    (drawing from them would never end)."""
    present = sorted(int(c) for c, n in class_counts.items() if n > 0)
    if not present:
        raise ValueError("oversampling needs at least one class with examples; class_counts are all zero")
    per_class = []
    for c in present:
        stream = ds.filter(lambda _x, y, c=c: tf.equal(tf.cast(y, tf.int64), c))
        per_class.append((prepare(stream, c) if prepare else stream).repeat())
    mixed = tf.data.Dataset.sample_from_datasets(per_class, weights=[1.0 / len(present)] * len(present), seed=seed,
                                                 rerandomize_each_iteration=True)
    return mixed.take(n_per_epoch)


def shuffled_passes(stream: tf.data.Dataset, buffer: int, seed: int | None, *, shuffle: bool = True
                    ) -> tf.data.Dataset:
    """`stream` forever, each pass in its own shuffle order.

    The passes' seeds come from Dataset.random, which draws anew once per iterator. With shuffle + repeat, an
    epoch's order would also depend on how many passes earlier epochs made over the stream, which a resumed run
    cannot replay: it fast-forwards iterators (model.training.resume), not passes.
    """
    if not shuffle:
        return stream.repeat()
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return seeds.flat_map(lambda pass_seed: stream.shuffle(buffer, seed=pass_seed, reshuffle_each_iteration=False))


def training_dataset(
    examples: tf.data.Dataset,
    options: InputOptions,
    *,
    n_examples: int | None = None,
    class_counts: Mapping[int, int] | None = None,
    class_balance: str = "weights",
) -> tf.data.Dataset:
    """Batches of (float32 pixels [B,S,S,3] in 0..255, int32 labels) from (encoded bytes, label) pairs; examples
    may also be ({"image": encoded bytes, **metadata}, label) (metadata fusion): the image is decoded, the rest
    batched as it is.

    Decoded pixels are rounded to uint8 before the cache (4x smaller; the model sees whole intensity levels, as in the
    JPEG). With class_balance="oversample", `class_counts` is required and each pass draws n_examples pairs.
    """
    if class_balance not in CLASS_BALANCES:
        raise ValueError(f"class_balance={class_balance!r}; expected one of {list(CLASS_BALANCES)}")
    size = options.image_size

    def decode(data, label):
        def pixels(encoded):
            return to_uint8(decode_resize_bytes(encoded, size))
        return on_image(data, pixels), tf.cast(label, tf.int32)

    mode = cache_mode(options.cache, n_examples, size, options.cache_budget_mb)

    def decoded(stream: tf.data.Dataset, part: str = "") -> tf.data.Dataset:
        stream = stream.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=options.deterministic)
        if mode == "memory":
            return stream.cache()
        return stream if mode == "none" else stream.cache(f"{mode}{part}")

    def shuffled(stream: tf.data.Dataset, buffer: int) -> tf.data.Dataset:
        if not options.shuffle:
            return stream
        return stream.shuffle(min(buffer, options.shuffle_buffer), seed=options.seed, reshuffle_each_iteration=True)

    if class_balance == "oversample":
        if class_counts is None or n_examples is None:
            raise ValueError("class_balance='oversample' needs class_counts and n_examples (the training split's)")
        ds = oversample(examples, class_counts, n_examples, options.seed,
                        prepare=lambda stream, c: shuffled_passes(decoded(stream, f"-class{c}"),
                                                                  min(class_counts[c], options.shuffle_buffer),
                                                                  options.seed, shuffle=options.shuffle))
    else:
        ds = shuffled(decoded(examples), n_examples or options.shuffle_buffer)
    ds = ds.batch(options.batch_size).map(lambda x, y: (on_image(x, lambda p: tf.cast(p, tf.float32)), y),
                                          num_parallel_calls=tf.data.AUTOTUNE)
    if not options.deterministic:
        ds = ds.with_options(_nondeterministic())
    return ds.prefetch(tf.data.AUTOTUNE)


def on_image(x, fn):
    """fn applied to the image: x itself, or x["image"] when x is a fusion model's input dict (metadata passes)."""
    return {**x, "image": fn(x["image"])} if isinstance(x, Mapping) else fn(x)


def _nondeterministic() -> tf.data.Options:
    opts = tf.data.Options()
    opts.deterministic = False
    return opts
