"""Operating points: chosen on validation, they reach the target there; a higher target gives a lower threshold."""

import numpy as np
import pytest

from dermpipe import config
from dermpipe.model.evaluation.operating_points import (
    OperatingPoint,
    bootstrap_rates,
    choose_operating_points,
    falls_short,
    point_name,
    rates,
    targets_for,
    threshold_for_sensitivity,
)

MEL = config.CLASSES.index("MEL")


def _scores(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.25
    scores = np.clip(rng.normal(0.35, 0.15, n) + 0.3 * positive, 0, 1)
    return positive, scores


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.99])
def test_threshold_reaches_the_target_on_the_data_it_was_chosen_on(target):
    positive, scores = _scores()
    threshold = threshold_for_sensitivity(positive, scores, target)
    sensitivity, _ = rates(positive, scores, threshold)
    assert sensitivity >= target
    # the highest such threshold: one step above (the next positive score) misses the target
    above = scores[positive][scores[positive] > threshold]
    assert rates(positive, scores, above.min())[0] < target


def test_a_higher_target_gives_a_lower_threshold_and_lower_specificity():
    positive, scores = _scores()
    thresholds = [threshold_for_sensitivity(positive, scores, t) for t in (0.8, 0.9, 0.95, 0.99)]
    assert thresholds == sorted(thresholds, reverse=True) and thresholds[0] > thresholds[-1]
    specificities = [rates(positive, scores, t)[1] for t in thresholds]
    assert specificities[0] > specificities[-1]


def test_rates_count_scores_at_the_threshold_as_flagged():
    positive = np.array([True, True, False, False])
    assert rates(positive, np.array([0.9, 0.5, 0.5, 0.1]), 0.5) == (1.0, 0.5)


def test_bootstrap_interval_brackets_the_point_and_narrows_with_more_images():
    positive, scores = _scores(200)
    threshold = threshold_for_sensitivity(positive, scores, 0.9)
    sens, spec = rates(positive, scores, threshold)
    small = bootstrap_rates(positive, scores, threshold)
    assert small["sensitivity_lower"] <= sens <= small["sensitivity_upper"]
    assert small["specificity_lower"] <= spec <= small["specificity_upper"]
    big_pos, big_scores = _scores(4000, seed=1)
    big = bootstrap_rates(big_pos, big_scores, threshold)
    assert big["sensitivity_upper"] - big["sensitivity_lower"] < small["sensitivity_upper"] - small[
        "sensitivity_lower"]


def test_choose_on_val_reports_test_and_the_gate_rule():
    y_val, y_test = np.where(_scores(300, 2)[0], MEL, 1), np.where(_scores(300, 3)[0], MEL, 1)
    def probs(y, seed):
        p = np.full((len(y), len(config.CLASSES)), 0.01)
        p[:, MEL] = np.clip(np.random.default_rng(seed).normal(0.35, 0.15, len(y)) + 0.3 * (y == MEL), 0, 1)
        return p
    points = choose_operating_points(y_val, probs(y_val, 2), targets_for(0.95), y_test, probs(y_test, 3))
    assert [p.name for p in points] == ["melanoma_sens95", "melanoma_sens90", "melanoma_sens99"]
    assert all(p.chosen["sensitivity"] >= p.target_sensitivity for p in points)
    assert points[0].test["sensitivity_lower"] <= points[0].test["sensitivity"] <= points[0].test[
        "sensitivity_upper"]
    assert falls_short(points[0]) is False
    short = OperatingPoint("x", 0.99, 0.95, test={"sensitivity": 0.2, "sensitivity_lower": 0.1,
                                                  "sensitivity_upper": 0.3})
    assert falls_short(short) is True and falls_short(OperatingPoint("y", 0.5, 0.95)) is None
    assert OperatingPoint.from_dict(points[0].as_dict()) == points[0]


def test_errors_name_the_field():
    positive, scores = _scores()
    with pytest.raises(ValueError, match="melanoma_target_sensitivity = 1.5"):
        threshold_for_sensitivity(positive, scores, 1.5)
    with pytest.raises(ValueError, match="no positive"):
        threshold_for_sensitivity(np.zeros(10, bool), np.ones(10), 0.9)
    with pytest.raises(ValueError, match="missing 'threshold'"):
        OperatingPoint.from_dict({"name": "a", "target_sensitivity": 0.9})
    assert point_name(0.95) == "melanoma_sens95" and targets_for(0.9) == [0.9, 0.99]
