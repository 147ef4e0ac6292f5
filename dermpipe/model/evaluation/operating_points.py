"""Operating points: a melanoma threshold chosen for a target sensitivity, on validation predictions only.

A clinic acts on "refer for biopsy when the melanoma probability passes t", with t chosen so that a stated share of
melanomas (the target sensitivity) is referred. t is picked on the validation split (or out-of-fold predictions),
never on test, on calibrated probabilities (dermpipe.model.evaluation.calibration), as the bootstrap median of the
threshold that meets the target with each threshold in the middle of the gap below its lowest referred score (and
never above the one that meets it on the whole set): the edge of a perfectly separated validation set does not
transfer. A point is valid only if it keeps a floor of
specificity there and its net benefit (dermpipe.model.evaluation.decision_curve) beats referring all and referring
none; otherwise it is stored as not achievable by this model, with the reason, and never decides. Test then says
honestly what the threshold does on images it was not tuned on (sensitivity and specificity with bootstrap
intervals); the gate checks the default point is valid, keeps the floor on test and does not fall short of its
target by more than its interval.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from dermpipe import config
from dermpipe.model.evaluation.decision_curve import net_benefit, refer_all

POSITIVE_CLASS = "MEL"
EXTRA_TARGETS = (0.90, 0.99)  # also stored, so that a request can ask for a more or less cautious point by name
N_BOOTSTRAP = 1000
N_THRESHOLD_BOOTSTRAP = 500  # resamples of the chosen-on set whose median threshold is used
MIN_SPECIFICITY = 0.2  # ProfileParams.melanoma_min_specificity's default (a point below it is "refer all")
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


def gap_threshold(positive: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The threshold in the middle of the gap below the lowest score that must be referred to reach `target`.

    It refers the same images here as the highest threshold that reaches the target (threshold_for_sensitivity),
    but a new melanoma scoring a little under the lowest validation one is still referred.
    """
    positive, scores = _checked(positive, scores)
    check_target(target)
    ranked = np.sort(scores[positive])[::-1]
    if not len(ranked):
        raise ValueError("gap_threshold: no positive (melanoma) example; a sensitivity cannot be targeted without one")
    edge = ranked[int(np.ceil(target * len(ranked) - 1e-9)) - 1]
    below = scores[scores < edge]
    return float((edge + below.max()) / 2.0) if len(below) else float(edge)


def bootstrap_threshold(positive: np.ndarray, scores: np.ndarray, target: float,
                        n_bootstrap: int = N_THRESHOLD_BOOTSTRAP, seed: int = 0) -> float:
    """The median over resamples (with replacement) of the gap threshold that meets `target`: a threshold that does
    not hang on the one or two lowest-scoring melanomas of a small validation set. Resamples without a melanoma
    are skipped."""
    positive, scores = _checked(positive, scores)
    index = np.random.default_rng(seed).integers(0, len(scores), size=(n_bootstrap, len(scores)))
    found = [gap_threshold(positive[i], scores[i], target) for i in index if positive[i].any()]
    if not found:
        raise ValueError("bootstrap_threshold: no positive (melanoma) example; a sensitivity cannot be targeted")
    return float(np.median(found))


def validity(positive: np.ndarray, scores: np.ndarray, threshold: float,
             min_specificity: float = MIN_SPECIFICITY) -> tuple[str, dict[str, float]]:
    """('' when valid, else why not, figures): the point must keep specificity >= min_specificity on these data
    and its net benefit at the threshold probability it implies (the calibrated threshold) must beat both referring
    all and referring none."""
    positive, scores = _checked(positive, scores)
    p_t = float(np.clip(threshold, 0.0, 1.0))
    _, specificity = rates(positive, scores, threshold)
    figures = {"threshold_probability": p_t, "net_benefit": net_benefit(positive, scores >= threshold, p_t),
               "net_benefit_refer_all": refer_all(positive, p_t)}
    reasons = []
    if not specificity >= min_specificity:
        reasons.append(f"specificity {specificity:.3f} is under the floor {min_specificity:.2f}: it refers nearly "
                       "every patient")
    best_default = max(figures["net_benefit_refer_all"], 0.0)
    if not figures["net_benefit"] > best_default + 1e-12:
        beaten = "refer all" if figures["net_benefit_refer_all"] >= 0.0 else "refer none"
        reasons.append(f"net benefit {figures['net_benefit']:.4f} at threshold probability {p_t:.3f} does not beat "
                       f"{beaten} ({best_default:.4f})")
    return "; ".join(reasons), figures


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
    """One stored threshold: what it was chosen for, on which data, whether it is valid, and how it did there and on
    test. `invalid` says why the point is not achievable by this model ('' when it is valid); `note` says when it
    cannot be told apart from another target."""

    name: str
    threshold: float
    target_sensitivity: float
    positive_class: str = POSITIVE_CLASS
    chosen_on: str = "val"
    chosen: dict[str, float] = field(default_factory=dict)  # sensitivity, specificity, n, net benefit where chosen
    test: dict[str, float] = field(default_factory=dict)  # the same on test, with bootstrap intervals
    min_specificity: float = 0.0  # 0: a clinical.json written before the floor existed
    invalid: str = ""
    note: str = ""

    @property
    def valid(self) -> bool:
        return not self.invalid

    def as_dict(self) -> dict:
        return {**asdict(self), "valid": self.valid}

    @classmethod
    def from_dict(cls, data: dict) -> OperatingPoint:
        optional = ("positive_class", "chosen_on", "chosen", "test", "min_specificity", "invalid", "note")
        try:
            return cls(**{k: data[k] for k in ("name", "threshold", "target_sensitivity")},
                       **{k: data[k] for k in optional if k in data})
        except KeyError as err:
            raise ValueError(f"operating point {data!r}: missing {err}; expected name, threshold and "
                             "target_sensitivity (clinical.json as written by the profile stage)") from None


