"""The training run-time environment: GPUs, mixed precision, the distribution strategy and op determinism; and
TrainSettings, what the training helpers read of the train stage's parameters."""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol


class TrainSettings(Protocol):
    """The train stage's TrainParams (dermpipe.model.training.train) as the helpers (loop, inputs, callbacks, resume,
    report) read it. They do not import the stage module, which imports them: a frozen dataclass, read-only here."""

    __dataclass_fields__: ClassVar[dict[str, Any]]  # resume and report record it with dataclasses.asdict

    @property
    def backbone(self) -> str: ...
    @property
    def weights(self) -> str: ...
    @property
    def image_size(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def epochs(self) -> int: ...
    @property
    def fine_tune_epochs(self) -> int: ...
    @property
    def fine_tune_layers(self) -> int: ...
    @property
    def learning_rate(self) -> float: ...
    @property
    def fine_tune_learning_rate(self) -> float: ...
    @property
    def patience(self) -> int: ...
    @property
    def class_balance(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def loss(self) -> str: ...
    @property
    def focal_gamma(self) -> float: ...
    @property
    def monitor(self) -> str: ...
    @property
    def lr_schedule(self) -> str: ...
    @property
    def jit_compile(self) -> bool: ...
    @property
    def mixed_precision(self) -> str: ...
    @property
    def cache(self) -> str: ...
    @property
    def deterministic(self) -> bool: ...
    @property
    def metadata_fusion(self) -> bool: ...
    def check(self) -> None: ...


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
