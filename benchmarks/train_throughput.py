"""Training images/second of dermpipe's classifier (augmentation inside the model) on this machine's accelerator.

Builds the model exactly as the train task does (dermpipe.model.zoo.build_classifier; mixed_float16 on a GPU;
MirroredStrategy over several GPUs on TensorFlow) and times model.fit steps on one batch already in memory, so the
input pipeline is not what is measured (benchmarks/input_pipeline.py measures that). In the same run it times the
bare keras.applications backbone with a softmax head and no augmentation (the baseline: what the augmentation and
preprocessing inside dermpipe's model cost), and prints both beside NVIDIA's published TF2 EfficientNet-B0
training throughput (A100, mixed precision, 3,454 img/s). The card, batch size and data path differ from NVIDIA's,
so that ratio says where we stand, not who wins.

The model is written in keras.ops only, so it runs on any Keras 3 backend: KERAS_BACKEND=jax measures it where
TensorFlow is not installed (the figure is then Keras-on-JAX, XLA-compiled, not the TF train task's).

    python benchmarks/train_throughput.py [--backbone efficientnet_b0] [--image-size 224] [--batch-size 128 ...]
        [--steps 50] [--jit-compile] [--mixed-precision auto|on|off|bf16] [--augment-xla] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from dataclasses import dataclass, fields

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NVIDIA_A100_EFFICIENTNET_B0 = 3454.0  # img/s, NVIDIA DeepLearningExamples TF2 EfficientNet-B0, AMP, A100


@dataclass(frozen=True)
class Accelerator:
    backend: str
    device: str  # "CPU" or the GPU's name
    gpus: int
    replicas: int
    policy: str  # Keras dtype policy
    strategy: object | None  # TensorFlow's distribution strategy; None on other backends

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def accelerator(mixed_precision: str) -> Accelerator:
    """The train task's runtime on TensorFlow; the same policy choice on JAX/PyTorch (one device, no strategy)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        from dermpipe.model.training.runtime import runtime

        env = runtime("on" if mixed_precision == "bf16" else mixed_precision)
        gpus = tf.config.list_physical_devices("GPU")
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"
        if mixed_precision == "bf16":
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        return Accelerator(backend, name, env.gpus, env.replicas, keras.mixed_precision.global_policy().name,
                           env.strategy)
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        name = gpus[0].device_kind if gpus else "CPU"
    else:
        import torch

        gpus = list(range(torch.cuda.device_count()))
        name = torch.cuda.get_device_name(0) if gpus else "CPU"
    policy = {"bf16": "mixed_bfloat16", "on": "mixed_float16", "off": "float32"}.get(
        mixed_precision, "mixed_float16" if gpus else "float32")
    keras.mixed_precision.set_global_policy(policy)
    return Accelerator(backend, name, len(gpus), 1, policy, None)


def bare_backbone(backbone: str, image_size: int, n_classes: int):
    """The baseline: keras.applications' backbone with global pooling and a softmax head, nothing else."""
    import keras

    from dermpipe.model.zoo import _apps

    spec = _apps()[backbone]
    inputs = keras.Input((image_size, image_size, 3))
    base = spec.build(include_top=False, weights=None, input_tensor=inputs)
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"bare_{backbone}")


def _batches(images, labels, backend: str):
    """One batch repeated forever, on the device already (so host-to-device copies are not timed either)."""
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.data.Dataset.from_tensors((images, labels)).repeat().prefetch(2)
    if backend == "jax":
        import jax

        images, labels = jax.device_put(images), jax.device_put(labels)

    def forever():
        while True:
            yield images, labels

    return forever()


