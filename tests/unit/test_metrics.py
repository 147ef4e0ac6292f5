import numpy as np
import pytest

from dermpipe.config import CLASSES
from dermpipe.metrics import evaluate_predictions


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
