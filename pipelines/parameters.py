"""The training pipeline's parameters, one table: pipeline parameter -> the stage fields it feeds.

Each stage's parameter set is a frozen dataclass beside its run() in the stage's module (names, types, defaults,
help): IngestParams, MergeParams, SplitParams, PrepareParams (dermpipe.data.<stage>), TrainParams and CrossValParams
(dermpipe.model.training.train, .cross_validate), EvaluateParams, ExplainParams (dermpipe.model.evaluation.evaluate,
.explain), ProfileParams (dermpipe.model.profile.stage), ChampionParams (dermpipe.deploy.resolve_champion), GateParams
(dermpipe.deploy.gate.stage), DeployParams (dermpipe.deploy.deploy). The component and pipeline signatures stay
literal, because KFP ships a component's source and a generated signature would compile and then fail at run time;
the parameter agreement test checks that name, type and default agree on all four surfaces (dataclass, component,
pipeline, `dermpipe run`).
`dermpipe run`'s options are derived from this table.

Naming rule: a pipeline parameter is named after its stage field. Where two stages have a field of the same name
that takes *different* values, each gets its stage as a prefix: `split_seed` (split, and prepare, which shuffles its
shards with the split's seed) and `train_seed`. A field whose bare name would be ambiguous among the pipeline's
parameters is prefixed too: `train_cache` (the input cache, not the runner's task cache `--cache`), `train_quiet`,
`explain_per_class`, `split_method`, `split_file` and `split_file_sha256`. Fields that carry *one* value to several
stages keep one unprefixed name: `image_size` (prepare and train), `registry_root` and `model_name`
(resolve-champion, gate and deploy).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from dermpipe.data.ingest import IngestParams
from dermpipe.data.merge import MergeParams
from dermpipe.data.prepare import PrepareParams
from dermpipe.data.split import SplitParams
from dermpipe.deploy.deploy import DeployParams
from dermpipe.deploy.gate.stage import GateParams
from dermpipe.deploy.resolve_champion import ChampionParams
from dermpipe.model.evaluation.evaluate import EvaluateParams
from dermpipe.model.evaluation.explain import ExplainParams
from dermpipe.model.profile.stage import ProfileParams
from dermpipe.model.training.cross_validate import CrossValParams
from dermpipe.model.training.train import TrainParams


@dataclass(frozen=True)
class Target:
    """One stage field a pipeline parameter feeds: the task (component) name, its dataclass and the field."""

    stage: str
    params: type
    field: str


@dataclass(frozen=True)
class ParamSpec:
    """A pipeline parameter as its first target's dataclass field declares it."""

    name: str
    type: type
    default: Any
    help: str


def _train(*fields: str) -> dict[str, tuple[Target, ...]]:
    return {name: (Target("train", TrainParams, name),) for name in fields}


_REGISTRY = ("resolve_champion", ChampionParams), ("gate", GateParams), ("deploy", DeployParams)

