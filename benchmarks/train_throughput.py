"""Training images/second of dermpipe's classifier (augmentation inside the model) on this machine's accelerator.

Builds the model exactly as the train task does (dermpipe.models.build_classifier, dermpipe.components.train.runtime:
mixed_float16 on a GPU, MirroredStrategy over several GPUs, optional XLA) and times model.fit steps on in-memory
batches (so the input pipeline is not what is measured; benchmarks/input_pipeline.py measures that). Prints the
figure beside NVIDIA's published TF2 EfficientNet-B0 training throughput (A100, mixed precision, 3,454 img/s) and
the ratio; the two differ in card, batch size and data path, so the ratio says where we stand, not who wins.

    python benchmarks/train_throughput.py [--backbone efficientnet_b0] [--image-size 224] [--batch-size 128]
                                          [--steps 50] [--jit-compile] [--mixed-precision auto|on|off]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NVIDIA_A100_EFFICIENTNET_B0 = 3454.0  # img/s, NVIDIA DeepLearningExamples TF2 EfficientNet-B0, AMP, A100


def measure(backbone: str, image_size: int, batch_size: int, steps: int, jit_compile: bool,
            mixed_precision: str) -> dict[str, object]:
    import keras
    import numpy as np
    import tensorflow as tf

    from dermpipe.components.train import runtime
    from dermpipe.models import build_classifier

    env = runtime(mixed_precision)
    with env.strategy.scope():
        model, _ = build_classifier(backbone, image_size, 8, weights="none", seed=0,
                                    augment={"xla": True} if jit_compile else None)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    labels = rng.integers(0, 8, batch_size).astype("int32")
    data = tf.data.Dataset.from_tensors((images, labels)).repeat().prefetch(2)
    warmup = max(2, steps // 10)
    model.fit(data, steps_per_epoch=warmup, epochs=1, shuffle=False, verbose=0)  # trace, compile, autotune
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    return {"backbone": backbone, "image_size": image_size, "batch_size": batch_size, "steps": steps,
            "gpus": env.gpus, "replicas": env.replicas, "mixed_precision": env.mixed_precision,
            "jit_compile": jit_compile, "images_per_second": steps * batch_size / seconds,
            "device": tf.config.list_physical_devices("GPU") and "GPU" or "CPU"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_b0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--mixed-precision", default="auto", choices=["auto", "on", "off"])
    args = parser.parse_args()
    r = measure(args.backbone, args.image_size, args.batch_size, args.steps, args.jit_compile, args.mixed_precision)
    rate = float(r["images_per_second"])
    print(f"train throughput: {r['backbone']} {r['image_size']}x{r['image_size']}, batch {r['batch_size']}, "
          f"{r['device']} x{r['replicas']}, mixed precision {'on' if r['mixed_precision'] else 'off'}, "
          f"XLA {'on' if r['jit_compile'] else 'off'}, augmentation in the model")
    print(f"  dermpipe                                 {rate:>9.1f} img/s")
    print(f"  NVIDIA published (A100, AMP, EffNet-B0)  {NVIDIA_A100_EFFICIENTNET_B0:>9.1f} img/s")
    print(f"  ratio                                    {rate / NVIDIA_A100_EFFICIENTNET_B0:>9.3f}")


if __name__ == "__main__":
    main()
