"""The drift stage: read both sides, analyse them, write the report, results and metrics; returns drift_detected.

Light to import (pandas and Evidently are imported when the stage runs): `dermpipe monitor`'s options are generated
from DriftParams when the CLI starts. The drift component and the monitoring DAG take the same parameters flat
(tests/architecture/test_settings_agreement.py checks them against DriftParams).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dermpipe.componentkit import param

if TYPE_CHECKING:
    from dermpipe.monitoring.drift.analysis import DriftConfig


@dataclass(frozen=True)
class DriftParams:
    """The drift stage's parameters; a threshold <= 0 means the method's default (DriftConfig: None)."""

    min_samples: int = param(30, "fewer current rows: no decision (insufficient data)")
    drift_share: float = param(0.5, "drift when at least this share of the tested columns drifted")
    num_method: str = param("auto", "numeric columns: auto | ks | wasserstein | psi | ...")
    num_threshold: float = param(0.0, "numeric threshold (0: the method's default)")
    cat_method: str = param("auto", "categorical columns: auto | chisquare | jensenshannon | ...")
    cat_threshold: float = param(0.0, "categorical threshold (0: the method's default)")

    def config(self) -> DriftConfig:
        from dermpipe.monitoring.drift.analysis import config_from_params

        return config_from_params(self.min_samples, self.drift_share, self.num_method, self.num_threshold,
                                  self.cat_method, self.cat_threshold)


def run(reference: str, current: str, report, metrics, results, params: DriftParams, *, since: str = "",
        until: str = "", metadata_csv: str = "", model_file: str = "") -> bool:
    """The KFP stage: compare, write report (HTML), results (JSON) and metrics; returns whether drift was detected."""
    from dermpipe.lineage.artifacts import annotate, log_metrics
    from dermpipe.monitoring.drift.inputs import metric_values, read_inputs

    inputs = read_inputs(reference, current, since=since, until=until, metadata_csv=metadata_csv,
                         model_file=model_file)
    result = inputs.compare(params.config())
    _write_text(report.path, result.html)
    _write_text(results.path, json.dumps(inputs.summary(result), indent=1, default=str))
    annotate(report, {"decision": result.decision, "drifted_columns": result.drifted_columns})
    annotate(results, {"decision": result.decision, "message": result.message, "reference": inputs.reference.folder,
                       "current": current, "drifted_columns": result.drifted_columns})
    log_metrics(metrics, {**metric_values(result, inputs.counts),
                          **{k: v for k, v in inputs.rates.items() if k != "by_day"}})
    print(result.message)
    return result.drift_detected


def _write_text(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