PIPELINE_PARAMETERS: dict[str, tuple[Target, ...]] = {
    "source": (Target("ingest", IngestParams, "source"),),
    "source_fingerprint": (Target("ingest", IngestParams, "source_fingerprint"),),
    "demo_images": (Target("ingest", IngestParams, "demo_images"),),
    "feedback_log_root": (Target("ingest", IngestParams, "feedback_log_root"),),
    "feedback_retention_days": (Target("ingest", IngestParams, "feedback_retention_days"),),
    "feedback_fingerprint": (Target("ingest", IngestParams, "feedback_fingerprint"),),
    "invalid_images": (Target("merge", MergeParams, "invalid_images"),),
    "test_size": (Target("split", SplitParams, "test_size"),),
    "val_size": (Target("split", SplitParams, "val_size"),),
    "split_seed": (Target("split", SplitParams, "seed"), Target("prepare", PrepareParams, "seed")),
    "folds": (Target("split", SplitParams, "folds"),),
    "split_method": (Target("split", SplitParams, "method"),),
    "split_file": (Target("split", SplitParams, "file"),),
    "split_file_sha256": (Target("split", SplitParams, "file_sha256"),),
    "shard_size_mb": (Target("prepare", PrepareParams, "shard_size_mb"),),
    "image_size": (Target("train", TrainParams, "image_size"), Target("prepare", PrepareParams, "image_size")),
    **_train("backbone", "weights", "batch_size", "epochs", "fine_tune_epochs", "fine_tune_layers", "learning_rate",
             "fine_tune_learning_rate", "patience", "class_balance", "loss", "focal_gamma", "monitor",
             "lr_schedule", "jit_compile", "mixed_precision"),
    "train_cache": (Target("train", TrainParams, "cache"),),
    **_train("deterministic"),
    "train_quiet": (Target("train", TrainParams, "quiet"),),
    "train_seed": (Target("train", TrainParams, "seed"),),
    **_train("metadata_fusion"),
    # cross-validation DAG only (CrossValParams, dermpipe.model.training.cross_validate); fold tasks take train's
    "ensemble_weighting": (Target("cross_validate", CrossValParams, "ensemble_weighting"),),
    "ensemble_temperature": (Target("cross_validate", CrossValParams, "ensemble_temperature"),),
    "sweep": (Target("cross_validate", CrossValParams, "sweep"),),
    "ensemble_top": (Target("cross_validate", CrossValParams, "ensemble_top"),),
    "min_balanced_accuracy": (Target("gate", GateParams, "min_balanced_accuracy"),),
    "max_bma_drop": (Target("gate", GateParams, "max_bma_drop"),),
    "require_beat_baseline": (Target("gate", GateParams, "require_beat_baseline"),),
    "tta": (Target("evaluate", EvaluateParams, "tta"),),
    "melanoma_target_sensitivity": (Target("profile", ProfileParams, "melanoma_target_sensitivity"),),
    "melanoma_min_specificity": (Target("profile", ProfileParams, "melanoma_min_specificity"),),
    "ood_pass_rate": (Target("profile", ProfileParams, "ood_pass_rate"),),
    "ood_near_folder": (Target("profile", ProfileParams, "ood_near_folder"),),
    "explain_per_class": (Target("explain", ExplainParams, "per_class"),),
    "registry_root": tuple(Target(stage, cls, "registry_root") for stage, cls in _REGISTRY),
    "model_name": tuple(Target(stage, cls, "model_name") for stage, cls in _REGISTRY),
    "benchmark_set": (Target("resolve_champion", ChampionParams, "benchmark_set"),),
    "deploy_target": (Target("deploy", DeployParams, "deploy_target"),),
    "gcp_project": (Target("deploy", DeployParams, "gcp_project"),),
    "gcp_region": (Target("deploy", DeployParams, "gcp_region"),),
    "traffic_percentage": (Target("deploy", DeployParams, "traffic_percentage"),),
    "kserve_namespace": (Target("deploy", DeployParams, "kserve_namespace"),),
}


def field_spec(target: Target, name: str | None = None) -> ParamSpec:
    """The dataclass field `target` names, as a ParamSpec called `name` (default: the field's own name)."""
    found = {f.name: f for f in dataclasses.fields(target.params)}
    if target.field not in found:
        raise KeyError(f"{target.params.__name__} has no field {target.field!r} (stage {target.stage})")
    spec = found[target.field]
    return ParamSpec(name or target.field, typing.get_type_hints(target.params)[target.field], spec.default,
                     spec.metadata.get("help", ""))


@cache
def specs() -> dict[str, ParamSpec]:
    """Every pipeline parameter's name, type, default and help (from its first target; the test checks the rest)."""
    return {name: field_spec(targets[0], name) for name, targets in PIPELINE_PARAMETERS.items()}


def defaults() -> dict[str, Any]:
    """The pipeline's own defaults (what a cluster run uses when a parameter is not given)."""
    return {name: spec.default for name, spec in specs().items()}
