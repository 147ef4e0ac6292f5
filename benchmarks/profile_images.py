"""Images/second of the drift features of an image folder (what `dermpipe monitor --images` and the profile stage do
per image): statistics + the model's probabilities and embedding.

dermpipe: drift_features.decode_images, each file decoded once in parallel threads, statistics and model outputs
from the same pixels. Baseline, measured in the same run: the two passes dermpipe made before, a per-file
statistics pass (imagestats.statistics_from_bytes) and then a tf.data pass that decodes every file again for the
model. Both on the same files, model and image size; the two must agree on every value.

    python benchmarks/profile_images.py [--images DIR] [--backbone simple_cnn] [--image-size 224] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic2020-sample" / "images"


def two_passes(model, paths, image_size: int):
    """The baseline: statistics file by file, then a tf.data decode + model pass."""
    import keras
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    from dermpipe.data.image_stats import statistics_from_bytes
    from dermpipe.data.images import decode_resize
    from dermpipe.model.export import EMBEDDING_LAYER

    stats = pd.DataFrame([statistics_from_bytes(Path(p).read_bytes(), image_size) for p in paths])
    heads = keras.Model(model.input, [model.output, model.get_layer(EMBEDDING_LAYER).output])
    ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    ds = ds.map(lambda p: decode_resize(p, image_size), num_parallel_calls=tf.data.AUTOTUNE).batch(64)
    outputs = [heads(batch, training=False) for batch in ds]
    probabilities, embeddings = (np.concatenate([np.asarray(o[k]) for o in outputs]) for k in (0, 1))
    return stats, probabilities, embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--backbone", default="simple_cnn")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import keras
    import numpy as np

    from dermpipe.data.image_stats import STAT_COLUMNS
    from dermpipe.model.profile.features import decode_images, list_images
    from dermpipe.model.zoo import build_classifier

    paths = list_images(args.images)
    keras.utils.set_random_seed(0)
    model, _ = build_classifier(args.backbone, args.image_size, 8, seed=0)
    decode_images(paths[:8], args.image_size, model)  # trace both paths once
    two_passes(model, paths[:8], args.image_size)
    ours, theirs = [], []
    for _ in range(args.repeat):  # interleaved, best of each: the same machine state for both
        start = time.perf_counter()
        result = decode_images(paths, args.image_size, model)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        stats, probabilities, embeddings = two_passes(model, paths, args.image_size)
        theirs.append(time.perf_counter() - start)
    assert not result.failed
    np.testing.assert_allclose(result.stats[list(STAT_COLUMNS)].to_numpy(), stats[list(STAT_COLUMNS)].to_numpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.probabilities, probabilities, atol=1e-5)
    np.testing.assert_allclose(result.embeddings, embeddings, atol=1e-4)
    n = len(paths)
    print(f"drift features of {n} images ({args.images.name}), {args.backbone} at {args.image_size}px, "
          f"{os.cpu_count()} CPUs, best of {args.repeat}; both give the same values")
    print(f"  dermpipe (one decode, threads)         {n / min(ours):>8.1f} img/s")
    print(f"  baseline (statistics pass + tf.data)   {n / min(theirs):>8.1f} img/s")
    print(f"  ratio                                  {min(theirs) / min(ours):>8.2f}x")


if __name__ == "__main__":
    main()
