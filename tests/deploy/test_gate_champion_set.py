"""The gate's two comparisons with the champion: on the whole test split (the challenger's own evidence) and on the
champion's frozen benchmark set (its evidence); the challenger must be non-inferior on both."""

import numpy as np

from dermpipe.deploy.gate.decision import ChampionSet, decide
from dermpipe.deploy.gate.stage import GateParams

N_SET, N_NEW = 120, 360  # the champion's frozen groups, then the challenger's new test images


def _predictions(y: np.ndarray, accuracy: float, seed: int) -> np.ndarray:
    """Two-class predictions right on an `accuracy` share of each class's images (which ones: seeded)."""
    rng = np.random.default_rng(seed)
    pred = y.copy()
    for cls in (0, 1):
        members = np.flatnonzero(y == cls)
        wrong = rng.choice(members, size=round(len(members) * (1 - accuracy)), replace=False)
        pred[wrong] = 1 - cls
    return pred


def _split(set_acc: tuple[float, float], new_acc: tuple[float, float]):
    """(labels, challenger, champion, set) with accuracies (challenger, champion) on the set's and the new rows."""
    y = np.tile([0, 1], (N_SET + N_NEW) // 2)
    in_set = np.arange(len(y)) < N_SET
    challenger, champion = y.copy(), y.copy()
    for rows, (ours, theirs), seed in ((in_set, set_acc, 1), (~in_set, new_acc, 2)):
        challenger[rows] = _predictions(y[rows], ours, seed)
        champion[rows] = _predictions(y[rows], theirs, seed + 10)
    return y, challenger, champion, ChampionSet("demo-test@v1", in_set)


def test_a_challenger_that_wins_only_on_its_own_data_is_not_blessed():
    # the champion's images: the champion 0.95, the challenger 0.70; the new images: 0.95 against 0.60
    y, challenger, champion, found = _split((0.70, 0.95), (0.95, 0.60))
    old = decide(y, challenger, GateParams(), champion_pred=champion, champion_version="1")
    assert old.blessed  # the whole split alone: the challenger looks better, as the single-split gate had it
    d = decide(y, challenger, GateParams(), champion_pred=champion, champion_version="1", champion_set=found)
    assert d.conditions["non_inferior_to_champion"] is True
    assert d.conditions["non_inferior_on_champion_set"] is False and not d.blessed
    diff = d.intervals["champion_set_difference"]
    assert diff.n == N_SET and diff.upper < -0.1  # a clear margin: 0.25 worse on the champion's evidence
    assert any(r.startswith(f"on frozen benchmark set demo-test@v1 ({N_SET} of the {N_SET + N_NEW} test images): "
                            "champion (version 1) BMA") and r.endswith("failed") for r in d.reasons)


def test_a_challenger_equal_on_the_champions_set_but_worse_on_its_own_split_is_not_blessed():
    y, challenger, champion, found = _split((0.90, 0.90), (0.65, 0.92))
    challenger[found.mask] = champion[found.mask]  # the same answers on the champion's images: a difference of 0
    d = decide(y, challenger, GateParams(), champion_pred=champion, champion_version="1", champion_set=found)
    assert d.conditions["non_inferior_on_champion_set"] is True
    assert d.conditions["non_inferior_to_champion"] is False and not d.blessed
    assert d.intervals["champion_difference"].n == N_SET + N_NEW
    assert any(r.startswith("on the whole test split: champion (version 1)") for r in d.reasons)


def test_a_challenger_non_inferior_on_both_is_blessed():
    y, challenger, champion, found = _split((0.90, 0.90), (1.0, 0.90))
    challenger[found.mask] = champion[found.mask]
    d = decide(y, challenger, GateParams(), champion_pred=champion, champion_version="1", champion_set=found)
    assert d.blessed
    assert {"champion_difference", "champion_set_difference"} <= set(d.intervals)
    assert d.conditions["non_inferior_to_champion"] and d.conditions["non_inferior_on_champion_set"]


def test_a_set_that_cannot_be_compared_on_fails_with_its_reason():
    y, challenger, champion, _ = _split((0.95, 0.95), (0.95, 0.95))
    refusal = "the challenger's data shares no image/lesion with version 1's frozen benchmark set demo-test@v1"
    found = ChampionSet("demo-test@v1", np.zeros(len(y), dtype=bool), refusal)
    d = decide(y, challenger, GateParams(), champion_pred=champion, champion_version="1", champion_set=found)
    assert not d.blessed and d.conditions["comparable_on_champion_set"] is False
    assert f"{refusal}: failed" in d.reasons
    assert "champion_set_difference" not in d.intervals
    # without a champion there is nothing to compare on the set: the first deployment is judged on its own split
    first = decide(y, challenger, GateParams(), champion_set=found)
    assert first.blessed and "comparable_on_champion_set" not in first.conditions


def test_a_set_that_is_the_whole_split_is_compared_once():
    y, challenger, champion, _ = _split((0.90, 0.90), (0.90, 0.90))
    found = ChampionSet("demo-test@v1", np.ones(len(y), dtype=bool))
    d = decide(y, challenger, GateParams(), champion_pred=champion, champion_version="1", champion_set=found)
    assert "champion_set_difference" not in d.intervals
    assert d.conditions["non_inferior_on_champion_set"] == d.conditions["non_inferior_to_champion"]
    assert any(r.startswith("on frozen benchmark set demo-test@v1: it is the whole test split") for r in d.reasons)
