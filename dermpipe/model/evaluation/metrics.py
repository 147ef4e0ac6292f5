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
    expected_calibration_error: float = 0.0
    reliability: list[dict[str, float]] = field(default_factory=list)
    mel_sensitivity_at_specificity: dict[str, float | None] = field(default_factory=dict)

    def headline(self) -> dict[str, float]:
        return {
            "balanced_accuracy": self.balanced_accuracy,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "weighted_f1": self.weighted_f1,
            "expected_calibration_error": self.expected_calibration_error,
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
    confusion = confusion_matrix(y_true, y_pred, labels=all_labels)
    specificity = specificity_per_class(confusion)
    y_prob = np.asarray(y_prob, dtype=float)
    aucs = one_vs_rest_auc(y_true, y_prob, len(classes))
    per_class = {
        cls: {"precision": float(precision[i]), "recall": float(recall[i]), "specificity": float(specificity[i]),
              "f1": float(f1[i]), "roc_auc": aucs[i], "support": int(support[i])}
        for i, cls in enumerate(classes)
    }
    ece, bins = reliability(y_true, y_prob)
    mel = classes.index("MEL") if "MEL" in classes else 0
    mel_sens = {f"{s:.0%}": sensitivity_at_specificity(y_true, y_prob[:, mel], mel, s) for s in (0.8, 0.9)}
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
        confusion=confusion.tolist(),
        absent_classes=[cls for i, cls in enumerate(classes) if i not in present],
        expected_calibration_error=ece,
        reliability=bins,
        mel_sensitivity_at_specificity=mel_sens,
    )


def specificity_per_class(confusion: np.ndarray) -> np.ndarray:
    """TN / (TN + FP) per class from a square confusion matrix (rows: true, columns: predicted)."""
    confusion = np.asarray(confusion)
    total = confusion.sum()
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    tn = total - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tn + fp > 0, tn / np.maximum(tn + fp, 1), np.nan)


def one_vs_rest_auc(y_true: np.ndarray, y_prob: np.ndarray, n_classes: int) -> list[float | None]:
    """ROC AUC of each class against the rest; None where the split lacks positives or negatives of that class."""
    from sklearn.metrics import roc_auc_score

    aucs: list[float | None] = []
    for i in range(n_classes):
        positives = y_true == i
        aucs.append(float(roc_auc_score(positives, y_prob[:, i])) if 0 < positives.sum() < len(y_true) else None)
    return aucs


def sensitivity_at_specificity(y_true: np.ndarray, scores: np.ndarray, positive: int,
                               specificity: float) -> float | None:
    """Best sensitivity for class `positive` at an operating point with at least `specificity` (ROC curve)."""
    from sklearn.metrics import roc_curve

    positives = y_true == positive
    if not 0 < positives.sum() < len(y_true):
        return None
    fpr, tpr, _ = roc_curve(positives, scores)
    allowed = (1.0 - fpr) >= specificity - 1e-12
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def reliability(y_true: np.ndarray, y_prob: np.ndarray, bins: int = 10) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error (top-label, equal-width bins) and the per-bin table of the reliability diagram."""
    confidence = y_prob.max(axis=1)
    correct = y_prob.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        if n:
            gap = abs(float(correct[members].mean()) - float(confidence[members].mean()))
            ece += gap * n / len(y_true)
            table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": n,
                          "confidence": float(confidence[members].mean()), "accuracy": float(correct[members].mean())})
    return float(ece), table


def age_band(age: float) -> str:
    """ISIC ages come in steps of 5; bands of 20 years keep slices big enough to read."""
    if age is None or np.isnan(age):
        return "(missing)"
    low = int(age // 20 * 20)
    return f"{low}-{low + 19}"


def slice_table(keys: list[str], y_true: np.ndarray, y_prob: np.ndarray) -> list[dict[str, object]]:
    """Accuracy and BMA for each value of a slicing key, with its sample size; sorted by slice name."""
    keys_arr = np.asarray(keys, dtype=object)
    rows = []
    for key in sorted(set(keys)):
        members = keys_arr == key
        truth, pred = y_true[members], y_prob[members].argmax(axis=1)
        recalls = [float((pred[truth == c] == c).mean()) for c in np.unique(truth)]
        rows.append({"slice": key, "n": int(members.sum()), "accuracy": float((pred == truth).mean()),
                     "balanced_accuracy": float(np.mean(recalls))})
    return rows
