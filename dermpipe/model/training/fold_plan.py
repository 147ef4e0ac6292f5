"""The fold-plan stage: the cross-validation ParallelFor's iterations, one per (sweep configuration, fold).

A sweep is a list of configurations, each a mapping of train parameters to override (backbone, image_size,
learning_rate, loss, class_balance, metadata_fusion, or any other TrainParams field) with an optional `name`. Every
configuration is checked with TrainParams.check() before anything trains (parse_sweep); the leaderboard ranks them
(dermpipe.model.evaluation.leaderboard). run() numbers the iterations, configurations outer and folds inner, and
iteration_task() is its inverse, what each train-fold task reads. No parameter set of its own: the split's `folds`
and cross-validate's `sweep`. Pre-flight checks the sweep through CrossValParams, so nothing heavy is imported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from dermpipe.model.training.train import TrainParams

DEFAULT_CONFIG = "defaults"


def run(folds: int, sweep: str = "") -> list[int]:
    """The ParallelFor's items: one iteration per (configuration, fold), 0..configurations*folds-1; folds=0 with a
    sweep: one iteration per configuration, trained on train and scored on val (no sweep is one configuration,
    train's parameters)."""
    if folds == 0 and sweep.strip():
        return list(range(len(sweep_configs(sweep))))
    if folds < 2:
        raise ValueError(f"cross-validation: folds={folds}; expected at least 2 (the split assigns the folds), or "
                         "folds=0 with a sweep (ranked by validation BMA)")
    return list(range(len(sweep_configs(sweep)) * folds))


def sweep_configs(sweep: str) -> list[dict]:
    """The sweep's configurations (parse_sweep), or the single configuration "defaults" (no overrides) without a
    sweep."""
    return parse_sweep(sweep) or [{"name": DEFAULT_CONFIG}]


def iteration_task(sweep: str, iteration: int, folds: int) -> tuple[dict, int]:
    """(configuration, fold) of ParallelFor iteration `iteration`: configurations outer, folds inner; without folds
    (folds=0) the fold is VALIDATION_FOLD."""
    from dermpipe.model.evaluation.oof import VALIDATION_FOLD

    configs = sweep_configs(sweep)
    per_config = max(folds, 1)
    if not 0 <= iteration < len(configs) * per_config:
        raise ValueError(f"cross-validation: iteration={iteration}, expected 0..{len(configs) * per_config - 1} "
                         f"({len(configs)} configuration(s) x {folds} folds)")
    index, fold = divmod(iteration, per_config)
    return configs[index], fold if folds else VALIDATION_FOLD


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
