"""The cross-validate stage's parameters (CrossValParams), without TensorFlow or kfp, so pre-flight checks them fast."""

from dataclasses import dataclass

from dermpipe.componentkit import param
from dermpipe.data.params import check_choice

WEIGHTINGS = ("uniform", "fold_bma")


@dataclass(frozen=True)
class CrossValParams:
    ensemble_weighting: str = param("uniform", "fold models' weights in the ensemble, chosen on the out-of-fold "
                                               "predictions: uniform | fold_bma (each model's held-out-fold BMA)")
    ensemble_temperature: bool = param(False, "temperature-scale each fold model on its own held-out fold before "
                                              "averaging (fitted on the out-of-fold predictions)")

    def check(self) -> None:
        check_choice("cross_validate", "ensemble_weighting", self.ensemble_weighting, WEIGHTINGS)
