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
    sweep: str = param("", "configurations to cross-validate, a JSON/YAML list of train-parameter overrides, e.g. "
                           "'[{backbone: simple_cnn}, {loss: focal}]' (empty: train's parameters only)")
    ensemble_top: int = param(1, "ensemble the fold models of the best N sweep configurations (by OOF BMA)")

    def check(self) -> None:
        from dermpipe.model.evaluation.leaderboard import parse_sweep

        check_choice("cross_validate", "ensemble_weighting", self.ensemble_weighting, WEIGHTINGS)
        configurations = len(parse_sweep(self.sweep)) or 1
        if not 1 <= self.ensemble_top <= configurations:
            raise ValueError(f"cross_validate parameter ensemble_top={self.ensemble_top}: expected 1..{configurations} "
                             "(the number of sweep configurations)")
