"""The ISIC challenge's own scorer (isic-challenge-scoring) on evaluate's test predictions.

What the ISIC 2019 leaderboard reports: balanced multiclass accuracy (BMA) with the scorer's tie rule (a row whose
highest probability is shared by several classes is "undecided" and counts as wrong), and per class ROC AUC, AUC
above 80 % sensitivity (the ROC area right of the point where sensitivity reaches 0.8, not McClish-normalised) and
average precision.
dermpipe's own BMA (metrics.py) gives a tie to the first tied class, as numpy's argmax does: on untied predictions
the two are equal, and the report names every tied image.

The per-class metrics need true and false cases of the class: on a class column with no true case the scorer's
ROC AUC is undefined (scikit-learn warns and returns NaN), so they are computed over the classes that have both, and
every class left out is listed with the reason. The BMA is computed over every class's probability column (the
official function leaves a class with no true case out of its mean, as dermpipe does): scoring it over the present
columns only would drop the probabilities of the absent classes and change which class a row predicts.

The scorer's CSV reader uses DataFrame.applymap, which pandas 3 removed (dermpipe pins pandas < 3); dermpipe hands
the scorer data frames in the layout that reader produces (index: image; columns: the classes; values in [0, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# the scorer's per-category columns the report shows, with their headings; the KFP metrics take the first three
SHOWN = {"auc": "ROC AUC", "auc_sens_80": "AUC above 80 % sensitivity", "ap": "average precision",
         "sensitivity": "sensitivity (p > 0.5)", "specificity": "specificity (p > 0.5)"}
LOGGED = ("auc", "auc_sens_80", "ap")


@dataclass(frozen=True)
class ChallengeScore:
    """The official figures. per_class and macro cover the classes in `scored` only; left_out says why the others
    are not there; undecided lists the images whose top probability is tied (wrong in the official BMA)."""

    balanced_accuracy: float
    scored: list[str]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    macro: dict[str, float] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    undecided: list[str] = field(default_factory=list)
    scorer_version: str = ""

    def summary(self) -> dict[str, object]:
        """JSON-able, for the report artifact's metadata."""
        return {"balanced_accuracy": self.balanced_accuracy, "scored_classes": self.scored,
                "left_out": self.left_out, "undecided_images": self.undecided, "macro": self.macro,
                "scorer": f"isic-challenge-scoring {self.scorer_version}"}


def check_predictions(images: list[str], y_true: np.ndarray, probabilities: np.ndarray, n_classes: int) -> None:
    """What the scorer's CSV reader refuses, refused here with the images named: duplicate images, missing or
    out-of-range probabilities, a label outside the classes."""
    if len(images) != len(y_true) or probabilities.shape != (len(images), n_classes):
        raise ValueError(f"official ISIC score: {len(images)} images, {len(y_true)} labels and probabilities of "
                         f"shape {probabilities.shape}; expected one row of {n_classes} class probabilities per image")
    names = np.asarray(images, dtype=object)
    duplicated = sorted(set(names[_duplicated(names)]))
    if duplicated:
        raise ValueError(f"official ISIC score: the test split names {len(duplicated)} image(s) more than once "
                         f"({_few(duplicated)}); the scorer needs one row per image: check merge's de-duplication")
    bad = ~np.isfinite(probabilities).all(axis=1) | (probabilities < 0).any(axis=1) | (probabilities > 1).any(axis=1)
    if bad.any():
        raise ValueError(f"official ISIC score: {int(bad.sum())} test image(s) have a probability that is missing or "
                         f"outside [0, 1] ({_few(names[bad].tolist())}); the model's output must be a softmax")
    outside = (y_true < 0) | (y_true >= n_classes)
    if outside.any():
        raise ValueError(f"official ISIC score: label_index outside 0..{n_classes - 1} for {_few(names[outside])}")


def official_score(images: list[str], y_true: np.ndarray, probabilities: np.ndarray,
                   classes: tuple[str, ...]) -> ChallengeScore:
    """The scorer's BMA over every class, and its per-category scores over the classes with true and false cases."""
    from importlib.metadata import version

    from isic_challenge_scoring import ClassificationMetric, ClassificationScore
    from isic_challenge_scoring.metrics import _to_labels, balanced_multiclass_accuracy

    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=np.float64)  # float32 ties stay ties: the cast is exact
    check_predictions(images, y_true, probabilities, len(classes))
    truth, predicted, weights = _frames(images, y_true, probabilities, classes)
    scored, left_out = scorable_classes(y_true, classes)
    per_class: dict[str, dict[str, float]] = {}
    macro: dict[str, float] = {}
    if scored:
        # target_metric only picks the scorer's `overall`; its aggregate BMA over these columns is not used (above)
        result = ClassificationScore(truth[scored], predicted[scored], weights, ClassificationMetric.AUC)
        per_class = {cls: {k: float(v) for k, v in row.items()} for cls, row in result.per_category.iterrows()}
        macro = {k: float(v) for k, v in result.macro_average.items()}
    undecided = _to_labels(predicted).eq("undecided")
    return ChallengeScore(
        balanced_accuracy=float(balanced_multiclass_accuracy(truth, predicted, weights["score_weight"])),
        scored=scored, per_class=per_class, macro=macro, left_out=left_out,
        undecided=predicted.index[undecided.to_numpy()].tolist(), scorer_version=version("isic-challenge-scoring"))


