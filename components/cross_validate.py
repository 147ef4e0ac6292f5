"""cross-validate: the KFP component (signature, parameters, one library call); the logic is
dermpipe.model.training.cross_validate."""

from typing import List  # noqa: UP035 - KFP's Input[List[Model]] needs typing.List

from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from dermpipe.componentkit import stage_component


@stage_component()
def cross_validate(
    models: Input[List[Model]], predictions: Input[List[Dataset]], train_split: Input[Dataset],  # noqa: UP006
    val_split: Input[Dataset], ensemble: Output[Model], metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics], report: Output[HTML], leaderboard: Output[Markdown],
    ensemble_weighting: str = "uniform", ensemble_temperature: bool = False, sweep: str = "", ensemble_top: int = 1,
):
    """Score the out-of-fold predictions (per fold, mean ± std, OOF), rank the sweep's configurations, and export the
    best configurations' fold models as one ensemble."""
    from dermpipe.model.training.cross_validate import CrossValParams, run

    params = CrossValParams(ensemble_weighting=ensemble_weighting, ensemble_temperature=ensemble_temperature,
                            sweep=sweep, ensemble_top=ensemble_top)
    run(models, predictions, train_split, val_split, ensemble, metrics, confusion, report, leaderboard, params)