def targets_for(default_target: float) -> list[float]:
    """The default target first, then the extra ones that differ from it."""
    check_target(default_target)
    return [default_target, *(t for t in EXTRA_TARGETS if round(t * 100) != round(default_target * 100))]


def choose_operating_points(y_val: np.ndarray, p_val: np.ndarray, targets: Iterable[float],
                            y_test: np.ndarray | None = None, p_test: np.ndarray | None = None,
                            seed: int = 0, chosen_on: str = "val",
                            min_specificity: float = MIN_SPECIFICITY) -> list[OperatingPoint]:
    """One melanoma operating point per target, chosen on held-out labels and (calibrated) probabilities (the
    validation split, or `chosen_on="out-of-fold"` predictions), judged valid or not there, and, when test ones are
    given, reported on test with bootstrap intervals."""
    column = config.CLASSES.index(POSITIVE_CLASS)
    positive, scores = np.asarray(y_val) == column, np.asarray(p_val)[:, column]
    points: list[OperatingPoint] = []
    for target in targets:
        # never above the threshold that reaches the target here: the median may sit a little above it
        threshold = min(bootstrap_threshold(positive, scores, check_target(target), seed=seed),
                        gap_threshold(positive, scores, target))
        sens, spec = rates(positive, scores, threshold)
        invalid, figures = validity(positive, scores, threshold, min_specificity)
        chosen = {"sensitivity": sens, "specificity": spec, "n": int(len(positive)), "positives": int(positive.sum()),
                  **figures}
        test = {} if y_test is None or p_test is None else measure_on_test(np.asarray(y_test) == column,
                                                                        np.asarray(p_test)[:, column], threshold, seed)
        point = OperatingPoint(point_name(target), threshold, float(target), chosen_on=chosen_on, chosen=chosen,
                               test=test, min_specificity=float(min_specificity), invalid=invalid)
        points.append(replace(point, note=_same_as(point, points, positive, scores)))
    return points


def measure_on_test(positive: np.ndarray, scores: np.ndarray, threshold: float, seed: int = 0) -> dict[str, float]:
    """Sensitivity and specificity of `scores >= threshold` on test, with bootstrap intervals and the counts."""
    sens, spec = rates(positive, scores, threshold)
    return {"sensitivity": sens, "specificity": spec, "n": int(len(positive)), "positives": int(positive.sum()),
            **bootstrap_rates(positive, scores, threshold, seed=seed)}


def _same_as(point: OperatingPoint, earlier: list[OperatingPoint], positive: np.ndarray, scores: np.ndarray) -> str:
    """Say so when an earlier point refers exactly the same chosen-on images: the targets cannot be told apart."""
    referred = scores >= point.threshold
    for other in earlier:
        if np.array_equal(referred, scores >= other.threshold):
            return (f"same referrals as {other.name} (threshold {other.threshold:.4f}): this model cannot tell these "
                    f"targets apart on {int(positive.sum())} {point.chosen_on} melanomas")
    return ""


def falls_short(point: OperatingPoint) -> bool | None:
    """True when the test sensitivity's whole interval lies below the target (it fell short by more than its
    interval); None when the point has no test figures to judge by."""
    upper = point.test.get("sensitivity_upper")
    if upper is None or not np.isfinite(upper):
        return None
    return bool(upper < point.target_sensitivity)


def below_floor(point: OperatingPoint) -> bool | None:
    """True when the test specificity is under the point's floor (it refers nearly everyone there: never a pass);
    None without test figures or without a floor."""
    specificity = point.test.get("specificity")
    if specificity is None or not np.isfinite(specificity) or point.min_specificity <= 0:
        return None
    return bool(specificity < point.min_specificity)


def _checked(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positive, scores = np.asarray(positive, bool).ravel(), np.asarray(scores, np.float64).ravel()
    if positive.shape != scores.shape or not len(scores):
        raise ValueError(f"labels ({positive.shape}) and scores ({scores.shape}) must be non-empty and of one length")
    return positive, scores
