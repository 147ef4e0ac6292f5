"""Statistical deployment gate: bless a challenger only when the test split shows it is good, not just lucky.

Why: one balanced multiclass accuracy (BMA) number on a ~48-image test split has a standard error near 0.07, so a
fixed threshold on the point estimate decides nothing (a model trained on shuffled labels scored 0.528 on a 2-class
split and was blessed). The gate therefore bootstraps the test images (dermpipe.model.evaluation.bootstrap:
resampling with replacement, one seeded index matrix) and reasons on one-sided bounds: `lower` is the
(1 - confidence) quantile of the resampled statistic, `upper` the confidence quantile. BMA is the mean recall
over the classes present in y_true (scikit-learn's balanced_accuracy_score semantics); in a resample, over the
classes present in that resample.

Rules, all of which must hold to bless:
1. the point BMA is at least `min_balanced_accuracy` (the pipeline's absolute floor);
2. the lower bound of the challenger's BMA is above chance level, 1 / (number of classes present in y_true);
3. with a deployed champion: non-inferiority by a paired bootstrap on the same resampled images, the lower bound of
   BMA(challenger) - BMA(champion) is at least -max_bma_drop (identical predictions give exactly 0 and pass), on the
   whole test split and, with a frozen benchmark set (the champion's own evidence: `ChampionSet`), on its rows too;
   a challenger whose data shares no image or class with that set cannot be compared on it and is not blessed;
4. with `require_beat_baseline` and baseline predictions: the lower bound of BMA(challenger) - BMA(baseline) is above
   0 (otherwise the baseline comparison is reported only). The baseline is a logistic regression on image statistics.

The decision is flagged `too_small` when the challenger's interval is wider than 0.2, or when a rule cannot be decided
(the point estimate passes it but the lower bound does not); its reasons then estimate, from the width's 1/sqrt(n)
scaling, how many test images would narrow the interval to 0.1. With a single class present, chance is 1 and rule 2
cannot pass: such a split cannot show that a classifier discriminates anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from dermpipe.model.evaluation.bootstrap import (
    CONFIDENCE,
    Interval,
    Resampling,
    balanced_accuracy_resampled,
    bootstrap_bma,
    check_pair,
    paired_difference,
)
from dermpipe.model.evaluation.operating_points import OperatingPoint, below_floor, falls_short

TOO_WIDE = 0.2
TARGET_WIDTH = 0.1


class GateRules(Resampling, Protocol):
    """The settings the rules read (the gate stage's GateParams has them; this module does not import the stage)."""

    @property
    def min_balanced_accuracy(self) -> float: ...

    @property
    def max_bma_drop(self) -> float: ...

    @property
    def require_beat_baseline(self) -> bool: ...

    @property
    def min_melanomas(self) -> int: ...


@dataclass(frozen=True)
class ChampionSet:
    """The frozen benchmark set the champion is judged on, as this test split holds it: `mask` marks its rows;
    `refusal` says why the two models cannot be compared on it (no image or no class in common), '' when they can."""

    ref: str
    mask: np.ndarray
    refusal: str = ""


@dataclass
class Decision:
    """The gate's verdict with the reasons, intervals and per-rule outcomes behind it."""

    blessed: bool
    reasons: list[str] = field(default_factory=list)
    intervals: dict[str, Interval] = field(default_factory=dict)
    chance: float = 0.0
    n_test: int = 0
    too_small: bool = False
    conditions: dict[str, bool] = field(default_factory=dict)
    confidence: float = CONFIDENCE

    def markdown(self) -> str:
        """A "# Deployment gate" page: verdict, one bullet per reason, a table of every interval."""
        verdict = "**Blessed**: deploy runs." if self.blessed else "**Not blessed**: deploy is skipped."
        pct = f"{self.confidence * 100:g} %"
        lines = ["# Deployment gate", "", verdict, "", *(f"- {r}" for r in self.reasons), "",
                 f"| estimate | point | {pct} lower | {pct} upper | n |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {key} | {iv.point:.4f} | {iv.lower:.4f} | {iv.upper:.4f} | {iv.n} |"
                  for key, iv in self.intervals.items()]
        return "\n".join(lines) + "\n"

    def metadata(self) -> dict:
        """Flat, JSON-serialisable summary: verdict, chance level, sample size and each interval's bounds."""
        out: dict = {"blessed": bool(self.blessed), "chance_level": float(self.chance), "n_test": int(self.n_test),
                     "too_small": bool(self.too_small)}
        for key, iv in self.intervals.items():
            out.update({f"{key}_point": float(iv.point), f"{key}_lower": float(iv.lower),
                        f"{key}_upper": float(iv.upper)})
        return out


def chance_level(y_true: np.ndarray) -> float:
    """1 / number of distinct classes present in y_true."""
    y_true = np.asarray(y_true)
    if y_true.size == 0:
        raise ValueError("cannot compute chance level on an empty test split")
    return 1.0 / len(np.unique(y_true))


def fit_image_stats_baseline(train_features: np.ndarray, train_labels: np.ndarray,
                             test_features: np.ndarray) -> np.ndarray:
    """Test-set labels predicted by median imputation + StandardScaler + balanced LogisticRegression."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train = np.asarray(train_features, dtype=float).reshape(len(train_features), -1)
    x_test = np.asarray(test_features, dtype=float).reshape(len(test_features), -1)
    labels = np.asarray(train_labels)
    if len(labels) == 0 or len(labels) != len(x_train):
        raise ValueError(f"need one label per training row, got {len(labels)} labels for {len(x_train)} rows")
    classes = np.unique(labels)
    if len(classes) == 1:
        return np.full(len(x_test), classes[0], dtype=labels.dtype)
    model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                          LogisticRegression(class_weight="balanced", max_iter=1000))
    return model.fit(x_train, labels).predict(x_test)


def decide(y_true: np.ndarray, challenger_pred: np.ndarray, params: GateRules, *,
           champion_pred: np.ndarray | None = None, champion_version: str = "",
           baseline_pred: np.ndarray | None = None, operating_point: OperatingPoint | None = None,
           champion_set: ChampionSet | None = None) -> Decision:
    """Apply the rules (floor, above chance, non-inferior to the champion on the whole split and on its frozen set,
    beats the baseline, the melanoma operating point holds on test) and explain."""
    y_true, challenger_pred = check_pair(y_true, challenger_pred)
    d = Decision(blessed=False, chance=chance_level(y_true), n_test=len(y_true), confidence=params.confidence)
    undecided: list[str] = []
    _challenger_rules(d, y_true, challenger_pred, params, undecided)
    if champion_pred is None:
        d.reasons.append("no deployed model to compare with (first deployment)")
    else:
        _champion_rule(d, y_true, challenger_pred, champion_pred, champion_version, params, undecided)
        if champion_set is not None:
            _champion_set_rule(d, y_true, challenger_pred, champion_pred, champion_version, champion_set, params,
                               undecided)
    if baseline_pred is not None:
        _baseline_rule(d, y_true, challenger_pred, baseline_pred, params, undecided)
    elif params.require_beat_baseline:  # fail closed: a required comparison that cannot be made does not pass
        d.conditions["beats_baseline"] = False
        d.reasons.append("require_beat_baseline is set but the baseline could not be fitted (see above): not blessed")
    _operating_point_rule(d, operating_point, params.min_melanomas)
    d.blessed = all(d.conditions.values())
    _too_small(d, undecided)
    return d


def _challenger_rules(d: Decision, y_true: np.ndarray, pred: np.ndarray, params: GateRules,
                      undecided: list[str]) -> None:
    """Rules 1 (absolute floor on the point BMA) and 2 (lower bound above chance)."""
    iv = bootstrap_bma(y_true, pred, params)
    d.intervals["challenger"] = iv
    k = round(1 / d.chance)
    floor_ok = iv.point >= params.min_balanced_accuracy
    d.conditions["min_balanced_accuracy"] = floor_ok
    d.reasons.append(f"test BMA {iv.point:.4f} {'>=' if floor_ok else '<'} minimum {params.min_balanced_accuracy:.4f} "
                     f"(absolute floor on the point estimate): {_verdict(floor_ok)}")
    chance_ok = iv.lower > d.chance
    d.conditions["above_chance"] = chance_ok
    d.reasons.append(f"test BMA {iv.point:.4f} ({_pct(params)} one-sided lower bound {iv.lower:.4f}, upper "
                     f"{iv.upper:.4f}, n={iv.n} images, {k} classes present): lower bound is "
                     f"{'' if chance_ok else 'not '}above chance level {d.chance:.4f} (1/{k} classes): "
                     f"{_verdict(chance_ok)}")
    if not chance_ok and iv.point > d.chance:
        undecided.append("above chance")


def _champion_rule(d: Decision, y_true: np.ndarray, pred: np.ndarray, champion_pred: np.ndarray, version: str,
                   params: GateRules, undecided: list[str], *, key: str = "champion",
                   where: str = "on the whole test split") -> None:
    """Rule 3: paired non-inferiority against the deployed champion on these rows (`key` names the condition and
    interval, `where` the rows in the reason)."""
    _, champion_pred = check_pair(y_true, champion_pred)
    champion = balanced_accuracy_resampled(y_true, champion_pred, np.arange(len(y_true))[None, :])[0]
    diff = paired_difference(y_true, pred, champion_pred, params)
    d.intervals[f"{key}_difference"] = diff
    ok = diff.lower >= -params.max_bma_drop
    d.conditions["non_inferior_to_champion" if key == "champion" else f"non_inferior_on_{key}"] = ok
    d.reasons.append(f"{where}: champion (version {version or 'unknown'}) BMA {champion:.4f} on the same n={diff.n} "
                     f"images; challenger - champion {diff.point:.4f} (paired bootstrap, {_pct(params)} one-sided "
                     f"lower bound {diff.lower:.4f}, upper {diff.upper:.4f}): lower bound is "
                     f"{'>=' if ok else '<'} {-params.max_bma_drop:.4f} (allowed drop {params.max_bma_drop:.4f}): "
                     f"{_verdict(ok)}")
    if not ok and diff.point >= -params.max_bma_drop:
        undecided.append(f"non-inferiority to the champion {where}")


def _champion_set_rule(d: Decision, y_true: np.ndarray, pred: np.ndarray, champion_pred: np.ndarray, version: str,
                       found: ChampionSet, params: GateRules, undecided: list[str]) -> None:
    """Rule 3 again on the champion's frozen set: a challenger must not win only because its data differs; one that
    cannot be compared there (no image or class in common) is not blessed."""
    if found.refusal:
        d.conditions["comparable_on_champion_set"] = False
        d.reasons.append(f"{found.refusal}: failed")
        return
    mask = np.asarray(found.mask, dtype=bool)
    if mask.all():  # a retrain on the champion's data: one comparison covers both
        ok = d.conditions["non_inferior_to_champion"]
        d.conditions["non_inferior_on_champion_set"] = ok
        d.reasons.append(f"on frozen benchmark set {found.ref}: it is the whole test split ({len(mask)} images), so "
                         f"the comparison above is the one on the champion's evidence too: {_verdict(ok)}")
        return
    _champion_rule(d, np.asarray(y_true)[mask], np.asarray(pred)[mask], np.asarray(champion_pred)[mask], version,
                   params, undecided, key="champion_set",
                   where=f"on frozen benchmark set {found.ref} ({int(mask.sum())} of the {len(mask)} test images)")


def _baseline_rule(d: Decision, y_true: np.ndarray, pred: np.ndarray, baseline_pred: np.ndarray,
                   params: GateRules, undecided: list[str]) -> None:
    """Rule 4: the challenger beats the image-statistics baseline (a condition only with require_beat_baseline)."""
    baseline = bootstrap_bma(y_true, baseline_pred, params)
    diff = paired_difference(y_true, pred, baseline_pred, params)
    d.intervals["baseline"] = baseline
    d.intervals["baseline_difference"] = diff
    ok = diff.lower > 0
    text = (f"image-statistics baseline BMA {baseline.point:.4f} (lower bound {baseline.lower:.4f}); challenger - "
            f"baseline {diff.point:.4f} (paired bootstrap, {_pct(params)} one-sided lower bound {diff.lower:.4f}, "
            f"upper {diff.upper:.4f}, n={diff.n} images): lower bound is {'' if ok else 'not '}above 0")
    if not params.require_beat_baseline:
        d.reasons.append(f"{text}: reported only; set require_beat_baseline to make it a condition")
        return
    d.conditions["beats_baseline"] = ok
    d.reasons.append(f"{text}: {_verdict(ok)}")
    if not ok and diff.point > 0:
        undecided.append("beating the baseline")


def _operating_point_rule(d: Decision, point: OperatingPoint | None, min_melanomas: int) -> None:
    """Rule 5: the default melanoma operating point must be valid (achievable by this model: a floor of specificity
    and a net benefit above referring all or none where it was chosen), keep its specificity floor on test (a point
    that refers nearly everyone never passes), and not fall short of its target sensitivity on test by more than the
    test interval (fails only when the whole 95 % bootstrap interval lies below the target); with fewer than
    `min_melanomas` test melanomas the sensitivity is reported, too few to decide on."""
    if point is None:
        d.reasons.append("melanoma operating point: none stored (no clinical.json in the profile): not checked")
        return
    name = f"melanoma operating point {point.name} (threshold {point.threshold:.4f}, chosen on {point.chosen_on})"
    if not point.valid:
        d.conditions["melanoma_operating_point"] = False
        d.reasons.append(f"{name}: not achievable by this model ({point.invalid}): failed")
        return
    floor = below_floor(point)
    if floor:
        d.conditions["melanoma_operating_point"] = False
        d.reasons.append(f"{name}: test specificity {point.test['specificity']:.4f} is under the floor "
                         f"{point.min_specificity:.2f} (it refers nearly every test patient): failed")
        return
    short = falls_short(point)
    if short is None:
        d.reasons.append(f"{name}: no melanoma in the test split, so its test sensitivity cannot be measured: "
                         "not checked")
        return
    t = point.test
    text = (f"{name} for sensitivity {point.target_sensitivity:.2f}: test sensitivity {t['sensitivity']:.4f} (95 % "
            f"interval {t['sensitivity_lower']:.4f} to {t['sensitivity_upper']:.4f}, {t['positives']} melanomas), "
            f"specificity {t['specificity']:.4f}{'' if floor is None else f' (floor {point.min_specificity:.2f})'}: "
            f"{'the interval reaches' if not short else 'the whole interval is below'} the target")
    if t["positives"] < min_melanomas:
        d.reasons.append(f"{text}: reported only, {t['positives']} test melanomas are too few to decide on "
                         f"(at least {min_melanomas})")
        return
    d.conditions["melanoma_operating_point"] = not short
    d.reasons.append(f"{text}: {_verdict(not short)}")


def _too_small(d: Decision, undecided: list[str]) -> None:
    """Flag a split too small to tell and estimate the images needed for an interval 0.1 wide (width ~ 1/sqrt(n))."""
    iv = d.intervals["challenger"]
    if iv.width <= TOO_WIDE and not undecided:
        return
    d.too_small = True
    width = max([iv.width] + [v.width for k, v in d.intervals.items() if k.endswith("_difference")])
    needed = max(d.n_test, math.ceil(d.n_test * (width / TARGET_WIDTH) ** 2))
    whys = [f"the challenger's interval is {iv.width:.4f} wide (more than {TOO_WIDE})"] if iv.width > TOO_WIDE else []
    if undecided:
        whys.append(f"the point estimate passes but the lower bound fails for: {', '.join(undecided)}")
    why = " and ".join(whys)
    d.reasons.append(f"the test split is too small to tell: with n={d.n_test} images {why}; the widest interval is "
                     f"{width:.4f} wide and shrinks about as 1/sqrt(n), so roughly {needed} test images would be "
                     f"needed for a width of {TARGET_WIDTH}")


def _pct(params: GateRules) -> str:
    """The confidence as a percentage label, e.g. "95 %"."""
    return f"{params.confidence * 100:g} %"


def _verdict(ok: bool) -> str:
    """Passed or failed."""
    return "passed" if ok else "failed"
