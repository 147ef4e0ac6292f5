"""The cross-validation part of the training DAG (only wiring): fold-plan -> ParallelFor(train-fold) ->
cross-validate (leaderboard of the sweep's configurations), whose `ensemble` Model takes the place of train's
`model` downstream.

Each iteration is its own train task with train's GPU placement (place_train); dsl.Collected hands the fold models and
their out-of-fold predictions to cross-validate as lists. Collecting a ParallelFor's artifacts (dsl.Collected)
needs Vertex AI Pipelines or an open-source KFP backend that includes kubeflow/pipelines#11725 (merged April 2025, so
2.5 or later; the 2.0 backends refuse such a DAG, kubeflow/pipelines#10035); kfp.local runs the iterations too.
"""

from kfp import dsl

from dermpipe.components.cross_validate import cross_validate
from dermpipe.components.fold_plan import fold_plan
from dermpipe.components.train_fold import train_fold
from dermpipe.pipelines.placement import Placement, place_step, place_train


def cross_validation(raw, train_split, val_split, folds, train_params: dict, cv_params: dict,
                     placement: Placement | None) -> dsl.PipelineTask:
    """The cross-validate task, after configurations x `folds` train-fold tasks run in one flat ParallelFor (a flat
    loop: dsl.Collected cannot collect nested loops); `train_params` are train's parameters by name, `cv_params`
    cross-validate's (ensemble_weighting, ensemble_temperature, sweep, ensemble_top)."""
    plan = place_step(fold_plan(folds=folds, sweep=cv_params["sweep"]), placement).set_display_name("fold-plan")
    with dsl.ParallelFor(plan.output, name="folds") as iteration:
        fitted = place_train(
            train_fold(raw=raw, train_split=train_split, val_split=val_split, iteration=iteration,
                       sweep=cv_params["sweep"], **train_params), placement,
        ).set_display_name("train-fold")
    return place_step(
        cross_validate(models=dsl.Collected(fitted.outputs["model"]),
                       predictions=dsl.Collected(fitted.outputs["predictions"]), train_split=train_split,
                       val_split=val_split, **cv_params),
        placement,
    ).set_display_name("cross-validate")
