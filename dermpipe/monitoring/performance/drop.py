"""The performance-drop rule: each version's live estimates against its own test-time figures, by interval.

The rule, per version and per judged estimate (BMA; melanoma sensitivity and specificity at each served operating
point):
- insufficient data (no decision, said so) when the live n is below the minimum: `min_labels` labelled predictions
  for BMA and specificity, `min_melanomas` labelled melanomas for sensitivity;
- a drop when the live interval's upper bound lies below the test-time lower bound (the test point where the
  version stores no test interval): the two intervals do not overlap and live is the worse side. A live point below
  the test point alone is not a drop: on a few dozen labels that is mostly noise.
ECE and Brier are reported, not judged: ECE is biased upward on small samples, and the deployment gate does not
hold a version to a calibration figure either. A version's verdict is `drop` when any estimate dropped, else
`no drop` when one was decided, else `insufficient data` (or `not judged` without test figures); the trigger fires
when any version that served the window dropped, as drift in any served version is drift.

Test-time figures come from the registry version folder: dermpipe.json's `evaluation` (the evaluate stage's
metrics: balanced_accuracy with balanced_accuracy_lower/_upper, test_rows) and clinical.json's operating points
(test sensitivity and specificity with bootstrap intervals).
"""

from __future__ import annotations

import json
import math
from typing import Protocol

from dermpipe.model.evaluation.calibration import Calibration
from dermpipe.model.profile.clinical import load_clinical
from dermpipe.storage import exists, read_text


class Minimums(Protocol):
    """The sample sizes below which an estimate is reported, not judged (the performance stage's parameters)."""

    @property
    def min_labels(self) -> int: ...

    @property
    def min_melanomas(self) -> int: ...


JUDGED = ("bma", "melanoma_sensitivity", "melanoma_specificity")
DROP, NO_DROP, INSUFFICIENT, NOT_JUDGED, REPORTED = "drop", "no drop", "insufficient data", "not judged", "reported"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_figures(version_folder: str) -> dict[tuple[str, str], dict]:
    """{(metric, operating point): {point, lower, upper, n}} of a registry version's test split ({} when none)."""
    folder = version_folder.rstrip("/")
    figures: dict[tuple[str, str], dict] = {}
    if exists(f"{folder}/dermpipe.json"):
        evaluation = json.loads(read_text(f"{folder}/dermpipe.json")).get("evaluation") or {}
        if _finite(evaluation.get("balanced_accuracy")):
            figures[("bma", "")] = {"point": evaluation["balanced_accuracy"],
                                    "lower": evaluation.get("balanced_accuracy_lower"),
                                    "upper": evaluation.get("balanced_accuracy_upper"),
                                    "n": evaluation.get("test_rows")}
        if _finite(evaluation.get("expected_calibration_error")):
            figures[("ece", "")] = {"point": evaluation["expected_calibration_error"], "lower": None, "upper": None,
                                    "n": evaluation.get("test_rows")}
    clinical = load_clinical(folder)
    for point in clinical.operating_points if clinical else ():
        t = point.test
        if not t:
            continue
        for name, key, n in (("melanoma_sensitivity", "sensitivity", t.get("positives")),
                             ("melanoma_specificity", "specificity", (t.get("n") or 0) - (t.get("positives") or 0))):
            figures[(name, point.name)] = {"point": t.get(key), "lower": t.get(f"{key}_lower"),
                                           "upper": t.get(f"{key}_upper"), "n": n}
    return figures


def thresholds(version_folder: str) -> tuple[dict[str, float], Calibration | None]:
    """The operating points' melanoma thresholds of a registry version ({} without clinical.json) and the calibration
    they apply to."""
    clinical = load_clinical(version_folder.rstrip("/"))
    return ({p.name: p.threshold for p in clinical.operating_points}, clinical.calibration) if clinical else ({}, None)


def judge(estimate: dict, test: dict | None, params: Minimums) -> tuple[str, str]:
    """(verdict, reason) of one live estimate against its test-time figure (the rule in the module docstring)."""
    metric, n = estimate["metric"], estimate["n"]
    if metric not in JUDGED:
        return REPORTED, "reported only (calibration is not a retraining condition)"
    if estimate.get("n_unknown"):
        return NOT_JUDGED, (f"{estimate['n_unknown']} labelled lines were served with operating point "
                            f"{estimate['operating_point']!r}, which the version's clinical.json does not hold")
    if not test or not _finite(test.get("point")):
        return NOT_JUDGED, "no test-time figure stored with the version"
    minimum = params.min_melanomas if metric == "melanoma_sensitivity" else params.min_labels
    what = "labelled melanomas" if metric == "melanoma_sensitivity" else (
        "labelled non-melanomas" if metric == "melanoma_specificity" else "labelled predictions")
    if n < minimum:
        return INSUFFICIENT, f"{n} {what} (< {minimum}): no decision"
    reference, kind = ((test["lower"], "test lower bound") if _finite(test.get("lower"))
                       else (test["point"], "test point"))
    if estimate["upper"] < reference:
        return DROP, (f"live {estimate['point']:.3f} (upper bound {estimate['upper']:.3f}, n={n}) is below the "
                      f"{kind} {reference:.3f}")
    return NO_DROP, (f"live upper bound {estimate['upper']:.3f} (n={n}) reaches the {kind} {reference:.3f}")


def judge_version(rows: list[dict], figures: dict[tuple[str, str], dict], params: Minimums) -> str:
    """Fill each estimate row's test figures, verdict and reason; returns the version's verdict."""
    for row in rows:
        test = figures.get((row["metric"], row["operating_point"]))
        row.update({f"test_{k}": (test or {}).get(k) for k in ("point", "lower", "upper", "n")})
        row["verdict"], row["reason"] = judge(row, test, params)
    verdicts = {row["verdict"] for row in rows}
    for verdict in (DROP, NO_DROP, INSUFFICIENT):
        if verdict in verdicts:
            return verdict
    return NOT_JUDGED
