"""Operating points: a melanoma threshold chosen for a target sensitivity, on validation predictions only.

A clinic acts on "refer for biopsy when the melanoma score passes t", with t chosen so that a stated share of
melanomas (the target sensitivity) is referred. t is picked on the validation split, never on test: test then says
honestly what that threshold does on images it was not tuned on (sensitivity and specificity with bootstrap
intervals). The gate checks that the test sensitivity does not fall below the target by more than its interval.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from dermpipe import config

POSITIVE_CLASS = "MEL"
EXTRA_TARGETS = (0.90, 0.99)  # also stored, so that a request can ask for a more or less cautious point by name
N_BOOTSTRAP = 1000
CONFIDENCE = 0.95


def point_name(target: float) -> str:
    """'melanoma_sens95' for 0.95: the name a request uses to ask for this operating point."""
    return f"melanoma_sens{round(target * 100):g}"


def check_target(target: float, what: str = "melanoma_target_sensitivity") -> float:
    if not 0.0 < target < 1.0:
        raise ValueError(f"{what} = {target}: expected a sensitivity strictly between 0 and 1 (e.g. 0.95)")
    return float(target)


def threshold_for_sensitivity(positive: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold t at which `scores >= t` finds at least `target` of the positives.

    The highest such t keeps specificity as high as the target allows. roc_curve's thresholds are the distinct
    scores, and its tpr counts `score >= threshold`, so the chosen t reaches the target on these very data.
    """
    from sklearn.metrics import roc_curve

    positive, scores = _checked(positive, scores)
    check_target(target)
    if not positive.any():
        raise ValueError("threshold_for_sensitivity: no positive (melanoma) example; a sensitivity cannot be "
                         "targeted without one (is MEL absent from the validation split?)")
    if positive.all():
        return float(scores.min())
    _, tpr, thresholds = roc_curve(positive, scores, drop_intermediate=False)
    reached = np.flatnonzero(tpr >= target - 1e-12)
    return float(min(thresholds[reached[0]], 1.0))


def rates(positive: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) of `scores >= threshold`; nan where a side has no example."""
    positive, scores = _checked(positive, scores)
    flagged = scores >= threshold
    sensitivity = float(flagged[positive].mean()) if positive.any() else float("nan")
    specificity = float((~flagged[~positive]).mean()) if (~positive).any() else float("nan")
    return sensitivity, specificity


def bootstrap_rates(positive: np.ndarray, scores: np.ndarray, threshold: float, n_bootstrap: int = N_BOOTSTRAP,
                    seed: int = 0, confidence: float = CONFIDENCE) -> dict[str, float]:
    """Two-sided percentile intervals of sensitivity and specificity, resampling the images with replacement."""
    positive, scores = _checked(positive, scores)
    flagged = scores >= threshold
    index = np.random.default_rng(seed).integers(0, len(scores), size=(n_bootstrap, len(scores)))
    pos, hit = positive[index], flagged[index]
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = (hit & pos).sum(axis=1) / pos.sum(axis=1)
        spec = (~hit & ~pos).sum(axis=1) / (~pos).sum(axis=1)
    alpha = (1.0 - confidence) / 2
    out = {}
    for name, samples in (("sensitivity", sens), ("specificity", spec)):
        samples = samples[np.isfinite(samples)]
        low, high = np.quantile(samples, [alpha, 1 - alpha]) if len(samples) else (np.nan, np.nan)
        out[f"{name}_lower"], out[f"{name}_upper"] = float(low), float(high)
    return out


@dataclass(frozen=True)
class OperatingPoint:
    """One stored threshold: what it was chosen for, on which data, and how it did there and on test."""

    name: str
    threshold: float
    target_sensitivity: float
    positive_class: str = POSITIVE_CLASS
    chosen_on: str = "val"
    chosen: dict[str, float] = field(default_factory=dict)  # sensitivity, specificity, n where it was chosen
    test: dict[str, float] = field(default_factory=dict)  # the same on test, with bootstrap intervals

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> OperatingPoint:
        try:
            return cls(**{k: data[k] for k in ("name", "threshold", "target_sensitivity")},
                       **{k: data[k] for k in ("positive_class", "chosen_on", "chosen", "test") if k in data})
        except KeyError as err:
            raise ValueError(f"operating point {data!r}: missing {err}; expected name, threshold and "
                             "target_sensitivity (clinical.json as written by the profile stage)") from None


def targets_for(default_target: float) -> list[float]:
    """The default target first, then the extra ones that differ from it."""
    check_target(default_target)
    return [default_target, *(t for t in EXTRA_TARGETS if round(t * 100) != round(default_target * 100))]


def choose_operating_points(y_val: np.ndarray, p_val: np.ndarray, targets: Iterable[float],
                            y_test: np.ndarray | None = None, p_test: np.ndarray | None = None,
                            seed: int = 0, chosen_on: str = "val") -> list[OperatingPoint]:
    """One melanoma operating point per target, chosen on held-out labels/probabilities (the validation split, or
    `chosen_on="out-of-fold"` predictions) and, when test ones are given, reported on test with bootstrap intervals."""
    column = config.CLASSES.index(POSITIVE_CLASS)
    positive = np.asarray(y_val) == column
    points = []
    for target in targets:
        threshold = threshold_for_sensitivity(positive, np.asarray(p_val)[:, column], target)
        sens, spec = rates(positive, np.asarray(p_val)[:, column], threshold)
        chosen = {"sensitivity": sens, "specificity": spec, "n": int(len(positive)), "positives": int(positive.sum())}
        test: dict[str, float] = {}
        if y_test is not None and p_test is not None:
            test_pos, test_scores = np.asarray(y_test) == column, np.asarray(p_test)[:, column]
            t_sens, t_spec = rates(test_pos, test_scores, threshold)
            test = {"sensitivity": t_sens, "specificity": t_spec, "n": int(len(test_pos)),
                    "positives": int(test_pos.sum()), **bootstrap_rates(test_pos, test_scores, threshold, seed=seed)}
        points.append(OperatingPoint(point_name(target), threshold, float(target), chosen_on=chosen_on,
                                     chosen=chosen, test=test))
    return points


def falls_short(point: OperatingPoint) -> bool | None:
    """True when the test sensitivity's whole interval lies below the target (it fell short by more than its
    interval); None when the point has no test figures to judge by."""
    upper = point.test.get("sensitivity_upper")
    if upper is None or not np.isfinite(upper):
        return None
    return bool(upper < point.target_sensitivity)


def _checked(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positive, scores = np.asarray(positive, bool).ravel(), np.asarray(scores, np.float64).ravel()
    if positive.shape != scores.shape or not len(scores):
        raise ValueError(f"labels ({positive.shape}) and scores ({scores.shape}) must be non-empty and of one length")
    return positive, scores
