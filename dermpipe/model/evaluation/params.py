"""The evaluate and explain stages' parameter sets: names, types, defaults and help in one place; and the ensemble
weightings the out-of-fold evaluation implements (dermpipe.model.evaluation.oof), which cross-validate's
ensemble_weighting accepts.

Kept apart from the stage logic (which imports pandas and kfp) so that `dermpipe run --help`, whose options are
derived from these, stays quick; tests/architecture/test_parameter_agreement.py checks the signatures against them.
"""

from dataclasses import dataclass

from dermpipe.componentkit import param

WEIGHTINGS = ("uniform", "fold_bma")  # equal weights | each fold model's held-out-fold BMA


@dataclass(frozen=True)
class EvaluateParams:
    tta: bool = param(True, "also report test-time augmentation (flips)")


@dataclass(frozen=True)
class ExplainParams:
    per_class: int = param(2, "Grad-CAM examples per class and outcome (confident hits and misses)")
