"""Bootstrap intervals of balanced multiclass accuracy (BMA) on a set of images: the statistics the deploy gate,
the evaluate report and live-performance monitoring share.

Resampling with replacement from one seeded index matrix, vectorised with numpy; `lower` is the (1 - confidence)
quantile of the resampled statistic, `upper` the confidence quantile (one-sided bounds). BMA is the mean recall over
the classes present in y_true (scikit-learn's balanced_accuracy_score semantics); in a resample, over the classes
present in that resample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

CONFIDENCE = 0.95
N_BOOTSTRAP = 2000


class Resampling(Protocol):
    """What a bootstrap needs: the interval level, the number of resamples and the seed (the gate's parameters and
    the performance stage's have these fields)."""

    @property
    def confidence(self) -> float: ...

    @property
    def n_bootstrap(self) -> int: ...

    @property
    def seed(self) -> int: ...


@dataclass(frozen=True)
class Bootstrap:
    """The default resampling: 95 % one-sided bounds from 2,000 resamples, seed 0."""

    confidence: float = CONFIDENCE
    n_bootstrap: int = N_BOOTSTRAP
    seed: int = 0


@dataclass(frozen=True)
class Interval:
    """A bootstrap estimate: the point value and one-sided (1 - confidence) / confidence quantile bounds."""

    point: float
    lower: float
    upper: float
    n: int
    n_bootstrap: int

    @property
    def width(self) -> float:
        """Distance between the upper and lower bound."""
        return self.upper - self.lower

    def as_dict(self) -> dict[str, float]:
        """Plain dict of the estimate (n and n_bootstrap as ints)."""
        return {"point": self.point, "lower": self.lower, "upper": self.upper, "n": self.n,
                "n_bootstrap": self.n_bootstrap}


def bootstrap_indices(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """[n_bootstrap, n] resample indices drawn with replacement from one seeded generator."""
    if n <= 0 or n_bootstrap <= 0:
        raise ValueError(f"need n > 0 and n_bootstrap > 0, got n={n}, n_bootstrap={n_bootstrap}")
    return np.random.default_rng(seed).integers(0, n, size=(n_bootstrap, n))


def balanced_accuracy_resampled(y_true: np.ndarray, y_pred: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """[B] BMA of each resample (row of indices), averaging recall over the classes present in that resample."""
    y_true, y_pred = check_pair(y_true, y_pred)
    indices = np.atleast_2d(np.asarray(indices))
    classes, codes = np.unique(y_true, return_inverse=True)
    k, b = len(classes), indices.shape[0]
    keys = (np.arange(b)[:, None] * k + codes[indices]).ravel()
    hits = (y_pred == y_true)[indices].ravel()
    support = np.bincount(keys, minlength=b * k).reshape(b, k)
    correct = np.bincount(keys[hits], minlength=b * k).reshape(b, k)
    present = support > 0
    recall = np.where(present, correct / np.maximum(support, 1), 0.0)
    return recall.sum(axis=1) / present.sum(axis=1)


def bootstrap_bma(y_true: np.ndarray, y_pred: np.ndarray, params: Resampling) -> Interval:
    """Point BMA and its one-sided bootstrap bounds."""
    y_true, y_pred = check_pair(y_true, y_pred)
    indices = bootstrap_indices(len(y_true), params.n_bootstrap, params.seed)
    point = balanced_accuracy_resampled(y_true, y_pred, np.arange(len(y_true))[None, :])[0]
    return interval(point, balanced_accuracy_resampled(y_true, y_pred, indices), len(y_true), params)


def paired_difference(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, params: Resampling) -> Interval:
    """BMA(a) - BMA(b), bootstrapped on the same resampled images (one index matrix)."""
    y_true, pred_a = check_pair(y_true, pred_a)
    _, pred_b = check_pair(y_true, pred_b)
    n = len(y_true)
    indices = bootstrap_indices(n, params.n_bootstrap, params.seed)
    full = np.arange(n)[None, :]
    point = (balanced_accuracy_resampled(y_true, pred_a, full) - balanced_accuracy_resampled(y_true, pred_b, full))[0]
    diffs = balanced_accuracy_resampled(y_true, pred_a, indices) - balanced_accuracy_resampled(y_true, pred_b, indices)
    return interval(point, diffs, n, params)


def interval(point: float, samples: np.ndarray, n: int, params: Resampling) -> Interval:
    """One-sided quantile bounds of bootstrap samples around a point estimate."""
    lower, upper = np.quantile(samples, [1.0 - params.confidence, params.confidence])
    return Interval(point=float(point), lower=float(lower), upper=float(upper), n=int(n),
                    n_bootstrap=int(len(samples)))


def check_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten labels and predictions and check they are non-empty and of equal length."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.size == 0:
        raise ValueError("cannot gate on an empty test split")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_pred)} predictions for {len(y_true)} test images")
    return y_true, y_pred
