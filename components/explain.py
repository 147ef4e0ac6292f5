"""explain: the KFP component (signature, parameters, one library call); the logic is
dermpipe.model.evaluation.explain."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Model, Output

from dermpipe.componentkit import stage_component


@stage_component()
def explain(raw: Input[Dataset], model: Input[Model], predictions: Input[Dataset], gallery: Output[HTML],
            gradcam_pngs: Output[Artifact], per_class: int = 2):
    """Grad-CAM and Grad-CAM++ gallery of confident hits and misses per class."""
    from dermpipe.model.evaluation.explain import ExplainParams, run

    params = ExplainParams(per_class=per_class)
    run(raw, model, predictions, gallery, gradcam_pngs, params.per_class)
