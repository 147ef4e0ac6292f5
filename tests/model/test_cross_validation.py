"""Folds re-divide train+val; OOF predictions cover every train/val image once and choose the ensemble."""

import numpy as np
import pandas as pd
import pytest

from dermpipe import config
from dermpipe.data.split import split_table
from dermpipe.model.evaluation.oof import (
    choose_combination,
    combine,
    cv_metrics,
    cv_report_html,
    fit_temperature,
    scale,
    summarise,
)
from dermpipe.model.training.train_fold import fold_count, fold_tables, oof_frame


def _merged(n_lesions=45, per_lesion=2):
    rows = [{"image": f"I{lesion}_{k}", "path": f"x/I{lesion}_{k}.jpg", "label": config.CLASSES[lesion % 3],
             "label_index": lesion % 3, "lesion_id": f"L{lesion}", "sha256": f"h{lesion}_{k}"}
            for lesion in range(n_lesions) for k in range(per_lesion)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def splits():
    return split_table(_merged(), seed=3, folds=3)


def _probabilities(labels: np.ndarray, right: np.ndarray, seed: int) -> np.ndarray:
    """Confident in the true class where `right`, in class 7 elsewhere."""
    p = np.random.default_rng(seed).uniform(0.0, 0.05, (len(labels), len(config.CLASSES)))
    p[np.arange(len(labels)), np.where(right, labels, 7)] = 1.0
    return p / p.sum(axis=1, keepdims=True)


def _oof(splits, wrong_in_fold: int = 1):
    frames = []
    for fold in range(fold_count(splits.train, splits.val)):
        _, held = fold_tables(splits.train, splits.val, fold)
        labels = held["label_index"].to_numpy()
        right = np.ones(len(held), bool) if fold != wrong_in_fold else np.arange(len(held)) % 2 == 0
        frames.append(oof_frame(held, _probabilities(labels, right, fold), fold))
    return frames


def test_folds_train_on_the_others_and_hold_out_one(splits):
    pool = pd.concat([splits.train, splits.val])
    assert fold_count(splits.train, splits.val) == 3
    held_images = []
    for fold in range(3):
        fit, held = fold_tables(splits.train, splits.val, fold)
        assert set(held["fold"]) == {fold} and fold not in set(fit["fold"])
        assert len(fit) + len(held) == len(pool) and not set(fit["image"]) & set(held["image"])
        assert not set(fit["lesion_id"]) & set(held["lesion_id"])  # a lesion never spans fit and held-out
        held_images += held["image"].tolist()
    assert sorted(held_images) == sorted(pool["image"])  # every train/val image held out exactly once
    assert not set(held_images) & set(splits.test["image"])  # the test split never enters cross-validation


def test_fold_errors_name_what_was_expected(splits):
    with pytest.raises(ValueError, match=r"fold=3, expected 0..2"):
        fold_tables(splits.train, splits.val, 3)
    plain = split_table(_merged(), seed=3)
    with pytest.raises(ValueError, match="no `fold` column; run split with folds=k"):
        fold_tables(plain.train, plain.val, 0)
    with pytest.raises(ValueError, match="fold -1"):
        fold_tables(splits.train, splits.test, 0)


def test_oof_covers_every_train_val_image_once_and_is_scored(splits):
    pool = pd.concat([splits.train, splits.val])
    oof = combine(_oof(splits), pool)
    assert sorted(oof["image"]) == sorted(pool["image"]) and len(oof) == len(pool)
    summary = summarise(oof)
    assert summary.per_fold[0] == 1.0 and summary.per_fold[2] == 1.0
    half = summary.per_fold[1]
    assert 0.3 < half < 0.7  # every other image of fold 1 answered "class 7"
    assert summary.mean == pytest.approx((2 + half) / 3)
    assert summary.std == pytest.approx(np.std([1.0, half, 1.0], ddof=1))
    wrong = int((oof["predicted_index"] == 7).sum())
    assert np.asarray(summary.evaluation.confusion)[:3, 7].sum() == wrong > 0
    metrics = cv_metrics(summary)
    assert metrics["oof_rows"] == len(pool) and metrics["folds"] == 3
    assert metrics["oof_balanced_accuracy"] == summary.oof_balanced_accuracy < 1.0
    html = cv_report_html(summary, [1, 1, 1], [1.0, 1.0, 1.0], "uniform")
    assert "test split was not used here" in html and f"{summary.oof_balanced_accuracy:.4f}" in html


def test_combine_refuses_repeats_gaps_and_missing_folds(splits):
    frames = _oof(splits)
    pool = pd.concat([splits.train, splits.val])
    with pytest.raises(ValueError, match="predicted more than once"):
        combine([frames[0], frames[1], pd.concat([frames[2], frames[0].head(1).assign(fold=2)])])
    with pytest.raises(ValueError, match="never predicted"):
        combine([frames[0], frames[1], frames[2].iloc[1:]], pool)
    with pytest.raises(ValueError, match="one frame per fold 0..1"):
        combine([frames[0], frames[2]])


def test_weights_and_temperatures_come_from_each_members_fold(splits):
    oof = combine(_oof(splits))
    weights, temperatures = choose_combination(oof, "uniform", temperature=False)
    assert weights == [1.0, 1.0, 1.0] and temperatures == [1.0, 1.0, 1.0]
    weights, temperatures = choose_combination(oof, "fold_bma", temperature=True)
    summary = summarise(oof)
    assert weights == [summary.per_fold[f] for f in range(3)] and weights[1] < weights[0]
    assert temperatures[1] > temperatures[0]  # the over-confident, half-wrong fold is softened
    with pytest.raises(ValueError, match="ensemble_weighting='best'"):
        choose_combination(oof, "best", temperature=False)


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2.0, (4000, 8))
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(8, p=row) for row in calibrated])
    overconfident = scale(calibrated, 0.5)  # logits doubled
    assert fit_temperature(labels, overconfident) == pytest.approx(2.0, rel=0.1)
    assert fit_temperature(labels, calibrated) == pytest.approx(1.0, rel=0.1)


def test_sweep_iterations_cross_configurations_with_folds():
    from dermpipe.model.training.cross_validate import CrossValParams
    from dermpipe.model.training.fold_plan import iteration_task
    from dermpipe.model.training.fold_plan import run as fold_indices

    sweep = "[{name: a}, {name: b, loss: focal}]"
    assert fold_indices(3, sweep) == list(range(6)) and fold_indices(3) == [0, 1, 2]
    assert iteration_task(sweep, 4, 3) == ({"name": "b", "loss": "focal"}, 1)
    assert iteration_task("", 2, 3) == ({"name": "defaults"}, 2)
    with pytest.raises(ValueError, match=r"iteration=6, expected 0..5"):
        iteration_task(sweep, 6, 3)
    with pytest.raises(ValueError, match="folds=1; expected at least 2"):
        fold_indices(1)
    assert fold_indices(0, sweep) == [0, 1]  # no folds: one iteration per configuration, scored on val
    assert iteration_task(sweep, 1, 0) == ({"name": "b", "loss": "focal"}, -1)
    with pytest.raises(ValueError, match="or folds=0 with a sweep"):
        fold_indices(0)
    CrossValParams(sweep=sweep, ensemble_top=2).check()
    with pytest.raises(ValueError, match=r"ensemble_top=3: expected 1..2"):
        CrossValParams(sweep=sweep, ensemble_top=3).check()
    with pytest.raises(ValueError, match="backbone 'vgg16' is not supported"):
        CrossValParams(sweep="[{backbone: vgg16}]").check()

