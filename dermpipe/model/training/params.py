"""The train stage's parameters (TrainParams) and the values each choice accepts."""

from dataclasses import dataclass

from dermpipe.componentkit import param
from dermpipe.data.params import CLASS_BALANCES, check_choice, check_image_size
from dermpipe.model.backbones import check_backbone

LOSSES = ("crossentropy", "focal")
MONITORS = ("val_balanced_accuracy", "val_loss")
LR_SCHEDULES = ("plateau", "cosine", "constant")


@dataclass(frozen=True)
class TrainParams:
    backbone: str = param("efficientnet_b0", "simple_cnn | efficientnet_b0..b4 | mobilenet_v3_small/large | resnet50")
    weights: str = param("none", "none | imagenet | path (local or gs://) of a backbone weights file")
    image_size: int = param(224, "training resolution in pixels (224 for real training)")
    batch_size: int = param(32, "images per training step")
    epochs: int = param(10, "training epochs (early stopping may end sooner)")
    fine_tune_epochs: int = param(0, "epochs of fine-tuning after the head phase (pretrained weights)")
    fine_tune_layers: int = param(20, "how many top backbone layers fine-tuning unfreezes")
    learning_rate: float = param(1e-3, "learning rate of the head phase")
    fine_tune_learning_rate: float = param(1e-4, "learning rate of the fine-tuning phase")
    patience: int = param(3, "early-stopping patience in epochs (on --monitor)")
    class_balance: str = param("weights", "weights | oversample | none")
    seed: int = param(42, "seed of weight initialisation, augmentation and input order")
    loss: str = param("crossentropy", "crossentropy | focal")
    focal_gamma: float = param(2.0, "focusing parameter of the focal loss (with --loss focal)")
    monitor: str = param("val_balanced_accuracy", "early stopping: val_balanced_accuracy | val_loss")
    lr_schedule: str = param("plateau", "plateau (ReduceLROnPlateau) | cosine | constant")
    jit_compile: bool = param(False, "XLA-compile the train step")
    mixed_precision: str = param("auto", "auto (on when a GPU is present) | on | off")
    cache: str = param("auto", "input cache: auto | memory | none | a file prefix")
    deterministic: bool = param(False, "reproducible training: deterministic ops and input order (slower)")
    metadata_fusion: bool = param(False, "age, sex and anatomic site as a second model input (off: images only); "
                                         "see dermpipe.model.metadata_inputs")
    quiet: bool = param(False, "no per-epoch progress lines from train")

    def check(self) -> None:
        """Refuse what train would fail on minutes later: an unknown choice, an impossible size or count."""
        check_backbone(self.backbone)
        for field_name, value, allowed in (("class_balance", self.class_balance, CLASS_BALANCES),
                                           ("loss", self.loss, LOSSES), ("monitor", self.monitor, MONITORS),
                                           ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
                                           ("mixed_precision", self.mixed_precision, ("auto", "on", "off"))):
            check_choice("train", field_name, value, allowed)
        check_image_size(self.image_size)
        for field_name, value, least in (("batch_size", self.batch_size, 1), ("epochs", self.epochs, 1),
                                         ("fine_tune_epochs", self.fine_tune_epochs, 0), ("patience", self.patience, 0),
                                         ("fine_tune_layers", self.fine_tune_layers, 0)):
            if value < least:
                raise ValueError(f"train parameter {field_name}={value}: expected at least {least}")
        for field_name, rate in (("learning_rate", self.learning_rate),
                                 ("fine_tune_learning_rate", self.fine_tune_learning_rate)):
            if not rate > 0:
                raise ValueError(f"train parameter {field_name}={rate}: expected a positive learning rate")
