"""The evaluation report's clinical section: the version's operating points measured on this test split (on
probabilities calibrated by the stored temperature), the decision curve and the ROC with the points marked, and how
its out-of-distribution detector was calibrated.

The profile stage writes clinical.json (thresholds chosen on validation, or on a cross-validated ensemble's
out-of-fold predictions; the OOD detector fitted on train and
calibrated on validation). Evaluate re-measures every threshold on its own test predictions, so the report's
sensitivity and specificity come from the same probabilities as the rest of the report; the OOD figures are the
profile's (they need embeddings, which evaluate does not compute). Read as plain JSON: the file's owner,
dermpipe.model.profile.clinical, imports this module (CLINICAL_FILE), so importing it back would be a cycle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dermpipe import config
from dermpipe.model.evaluation.calibration import Calibration
from dermpipe.model.evaluation.operating_points import OperatingPoint, below_floor, falls_short, measure_on_test

CLINICAL_FILE = "clinical.json"  # written by dermpipe.model.profile.clinical (profile), read here and by serving


def load_clinical_dict(profile_dir: Path | None) -> dict | None:
    """clinical.json of the profile artifact as a dict, or None when there is no profile or no file."""
    if profile_dir is None or not (Path(profile_dir) / CLINICAL_FILE).is_file():
        return None
    return json.loads((Path(profile_dir) / CLINICAL_FILE).read_text())


def calibrated(clinical: dict, probabilities: np.ndarray) -> np.ndarray:
    """The probabilities the stored thresholds apply to: scaled by clinical.json's temperature (none: as they are)."""
    return Calibration.from_dict(clinical.get("calibration")).apply(probabilities)


def measure_points(clinical: dict, y_true: np.ndarray, probabilities: np.ndarray) -> list[dict]:
    """Per stored operating point: its threshold, validity and validation figures, and sensitivity / specificity on
    these test predictions (calibrated as the server calibrates them) with two-sided bootstrap intervals; `short`
    when the test interval lies wholly below the target, `below_floor` when test specificity is under the floor."""
    rows = []
    probabilities = calibrated(clinical, probabilities)
    for data in clinical.get("operating_points", []):
        point = OperatingPoint.from_dict(data)
        column = config.CLASSES.index(point.positive_class)
        test = measure_on_test(np.asarray(y_true) == column, probabilities[:, column], point.threshold)
        measured = OperatingPoint(**{**{k: v for k, v in point.as_dict().items() if k != "valid"}, "test": test})
        rows.append({"name": point.name, "target": point.target_sensitivity, "threshold": point.threshold,
                     "chosen_on": point.chosen_on, "val": point.chosen, "test": test, "short": falls_short(measured),
                     "below_floor": below_floor(measured), "valid": point.valid, "invalid": point.invalid,
                     "note": point.note, "min_specificity": point.min_specificity,
                     "default": point.name == clinical.get("default_operating_point", point.name)})
    return rows


def verdict(point: dict) -> str:
    """The test verdict of a measured point: never 'consistent' for a point that is not valid or under its floor."""
    if not point["valid"]:
        return f"not achievable by this model: {point['invalid']}"
    if point["below_floor"]:
        return f"test specificity under the floor {point['min_specificity']:.2f}: refers nearly everyone"
    return {True: "below target by more than its interval", False: "consistent with target",
            None: "not judged"}[point["short"]]


def curve_figures(clinical: dict, y_true: np.ndarray, probabilities: np.ndarray, points: list[dict]) -> str:
    """The decision curve and the melanoma ROC of the test split, calibrated, with the operating points marked."""
    from dermpipe.model.evaluation.decision_curve import decision_curve_figure, roc_points_figure
    from dermpipe.reports import img_tag, png_bytes

    column = config.CLASSES.index(OperatingPoint.from_dict(clinical["operating_points"][0]).positive_class)
    positive, scores = np.asarray(y_true) == column, calibrated(clinical, probabilities)[:, column]
    return (img_tag(png_bytes(decision_curve_figure(positive, scores, points)), "decision curve")
            + img_tag(png_bytes(roc_points_figure(positive, scores, points)), "melanoma ROC with operating points"))


def metric_values(points: list[dict]) -> dict[str, float]:
    """Scalar metrics of the default operating point, for the evaluate stage's Metrics artifact."""
    default = next((p for p in points if p["default"]), None)
    if default is None:
        return {}
    test = default["test"]
    return {"melanoma_op_threshold": default["threshold"], "melanoma_op_target_sensitivity": default["target"],
            "melanoma_op_valid": float(default["valid"]),
            **{f"melanoma_op_test_{k}": v for k, v in test.items() if np.isfinite(v)}}


def _interval(figures: dict, name: str) -> str:
    value = figures.get(name)
    if value is None or not np.isfinite(value):
        return "n/a"
    low, high = figures.get(f"{name}_lower"), figures.get(f"{name}_upper")
    bounds = f" [{low:.3f}, {high:.3f}]" if low is not None and np.isfinite(low) else ""
    return f"{value:.3f}{bounds}"


