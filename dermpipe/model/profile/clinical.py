"""clinical.json: the operating points and the calibrated OOD detector that travel with a model version.

Written by the profile stage, which already has every split's probabilities and embeddings from one decode: the
probabilities are calibrated (temperature scaling, dermpipe.model.evaluation.calibration) and the thresholds chosen
on the validation rows (dermpipe.model.evaluation.operating_points; for a cross-validated ensemble, which trained on
them, on its out-of-fold predictions instead); the calibration is stored and applied to every decision. A point not
achievable by this model is stored with the reason and never decides. The OOD distance is fitted
on the training rows and its threshold calibrated on the validation rows (dermpipe.model.profile.ood); the test rows and
a download-free out-of-distribution set (dermpipe.model.profile.ood_set) only report. Deploy copies the file into the
registry version folder; `dermpipe serve` and `dermpipe predict` decide with it, the gate checks it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from dermpipe.model.evaluation.calibration import Calibration, fit_calibration
from dermpipe.model.evaluation.clinical_section import CLINICAL_FILE
from dermpipe.model.evaluation.operating_points import (
    MIN_SPECIFICITY,
    OperatingPoint,
    choose_operating_points,
    targets_for,
)
from dermpipe.model.profile.ood import OODDetector, flagged_rate
from dermpipe.model.profile.ood_select import OODEvidence, Outputs, detector_for, transfer_check
from dermpipe.model.profile.reference import EmbeddingPCA
from dermpipe.storage import exists, read_text

DECISIONS = ("refer_melanoma", "routine", "out_of_distribution")


def decision_for(melanoma_score: float, threshold: float, ood_score: float | None,
                 ood_threshold: float | None) -> str:
    """out_of_distribution first (the melanoma score of an image the model was not made for means nothing), then
    refer_melanoma at or above the operating point's threshold, else routine."""
    if ood_score is not None and ood_threshold is not None and ood_score > ood_threshold:
        return "out_of_distribution"
    return "refer_melanoma" if melanoma_score >= threshold else "routine"


def decision_reason(decision: str | None, point: OperatingPoint, melanoma: float, predicted_class: str) -> str:
    """Why this decision, in one line: above all when MEL is the most probable class but the answer is routine."""
    if decision == "out_of_distribution":
        return "the image lies outside what the model was trained on (OOD score above its threshold): refer"
    if decision is None:
        return f"no decision: operating point {point.name} is not achievable by this model ({point.invalid})"
    compared = (f"calibrated melanoma probability {melanoma:.3f} {'>=' if decision == 'refer_melanoma' else '<'} "
                f"{point.name}'s threshold {point.threshold:.3f}")
    if decision == "routine" and predicted_class == point.positive_class:
        return (f"MEL is the most probable class, but its {compared} (chosen to refer "
                f"{point.target_sensitivity:.0%} of {point.chosen_on} melanomas): routine")
    return compared


