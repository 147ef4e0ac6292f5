"""The performance stage: measure each served version on the fed-back labels of the log window, judge it against its
test figures, write the report, results and metrics; returns whether performance dropped.

Light to import (pandas, scikit-learn and Evidently are imported when the stage runs): `dermpipe monitor`'s options
are generated from PerformanceParams when the CLI starts. The performance component and the monitoring DAG take the
same parameters flat (tests/architecture/test_settings_agreement.py checks them against PerformanceParams).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dermpipe.componentkit import param


@dataclass(frozen=True)
class PerformanceParams:
    """The performance stage's settings (`dermpipe monitor` options and monitoring DAG parameters)."""

    min_labels: int = param(30, "fewer labelled predictions of a version: its BMA and melanoma specificity are "
                                "reported, not judged (insufficient data)")
    min_melanomas: int = param(10, "fewer labelled melanomas of a version: its melanoma sensitivity is reported, not "
                                   "judged (insufficient data)")
    n_bootstrap: int = param(1000, "bootstrap resamples per interval")
    period: str = param("", "also report each period of the window: D (day), W (week), M (month); '' for the "
                            "whole window only")
    confidence: float = 0.95
    seed: int = 0


def run(current: str, registry_root: str, model_name: str, report, metrics, results,
        params: PerformanceParams, *, since: str = "", until: str = "", reference: str = "") -> bool:
    """The KFP stage: analyse, write report (HTML), results (JSON) and metrics; returns whether performance dropped.
    Without a registry_root, the registry the drift reference lies in (a registry model or version folder) is used."""
    from dermpipe.lineage.artifacts import annotate, log_metrics
    from dermpipe.monitoring.performance.analysis import analyse, metric_values, render_html
    from dermpipe.monitoring.profile_reader import registry_root_of

    registry_root = registry_root or registry_root_of(reference, model_name)
    result = analyse(current, model_name, registry_root, params, since=since, until=until, evidently=True)
    for path, text in ((report.path, render_html(result)),
                       (results.path, json.dumps(result.summary(), indent=1, default=str))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    annotate(results, {"message": result.message, "performance_dropped": result.dropped,
                       "verdicts": {str(v.version): v.verdict for v in result.versions}})
    log_metrics(metrics, metric_values(result))
    print(result.message)
    return result.dropped