def ood_candidates_table(candidates: dict) -> str:
    """Each candidate OOD score's AUROC and FPR at 95 % TPR per OOD set (in-distribution = positive)."""
    from dermpipe.reports import table

    if not candidates:
        return ""
    sets = list(next(iter(candidates.values())))
    rows = [(name, *(f"{f[s]['auroc']:.3f} / {f[s]['fpr_at_95_tpr']:.3f} / {f[s]['detection_rate']:.3f}"
                     for s in sets)) for name, f in candidates.items()]
    return ("<p>Candidate scores, each calibrated on validation; per set AUROC / FPR at 95 % TPR / share flagged at "
            "its threshold. The served score has the lowest FPR on the near set among those that flag most of the "
            "far set.</p>" + table(["score", *sets], rows))


def _calibration_html(clinical: dict) -> str:
    """The temperature and the ECE before and after it, where it was fitted and on test."""
    from dermpipe.reports import table

    found = clinical.get("calibration") or {}
    if not found:
        return ("<p>This version's clinical.json has no calibration (written before it existed): thresholds apply to "
                "the raw probabilities.</p>")
    ece = found.get("ece", {})
    rows = [(f"{split} ({found.get('fitted_on') if split == 'fit' else 'test'})", kind.replace("_", " "),
             f"{ece[f'{split}_{kind}_before']:.4f}", f"{ece[f'{split}_{kind}_after']:.4f}")
            for split in ("fit", "test") for kind in ("top_label", "melanoma") if f"{split}_{kind}_before" in ece]
    return (f"<p>Probabilities are calibrated by temperature scaling (T = {found['temperature']:.3g}, fitted by NLL on "
            f"the {found.get('fitted_on')} predictions) before any threshold applies; thresholds below are calibrated "
            "melanoma probabilities. Expected calibration error before and after:</p>"
            + table(["where", "ECE of", "before", "after"], rows))


def render_clinical(clinical: dict | None, points: list[dict], figures: str = "") -> str:
    """HTML: the calibration, the operating-point table with validity, the decision curve and ROC (`figures`), the
    OOD calibration, and what a decision is (advice, not a diagnosis)."""
    from dermpipe.reports import table

    if clinical is None:
        return ("<h2>Clinical decisions</h2><p>No clinical.json in the profile artifact: this run stored no operating "
                "point or OOD detector, so a served version would answer without a decision.</p>")
    rows = [(p["name"] + (" (default)" if p["default"] else ""), f"{p['target']:.0%}", f"{p['threshold']:.4f}",
             f"{p['val'].get('sensitivity', float('nan')):.3f} / {p['val'].get('specificity', float('nan')):.3f}",
             _net_benefit(p["val"]), _interval(p["test"], "sensitivity"), _interval(p["test"], "specificity"),
             f"{p['test']['positives']} / {p['test']['n']}", verdict(p) + (f" ({p['note']})" if p["note"] else ""))
            for p in points]
    ood = clinical.get("ood") or {}
    ood_rows = [(k, v) for k, v in ood.items() if k in ("served_score", "chosen_by", "threshold", "pass_rate",
                                                        "val_pass_rate", "test_false_refer_rate", "transfer_note")
                or k.endswith(("_set_detection_rate", "_set_size"))]
    out_of_fold = bool(points) and points[0]["chosen_on"] == "out-of-fold"
    where = ("<b>out-of-fold</b> predictions (each train and val image scored by the fold model that did not train "
             "on it: the ensemble itself trained on them)" if out_of_fold else "<b>validation</b> split")
    floor = max((p["min_specificity"] for p in points), default=0.0)
    return ("<h2>Clinical decisions</h2>"
            "<p>Each operating point refers an image for biopsy when its calibrated melanoma probability reaches the "
            f"threshold. The threshold was chosen on the {where} for the target sensitivity (the bootstrap median "
            "of the threshold that meets it, each in the middle of the gap below the lowest referred score). A point "
            f"is valid only if its specificity there is at least {floor:.2f} and its net benefit (decision-curve "
            "analysis) beats referring all and referring none; a point that is not is never used to decide. The "
            "test columns are this report's own test predictions at that threshold, with 95 % bootstrap intervals. "
            "A served decision is advice to a clinician, not a diagnosis.</p>" + _calibration_html(clinical)
            + table(["operating point", "target sensitivity", "threshold",
                     f"{'OOF' if out_of_fold else 'val'} sensitivity / specificity",
                     f"{'OOF' if out_of_fold else 'val'} net benefit (refer all)",
                     "test sensitivity", "test specificity", "test melanomas / images", "test verdict"], rows)
            + ("<h3>Decision curve and melanoma ROC (test split)</h3><p>Net benefit = TP/n - FP/n * p_t/(1-p_t) "
               "(Vickers &amp; Elkin 2006) of referring at calibrated probability p_t, against refer all and refer "
               "none; o a valid point, x one not achievable.</p>" + figures if figures else "")
            + "<h3>Out-of-distribution detector</h3>"
            + ("<p>Images whose OOD score (the served score below: larger is further from the training images) is "
               "above the threshold are answered <code>out_of_distribution</code> (refer) before any operating point "
               "applies. Calibrated on validation images so that the stated share passes.</p>"
               + table(["figure", "value"], ood_rows)
               + ood_candidates_table(ood.get("candidates") or {})
               if ood else "<p>This version has no OOD detector.</p>"))


def _net_benefit(figures: dict) -> str:
    if "net_benefit" not in figures:
        return "n/a"
    return f"{figures['net_benefit']:.4f} ({figures['net_benefit_refer_all']:.4f})"
