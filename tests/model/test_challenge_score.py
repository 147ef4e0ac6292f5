"""The official ISIC scorer in evaluate, checked against the scorer's own file path (the CSVs a challenge submission
uploads), scikit-learn, and hand-counted ties."""

import numpy as np
import pandas as pd
import pytest
from isic_challenge_scoring import ClassificationMetric, ClassificationScore
from sklearn.metrics import average_precision_score, roc_auc_score

from dermpipe import config
from dermpipe.model.evaluation.challenge_score import metric_values, official_score, render_section
from dermpipe.model.evaluation.metrics import evaluate_predictions

CLASSES = config.CLASSES


def _synthetic(n: int, present: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, present, n)
    logits = rng.normal(size=(n, len(CLASSES))) + 1.5 * np.eye(len(CLASSES))[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return [f"ISIC_{i:07d}" for i in range(n)], y, p


def test_untied_predictions_give_dermpipes_bma_and_skip_absent_classes():
    images, y, p = _synthetic(200, present=6, seed=0)  # VASC and SCC have no true case
    score = official_score(images, y, p, CLASSES)
    ours = evaluate_predictions(y, p, CLASSES)
    assert score.undecided == []
    assert score.balanced_accuracy == pytest.approx(ours.balanced_accuracy, abs=1e-12)
    assert 0.3 < score.balanced_accuracy < 0.9  # informative predictions, not chance: a wrong formula shows
    assert score.scored == ["MEL", "NV", "BCC", "AK", "BKL", "DF"]
    assert set(score.left_out) == {"VASC", "SCC"} and "no true case" in score.left_out["SCC"]
    for i, cls in enumerate(score.scored):
        assert score.per_class[cls]["auc"] == pytest.approx(roc_auc_score(y == i, p[:, i]))
        assert score.per_class[cls]["ap"] == pytest.approx(average_precision_score(y == i, p[:, i]))
        # the ROC area right of where sensitivity reaches 0.8: part of the whole area
        assert 0.0 < score.per_class[cls]["auc_sens_80"] < score.per_class[cls]["auc"]
    assert score.macro["auc"] == pytest.approx(np.mean([score.per_class[c]["auc"] for c in score.scored]))
    values = metric_values(score)
    assert values["isic_balanced_accuracy"] == score.balanced_accuracy and values["isic_classes_scored"] == 6
    assert values["isic_MEL_auc_sens_80"] == score.per_class["MEL"]["auc_sens_80"]
    assert "isic_SCC_auc" not in values and values["isic_undecided_images"] == 0


def test_the_scorer_reading_challenge_csvs_gives_the_same_figures(tmp_path):
    """The same predictions as a challenge submission: truth and prediction CSVs through ClassificationScore.
    from_file, the scorer's own reader (every class present, so it scores them all)."""
    images, y, p = _synthetic(240, present=len(CLASSES), seed=1)
    truth = pd.DataFrame(np.eye(len(CLASSES))[y], columns=list(CLASSES)).assign(image=images)
    truth[["image", *CLASSES]].to_csv(tmp_path / "truth.csv", index=False)
    submission = pd.DataFrame(p, columns=list(CLASSES)).assign(image=[f"{i}.jpg" for i in images])
    submission[["image", *CLASSES]].to_csv(tmp_path / "prediction.csv", index=False, float_format="%.17g")
    with pytest.warns(FutureWarning):  # the reader's applymap: removed in pandas 3, hence dermpipe's pin
        official = ClassificationScore.from_file(tmp_path / "truth.csv", tmp_path / "prediction.csv",
                                                 ClassificationMetric.BALANCED_ACCURACY)
    score = official_score(images, y, p, CLASSES)
    assert score.left_out == {} and score.scored == list(CLASSES)
    assert score.balanced_accuracy == pytest.approx(official.overall, abs=1e-12)
    for cls in CLASSES:
        for metric in ("auc", "auc_sens_80", "ap", "sensitivity", "specificity"):
            assert score.per_class[cls][metric] == pytest.approx(official.per_category.at[cls, metric], abs=1e-12)


def test_a_tied_maximum_is_undecided_and_counts_wrong():
    # 2 MEL and 2 NV images; image 1's MEL and NV tie at 0.4: argmax (first) says MEL, right; officially undecided
    p = np.full((4, len(CLASSES)), 0.0)
    p[0, 0], p[0, 1] = 0.9, 0.1       # MEL, right
    p[1, 0], p[1, 1], p[1, 2] = 0.4, 0.4, 0.2  # MEL, tied with NV
    p[2, 1], p[2, 0] = 0.7, 0.3       # NV, right
    p[3, 0], p[3, 1] = 0.6, 0.4       # NV, wrong
    y = np.array([0, 0, 1, 1])
    images = ["ISIC_a", "ISIC_tied", "ISIC_c", "ISIC_d"]
    score = official_score(images, y, p, CLASSES)
    assert evaluate_predictions(y, p, CLASSES).balanced_accuracy == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert score.balanced_accuracy == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert score.undecided == ["ISIC_tied"] and metric_values(score)["isic_undecided_images"] == 1
    html = render_section(score, 0.75)
    assert "ISIC challenge score" in html and "1 test image(s) have a tied top probability" in html
    assert "ISIC_tied" in html and "0.5000" in html and "0.7500" in html


def test_a_split_of_one_class_scores_bma_and_says_why_nothing_else():
    images, _, p = _synthetic(10, present=1, seed=2)
    score = official_score(images, np.zeros(10, dtype=int), p, CLASSES)
    assert score.scored == [] and score.per_class == {} and score.macro == {}
    assert "every test image is this class" in score.left_out["MEL"] and len(score.left_out) == len(CLASSES)
    assert score.balanced_accuracy == pytest.approx(float((p.argmax(axis=1) == 0).mean()))
    assert "Classes left out" in render_section(score, score.balanced_accuracy)


def test_bad_predictions_are_refused_with_the_image_named():
    images, y, p = _synthetic(5, present=2, seed=3)
    broken = p.copy()
    broken[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"1 test image\(s\) have a probability .*ISIC_0000003.*softmax"):
        official_score(images, y, broken, CLASSES)
    with pytest.raises(ValueError, match=r"more than once \(ISIC_0000000\)"):
        official_score(["ISIC_0000000", *images[:4]], y, p, CLASSES)
    with pytest.raises(ValueError, match="one row of 8 class probabilities per image"):
        official_score(images, y, p[:, :7], CLASSES)
