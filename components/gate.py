"""gate: the KFP component (signature, parameters, one library call); the logic is dermpipe.deploy.gate.stage."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from dermpipe.componentkit import stage_component


@stage_component()
def gate(raw: Input[Dataset], model: Input[Model], test_split: Input[Dataset], train_split: Input[Dataset],
         predictions: Input[Dataset], decision: Output[Markdown], gate_metrics: Output[Metrics],
         profile: Input[Artifact] = None, min_balanced_accuracy: float = 0.5, max_bma_drop: float = 0.02,
         require_beat_baseline: bool = False, registry_root: str = "", model_name: str = "dermpipe-isic2019",
         champion_version: int = 0, champion_digest: str = "", benchmark: str = "") -> bool:
    """Whether the model is blessed for deployment (the pipeline's condition on deploy).

    A single unnamed output on purpose: kfp.local resolves conditions on `<task>-Output` channels only."""
    from pathlib import Path

    from dermpipe.deploy.gate.stage import GateParams, run

    params = GateParams(min_balanced_accuracy=min_balanced_accuracy, max_bma_drop=max_bma_drop,
                        require_beat_baseline=require_beat_baseline, registry_root=registry_root,
                        model_name=model_name, champion_version=champion_version, champion_digest=champion_digest,
                        benchmark=benchmark)
    return run(raw, model, test_split, train_split, predictions, Path(profile.path) if profile is not None else None,
               decision, gate_metrics, params)
