"""profile: the KFP component (signature, parameters, one library call); the logic is dermpipe.model.profile.stage."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from dermpipe.componentkit import stage_component


@stage_component()
def profile(raw: Input[Dataset], model: Input[Model], train_split: Input[Dataset], val_split: Input[Dataset],
            test_split: Input[Dataset], profile: Output[Artifact], stats: Output[Metrics], n_components: int = 5,
            melanoma_target_sensitivity: float = 0.95, melanoma_min_specificity: float = 0.2,
            ood_pass_rate: float = 0.95, ood_near_folder: str = ""):
    """Reference profile of the trained model for the drift monitor (embedding PCA + per-image features), and the
    clinical calibration: melanoma operating points chosen on validation (on out-of-fold predictions for a
    cross-validated ensemble), the OOD detector and its threshold."""
    from dermpipe.model.profile.stage import ProfileParams, run

    params = ProfileParams(n_components=n_components, melanoma_target_sensitivity=melanoma_target_sensitivity,
                           melanoma_min_specificity=melanoma_min_specificity, ood_pass_rate=ood_pass_rate,
                           ood_near_folder=ood_near_folder)
    run(raw, model, {"train": train_split, "val": val_split, "test": test_split}, profile, stats, params)
