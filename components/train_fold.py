"""train-fold: the KFP component (signature, parameters, one library call); the logic is
dermpipe.model.training.train_fold. One iteration of the cross-validation ParallelFor: its parameters are train's plus
`iteration` and `sweep` (tests/components/test_cross_validation_components.py keeps the two signatures in step)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from dermpipe import config
from dermpipe.componentkit import stage_component


@stage_component(base_image=config.GPU_IMAGE)
def train_fold(
    raw: Input[Dataset], train_split: Input[Dataset], val_split: Input[Dataset], model: Output[Model],
    predictions: Output[Dataset], stats: Output[Metrics], iteration: int, sweep: str = "",
    backbone: str = "efficientnet_b0",
    weights: str = "none", image_size: int = 224, batch_size: int = 32, epochs: int = 10, fine_tune_epochs: int = 0,
    fine_tune_layers: int = 20, learning_rate: float = 1e-3, fine_tune_learning_rate: float = 1e-4, patience: int = 3,
    class_balance: str = "weights", seed: int = 42, loss: str = "crossentropy", focal_gamma: float = 2.0,
    monitor: str = "val_balanced_accuracy", lr_schedule: str = "plateau", jit_compile: bool = False,
    mixed_precision: str = "auto", cache: str = "auto", deterministic: bool = False, quiet: bool = False,
    metadata_fusion: bool = False,
):
    """Iteration `iteration` = configuration x folds + fold: train the sweep configuration (train's parameters with its
    overrides) on every fold but `fold` of train+val, validate (early stopping) on `fold`, predict it out of fold."""
    from dataclasses import fields

    from dermpipe.model.training.train_fold import TrainParams, run

    values = locals()  # the literal signature above is checked against train's by the component tests
    params = TrainParams(**{field.name: values[field.name] for field in fields(TrainParams)})
    run(raw, train_split, val_split, model, predictions, stats, params, iteration, sweep)
