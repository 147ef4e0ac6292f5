"""Operating points: chosen on validation, they reach the target there; a higher target gives a lower threshold."""

import numpy as np
import pytest

from dermpipe import config
from dermpipe.model.evaluation.operating_points import (
    OperatingPoint,
    below_floor,
    bootstrap_rates,
    bootstrap_threshold,
    choose_operating_points,
    falls_short,
    gap_threshold,
    point_name,
    rates,
    targets_for,
    threshold_for_sensitivity,
    validity,
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


def test_gap_threshold_sits_in_the_middle_of_the_gap_below_the_lowest_referred_score():
    positive = np.array([True, True, True, False, False])
    scores = np.array([0.9, 0.8, 0.6, 0.5, 0.2])
    assert gap_threshold(positive, scores, 0.95) == pytest.approx(0.55)  # all 3: edge 0.6, next score below 0.5
    assert gap_threshold(positive, scores, 0.6) == pytest.approx(0.7)  # 2 of 3: edge 0.8, next below 0.6
    assert rates(positive, scores, 0.55) == rates(positive, scores, threshold_for_sensitivity(positive, scores, 0.95))


def test_bootstrap_median_threshold_of_a_separated_set_lies_inside_the_gap_not_at_its_edge():
    rng = np.random.default_rng(0)
    positive = np.r_[np.ones(6, bool), np.zeros(40, bool)]
    scores = np.r_[rng.uniform(0.6, 0.9, 6), rng.uniform(0.0, 0.3, 40)]
    edge = threshold_for_sensitivity(positive, scores, 0.95)
    assert edge == scores[positive].min()  # today's threshold: on the lowest melanoma
    chosen = bootstrap_threshold(positive, scores, 0.95)
    low, high = scores[~positive].max(), scores[positive].min()
    assert low + 0.25 * (high - low) < chosen < high - 0.25 * (high - low)


def test_validity_figures_by_hand_and_a_good_point_is_valid():
    positive = np.array([True] * 10 + [False] * 90)
    scores = np.r_[np.full(8, 0.8), np.full(2, 0.1), np.full(9, 0.8), np.full(81, 0.1)]
    invalid, figures = validity(positive, scores, 0.5, min_specificity=0.2)
    # TP 8, FP 9 of n 100 at p_t 0.5: 0.08 - 0.09 * 1; refer all: 0.1 - 0.9 * 1
    assert figures["net_benefit"] == pytest.approx(-0.01) and figures["net_benefit_refer_all"] == pytest.approx(-0.8)
    assert "does not beat refer none (0.0000)" in invalid  # below 0: worse than referring no one
    invalid, figures = validity(positive, scores, 0.3, min_specificity=0.2)  # p_t 0.3: 0.08 - 0.09 * 3/7
    assert figures["net_benefit"] == pytest.approx(0.08 - 0.09 * 3 / 7) and invalid == ""


def test_the_refer_everyone_point_is_not_valid():
    positive, scores = _scores()
    invalid, figures = validity(positive, scores, 0.0)
    assert "specificity 0.000 is under the floor 0.20" in invalid
    assert "does not beat refer all" in invalid and figures["net_benefit"] == figures["net_benefit_refer_all"]


def test_chosen_points_carry_validity_and_a_chance_model_has_none_valid():
    y = np.where(_scores(300, 2)[0], MEL, 1)
    chance = np.full((len(y), len(config.CLASSES)), 0.01)
    chance[:, MEL] = np.random.default_rng(5).uniform(0, 1, len(y))  # scores unrelated to the labels
    points = choose_operating_points(y, chance, targets_for(0.95), y, chance, min_specificity=0.2)
    assert all(not p.valid and "under the floor" in p.invalid for p in points)
    assert all(below_floor(p) for p in points)  # and on test: never a pass
    assert OperatingPoint.from_dict(points[0].as_dict()) == points[0] and points[0].as_dict()["valid"] is False


def test_targets_the_model_cannot_tell_apart_say_so():
    y = np.r_[np.full(3, MEL), np.ones(60, int)]
    p = np.full((len(y), len(config.CLASSES)), 0.01)
    p[:, MEL] = np.r_[0.9, 0.85, 0.8, np.linspace(0.0, 0.3, 60)]  # 3 melanomas: 90, 95 and 99 % all need 3 of 3
    points = choose_operating_points(y, p, targets_for(0.95))
    assert points[0].note == "" and all(pt.valid for pt in points)
    for other in points[1:]:
        assert other.note.startswith("same referrals as melanoma_sens95")
        assert "cannot tell these targets apart on 3 val melanomas" in other.note


def test_below_floor_judges_test_specificity():
    point = OperatingPoint("p", 0.2, 0.95, test={"specificity": 0.1}, min_specificity=0.2)
    assert below_floor(point) is True
    assert below_floor(OperatingPoint("p", 0.2, 0.95, test={"specificity": 0.3}, min_specificity=0.2)) is False
    assert below_floor(OperatingPoint("p", 0.2, 0.95, test={"specificity": 0.1})) is None  # an old point: no floor


@pytest.mark.parametrize("seed", [1, 3, 5])  # seeds where the bootstrap median alone falls short at 400 images
def test_the_chosen_threshold_always_reaches_the_target_where_it_was_chosen(seed):
    """The bootstrap median alone can sit a little above the threshold that reaches the target (0.948 for 0.95 on
    the real sample's out-of-fold predictions); the chosen one never does."""
    positive, scores = _scores(400, seed)
    y = np.where(positive, MEL, 1)
    p = np.full((len(y), len(config.CLASSES)), 0.01)
    p[:, MEL] = scores
    for point in choose_operating_points(y, p, targets_for(0.95)):
        assert point.chosen["sensitivity"] >= point.target_sensitivity
        assert point.threshold <= gap_threshold(positive, scores, point.target_sensitivity)
