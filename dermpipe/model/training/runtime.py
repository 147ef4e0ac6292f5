"""The training run-time environment: GPUs, mixed precision and the distribution strategy."""

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
