"""The evaluation report's clinical section: the version's operating points measured on this test split, and how
its out-of-distribution detector was calibrated.

The profile stage writes clinical.json (thresholds chosen on validation, or on a cross-validated ensemble's
out-of-fold predictions; the OOD detector fitted on train and
calibrated on validation). Evaluate re-measures every threshold on its own test predictions, so the report's
sensitivity and specificity come from the same probabilities as the rest of the report; the OOD figures are the
profile's (they need embeddings, which evaluate does not compute). Read as plain JSON: the model layer sits below
dermpipe.monitoring, which owns the file's writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dermpipe import config
from dermpipe.model.evaluation.operating_points import OperatingPoint, bootstrap_rates, falls_short, rates

CLINICAL_FILE = "clinical.json"  # written by dermpipe.monitoring.clinical (profile), read here and by serving


def load_clinical_dict(profile_dir: Path | None) -> dict | None:
    """clinical.json of the profile artifact as a dict, or None when there is no profile or no file."""
    if profile_dir is None or not (Path(profile_dir) / CLINICAL_FILE).is_file():
        return None
    return json.loads((Path(profile_dir) / CLINICAL_FILE).read_text())


def measure_points(clinical: dict, y_true: np.ndarray, probabilities: np.ndarray) -> list[dict]:
    """Per stored operating point: its threshold and validation figures, and sensitivity / specificity on these test
    predictions with two-sided bootstrap intervals; `short` when the test interval lies wholly below the target."""
    rows = []
    for data in clinical.get("operating_points", []):
        point = OperatingPoint.from_dict(data)
        positive = np.asarray(y_true) == config.CLASSES.index(point.positive_class)
        scores = np.asarray(probabilities)[:, config.CLASSES.index(point.positive_class)]
        sens, spec = rates(positive, scores, point.threshold)
        test = {"sensitivity": sens, "specificity": spec, "n": int(len(positive)), "positives": int(positive.sum()),
                **bootstrap_rates(positive, scores, point.threshold)}
        measured = OperatingPoint(point.name, point.threshold, point.target_sensitivity, point.positive_class,
                                  point.chosen_on, point.chosen, test)
        rows.append({"name": point.name, "target": point.target_sensitivity, "threshold": point.threshold,
                     "chosen_on": point.chosen_on, "val": point.chosen, "test": test, "short": falls_short(measured),
                     "default": point.name == clinical.get("default_operating_point", point.name)})
    return rows


def metric_values(points: list[dict]) -> dict[str, float]:
    """Scalar metrics of the default operating point, for the evaluate stage's Metrics artifact."""
    default = next((p for p in points if p["default"]), None)
    if default is None:
        return {}
    test = default["test"]
    return {"melanoma_op_threshold": default["threshold"], "melanoma_op_target_sensitivity": default["target"],
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


def render_clinical(clinical: dict | None, points: list[dict]) -> str:
    """HTML: the operating-point table, the OOD calibration, and what a decision is (advice, not a diagnosis)."""
    from dermpipe.reports import table

    if clinical is None:
        return ("<h2>Clinical decisions</h2><p>No clinical.json in the profile artifact: this run stored no operating "
                "point or OOD detector, so a served version would answer without a decision.</p>")
    verdict = {True: "below target by more than its interval", False: "consistent with target", None: "not judged"}
    rows = [(p["name"] + (" (default)" if p["default"] else ""), f"{p['target']:.0%}", f"{p['threshold']:.4f}",
             f"{p['val'].get('sensitivity', float('nan')):.3f} / {p['val'].get('specificity', float('nan')):.3f}",
             _interval(p["test"], "sensitivity"), _interval(p["test"], "specificity"),
             f"{p['test']['positives']} / {p['test']['n']}", verdict[p["short"]]) for p in points]
    ood = clinical.get("ood") or {}
    ood_rows = [(k, v) for k, v in ood.items() if k in ("served_score", "chosen_by", "threshold", "pass_rate",
                                                        "val_pass_rate", "test_false_refer_rate", "transfer_note")
                or k.endswith(("_set_detection_rate", "_set_size"))]
    out_of_fold = bool(points) and points[0]["chosen_on"] == "out-of-fold"
    where = ("<b>out-of-fold</b> predictions (each train and val image scored by the fold model that did not train "
             "on it: the ensemble itself trained on them)" if out_of_fold else "<b>validation</b> split")
    return ("<h2>Clinical decisions</h2>"
            "<p>Each operating point refers an image for biopsy when its melanoma score reaches the threshold. The "
            f"threshold was chosen on the {where} for the target sensitivity; the test columns are "
            "this report's own test predictions at that threshold, with 95 % bootstrap intervals. A served decision "
            "is advice to a clinician, not a diagnosis.</p>"
            + table(["operating point", "target sensitivity", "threshold",
                     f"{'OOF' if out_of_fold else 'val'} sensitivity / specificity",
                     "test sensitivity", "test specificity", "test melanomas / images", "test verdict"], rows)
            + "<h3>Out-of-distribution detector</h3>"
            + ("<p>Images whose OOD score (the served score below: larger is further from the training images) is "
               "above the threshold are answered <code>out_of_distribution</code> (refer) before any operating point "
               "applies. Calibrated on validation images so that the stated share passes.</p>"
               + table(["figure", "value"], ood_rows)
               + ood_candidates_table(ood.get("candidates") or {})
               if ood else "<p>This version has no OOD detector.</p>"))
