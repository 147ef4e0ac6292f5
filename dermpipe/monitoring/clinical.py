"""clinical.json: the operating points and the calibrated OOD detector that travel with a model version.

Written by the profile stage, which already has every split's probabilities and embeddings from one decode: the
thresholds are chosen on the validation rows (dermpipe.model.evaluation.operating_points; for a cross-validated
ensemble, which trained on them, on its out-of-fold predictions instead), the OOD distance is fitted
on the training rows and its threshold calibrated on the validation rows (dermpipe.monitoring.ood); the test rows and
a download-free out-of-distribution set (dermpipe.monitoring.ood_set) only report. Deploy copies the file into the
registry version folder; `dermpipe serve` and `dermpipe predict` decide with it, the gate checks it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from dermpipe.model.evaluation.clinical_section import CLINICAL_FILE
from dermpipe.model.evaluation.operating_points import OperatingPoint, choose_operating_points, targets_for
from dermpipe.monitoring.ood import OODDetector, flagged_rate
from dermpipe.monitoring.ood_select import OODEvidence, Outputs, detector_for, transfer_check
from dermpipe.monitoring.reference import EmbeddingPCA
from dermpipe.storage import exists, read_text

DECISIONS = ("refer_melanoma", "routine", "out_of_distribution")


def decision_for(melanoma_score: float, threshold: float, ood_score: float | None,
                 ood_threshold: float | None) -> str:
    """out_of_distribution first (the melanoma score of an image the model was not made for means nothing), then
    refer_melanoma at or above the operating point's threshold, else routine."""
    if ood_score is not None and ood_threshold is not None and ood_score > ood_threshold:
        return "out_of_distribution"
    return "refer_melanoma" if melanoma_score >= threshold else "routine"


@dataclass(frozen=True)
class Clinical:
    """What a version decides with: its operating points (the first is the default) and its OOD detector."""

    operating_points: tuple[OperatingPoint, ...]
    ood: OODDetector | None
    report: dict  # rates measured at calibration (validation, test, OOD set), for reports and the registry record

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
        """Per image: decision, operating_point, melanoma_threshold, ood_score and ood_threshold (the OOD fields are
        None when the version has no detector or no PCA)."""
        from dermpipe import config

        point = self.point(point_name)
        column = config.CLASSES.index(point.positive_class)
        scored = self.ood is not None and (pca is not None or not self.ood.needs_pca)
        scores = self.ood.score(pca, embeddings, probabilities) if scored else [None] * len(probabilities)
        ood_threshold = self.ood.threshold if scored else None
        return [{"decision": decision_for(float(p[column]), point.threshold, s, ood_threshold),
                 "operating_point": point.name, "melanoma_threshold": point.threshold,
                 "ood_score": None if s is None else float(s), "ood_threshold": ood_threshold}
                for p, s in zip(np.asarray(probabilities), scores, strict=True)]

    def as_dict(self) -> dict:
        return {"default_operating_point": self.default_point.name,
                "operating_points": [p.as_dict() for p in self.operating_points],
                "ood": None if self.ood is None else {**self.ood.as_dict(), **self.report.get("ood", {})},
                "report": self.report}

    @classmethod
    def from_dict(cls, data: dict) -> Clinical:
        points = tuple(OperatingPoint.from_dict(p) for p in data.get("operating_points", []))
        if not points:
            raise ValueError(f"{CLINICAL_FILE}: no operating_points; expected at least the melanoma operating point")
        default = data.get("default_operating_point", points[0].name)
        points = tuple(sorted(points, key=lambda p: p.name != default))
        return cls(points, OODDetector.from_dict(data["ood"]) if data.get("ood") else None, data.get("report", {}))


def calibrate_clinical(labels: np.ndarray, probabilities: np.ndarray, embeddings: np.ndarray, splits: np.ndarray,
                       pca: EmbeddingPCA, *, target_sensitivity: float, ood_pass_rate: float,
                       ood: OODEvidence | None = None,
                       held_out: tuple[np.ndarray, np.ndarray] | None = None) -> Clinical:
    """Operating points on val (reported on test); the OOD candidates fitted on train, calibrated on val, measured on
    `ood`'s far and near sets, the best on near served (dermpipe.monitoring.ood_select), reported on test.
    `labels` are class indices, rows aligned with `splits` ('train' | 'val' | 'test').

    `held_out`: (labels, probabilities) of a cross-validated ensemble's out-of-fold predictions
    (dermpipe.model.evaluation.oof.held_out_predictions); the thresholds are chosen on them instead, since the
    ensemble trained on the val images."""
    splits = np.asarray(splits)
    val, test, train = splits == "val", splits == "test", splits == "train"
    if not val.any():
        raise ValueError("clinical calibration: no validation rows; thresholds are chosen on the validation split "
                         "(never on test), so set val_size > 0")
    chosen_labels, chosen_probabilities = held_out if held_out is not None else (labels[val], probabilities[val])
    points = choose_operating_points(chosen_labels, chosen_probabilities, targets_for(target_sensitivity),
                                     labels[test] if test.any() else None,
                                     probabilities[test] if test.any() else None,
                                     chosen_on="val" if held_out is None else "out-of-fold")
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
    return Clinical(tuple(points), detector, {"ood": ood_report})


def load_clinical(folder: str) -> Clinical | None:
    """The clinical.json of a profile or registry version folder, or None when it has none (an older version)."""
    path = f"{folder.rstrip('/')}/{CLINICAL_FILE}"
    if not exists(path):
        return None
    return Clinical.from_dict(json.loads(read_text(path)))

