"""profile: the KFP component (signature, parameters, one library call); the logic is dermpipe.monitoring.profile."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from dermpipe.componentkit import stage_component


@stage_component()
def profile(raw: Input[Dataset], model: Input[Model], train_split: Input[Dataset], val_split: Input[Dataset],
            test_split: Input[Dataset], profile: Output[Artifact], stats: Output[Metrics], n_components: int = 5):
    """Reference profile of the trained model for the drift monitor (embedding PCA + per-image features)."""
    from dermpipe.monitoring.profile import run

    run(raw, model, {"train": train_split, "val": val_split, "test": test_split}, profile, stats, n_components)
