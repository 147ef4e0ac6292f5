"""The training run-time environment: GPUs, mixed precision, the distribution strategy and op determinism."""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass


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


@contextlib.contextmanager
def op_determinism(enabled: bool) -> Iterator[None]:
    """TensorFlow's deterministic kernels inside the block only.

    enable_op_determinism is process-wide and TF exports no call to undo it, so a process that trained with
    --deterministic and then served or evaluated would keep the slower kernels; the state before is restored with
    the private disable_op_determinism that sits beside it (TF's own tests use it).
    """
    if not enabled:
        yield
        return
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    was_enabled = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled:
            tf_config.disable_op_determinism()