@dataclass(frozen=True)
class Clinical:
    """What a version decides with: its operating points (the first is the default) and its OOD detector."""

    operating_points: tuple[OperatingPoint, ...]
    ood: OODDetector | None
    report: dict  # rates measured at calibration (validation, test, OOD set), for reports and the registry record
    calibration: Calibration = field(default_factory=lambda: Calibration(fitted_on="none"))  # applied before a point

    @property
    def default_point(self) -> OperatingPoint:
        return self.operating_points[0]

    def point(self, name: str | None) -> OperatingPoint:
        """The named operating point (None: the default); an unknown name lists the stored ones."""
        if not name:
            return self.default_point
        for point in self.operating_points:
            if point.name == name:
                return point
        raise KeyError(f"no operating point {name!r}; this version stores {[p.name for p in self.operating_points]}")

    def decide(self, probabilities: np.ndarray, embeddings: np.ndarray, pca: EmbeddingPCA | None,
               point_name: str | None = None) -> list[dict]:
        """Per image: decision, decision_reason, operating_point, melanoma_threshold, ood_score and ood_threshold
        (the OOD fields are None when the version has no detector or no PCA). The threshold applies to the
        calibrated melanoma probability; a point not achievable by this model decides nothing (decision None)."""
        from dermpipe import config

        point = self.point(point_name)
        column = config.CLASSES.index(point.positive_class)
        calibrated = self.calibration.apply(np.asarray(probabilities))
        # the OOD scores read the model's own probabilities, as they were fitted; the thresholds the calibrated ones
        scored = self.ood is not None and (pca is not None or not self.ood.needs_pca)
        scores = self.ood.score(pca, embeddings, probabilities) if scored else [None] * len(probabilities)
        ood_threshold = self.ood.threshold if scored else None
        out = []
        for p, s in zip(calibrated, scores, strict=True):
            decision = decision_for(float(p[column]), point.threshold, s, ood_threshold)
            if decision != "out_of_distribution" and not point.valid:
                decision = None
            out.append({"decision": decision,
                        "decision_reason": decision_reason(decision, point, float(p[column]),
                                                           config.CLASSES[int(np.argmax(p))]),
                        "operating_point": point.name, "melanoma_threshold": point.threshold,
                        "ood_score": None if s is None else float(s), "ood_threshold": ood_threshold})
        return out

    def as_dict(self) -> dict:
        return {"default_operating_point": self.default_point.name,
                "operating_points": [p.as_dict() for p in self.operating_points],
                "ood": None if self.ood is None else {**self.ood.as_dict(), **self.report.get("ood", {})},
                "report": self.report, "calibration": self.calibration.as_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Clinical:
        points = tuple(OperatingPoint.from_dict(p) for p in data.get("operating_points", []))
        if not points:
            raise ValueError(f"{CLINICAL_FILE}: no operating_points; expected at least the melanoma operating point")
        default = data.get("default_operating_point", points[0].name)
        points = tuple(sorted(points, key=lambda p: p.name != default))
        return cls(points, OODDetector.from_dict(data["ood"]) if data.get("ood") else None, data.get("report", {}),
                   Calibration.from_dict(data.get("calibration")))


def calibrate_clinical(labels: np.ndarray, probabilities: np.ndarray, embeddings: np.ndarray, splits: np.ndarray,
                       pca: EmbeddingPCA, *, target_sensitivity: float, ood_pass_rate: float,
                       ood: OODEvidence | None = None,
                       held_out: tuple[np.ndarray, np.ndarray] | None = None,
                       min_specificity: float = MIN_SPECIFICITY) -> Clinical:
    """The calibration and the operating points on val (reported on test); the OOD candidates fitted on train,
    calibrated on val, measured on `ood`'s far and near sets, the best on near served
    (dermpipe.model.profile.ood_select), reported on test. `labels` are class indices, rows aligned with `splits`
    ('train' | 'val' | 'test').

    `held_out`: (labels, probabilities) of a cross-validated ensemble's out-of-fold predictions
    (dermpipe.model.evaluation.oof.held_out_predictions); the thresholds are chosen on them instead, since the
    ensemble trained on the val images. The temperature is fitted on the same rows the thresholds are chosen on;
    a point whose specificity there is under `min_specificity`, or whose net benefit does not beat referring all or
    none, is kept as not achievable."""
    splits = np.asarray(splits)
    val, test, train = splits == "val", splits == "test", splits == "train"
    if not val.any():
        raise ValueError("clinical calibration: no validation rows; thresholds are chosen on the validation split "
                         "(never on test), so set val_size > 0")
    chosen_labels, chosen_probabilities = held_out if held_out is not None else (labels[val], probabilities[val])
    chosen_on = "val" if held_out is None else "out-of-fold"
    calibration = fit_calibration(chosen_labels, chosen_probabilities, chosen_on,
                                  (labels[test], probabilities[test]) if test.any() else None)
    points = choose_operating_points(chosen_labels, calibration.apply(chosen_probabilities),
                                     targets_for(target_sensitivity), labels[test] if test.any() else None,
                                     calibration.apply(probabilities[test]) if test.any() else None,
                                     chosen_on=chosen_on, min_specificity=min_specificity)
    val_outputs = Outputs(probabilities[val], embeddings[val])
    detector, ood_report = detector_for(pca, Outputs(probabilities[train], embeddings[train]), labels[train],
                                        val_outputs, ood, ood_pass_rate)
    val_scores = detector.score(pca, embeddings[val], probabilities[val])
    ood_report["val_pass_rate"] = 1.0 - flagged_rate(detector, val_scores)
    test_flags = detector.flags(detector.score(pca, embeddings[test], probabilities[test])) if test.any() else []
    if test.any():
        ood_report["test_false_refer_rate"] = float(np.mean(test_flags))
    ood_report |= transfer_check(int(np.sum(test_flags)), len(test_flags), ood_pass_rate)
    for name, figures in ood_report["candidates"].get(ood_report["served_score"], {}).items():
        ood_report[f"{name}_set_detection_rate"] = figures["detection_rate"]
        ood_report[f"{name}_set_size"] = figures["n"]
    return Clinical(tuple(points), detector, {"ood": ood_report}, calibration)


def load_clinical(folder: str) -> Clinical | None:
    """The clinical.json of a profile or registry version folder, or None when it has none (an older version)."""
    path = f"{folder.rstrip('/')}/{CLINICAL_FILE}"
    if not exists(path):
        return None
    return Clinical.from_dict(json.loads(read_text(path)))

