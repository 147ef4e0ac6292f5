"""Decision-curve analysis and calibration: net benefit against a table computed by hand, the temperature that
undoes a known over-confidence, and ECE figures by hand."""

import numpy as np
import pytest

from dermpipe import config
from dermpipe.model.evaluation.calibration import (
    TEMPERATURE_GRID,
    Calibration,
    fit_calibration,
    melanoma_ece,
    smoothed_targets,
)
from dermpipe.model.evaluation.decision_curve import curve, net_benefit, refer_all

MEL = config.CLASSES.index("MEL")


def _table(tp: int, fp: int, fn: int, tn: int) -> tuple[np.ndarray, np.ndarray]:
    positive = np.array([True] * (tp + fn) + [False] * (fp + tn))
    referred = np.array([True] * tp + [False] * fn + [True] * fp + [False] * tn)
    return positive, referred


def test_net_benefit_matches_the_formula_on_a_known_table():
    positive, referred = _table(tp=8, fp=20, fn=2, tn=70)  # n = 100, prevalence 0.1
    # Vickers & Elkin: TP/n - FP/n * p_t / (1 - p_t) = 0.08 - 0.20 * 0.25 at p_t = 0.2
    assert net_benefit(positive, referred, 0.2) == pytest.approx(0.03)
    assert refer_all(positive, 0.2) == pytest.approx(0.10 - 0.90 * 0.25)  # -0.125
    assert refer_all(positive, 0.05) == pytest.approx(0.10 - 0.90 / 19)
    assert net_benefit(positive, np.zeros(100, bool), 0.3) == 0.0  # refer none


def test_curve_of_a_model_that_refers_everyone_is_refer_all():
    positive, _ = _table(tp=10, fp=90, fn=0, tn=0)
    found = curve(positive, np.full(100, 0.99), grid=np.array([0.1, 0.5, 0.9]))
    assert found["model"] == pytest.approx(found["refer_all"]) and found["refer_none"] == [0.0] * 3


def test_net_benefit_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="3 labels for 2 referrals"):
        net_benefit(np.array([True, False, True]), np.array([True, False]), 0.1)


def test_melanoma_ece_by_hand():
    positive = np.array([False, True, True, True])
    # bin 0.1: mean score 0.1, melanoma share 0.5 (gap 0.4, 2 images); bin 0.9: 0.9 vs 1.0 (gap 0.1, 2 images)
    assert melanoma_ece(positive, np.array([0.1, 0.1, 0.9, 0.9])) == pytest.approx((0.4 * 2 + 0.1 * 2) / 4)


def _overconfident(n: int, power: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from calibrated probabilities, reported as p**power renormalised (softmax(power * logits))."""
    rng = np.random.default_rng(seed)
    truth = rng.dirichlet(np.full(len(config.CLASSES), 0.7), n)
    labels = np.array([rng.choice(len(config.CLASSES), p=p) for p in truth])
    shown = truth**power
    return labels, shown / shown.sum(axis=1, keepdims=True)


def test_temperature_undoes_a_known_overconfidence_and_lowers_ece_on_unseen_data():
    labels, probabilities = _overconfident(3000, 3.0, 0)
    test_labels, test_probabilities = _overconfident(3000, 3.0, 1)
    found = fit_calibration(labels, probabilities, "val", (test_labels, test_probabilities))
    assert 2.5 < found.temperature < 3.6  # the true temperature is 3
    assert found.ece["test_top_label_after"] < 0.5 * found.ece["test_top_label_before"]
    assert found.ece["test_melanoma_after"] < found.ece["test_melanoma_before"]
    calibrated = found.apply(test_probabilities)
    assert (calibrated.argmax(axis=1) == test_probabilities.argmax(axis=1)).all()  # the predicted class is kept
    assert Calibration.from_dict(found.as_dict()) == found


def test_a_clinical_json_without_calibration_is_the_identity_and_a_bad_one_is_refused():
    p = np.array([[0.6, 0.4, 0, 0, 0, 0, 0, 0]])
    assert (Calibration.from_dict(None).apply(p) == p).all()
    with pytest.raises(ValueError, match="temperature > 0"):
        Calibration.from_dict({"method": "temperature", "temperature": 0})


def test_smoothed_targets_by_hand():
    targets = smoothed_targets(np.array([0, 0, 1]), 3)  # 3 rows: the true class 4/5, the others 1/10 each
    np.testing.assert_allclose(targets, [[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])


def test_a_perfectly_separated_set_gets_a_finite_temperature_not_hard_zeros_and_ones():
    """The demo's case: hard-label NLL falls for ever as T -> 0 on a separated set; smoothed targets stop it near
    (n + 1) / (n + 2) = 39/40 for 38 rows."""
    labels = np.r_[np.full(7, MEL), np.full(31, 1)]
    p = np.full((38, len(config.CLASSES)), 0.05)
    p[labels == MEL, MEL], p[labels == 1, 1] = 0.5, 0.5  # right, under-confident
    found = fit_calibration(labels, p / p.sum(axis=1, keepdims=True))
    assert TEMPERATURE_GRID[0] < found.temperature < 1.0  # sharpened, but not to the grid's edge
    melanoma = found.apply(p / p.sum(axis=1, keepdims=True))[labels == MEL, MEL]
    assert 0.95 < melanoma.min() and melanoma.max() < 0.99  # about 39/40, not 1.0
    assert found.ece["fit_top_label_after"] < 0.5 * found.ece["fit_top_label_before"]  # right but under-confident
