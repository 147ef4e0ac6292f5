"""evaluate: the KFP component (signature, parameters, one library call); the logic is
dermpipe.model.evaluation.evaluate."""

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from dermpipe.componentkit import stage_component


@stage_component()
def evaluate(raw: Input[Dataset], model: Input[Model], test_split: Input[Dataset], metrics: Output[Metrics],
             confusion: Output[ClassificationMetrics], report: Output[HTML], predictions: Output[Dataset],
             profile: Input[Artifact] = None, tta: bool = True):
    """Score the model on the test split: metrics, confusion matrix, HTML report (with the profile's operating
    points measured on test) and per-image predictions."""
    from pathlib import Path

    from dermpipe.model.evaluation.evaluate import EvaluateParams, run

    params = EvaluateParams(tta=tta)
    run(raw, model, test_split, metrics, confusion, report, predictions, tta=params.tta,
        profile_dir=Path(profile.path) if profile is not None else None)
