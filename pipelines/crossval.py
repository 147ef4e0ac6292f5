"""The cross-validation part of the training DAG (only wiring): fold-plan -> ParallelFor(train-fold) ->
cross-validate, whose `ensemble` Model takes the place of train's `model` downstream.

Each iteration is its own train task with train's GPU placement (place_train); dsl.Collected hands the fold models and
their out-of-fold predictions to cross-validate as lists. Collecting a ParallelFor's outputs needs KFP backend >= 2.1
(Vertex AI Pipelines supports it); kfp.local runs the iterations too.
"""

from kfp import dsl

from dermpipe.components.cross_validate import cross_validate
from dermpipe.components.fold_plan import fold_plan
from dermpipe.components.train_fold import train_fold
from dermpipe.pipelines.placement import Placement, place_step, place_train


def cross_validation(raw, train_split, val_split, folds, train_params: dict, ensemble_weighting,
                     ensemble_temperature, placement: Placement | None) -> dsl.PipelineTask:
    """The cross-validate task, after `folds` train-fold tasks run in a ParallelFor; `train_params` are train's
    parameters by name (the pipeline's values)."""
    plan = place_step(fold_plan(folds=folds), placement).set_display_name("fold-plan")
    with dsl.ParallelFor(plan.output, name="folds") as fold:
        fitted = place_train(
            train_fold(raw=raw, train_split=train_split, val_split=val_split, fold=fold, **train_params), placement,
        ).set_display_name("train-fold")
    return place_step(
        cross_validate(models=dsl.Collected(fitted.outputs["model"]),
                       predictions=dsl.Collected(fitted.outputs["predictions"]), train_split=train_split,
                       val_split=val_split, ensemble_weighting=ensemble_weighting,
                       ensemble_temperature=ensemble_temperature),
        placement,
    ).set_display_name("cross-validate")
