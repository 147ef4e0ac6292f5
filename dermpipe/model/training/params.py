"""The train stage's parameters (TrainParams) and the values each choice accepts."""

from dataclasses import dataclass

LOSSES = ("crossentropy", "focal")
MONITORS = ("val_balanced_accuracy", "val_loss")
LR_SCHEDULES = ("plateau", "cosine", "constant")


@dataclass(frozen=True)
class TrainParams:
    backbone: str = "efficientnet_b0"
    weights: str = "none"
    image_size: int = 224
    batch_size: int = 32
    epochs: int = 10
    fine_tune_epochs: int = 0
    fine_tune_layers: int = 20
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    patience: int = 3
    class_balance: str = "weights"  # weights | oversample | none
    seed: int = 42
    loss: str = "crossentropy"  # crossentropy | focal
    focal_gamma: float = 2.0
    monitor: str = "val_balanced_accuracy"  # or val_loss
    lr_schedule: str = "plateau"  # plateau | cosine | constant
    jit_compile: bool = False
    mixed_precision: str = "auto"  # auto (on when a GPU is present) | on | off
    cache: str = "auto"  # auto | memory | none | a file prefix
    deterministic: bool = False
    metadata_fusion: bool = False  # age, sex and site as a second input branch (dermpipe.model.metadata_inputs)

    def check(self) -> None:
        from dermpipe.data.images import CLASS_BALANCES

        for field_name, value, allowed in (("class_balance", self.class_balance, CLASS_BALANCES),
                                           ("loss", self.loss, LOSSES), ("monitor", self.monitor, MONITORS),
                                           ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
                                           ("mixed_precision", self.mixed_precision, ("auto", "on", "off"))):
            if value not in allowed:
                raise ValueError(f"train parameter {field_name}={value!r} is not supported; "
                                 f"choose one of {list(allowed)}")
