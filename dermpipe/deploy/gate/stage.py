"""The gate stage: bless the challenger for deployment, or not, against chance, the resolved champion, its frozen
benchmark set and a baseline. `run` is what components/gate.py calls; GateParams is its one parameter set.

Light to import (numpy, pandas and kfp are imported when the stage runs): `dermpipe run`'s options and pre-flight
are built from GateParams. The rules are in decision.py, the predictions and rows they compare in challenge.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dermpipe.componentkit import param
from dermpipe.deploy.registry import model_name_field, registry_root_field
from dermpipe.model.evaluation.bootstrap import CONFIDENCE, N_BOOTSTRAP

if TYPE_CHECKING:
    from kfp.dsl import Dataset, Markdown, Metrics, Model


@dataclass(frozen=True)
class GateParams:
    """The gate's statistics settings and the champion it compares with (the resolver's outputs, as values)."""

    min_balanced_accuracy: float = param(0.5, "deploy only if the test BMA point estimate reaches this (the "
                                              "bootstrap lower bound must also beat chance)")
    max_bma_drop: float = param(0.02, "deploy only if a paired bootstrap shows test BMA no worse than the deployed "
                                      "model's by more than this")
    require_beat_baseline: bool = param(False, "also require beating the image-statistics baseline (paired "
                                               "bootstrap)")
    registry_root: str = registry_root_field()
    model_name: str = model_name_field()
    champion_version: int = param(0, "the current champion's version (resolve-champion's output; 0: none)")
    champion_digest: str = param("", "the current champion's model digest (resolve-champion's output)")
    benchmark: str = param("", "the frozen benchmark set (name@vN) to compare on (resolve-champion's output; "
                               "empty: the whole test split)")
    confidence: float = CONFIDENCE
    n_bootstrap: int = N_BOOTSTRAP
    seed: int = 0
    # Fewer test melanomas than this: the operating point's test sensitivity is reported, not a condition (one
    # melanoma moves it by over 10 points, and a bootstrap interval collapses to a point at 0/n and n/n).
    min_melanomas: int = 10


def run(raw: Dataset, model: Model, test: Dataset, train: Dataset, predictions: Dataset, profile_dir: Path | None,
        decision_md: Markdown, gate_metrics: Metrics, params: GateParams) -> bool:
    """Decide on the challenger, write the decision page and the gate's metrics; returns whether it is blessed."""
    import pandas as pd

    from dermpipe.deploy.gate.challenge import (
        baseline_predictions,
        champion_benchmark_note,
        champion_predictions,
        champion_set,
        default_operating_point,
    )
    from dermpipe.deploy.gate.decision import decide
    from dermpipe.lineage.artifacts import annotate, log_metrics

    test_table = pd.read_parquet(test.path)
    predicted = pd.read_parquet(predictions.path)
    if list(predicted["image"]) != list(test_table["image"]):
        raise ValueError(f"gate: {predictions.uri} does not list the test split's images in order "
                         f"({len(predicted)} predictions, {len(test_table)} test rows); re-run evaluate")
    train_table = pd.read_parquet(train.path)
    found, benchmark_notes = champion_set(test_table, train_table, params)
    y_true = test_table["label_index"].to_numpy()
    challenger_pred = predicted["predicted_index"].to_numpy()
    champion_pred = champion_predictions(Path(model.path), Path(raw.path), test_table, challenger_pred, params)
    baseline_pred, baseline_note = baseline_predictions(profile_dir, train_table, test_table)
    decision = decide(y_true, challenger_pred, params, champion_pred=champion_pred,
                      champion_version=str(params.champion_version), baseline_pred=baseline_pred,
                      operating_point=default_operating_point(profile_dir), champion_set=found)
    mismatch = champion_benchmark_note(params)
    decision.reasons[:0] = [*benchmark_notes, *([mismatch] if mismatch else []), baseline_note]
    Path(decision_md.path).write_text(decision.markdown())
    annotate(decision_md, {**decision.metadata(), "reasons": decision.reasons, "conditions": decision.conditions,
                           "champion_version": params.champion_version, "benchmark": params.benchmark})
    rows = 0 if found is None else int(found.mask.sum())
    log_metrics(gate_metrics, {**decision.metadata(), "blessed": int(decision.blessed),
                               "champion_version": params.champion_version, "benchmark_rows": rows,
                               "benchmark_version": _version_of(params.benchmark)})
    print(f"gate: {'blessed' if decision.blessed else 'NOT blessed'}; " + "; ".join(decision.reasons), flush=True)
    return decision.blessed


def _version_of(ref: str) -> int:
    """N of name@vN (0: no benchmark set), a number for the gate's Metrics."""
    return int(ref.rsplit("@v", 1)[1]) if "@v" in ref else 0
