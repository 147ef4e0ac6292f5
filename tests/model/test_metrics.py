import numpy as np
import pytest

from dermpipe.config import CLASSES
from dermpipe.model.evaluation.metrics import evaluate_predictions


def _onehot(pred, n=8):
    return np.eye(n)[pred]


def test_bma_is_mean_recall_over_present_classes():
    y_true = np.array([0, 0, 0, 0, 1, 1])  # MEL x4, NV x2
    y_pred = np.array([0, 0, 1, 1, 1, 1])
    ev = evaluate_predictions(y_true, _onehot(y_pred), CLASSES)
    assert ev.balanced_accuracy == pytest.approx((0.5 + 1.0) / 2)
    assert ev.accuracy == pytest.approx(4 / 6)
    assert ev.per_class["MEL"]["precision"] == pytest.approx(1.0)
    assert ev.per_class["NV"]["precision"] == pytest.approx(0.5)
    assert ev.macro_f1 == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert ev.absent_classes == ["BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    assert ev.confusion[0][:2] == [2, 2] and ev.confusion[1][:2] == [0, 2]
    assert np.asarray(ev.confusion).shape == (8, 8)


def test_prediction_of_absent_class_counts_against_precision_only():
    y_true = np.array([0, 1])
    y_pred = np.array([2, 1])  # BCC predicted but absent
    ev = evaluate_predictions(y_true, _onehot(y_pred), CLASSES)
    assert ev.balanced_accuracy == pytest.approx(0.5)
    assert ev.confusion[0][2] == 1


def test_empty_split_is_a_clear_error():
    with pytest.raises(ValueError, match="empty split"):
        evaluate_predictions(np.array([]), np.zeros((0, 8)), CLASSES)


def test_specificity_auc_and_melanoma_operating_points():
    from dermpipe.model.evaluation.metrics import sensitivity_at_specificity, specificity_per_class

    confusion = np.array([[3, 1], [2, 4]])
    np.testing.assert_allclose(specificity_per_class(confusion), [4 / 6, 3 / 4])
    y_true = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    mel_score = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.1, 0.05])
    # 80% specificity allows one false positive among five negatives (0.7): threshold 0.3 finds every melanoma;
    # 90% allows none: threshold 0.8 finds two of three.
    assert sensitivity_at_specificity(y_true, mel_score, 0, 0.8) == pytest.approx(1.0)
    assert sensitivity_at_specificity(y_true, mel_score, 0, 0.9) == pytest.approx(2 / 3)
    assert sensitivity_at_specificity(np.array([1, 1]), np.array([0.1, 0.2]), 0, 0.8) is None
    probs = np.zeros((8, 8))
    probs[:, 0], probs[:, 1] = mel_score, 1 - mel_score
    ev = evaluate_predictions(y_true, probs, CLASSES)
    assert ev.per_class["MEL"]["roc_auc"] == pytest.approx(14 / 15)
    assert ev.per_class["BCC"]["roc_auc"] is None  # absent class
    assert ev.mel_sensitivity_at_specificity == {"80%": pytest.approx(1.0), "90%": pytest.approx(2 / 3)}


def test_expected_calibration_error():
    from dermpipe.model.evaluation.metrics import reliability

    y_true = np.array([0, 0, 0, 0, 1])
    probs = np.array([[0.95, 0.05]] * 4 + [[0.95, 0.05]])  # 95% confident, 80% right
    ece, bins = reliability(y_true, probs)
    assert ece == pytest.approx(0.15)
    assert bins == [{"low": pytest.approx(0.9), "high": pytest.approx(1.0), "n": 5,
                     "confidence": pytest.approx(0.95), "accuracy": pytest.approx(0.8)}]


def test_slices_with_sample_sizes_and_age_bands():
    from dermpipe.model.evaluation.metrics import age_band, slice_table

    assert [age_band(a) for a in (0.0, 35.0, 40.0, 85.0, float("nan"))] == [
        "0-19", "20-39", "40-59", "80-99", "(missing)"]
    y_true = np.array([0, 1, 0, 1])
    probs = _onehot(np.array([0, 0, 0, 1]))
    rows = slice_table(["male", "male", "female", "female"], y_true, probs)
    assert rows == [
        {"slice": "female", "n": 2, "accuracy": 1.0, "balanced_accuracy": 1.0},
        {"slice": "male", "n": 2, "accuracy": 0.5, "balanced_accuracy": 0.5},
    ]
