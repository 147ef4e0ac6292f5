"""The statistical deployment gate: bootstrap BMA, paired differences, the four rules and the report."""

import json
import math
import re
import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from dermpipe.deploy.gate.decision import Decision, chance_level, decide, fit_image_stats_baseline
from dermpipe.deploy.gate.stage import GateParams
from dermpipe.model.evaluation.bootstrap import (
    Interval,
    balanced_accuracy_resampled,
    bootstrap_bma,
    bootstrap_indices,
    paired_difference,
)


def _two_class(n_per_class: int, correct_per_class: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Balanced two-class labels and predictions with a given number correct in each class (deterministic)."""
    y = np.repeat([0, 1], n_per_class)
    pred = y.copy()
    for cls, correct in enumerate(correct_per_class):
        members = np.flatnonzero(y == cls)
        pred[members[correct:]] = 1 - cls
    return y, pred


def _corrupt(y: np.ndarray, accuracy: float, n_classes: int, seed: int) -> np.ndarray:
    """Predictions equal to y on a `accuracy` fraction of images, a different class elsewhere."""
    rng = np.random.default_rng(seed)
    pred = y.copy()
    wrong = rng.random(len(y)) >= accuracy
    pred[wrong] = (y[wrong] + rng.integers(1, n_classes, wrong.sum())) % n_classes
    return pred


def test_chance_level_counts_present_classes():
    assert chance_level(np.array([0, 1, 1, 0])) == 0.5
    assert chance_level(np.array([2, 7, 7])) == 0.5  # labels 2 and 7 present, not 8 classes
    assert chance_level(np.arange(8).repeat(3)) == 0.125
    with pytest.raises(ValueError):
        chance_level(np.array([]))


def test_bootstrap_indices_shape_range_and_seed():
    idx = bootstrap_indices(48, 100, seed=3)
    assert idx.shape == (100, 48)
    assert idx.min() >= 0 and idx.max() < 48
    np.testing.assert_array_equal(idx, bootstrap_indices(48, 100, seed=3))
    assert not np.array_equal(idx, bootstrap_indices(48, 100, seed=4))


@pytest.mark.parametrize("n_classes", [2, 4, 8])
def test_resampled_bma_equals_sklearn_on_each_resample(n_classes):
    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, 120)
    pred = np.where(rng.random(120) < 0.6, y, rng.integers(0, n_classes + 1, 120))  # includes an absent class
    idx = bootstrap_indices(120, 25, seed=1)
    got = balanced_accuracy_resampled(y, pred, idx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when y_pred has classes absent from y_true
        expected = np.array([balanced_accuracy_score(y[i], pred[i]) for i in idx])
    np.testing.assert_array_equal(got, expected)


def test_resample_averages_only_classes_present_in_it():
    y, pred = np.array([0, 0, 1]), np.array([0, 1, 1])
    got = balanced_accuracy_resampled(y, pred, np.array([[0, 1, 0], [2, 2, 2], [0, 1, 2]]))
    np.testing.assert_allclose(got, [2 / 3, 1.0, (0.5 + 1.0) / 2])


def test_interval_bounds_are_one_sided_quantiles():
    y, pred = _two_class(24, (18, 16))
    params = GateParams(n_bootstrap=500, seed=7)
    iv = bootstrap_bma(y, pred, params)
    samples = balanced_accuracy_resampled(y, pred, bootstrap_indices(48, 500, 7))
    assert iv.point == pytest.approx(balanced_accuracy_score(y, pred))
    assert iv.lower == pytest.approx(np.quantile(samples, 0.05))
    assert iv.upper == pytest.approx(np.quantile(samples, 0.95))
    assert (iv.n, iv.n_bootstrap) == (48, 500)
    assert iv.as_dict() == {"point": iv.point, "lower": iv.lower, "upper": iv.upper, "n": 48, "n_bootstrap": 500}


def test_interval_is_deterministic_for_a_seed_and_tightens_with_n():
    params = GateParams()
    y, pred = _two_class(24, (18, 18))
    assert bootstrap_bma(y, pred, params) == bootstrap_bma(y, pred, params)
    assert bootstrap_bma(y, pred, params) != bootstrap_bma(y, pred, GateParams(seed=1))
    ivs = [bootstrap_bma(*_two_class(m, (m * 3 // 4, m * 3 // 4)), params) for m in (24, 240, 2400)]
    assert all(iv.point == pytest.approx(0.75) for iv in ivs)
    assert ivs[0].lower < ivs[1].lower < ivs[2].lower < 0.75
    assert ivs[0].width > ivs[1].width > ivs[2].width


def test_identical_predictions_give_zero_difference_and_pass_rule_3():
    y, pred = _two_class(24, (20, 19))
    diff = paired_difference(y, pred, pred.copy(), GateParams())
    assert (diff.point, diff.lower, diff.upper) == (0.0, 0.0, 0.0)
    d = decide(y, pred, GateParams(), champion_pred=pred.copy(), champion_version="3")
    assert d.conditions["non_inferior_to_champion"] is True
    assert d.blessed
    assert any("champion (version 3)" in r and "passed" in r for r in d.reasons)


def test_shuffled_label_model_is_not_blessed_and_reason_names_chance():
    y, pred = _two_class(24, (13, 12))  # point BMA 0.52, what a shuffled-label model scores
    d = decide(y, pred, GateParams())
    assert 0.5 <= d.intervals["challenger"].point < 0.55  # the old point-estimate gate would bless this
    assert d.conditions == {"min_balanced_accuracy": True, "above_chance": False}
    assert not d.blessed
    assert d.chance == 0.5 and d.n_test == 48
    chance_reason = next(r for r in d.reasons if "chance level" in r)
    assert "chance level 0.5000 (1/2 classes)" in chance_reason and "n=48 images" in chance_reason
    assert "not above" in chance_reason
    assert "no deployed model to compare with (first deployment)" in d.reasons
    assert d.too_small
    assert any("too small to tell" in r for r in d.reasons)


def test_too_small_reason_estimates_images_for_width_one_tenth():
    y, pred = _two_class(24, (13, 12))
    d = decide(y, pred, GateParams())
    width = d.intervals["challenger"].width
    assert width > 0.2
    reason = next(r for r in d.reasons if "too small to tell" in r)
    needed = int(re.search(r"roughly (\d+) test images", reason).group(1))
    assert needed == math.ceil(48 * (width / 0.1) ** 2)
    assert needed > 48


def test_strong_classifier_on_48_images_is_blessed():
    y, pred = _two_class(24, (22, 21))  # ~90 % correct
    d = decide(y, pred, GateParams())
    assert d.blessed
    assert all(d.conditions.values())
    assert d.intervals["challenger"].lower > 0.75
    assert d.markdown().splitlines()[2] == "**Blessed**: deploy runs."


def test_much_worse_challenger_than_champion_is_not_blessed():
    y, champion = _two_class(24, (23, 23))
    _, challenger = _two_class(24, (17, 16))
    d = decide(y, challenger, GateParams(), champion_pred=champion, champion_version="7")
    assert d.conditions["min_balanced_accuracy"]
    assert d.conditions["non_inferior_to_champion"] is False
    assert not d.blessed
    assert d.intervals["champion_difference"].upper < -0.02


def test_slightly_worse_challenger_on_large_split_is_within_the_margin():
    y, champion = _two_class(2000, (1800, 1800))
    _, challenger = _two_class(2000, (1790, 1790))  # 0.005 worse, margin 0.02
    d = decide(y, challenger, GateParams(), champion_pred=champion, champion_version="7")
    diff = d.intervals["champion_difference"]
    assert diff.point == pytest.approx(-0.005)
    assert -0.02 < diff.lower < -0.005
    assert d.blessed and not d.too_small


def test_required_baseline_blocks_an_equal_challenger_and_passes_a_better_one():
    params = GateParams(require_beat_baseline=True)
    y, pred = _two_class(100, (90, 88))
    equal = decide(y, pred, params, baseline_pred=pred.copy())
    assert equal.conditions["beats_baseline"] is False and not equal.blessed
    _, weak = _two_class(100, (55, 56))
    better = decide(y, pred, params, baseline_pred=weak)
    assert better.conditions["beats_baseline"] is True and better.blessed
    assert better.intervals["baseline_difference"].lower > 0


def test_baseline_not_required_is_reported_only():
    y, pred = _two_class(100, (90, 88))
    d = decide(y, pred, GateParams(), baseline_pred=pred.copy())
    assert d.blessed
    assert "beats_baseline" not in d.conditions
    assert {"baseline", "baseline_difference"} <= set(d.intervals)
    assert any("reported only; set require_beat_baseline to make it a condition" in r for r in d.reasons)


def test_point_floor_still_applies():
    y, pred = _two_class(2000, (1500, 1500))
    d = decide(y, pred, GateParams(min_balanced_accuracy=0.8))
    assert d.conditions == {"min_balanced_accuracy": False, "above_chance": True}
    assert not d.blessed


def test_image_stats_baseline_beats_chance_on_separable_features():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0]], dtype=float)
    train_y, test_y = rng.integers(0, 3, 300), rng.integers(0, 3, 150)
    train_x = centres[train_y] + rng.normal(size=(300, 3))
    test_x = centres[test_y] + rng.normal(size=(150, 3))
    pred = fit_image_stats_baseline(train_x, train_y, test_x)
    assert pred.shape == (150,)
    assert balanced_accuracy_score(test_y, pred) > 0.8
    train_x[::7, 0] = np.nan
    test_x[::5, 1] = np.nan
    train_x[:, 2] = np.nan  # an all-missing feature
    pred_nan = fit_image_stats_baseline(train_x, train_y, test_x)
    assert balanced_accuracy_score(test_y, pred_nan) > 0.7


def test_image_stats_baseline_with_one_training_class_predicts_it():
    pred = fit_image_stats_baseline(np.ones((5, 2)), np.full(5, 4), np.zeros((3, 2)))
    np.testing.assert_array_equal(pred, [4, 4, 4])


def test_markdown_lists_every_interval_and_metadata_is_json():
    y, pred = _two_class(24, (22, 21))
    _, champion = _two_class(24, (21, 21))
    _, baseline = _two_class(24, (14, 13))
    d = decide(y, pred, GateParams(), champion_pred=champion, champion_version="2", baseline_pred=baseline)
    assert set(d.intervals) == {"challenger", "champion_difference", "baseline", "baseline_difference"}
    md = d.markdown()
    assert md.startswith("# Deployment gate\n")
    assert "| 95 % lower |" in md
    for key, iv in d.intervals.items():
        assert f"| {key} | {iv.point:.4f} | {iv.lower:.4f} | {iv.upper:.4f} | {iv.n} |" in md
    for reason in d.reasons:
        assert f"- {reason}" in md
    meta = json.loads(json.dumps(d.metadata()))
    assert meta["blessed"] == d.blessed and meta["n_test"] == 48 and meta["chance_level"] == 0.5
    assert "too_small" in meta
    for key, iv in d.intervals.items():
        assert meta[f"{key}_lower"] == iv.lower and meta[f"{key}_point"] == iv.point
        assert meta[f"{key}_upper"] == iv.upper


def test_not_blessed_markdown_verdict_and_input_checks():
    d = Decision(blessed=False, reasons=["x"], intervals={"challenger": Interval(0.5, 0.4, 0.6, 10, 100)})
    assert "**Not blessed**: deploy is skipped." in d.markdown()
    with pytest.raises(ValueError, match="empty"):
        decide(np.array([]), np.array([]), GateParams())
    with pytest.raises(ValueError, match="predictions"):
        decide(np.array([0, 1]), np.array([0]), GateParams())


def test_the_melanoma_operating_point_rule():
    """Blessed only while the test sensitivity's interval reaches the target; unchecked without test melanomas."""
    from dermpipe.model.evaluation.operating_points import OperatingPoint

    y, pred = _two_class(100, (90, 90))
    def point(sensitivity: float, lower: float, upper: float) -> OperatingPoint:
        return OperatingPoint("melanoma_sens95", 0.2, 0.95, test={
            "sensitivity": sensitivity, "sensitivity_lower": lower, "sensitivity_upper": upper, "specificity": 0.6,
            "positives": 40})
    held = decide(y, pred, GateParams(), operating_point=point(0.9, 0.8, 0.97))
    assert held.blessed and held.conditions["melanoma_operating_point"] is True
    assert "test sensitivity 0.9000 (95 % interval 0.8000 to 0.9700, 40 melanomas)" in held.reasons[-1]
    short = decide(y, pred, GateParams(), operating_point=point(0.7, 0.6, 0.8))
    assert not short.blessed and short.conditions["melanoma_operating_point"] is False
    assert "the whole interval is below the target: failed" in short.reasons[-1]
    unmeasured = decide(y, pred, GateParams(), operating_point=OperatingPoint("melanoma_sens95", 0.2, 0.95))
    assert unmeasured.blessed and "melanoma_operating_point" not in unmeasured.conditions
    assert "not checked" in unmeasured.reasons[-1]
    few = decide(y, pred, GateParams(min_melanomas=50), operating_point=point(0.7, 0.6, 0.8))
    assert few.blessed and "melanoma_operating_point" not in few.conditions
    assert "reported only, 40 test melanomas are too few to decide on (at least 50)" in " ".join(few.reasons)


def test_an_invalid_default_point_or_one_under_its_floor_on_test_never_passes():
    """The issue's case: test sensitivity 1.0, specificity 0.0 was 'passed'; now it fails, and so does a point not
    achievable by the model, whatever its test sensitivity."""
    from dermpipe.model.evaluation.operating_points import OperatingPoint

    y, pred = _two_class(100, (90, 90))
    test = {"sensitivity": 1.0, "sensitivity_lower": 1.0, "sensitivity_upper": 1.0, "specificity": 0.0,
            "positives": 40}
    everyone = decide(y, pred, GateParams(), operating_point=OperatingPoint(
        "melanoma_sens95", 0.01, 0.95, test=test, min_specificity=0.2))
    assert not everyone.blessed and everyone.conditions["melanoma_operating_point"] is False
    assert "test specificity 0.0000 is under the floor 0.20" in everyone.reasons[-1]
    assert "passed" not in everyone.reasons[-1]
    invalid = decide(y, pred, GateParams(min_melanomas=50), operating_point=OperatingPoint(
        "melanoma_sens95", 0.01, 0.95, test={**test, "specificity": 0.5}, min_specificity=0.2,
        invalid="net benefit 0.1 at threshold probability 0.010 does not beat refer all (0.1)"))
    assert not invalid.blessed and invalid.conditions["melanoma_operating_point"] is False
    assert "not achievable by this model (net benefit" in invalid.reasons[-1]