def scorable_classes(y_true: np.ndarray, classes: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """Classes with true and false cases in the split, and each other class with the reason it is left out."""
    counts = np.bincount(y_true, minlength=len(classes))
    scored, left_out = [], {}
    for i, cls in enumerate(classes):
        if counts[i] == 0:
            left_out[cls] = "no true case in the test split: ROC AUC, AUC80 and AP are undefined"
        elif counts[i] == len(y_true):
            left_out[cls] = "every test image is this class: no false case, ROC AUC and AUC80 are undefined"
        else:
            scored.append(cls)
    return scored, left_out


def _frames(images: list[str], y_true: np.ndarray, probabilities: np.ndarray,
            classes: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Truth (one-hot), predictions and weights as the scorer's CSV readers build them from the challenge files."""
    import pandas as pd

    index = pd.Index(images, name="image")
    truth = pd.DataFrame(np.eye(len(classes))[y_true], index=index, columns=list(classes))
    predicted = pd.DataFrame(probabilities, index=index, columns=list(classes))
    # a truth CSV without weights gets 1.0 for both (the scorer's parse_truth_csv)
    weights = pd.DataFrame({"score_weight": 1.0, "validation_weight": 1.0}, index=index)
    return truth, predicted, weights


def metric_values(score: ChallengeScore) -> dict[str, float]:
    """The KFP Metrics entries: isic_balanced_accuracy, the macro isic_auc / isic_auc_sens_80 / isic_ap over the
    scored classes, each scored class's three, and the counts of undecided images and scored classes."""
    values = {"isic_balanced_accuracy": score.balanced_accuracy, "isic_undecided_images": len(score.undecided),
              "isic_classes_scored": len(score.scored)}
    values.update({f"isic_{k}": score.macro[k] for k in LOGGED if k in score.macro})
    for cls, row in score.per_class.items():
        values.update({f"isic_{cls}_{k}": row[k] for k in LOGGED})
    return values


def render_section(score: ChallengeScore, dermpipe_bma: float) -> str:
    """The report's "ISIC challenge score" section: the official BMA beside dermpipe's, the per-class table, what
    was left out and which images were undecided."""
    from html import escape

    from dermpipe.reports import table

    ties = (f"{len(score.undecided)} test image(s) have a tied top probability: the official rule counts them as "
            f"undecided (wrong); dermpipe's BMA gives each to the first tied class"
            if score.undecided else "No tied top probabilities: the official BMA and dermpipe's count the same rows")
    headline = table(["metric", "official (isic-challenge-scoring)", "dermpipe"],
                     [("balanced multiclass accuracy", score.balanced_accuracy, dermpipe_bma),
                      *((f"mean {SHOWN[k]} ({len(score.scored)} classes)", score.macro[k], "")
                        for k in LOGGED if k in score.macro)])
    per_class = table(["class", *SHOWN.values()],
                      [(cls, *(row[k] for k in SHOWN)) for cls, row in score.per_class.items()])
    left = table(["class", "left out of the per-class scores because"], score.left_out.items())
    listed = (f"<details><summary>undecided images ({len(score.undecided)})</summary><p>"
              f"{escape(', '.join(score.undecided))}</p></details>" if score.undecided else "")
    return (f"<h2>ISIC challenge score</h2><p>Computed by the challenge's own scorer, isic-challenge-scoring "
            f"{escape(score.scorer_version)}, on the plain (no TTA) test predictions. {ties}.</p>{headline}{listed}"
            f"<h3>Per class (official)</h3>{per_class}"
            + (f"<h3>Classes left out</h3>{left}" if score.left_out else ""))


def _duplicated(names: np.ndarray) -> np.ndarray:
    _, first, counts = np.unique(names, return_index=True, return_counts=True)
    mask = np.zeros(len(names), dtype=bool)
    mask[first[counts > 1]] = True
    return mask


def _few(names: list[str] | np.ndarray, shown: int = 10) -> str:
    names = list(names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(str(n) for n in names[:shown]) + more
