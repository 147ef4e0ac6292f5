"""Grad-CAM of the ensemble: the ensemble's class score, differentiated at every member's last feature map."""

import keras
import numpy as np
import pytest

from dermpipe.model.backbones import last_feature_map_layer
from dermpipe.model.ensemble import build_ensemble
from dermpipe.model.evaluation.ensemble_cam import ensemble_cam_maps, normalise
from dermpipe.model.evaluation.gradcam import cam_maps
from dermpipe.model.zoo import build_classifier


def _member(seed: int):
    keras.utils.set_random_seed(seed)
    model, _ = build_classifier("simple_cnn", 32, 8, seed=seed)
    head = model.get_layer("probabilities")
    kernel, bias = head.get_weights()
    head.set_weights([np.random.default_rng(seed).normal(0, 0.5, kernel.shape).astype("float32"), bias])
    return model


def _copy(model):
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


@pytest.fixture(scope="module")
def lesions():
    """Noise, noise with a dark central square, and noise whose upper half is plain skin."""
    images = np.random.default_rng(7).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    images[1, 8:24, 8:24] *= 0.2
    images[2, :16] = 200.0
    return images


def _raw_member_map(model, images, classes):
    """tf-keras-vis Grad-CAM of one model on its probability (no linearisation), before ReLU and normalisation."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.scores import CategoricalScore

    cam = Gradcam(model, clone=True)
    return np.asarray(cam(CategoricalScore(classes), images, penultimate_layer=last_feature_map_layer(model).name,
                          seek_penultimate_conv_layer=False, activation_modifier=None, normalize_cam=False,
                          expand_cam=False), dtype=np.float32)


def test_identical_copies_give_the_single_models_heatmap(lesions):
    single = _member(1)
    classes = [0, 3, 5]
    ensemble = build_ensemble([single, _copy(single), _copy(single)])
    reference = normalise(np.maximum(_raw_member_map(single, lesions, classes), 0.0))
    at_features = ensemble_cam_maps(ensemble, lesions, classes, at_input_resolution=False)
    assert at_features.shape == (3, 4, 4)
    np.testing.assert_allclose(at_features, reference, atol=1e-5)
    assert reference.max() == pytest.approx(1.0, abs=1e-3) and reference.std() > 0.05  # a map, not a constant
    one = ensemble_cam_maps(build_ensemble([single]), lesions, classes)
    np.testing.assert_allclose(ensemble_cam_maps(ensemble, lesions, classes), one, atol=1e-5)


def test_members_count_by_weight_and_gradient_not_by_normalised_map(lesions):
    first, second = _member(1), _member(2)
    classes = [2, 2, 6]
    ensemble = build_ensemble([first, second], weights=[0.9, 0.1])
    got = ensemble_cam_maps(ensemble, lesions, classes, at_input_resolution=False)
    raw = [_raw_member_map(m, lesions, classes) for m in (first, second)]
    expected = normalise(np.maximum(0.9 * raw[0] + 0.1 * raw[1], 0.0))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    naive = (normalise(np.maximum(raw[0], 0)) + normalise(np.maximum(raw[1], 0))) / 2
    assert np.abs(got - naive).max() > 0.05  # the shortcut the issue rules out gives another picture


def test_cam_maps_explains_a_loaded_ensemble_as_a_whole(lesions, tmp_path):
    from dermpipe.model.zoo import load_classifier

    ensemble = build_ensemble([_member(1), _member(2)], temperatures=[1.0, 2.0])
    ensemble.save(tmp_path / "model.keras")
    loaded = load_classifier(tmp_path / "model.keras")
    maps = cam_maps(loaded, lesions, [1, 1, 1], "gradcam")
    assert maps.shape == (3, 32, 32) and 0.0 <= maps.min() and maps.max() <= 1.0
    np.testing.assert_allclose(maps, ensemble_cam_maps(ensemble, lesions, [1, 1, 1]), atol=1e-5)
    with pytest.raises(ValueError, match="not defined for an ensemble"):
        cam_maps(loaded, lesions, [1, 1, 1], "gradcam++")
    with pytest.raises(ValueError, match="3 class_indices for 2 images"):
        ensemble_cam_maps(loaded, lesions[:2], [1, 1, 1])
