"""Classification metrics on integer labels and class probabilities, with scikit-learn doing the counting.

Balanced multiclass accuracy (BMA, the ISIC 2019 ranking metric) is the mean recall over the classes present in
y_true: a class absent from a small test split is reported as absent, never averaged in as zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


@dataclass
class Evaluation:
    accuracy: float
    balanced_accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_f1: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    absent_classes: list[str] = field(default_factory=list)

    def headline(self) -> dict[str, float]:
        return {
            "balanced_accuracy": self.balanced_accuracy,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "weighted_f1": self.weighted_f1,
        }


def evaluate_predictions(y_true: np.ndarray, y_prob: np.ndarray, classes: tuple[str, ...]) -> Evaluation:
    """All metrics over the classes present in y_true; the confusion matrix covers every class."""
    if len(y_true) == 0:
        raise ValueError("cannot evaluate on an empty split: the test table has no rows")
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_prob).argmax(axis=1)
    present = sorted(set(y_true.tolist()))
    all_labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=all_labels, zero_division=0
    )
    per_class = {
        cls: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
              "support": int(support[i])}
        for i, cls in enumerate(classes)
    }
    p = np.asarray(present)
    _, _, weighted_f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=present, average="weighted", zero_division=0
    )
    return Evaluation(
        accuracy=float(accuracy_score(y_true, y_pred)),
        balanced_accuracy=float(recall[p].mean()),
        macro_precision=float(precision[p].mean()),
        macro_recall=float(recall[p].mean()),
        macro_f1=float(f1[p].mean()),
        weighted_f1=float(weighted_f1),
        per_class=per_class,
        confusion=confusion_matrix(y_true, y_pred, labels=all_labels).tolist(),
        absent_classes=[cls for i, cls in enumerate(classes) if i not in present],
    )
