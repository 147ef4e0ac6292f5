"""The cross-validate stage's parameters (CrossValParams), without TensorFlow or kfp, so pre-flight checks them fast.

A sweep is a list of configurations, each a mapping of train parameters to override (backbone, image_size,
learning_rate, loss, class_balance, metadata_fusion, or any other TrainParams field) with an optional `name`. Every
configuration is checked with TrainParams.check() before anything trains (parse_sweep); the leaderboard ranks them
(dermpipe.model.evaluation.leaderboard).
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dermpipe.componentkit import param
from dermpipe.data.params import check_choice
from dermpipe.model.evaluation.params import WEIGHTINGS
from dermpipe.model.training.params import TrainParams


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
        check_choice("cross_validate", "ensemble_weighting", self.ensemble_weighting, WEIGHTINGS)
        configurations = len(parse_sweep(self.sweep)) or 1
        if not 1 <= self.ensemble_top <= configurations:
            raise ValueError(f"cross_validate parameter ensemble_top={self.ensemble_top}: expected 1..{configurations} "
                             "(the number of sweep configurations)")


def parse_sweep(text: str) -> list[dict[str, Any]]:
    """A JSON or YAML list of configurations -> [{"name": ..., **overrides}], each checked as TrainParams."""
    import yaml

    configs = yaml.safe_load(text) if text.strip() else []
    if not isinstance(configs, list) or not all(isinstance(c, Mapping) for c in configs):
        raise ValueError(f"sweep: expected a list of mappings (train parameter -> value), got {text[:80]!r}")
    fields = {f.name for f in dataclasses.fields(TrainParams)}
    parsed, names = [], set()
    for index, config in enumerate(configs):
        overrides = {k: v for k, v in config.items() if k != "name"}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"sweep configuration {index}: unknown train parameter(s) {unknown}; expected fields of "
                             "TrainParams such as backbone, image_size, learning_rate, loss, class_balance, "
                             "metadata_fusion")
        TrainParams(**overrides).check()
        name = str(config.get("name") or config_name(overrides))
        if name in names:
            raise ValueError(f"sweep configuration {index}: name {name!r} is used twice; expected unique names")
        names.add(name)
        parsed.append({"name": name, **overrides})
    return parsed


def config_name(overrides: Mapping[str, Any]) -> str:
    """A readable name from the overrides, e.g. 'backbone=simple_cnn,image_size=64' ('defaults' when empty)."""
    return ",".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "defaults"
