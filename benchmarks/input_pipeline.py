"""Images/second of dermpipe's training input vs the seed's Keras ImageDataGenerator vs the raw tf.data ceiling.

Measured in one process on the same JPEG files (default: the 300 ISIC 2020 JPEGs of 512x512 in
../shared/data/isic2020-sample/images), at 224x224, batch 32:

  seed        keras.src.legacy ImageDataGenerator.flow_from_dataframe, rotation 20, shifts 0.2, zoom 0.2,
              horizontal flip, rescale 1/255 (augmentation on the CPU, inside the input path, one image at a time)
  ceiling     the textbook tf.data path: read + tf.io.decode_image (full size) + tf.image.resize (bilinear),
              parallel map, batch, prefetch; no augmentation, no cache
  full+aa     the same with an antialiased resize of the centre square (dermpipe's decode until it switched to
              DCT-scaled decoding; a quality reference)
  dermpipe    dermpipe.data.images.training_dataset: what model.fit consumes (parallel DCT-scaled decode + resize,
              uint8 cache, shuffle, batch, prefetch). Augmentation is NOT in this path: it runs inside the model,
              i.e. on the accelerator during training.
  dermpipe+aug(CPU)  the same batches pushed through the fused augmentation layer on THIS CPU (what a CPU-only
              trainer would pay); and the layer alone on in-memory batches, beside the chain of four Keras Random*
              layers it replaced.

Steady state: every decoding figure (seed, ceiling, full+aa, dermpipe's first epoch) times at least --min-images
(3,000) decoded images: the files are repeated, never served from a cache on a decoding path, and the first batches
(start-up: building the pipeline, spawning threads) are pulled before the clock starts. dermpipe's first epoch runs
with its cache and shuffle buffer off, i.e. what the decode path itself delivers (a shuffle buffer would fill,
decoding, inside the untimed warm-up); cached epochs = later epochs of the real training
input (uint8 cache in memory; the seed and the ceiling have no cache, so their later epochs decode again). Medians
of several runs. Files are read once before timing so every path sees a warm OS page cache.

    python benchmarks/input_pipeline.py [--images DIR] [--repeats 3] [--min-images 3000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "isic2020-sample" / "images"
SIZE, BATCH = 224, 32


WARMUP_BATCHES = 3


def _timed_epoch(batches) -> tuple[float, int]:
    """Seconds to pull every batch (materialised as numpy) and the number of images seen."""
    start = time.perf_counter()
    n = 0
    for x, _ in batches:
        n += int(np.asarray(x).shape[0])
    return time.perf_counter() - start, n


def _steady_rate(batches) -> float:
    """Images/s after the first WARMUP_BATCHES (untimed: pipeline start-up is not the decode path's speed)."""
    iterator = iter(batches)
    for _ in range(WARMUP_BATCHES):
        next(iterator)
    seconds, n = _timed_epoch(iterator)
    return n / seconds


def seed_path(table: pd.DataFrame) -> list[float]:
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(rotation_range=20, width_shift_range=0.2, height_shift_range=0.2, zoom_range=0.2,
                                   horizontal_flip=True, rescale=1 / 255)
    flow = generator.flow_from_dataframe(table, x_col="path", y_col="label", target_size=(SIZE, SIZE),
                                         batch_size=BATCH, class_mode="raw", shuffle=True, seed=0)
    return [flow, len(flow)]


def plain_decode_resize(data: tf.Tensor) -> tf.Tensor:
    return tf.image.resize(tf.io.decode_image(data, channels=3, expand_animations=False), (SIZE, SIZE))


def full_decode_antialiased(data: tf.Tensor) -> tf.Tensor:
    from dermpipe.data.images import centre_square

    image = centre_square(tf.io.decode_image(data, channels=3, expand_animations=False))
    return tf.image.resize(image, (SIZE, SIZE), antialias=True)


def decode_dataset(paths: list[str], labels: np.ndarray, decode) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(lambda p, y: (decode(tf.io.read_file(p)), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(BATCH).prefetch(tf.data.AUTOTUNE)


def dermpipe_dataset(table: pd.DataFrame, root: Path, cache: str = "memory", shuffle: bool = True
                     ) -> tf.data.Dataset:
    from dermpipe.data.images import InputOptions, encoded_examples, training_dataset

    options = InputOptions(image_size=SIZE, batch_size=BATCH, seed=0, cache=cache, deterministic=False,
                           shuffle=shuffle)
    return training_dataset(encoded_examples(table, root), options, n_examples=len(table))


def rate(seconds: list[float], n: int) -> float:
    return n / statistics.median(seconds)


def measure(images_dir: Path, repeats: int, min_images: int = 3000) -> dict[str, float]:
    from dermpipe.model.zoo import CAFFE_MEAN_BGR  # noqa: F401  (imports dermpipe's layers as training does)

    files = sorted(images_dir.glob("*.jpg"))
    if not files:
        raise SystemExit(f"no .jpg files in {images_dir}; pass --images DIR (the ISIC 2020 sample kit)")
    for path in files:  # warm the page cache for every contender
        path.read_bytes()
    labels = np.arange(len(files)) % 8
    table = pd.DataFrame({"path": [f.name for f in files], "label_index": labels, "label": labels.astype("float32")})
    copies = -(-(min_images + WARMUP_BATCHES * BATCH) // len(files))  # ceil: >= min_images timed after warm-up
    long_table = pd.concat([table] * copies, ignore_index=True)
    results: dict[str, float] = {"images": len(files), "timed_images": len(long_table) - WARMUP_BATCHES * BATCH}

    # seed: ImageDataGenerator (no cache: every image decoded and augmented on the CPU, one at a time)
    flow, steps = seed_path(long_table.assign(path=[str(images_dir / p) for p in long_table["path"]]))
    results["seed"] = statistics.median(_steady_rate(flow[i] for i in range(steps))
                                        for _ in range(max(2, repeats - 1)))

    # the decode paths, interleaved so that load from other processes hits them alike
    paths, long_labels = [str(images_dir / p) for p in long_table["path"]], long_table["label_index"].to_numpy()
    rates: dict[str, list[float]] = {"ceiling": [], "full_decode_antialiased": [], "dermpipe_first_epoch": []}
    for _ in range(repeats):
        rates["ceiling"].append(_steady_rate(decode_dataset(paths, long_labels, plain_decode_resize)))
        rates["full_decode_antialiased"].append(
            _steady_rate(decode_dataset(paths, long_labels, full_decode_antialiased)))
        # cache and shuffle off: the shuffle buffer would decode thousands of images inside the untimed warm-up
        rates["dermpipe_first_epoch"].append(
            _steady_rate(dermpipe_dataset(long_table, images_dir, cache="none", shuffle=False)))
    results.update({name: statistics.median(values) for name, values in rates.items()})

    cached_ds = dermpipe_dataset(table, images_dir)  # the real training input: the first epoch fills the cache
    _timed_epoch(cached_ds)
    results["dermpipe_cached_epoch"] = rate([_timed_epoch(cached_ds)[0] for _ in range(2 * repeats)], len(files))
    results["decode_mean_abs_diff"] = _decode_difference(files[:50])
    results.update(_augmentation_rates(table, images_dir, repeats))
    return results


def _augmentation_rates(table: pd.DataFrame, images_dir: Path, repeats: int) -> dict[str, float]:
    """The fused augmentation layer on this CPU (compiled), on dermpipe's cached batches and alone, beside the chain
    of four Keras Random* layers it replaced."""
    from dermpipe.model.augment import RandomAugment

    layer = RandomAugment(seed=0)
    augment = tf.function(lambda x: layer(x, training=True), reduce_retracing=True)
    ds = dermpipe_dataset(table, images_dir)
    _timed_epoch(ds)
    augmented = ds.map(lambda x, y: (augment(x), y))
    _timed_epoch(augmented)  # trace
    batch = tf.constant(np.random.default_rng(0).uniform(0, 255, (BATCH, SIZE, SIZE, 3)).astype("float32"))
    chain = _seed_chain()
    return {"dermpipe_cached_plus_aug_cpu": rate([_timed_epoch(augmented)[0] for _ in range(repeats)], len(table)),
            "fused_aug_layer_cpu": _layer_rate(augment, batch, repeats),
            "chain_aug_layers_cpu": _layer_rate(tf.function(lambda x: chain(x, training=True)), batch, repeats)}


def _decode_difference(files: list[Path]) -> float:
    """Mean absolute pixel difference (0..255 levels) between dermpipe's decode (DCT-scaled) and the full decode with
    an antialiased resize."""
    from dermpipe.data.images import decode_resize_bytes

    diffs = [np.abs(decode_resize_bytes(f.read_bytes(), SIZE).numpy()
                    - full_decode_antialiased(tf.constant(f.read_bytes())).numpy()).mean() for f in files]
    return float(np.mean(diffs))


def _seed_chain():
    import keras

    layers = keras.layers
    return keras.Sequential([layers.RandomFlip("horizontal_and_vertical", seed=0),
                             layers.RandomRotation(20 / 360, fill_mode="reflect", seed=0),
                             layers.RandomTranslation(0.2, 0.2, fill_mode="reflect", seed=0),
                             layers.RandomZoom(0.2, fill_mode="reflect", seed=0)])


def _layer_rate(fn, batch, repeats: int, batches: int = 4) -> float:
    fn(batch).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            fn(batch).numpy()
        times.append(time.perf_counter() - start)
    return batches * int(batch.shape[0]) / statistics.median(times)


def report(r: dict[str, float]) -> str:
    def line(name, value, note=""):
        return f"  {name:<42}{value:>8.0f} img/s  {note}".rstrip()

    def versus(value):
        return f"{value / r['seed']:.1f}x seed, {value / r['ceiling']:.0%} of ceiling"

    def verdict(value, share):
        return (f"{'met' if value >= 8 * r['seed'] else 'NOT met'} (>= 8x seed), "
                f"{'met' if value >= share * r['ceiling'] else 'NOT met'} (>= {share:.0%} of ceiling)")

    first, cached = r["dermpipe_first_epoch"], r["dermpipe_cached_epoch"]
    return "\n".join([
        f"input pipeline: {int(r['images'])} JPEGs -> {SIZE}x{SIZE}, batch {BATCH}, {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}; steady state: {int(r['timed_images'])} decoded images timed per "
        f"figure (files repeated, no cache, after {WARMUP_BATCHES} warm-up batches)",
        line("seed ImageDataGenerator (+ CPU augment)", r["seed"], "no cache: every epoch decodes"),
        line("ceiling: tf.data decode+resize", r["ceiling"], "no cache: every epoch decodes"),
        line("full decode + antialiased resize", r["full_decode_antialiased"], versus(r["full_decode_antialiased"])),
        line("dermpipe input, first epoch (decode)", first, versus(first)),
        line("dermpipe input, cached epochs", cached, versus(cached)),
        f"  dermpipe's decode (DCT-scaled JPEG decode + bilinear) vs full decode + antialiased resize: mean "
        f"|difference| {r['decode_mean_abs_diff']:.2f} of 255 levels",
        "  augmentation is not in the input path: it runs inside the model, on the accelerator. On this CPU:",
        line("dermpipe cached input + fused aug (CPU)", r["dermpipe_cached_plus_aug_cpu"],
             f"{r['dermpipe_cached_plus_aug_cpu'] / r['seed']:.1f}x seed"),
        line("fused RandomAugment layer alone (CPU)", r["fused_aug_layer_cpu"],
             f"{r['fused_aug_layer_cpu'] / r['chain_aug_layers_cpu']:.1f}x the chain below"),
        line("chain of 4 Keras Random* layers (CPU)", r["chain_aug_layers_cpu"]),
        f"targets, first epoch: {verdict(first, 1.0)}",
        f"targets, cached epochs: {verdict(cached, 0.7)}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-images", type=int, default=3000, help="decoded images timed per figure")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    results = measure(args.images, args.repeats, args.min_images)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
