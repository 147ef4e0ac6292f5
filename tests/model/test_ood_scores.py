"""Each candidate OOD score against values computed by hand or by scipy/scikit-learn on tiny arrays."""

import json

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis

from dermpipe.model.profile.ood import OODDetector, calibrate, fit_detector
from dermpipe.model.profile.ood_scores import (
    Scorer,
    energy_score,
    fit_energy,
    fit_knn,
    fit_mahalanobis,
    knn_score,
    mahalanobis_score,
    msp_score,
    normalise,
)
from dermpipe.model.profile.reference import fit_embedding_pca


def _round_trip(scorer: Scorer) -> Scorer:
    return Scorer.from_dict(json.loads(json.dumps(scorer.as_dict())))


def test_msp_is_minus_the_top_probability():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(msp_score(probabilities), [-0.7, -0.4, -1 / 3])
    np.testing.assert_allclose(Scorer("msp").score(probabilities, np.zeros((3, 2))), [-0.7, -0.4, -1 / 3])


def test_energy_is_minus_logsumexp_of_the_logits_and_needs_logits_not_log_probabilities():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [10.0, -5.0, 0.0]])
    expected = [-np.log(np.e + np.e**2 + np.e**3), -np.log(3.0), -np.log(np.exp(10) + np.exp(-5) + 1.0)]
    np.testing.assert_allclose(energy_score(logits), expected)
    np.testing.assert_allclose(energy_score(logits, temperature=2.0),
                               -2.0 * np.log(np.exp(logits / 2).sum(axis=1)))
    log_probabilities = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(energy_score(log_probabilities), 0.0, atol=1e-12)  # why the head's logits are stored


def test_energy_scorer_applies_the_head_to_the_embedding():
    rng = np.random.default_rng(0)
    kernel, bias, embeddings = rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=(5, 4))
    scorer = _round_trip(fit_energy(kernel, bias))
    logits = embeddings @ kernel + bias
    np.testing.assert_allclose(scorer.score(None, embeddings), -np.log(np.exp(logits).sum(axis=1)))


def test_mahalanobis_is_the_closest_class_under_the_shared_precision():
    means = np.array([[0.0, 0.0], [4.0, 0.0]])
    precision = np.linalg.inv(np.array([[2.0, 0.5], [0.5, 1.0]]))
    x = np.array([[1.0, 1.0], [3.5, -0.5], [10.0, 10.0]])
    expected = [min(mahalanobis(row, m, precision) ** 2 for m in means) for row in x]
    np.testing.assert_allclose(mahalanobis_score(x, means, precision), expected)


def test_fitted_mahalanobis_matches_sklearn_on_the_full_space():
    """With as many directions as dimensions, the rotation changes nothing: the score equals the class-conditional
    distance under LedoitWolf's precision of the class-centred rows, computed in the original space."""
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 40)
    rows = rng.normal(size=(120, 6)) * [3, 2, 1, 1, 0.5, 0.2] + np.array([0, 5, -5])[labels, None]
    scorer = _round_trip(fit_mahalanobis(rows, labels, max_dims=6))
    means = np.stack([rows[labels == c].mean(axis=0) for c in range(3)])
    precision = LedoitWolf(assume_centered=True).fit(rows - means[labels]).precision_
    probe = rng.normal(size=(7, 6)) * 4
    np.testing.assert_allclose(scorer.score(None, probe), mahalanobis_score(probe, means, precision), rtol=1e-8)


def test_knn_is_the_kth_nearest_normalised_training_row():
    rng = np.random.default_rng(2)
    train, probe = rng.normal(size=(50, 5)), rng.normal(size=(6, 5))
    distances = np.linalg.norm(normalise(probe)[:, None] - normalise(train)[None], axis=2)
    expected = np.sort(distances, axis=1)[:, 2]
    np.testing.assert_allclose(knn_score(normalise(probe), normalise(train), 3), expected)
    scorer = _round_trip(fit_knn(train, max_dims=5, k=3))  # all directions kept: the residual coordinate is ~0
    np.testing.assert_allclose(scorer.score(None, probe), expected, atol=1e-6)


def test_knn_sees_rows_off_its_directions():
    """The residual's length is a coordinate: a row off the kept directions is not taken for its projection."""
    e = np.eye(6)
    angles = np.linspace(0, np.pi / 2, 200)
    train = np.cos(angles)[:, None] * e[0] + np.sin(angles)[:, None] * e[1]  # an arc of unit rows in span(e0, e1)
    scorer = fit_knn(train, max_dims=2, k=3)
    off = 0.8 * train[::10] + 0.6 * e[2]  # unit rows whose projection lies near the arc's interior
    state = scorer.state
    projected_only = knn_score((off - state["basis_mean"]) @ state["basis"].T,
                               (train - state["basis_mean"]) @ state["basis"].T, 3)
    assert projected_only.max() < 0.25  # the projection alone would take them for ordinary rows
    assert scorer.score(None, off).min() > 0.55 and scorer.score(None, train[5::20]).max() < 0.05


def test_a_stored_score_is_rebuilt_by_name_and_an_unknown_name_is_refused():
    with pytest.raises(ValueError, match="score 'odin'; expected one of"):
        Scorer.from_dict({"score": "odin", "state": {}})
    with pytest.raises(ValueError, match="msp needs the model's probabilities"):
        Scorer("msp").score(None, np.zeros((2, 3)))


def test_a_clinical_json_written_before_the_choice_still_loads_as_pca_residual():
    rng = np.random.default_rng(4)
    train, val = rng.normal(size=(100, 6)), rng.normal(size=(40, 6))
    pca = fit_embedding_pca(train, 3)
    detector = calibrate(fit_detector(pca, train), fit_detector(pca, train).score(pca, val))
    state = detector.scorer.state
    legacy = {"method": "mahalanobis_pca_plus_residual", "center": state["center"].tolist(),
              "precision": state["precision"].tolist(), "residual_scale": state["residual_scale"],
              "threshold": detector.threshold, "pass_rate": 0.95}
    again = OODDetector.from_dict(legacy)
    assert again.method == "pca_residual" and again.threshold == detector.threshold
    np.testing.assert_allclose(again.score(pca, val), detector.score(pca, val))


def test_the_stored_head_gives_the_models_own_logits_and_only_where_it_reads_the_embedding():
    """softmax(pool @ kernel + bias) is the model's output, so energy scores the logits the model computes; a fusion
    head (metadata too) or an ensemble (averaged members) has no such logits."""
    import keras

    from dermpipe.model.ensemble import build_ensemble
    from dermpipe.model.profile.stage import head_weights
    from dermpipe.model.zoo import build_classifier

    model, _ = build_classifier("simple_cnn", 32, 8, seed=0)
    heads = keras.Model(model.input, [model.output, model.get_layer("pool").output])
    probabilities, pool = (np.asarray(t, np.float64) for t in heads(np.random.default_rng(0).uniform(
        0, 255, (4, 32, 32, 3)).astype("float32")))
    kernel, bias = head_weights(model, pool.shape[1])
    logits = pool @ kernel + bias
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), probabilities, atol=1e-5)
    assert head_weights(build_classifier("simple_cnn", 32, 8, metadata_fusion=True)[0], pool.shape[1]) is None
    assert head_weights(build_ensemble([model, model]), 2 * pool.shape[1]) is None
