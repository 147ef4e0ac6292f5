"""train: the KFP component (signature, parameters, one library call); the logic is dermpipe.model.training.train."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from dermpipe import config
from dermpipe.componentkit import stage_component


@stage_component(base_image=config.GPU_IMAGE)
def train(
    raw: Input[Dataset], train_split: Input[Dataset], val_split: Input[Dataset], model: Output[Model],
    stats: Output[Metrics], curves: Output[HTML], backbone: str = "efficientnet_b0", weights: str = "none",
    image_size: int = 224, batch_size: int = 32, epochs: int = 10, fine_tune_epochs: int = 0,
    fine_tune_layers: int = 20, learning_rate: float = 1e-3, fine_tune_learning_rate: float = 1e-4, patience: int = 3,
    class_balance: str = "weights", seed: int = 42, loss: str = "crossentropy", focal_gamma: float = 2.0,
    monitor: str = "val_balanced_accuracy", lr_schedule: str = "plateau", jit_compile: bool = False,
    mixed_precision: str = "auto", cache: str = "auto", deterministic: bool = False,
    quiet: bool = False, shards: Input[Dataset] = None,
    metadata_fusion: bool = False,
):
    """Augment-and-train the classifier (runs on a GPU node on KFP/Vertex, on the CPU locally); reads the prepare
    stage's TFRecord shards when given, else the image files; metadata_fusion adds age/sex/site as a second input."""
    from dermpipe.model.training.train import TrainParams, run

    params = TrainParams(
        backbone=backbone, weights=weights, image_size=image_size, batch_size=batch_size, epochs=epochs,
        fine_tune_epochs=fine_tune_epochs, fine_tune_layers=fine_tune_layers, learning_rate=learning_rate,
        fine_tune_learning_rate=fine_tune_learning_rate, patience=patience, class_balance=class_balance, seed=seed,
        loss=loss, focal_gamma=focal_gamma, monitor=monitor, lr_schedule=lr_schedule, jit_compile=jit_compile,
        mixed_precision=mixed_precision, cache=cache, deterministic=deterministic, metadata_fusion=metadata_fusion,
        quiet=quiet)
    run(raw, train_split, val_split, model, stats, curves, params, quiet=params.quiet, shards=shards)