def time_fit(model, env: Accelerator, batch_size: int, steps: int, jit_compile: bool) -> dict[str, float]:
    """Images/second over `steps` fit steps after a warm-up epoch (trace, compile, autotune)."""
    import keras
    import numpy as np

    image_size = model.input_shape[1]
    with env.scope():
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      jit_compile=jit_compile if env.backend == "tensorflow" else "auto")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    labels = rng.integers(0, 8, batch_size).astype("int32")
    data = _batches(images, labels, env.backend)
    warmup = max(3, steps // 10)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=warmup, epochs=1, shuffle=False, verbose=0)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    history = model.fit(data, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    seconds = time.perf_counter() - start  # fit returns after the last step's loss is fetched: device work is done
    loss = float(history.history["loss"][-1])
    if not np.isfinite(loss):
        raise FloatingPointError(f"{model.name}: training loss is {loss} after {steps} steps")
    return {"images_per_second": steps * batch_size / seconds, "step_ms": 1000 * seconds / steps,
            "warmup_seconds": compile_seconds, "final_loss": loss}


def measure(backbone: str, image_size: int, batch_size: int, steps: int, jit_compile: bool,
            mixed_precision: str, augment_xla: bool = False) -> dict[str, object]:
    """dermpipe's classifier and the bare backbone, timed one after the other in this process."""
    import keras

    from dermpipe.model.zoo import build_classifier

    env = accelerator(mixed_precision)
    augment = {"xla": True} if (jit_compile or augment_xla) else None
    rows = {}
    for name in ("dermpipe", "bare"):
        keras.utils.clear_session(free_memory=True)
        with env.scope():
            if name == "dermpipe":
                model, _ = build_classifier(backbone, image_size, 8, weights="none", seed=0, augment=augment)
            else:
                model = bare_backbone(backbone, image_size, 8)
        rows[name] = time_fit(model, env, batch_size, steps, jit_compile)
    env_row = {f.name: getattr(env, f.name) for f in fields(env) if f.name != "strategy"}
    return {"backbone": backbone, "image_size": image_size, "batch_size": batch_size, "steps": steps,
            "jit_compile": jit_compile or env.backend == "jax", "augment_xla": bool(augment), **env_row, **rows}


def report(r: dict) -> str:
    ours, bare = r["dermpipe"]["images_per_second"], r["bare"]["images_per_second"]
    lines = [
        f"train throughput: {r['backbone']} {r['image_size']}x{r['image_size']}, batch {r['batch_size']}, "
        f"{r['device']} x{r['replicas']}, Keras backend {r['backend']}, policy {r['policy']}, "
        f"XLA {'on' if r['jit_compile'] else 'off'}, augmentation resampler "
        f"{'gather (xla)' if r['augment_xla'] else 'affine_transform'}",
        f"  dermpipe (augmentation + preprocessing in the model) {ours:>9.1f} img/s  "
        f"({r['dermpipe']['step_ms']:.1f} ms/step, warm-up {r['dermpipe']['warmup_seconds']:.0f} s)",
        f"  bare keras.applications backbone + head (baseline)   {bare:>9.1f} img/s  "
        f"({r['bare']['step_ms']:.1f} ms/step)",
        f"  ratio dermpipe / bare                                {ours / bare:>9.3f}",
        f"  NVIDIA published (A100, TF2 AMP, EfficientNet-B0)    {NVIDIA_A100_EFFICIENTNET_B0:>9.1f} img/s",
        f"  ratio dermpipe / NVIDIA A100                         {ours / NVIDIA_A100_EFFICIENTNET_B0:>9.3f}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_b0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[128])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--jit-compile", action="store_true", help="XLA on TensorFlow (JAX always compiles)")
    parser.add_argument("--augment-xla", action="store_true", help="the gather resampler without --jit-compile")
    parser.add_argument("--mixed-precision", default="auto", choices=["auto", "on", "off", "bf16"])
    parser.add_argument("--json", help="append each result as one JSON line to this file")
    args = parser.parse_args()
    for batch_size in args.batch_size:
        r = measure(args.backbone, args.image_size, batch_size, args.steps, args.jit_compile,
                    args.mixed_precision, args.augment_xla)
        print(report(r), flush=True)
        if args.json:
            with open(args.json, "a") as out:
                out.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
