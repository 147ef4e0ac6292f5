"""A cross-validated ensemble's melanoma thresholds are chosen on its out-of-fold predictions, not on its val
predictions: the ensemble trained on the val images (each through k-1 of its k members), so its scores there are
in-sample and a threshold chosen on them would be too high for images it has not seen."""

import json

import numpy as np
import pandas as pd
import pytest

from dermpipe import config
from dermpipe.model.evaluation.oof import OOF_FILE, VALIDATION_FOLD, held_out_predictions, probability_columns, scale
from dermpipe.model.profile.clinical import calibrate_clinical
from dermpipe.model.profile.reference import fit_embedding_pca

MEL = config.CLASSES.index("MEL")


def _scores(labels: np.ndarray, melanoma_score: np.ndarray) -> np.ndarray:
    """Probabilities whose MEL column is `melanoma_score` and whose rest goes to the true class (or NV for MEL)."""
    p = np.full((len(labels), len(config.CLASSES)), 0.0)
    p[:, MEL] = melanoma_score
    other = np.where(labels == MEL, config.CLASSES.index("NV"), labels)
    p[np.arange(len(labels)), other] += 1.0 - melanoma_score
    return p


def _oof_folder(tmp_path, folds, temperatures):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(config.CLASSES), 60)
    probabilities = rng.dirichlet(np.ones(len(config.CLASSES)), 60)
    frame = pd.DataFrame(probabilities, columns=probability_columns()).assign(
        image=[f"ISIC_{i:07d}" for i in range(60)], label_index=labels, fold=np.resize(folds, 60))
    frame.to_parquet(tmp_path / OOF_FILE, index=False)
    (tmp_path / "ensemble.json").write_text(json.dumps({"temperatures": temperatures}))
    return frame


def test_held_out_predictions_apply_each_members_temperature(tmp_path):
    frame = _oof_folder(tmp_path, [0, 1], [2.0, 1.0, 0.5])  # the third: another configuration's member
    labels, probabilities = held_out_predictions(tmp_path)
    assert labels.tolist() == frame["label_index"].tolist()
    raw = frame[probability_columns()].to_numpy()
    fold0 = (frame["fold"] == 0).to_numpy()
    np.testing.assert_allclose(probabilities[fold0], scale(raw[fold0], 2.0))
    np.testing.assert_array_equal(probabilities[~fold0], raw[~fold0])


def test_no_folds_means_no_held_out_predictions(tmp_path):
    assert held_out_predictions(tmp_path) is None  # a model trained once
    _oof_folder(tmp_path, [VALIDATION_FOLD], [1.0])  # a sweep without folds: its members never trained on val
    assert held_out_predictions(tmp_path) is None


@pytest.fixture(scope="module")
def calibration_inputs():
    """Val scores of an ensemble that learnt its val melanomas (0.85-1.0) and test/OOF scores of images unseen
    (0.3-0.9); 40 melanomas among 200 images per split."""
    rng = np.random.default_rng(1)
    labels = np.concatenate([np.full(40, MEL), rng.choice([1, 2, 4], 160)])
    seen = np.where(labels == MEL, rng.uniform(0.85, 1.0, 200), rng.uniform(0.0, 0.2, 200))
    unseen = np.where(labels == MEL, rng.uniform(0.3, 0.9, 200), rng.uniform(0.0, 0.35, 200))
    embeddings = rng.normal(size=(600, 16))
    splits = np.repeat(["train", "val", "test"], 200)
    all_labels = np.concatenate([labels, labels, labels])
    probabilities = np.concatenate([_scores(labels, seen), _scores(labels, seen), _scores(labels, unseen)])
    pca = fit_embedding_pca(embeddings[:200], 5)
    return all_labels, probabilities, embeddings, splits, pca, (labels, _scores(labels, unseen))


def test_out_of_fold_thresholds_reach_the_target_on_unseen_images_where_val_ones_fall_short(calibration_inputs):
    labels, probabilities, embeddings, splits, pca, held_out = calibration_inputs
    kwargs = dict(target_sensitivity=0.95, ood_pass_rate=0.95)
    in_sample = calibrate_clinical(labels, probabilities, embeddings, splits, pca, **kwargs).default_point
    out_of_fold = calibrate_clinical(labels, probabilities, embeddings, splits, pca, held_out=held_out,
                                     **kwargs).default_point
    assert (in_sample.chosen_on, out_of_fold.chosen_on) == ("val", "out-of-fold")
    assert out_of_fold.chosen["n"] == len(held_out[0]) and out_of_fold.chosen["sensitivity"] >= 0.95
    # direction: scores of unseen images are lower, so the threshold falls, and test sensitivity rises to the target
    assert out_of_fold.threshold < in_sample.threshold
    # (the in-sample threshold sits in the middle of its gap, which helps, but still falls short on unseen images)
    assert in_sample.test["sensitivity"] < 0.8 and out_of_fold.test["sensitivity"] >= 0.9
