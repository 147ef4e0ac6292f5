"""The evaluate and explain stages' parameter sets: names, types, defaults and help in one place.

Kept apart from the stage logic (which imports pandas and kfp) so that `dermpipe run --help`, whose options are
derived from these, stays quick; tests/architecture/test_parameter_agreement.py checks the signatures against them.
"""

from dataclasses import dataclass

from dermpipe.componentkit import param


@dataclass(frozen=True)
class EvaluateParams:
    tta: bool = param(True, "also report test-time augmentation (flips)")


@dataclass(frozen=True)
class ExplainParams:
    per_class: int = param(2, "Grad-CAM examples per class and outcome (confident hits and misses)")


@dataclass(frozen=True)
class ProfileParams:
    n_components: int = param(5, "components of the embedding PCA the drift monitor and the OOD score use")
    melanoma_target_sensitivity: float = param(0.95, "melanoma operating point: the threshold is chosen on the "
                                                     "validation split to refer at least this share of melanomas")
    melanoma_min_specificity: float = param(0.2, "melanoma operating point: valid only if its validation "
                                                  "specificity is at least this (below it, it refers nearly everyone) "
                                                  "and its net benefit beats referring all and none")
    ood_pass_rate: float = param(0.95, "OOD threshold: calibrated so this share of validation images pass as "
                                       "in-distribution")
    ood_near_folder: str = param("", "folder (local or gs://) of dermoscopy images from another device, clinic or "
                                     "population (no labels needed): the served OOD score is chosen on them instead "
                                     "of on the validation images through a simulated new device")

    def check(self) -> None:
        """Refuse a target or pass rate that no threshold can mean (pre-flight and the stage run the same check)."""
        for name in ("melanoma_target_sensitivity", "ood_pass_rate"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} = {value}: expected a share strictly between 0 and 1 (e.g. 0.95)")
        if not 0.0 <= self.melanoma_min_specificity < 1.0:
            raise ValueError(f"melanoma_min_specificity = {self.melanoma_min_specificity}: expected a share in "
                             "[0, 1) (e.g. 0.2)")
        if self.n_components < 1:
            raise ValueError(f"n_components = {self.n_components}: expected at least 1")
