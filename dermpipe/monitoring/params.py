"""The monitoring stages' parameter dataclasses, in a module of their own because `dermpipe monitor`'s options are
generated from them when the CLI starts: importing the stages (pandas, scikit-learn, Evidently) would cost every
`dermpipe` command a second or more. The drift component, the performance component and the monitoring DAG take
the same parameters flat (tests/architecture/test_settings_agreement.py checks them against these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dermpipe.componentkit import param

if TYPE_CHECKING:
    from dermpipe.monitoring.drift import DriftConfig


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
        from dermpipe.monitoring.drift import config_from_params

        return config_from_params(self.min_samples, self.drift_share, self.num_method, self.num_threshold,
                                  self.cat_method, self.cat_threshold)


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
