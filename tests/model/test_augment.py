"""The fused augmentation layer: identity at inference, exact on degenerate configs, bounded, seeded, serialisable."""

import math

import keras
import numpy as np
import pytest

from dermpipe.model.augment import RandomAugment, affine_matrices
from dermpipe.model.zoo import build_classifier, load_classifier

OFF = {"rotation": 0, "shift": 0, "zoom": 0, "horizontal_flip": False, "vertical_flip": False, "brightness": 0,
       "contrast": 0}


def _images(n=16, h=12, w=16, seed=0):
    return np.random.default_rng(seed).uniform(5, 250, (n, h, w, 3)).astype("float32")


def test_identity_at_inference_with_every_transform_on():
    images = _images()
    layer = RandomAugment(seed=1)
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    np.testing.assert_array_equal(np.asarray(layer(images)), images)
    assert not np.allclose(np.asarray(layer(images, training=True)), images)


def test_zero_ranges_give_back_the_exact_image_in_training():
    images = _images()
    np.testing.assert_array_equal(np.asarray(RandomAugment(**OFF, seed=0)(images, training=True)), images)


def test_flip_only_batch_mixes_exact_mirrors_and_originals():
    images = _images(n=32)
    out = np.asarray(RandomAugment(**{**OFF, "horizontal_flip": True, "vertical_flip": True}, seed=2)(
        images, training=True))
    kinds = []
    for original, augmented in zip(images, out, strict=True):
        variants = {"same": original, "h": original[:, ::-1], "v": original[::-1], "hv": original[::-1, ::-1]}
        matches = [k for k, v in variants.items() if np.allclose(augmented, v, atol=1e-3)]
        assert len(matches) == 1, "every image must be exactly one of its four flips"
        kinds.append(matches[0])
    assert set(kinds) == {"same", "h", "v", "hv"}  # one batch, different transforms per image


def test_brightness_only_shifts_each_image_by_one_bounded_offset():
    images = np.full((20, 8, 8, 3), 128.0, dtype="float32")
    out = np.asarray(RandomAugment(**{**OFF, "brightness": 0.1}, seed=4)(images, training=True))
    deltas = (out - images).reshape(20, -1)
    np.testing.assert_allclose(deltas, deltas[:, :1] * np.ones_like(deltas), atol=1e-3)  # constant per image
    assert np.abs(deltas).max() <= 0.1 * 255 + 1e-3 and len(np.unique(deltas[:, 0].round(3))) > 10


def test_contrast_only_keeps_channel_means_and_scales_spread_within_range():
    images = np.random.default_rng(0).uniform(100, 150, (20, 8, 8, 3)).astype("float32")  # no clipping
    out = np.asarray(RandomAugment(**{**OFF, "contrast": 0.2}, seed=5)(images, training=True))
    np.testing.assert_allclose(out.mean(axis=(1, 2)), images.mean(axis=(1, 2)), atol=1e-3)
    ratio = out.std(axis=(1, 2)) / images.std(axis=(1, 2))
    assert ratio.min() >= 0.8 - 1e-3 and ratio.max() <= 1.2 + 1e-3


def test_sampled_affine_parameters_stay_within_their_ranges():
    layer = RandomAugment(rotation=20, shift=0.2, zoom=0.2, seed=7)
    height, width = 50, 80
    matrices, offsets, factors = (np.asarray(v) for v in layer.transform_parameters(4000, height, width))
    m = matrices[:, [0, 1, 3, 4]].reshape(-1, 2, 2)
    scale = np.sqrt(np.abs(np.linalg.det(m)))
    assert scale.min() >= 0.8 - 1e-4 and scale.max() <= 1.2 + 1e-4 and scale.max() - scale.min() > 0.35
    angle = np.degrees(np.arctan2(m[:, 1, 0], m[:, 0, 0]))
    folded = np.minimum(np.abs(angle), 180 - np.abs(angle))  # a flip turns angle a into 180 - a
    assert folded.max() <= 20 + 1e-3 and folded.max() > 19
    cx, cy = (width - 1) / 2, (height - 1) / 2
    tx = matrices[:, 2] - cx + m[:, 0, 0] * cx + m[:, 0, 1] * cy
    ty = matrices[:, 5] - cy + m[:, 1, 0] * cx + m[:, 1, 1] * cy
    assert np.abs(tx).max() <= 0.2 * width + 1e-3 and np.abs(ty).max() <= 0.2 * height + 1e-3
    assert np.abs(offsets).max() <= 0.1 * 255 + 1e-3 and factors.min() >= 0.9 - 1e-6 and factors.max() <= 1.1 + 1e-6
    assert np.all(matrices[:, 6:] == 0)


def test_affine_matrices_compose_rotation_about_the_centre():
    one = np.ones(1, "float32")
    quarter = affine_matrices(one * math.pi / 2, 0 * one, 0 * one, one, one, one, height=5, width=5)
    image = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
    rotated = np.asarray(keras.ops.image.affine_transform(image, quarter, interpolation="nearest"))
    np.testing.assert_array_equal(rotated[0, 2, 2, 0], image[0, 2, 2, 0])  # the centre stays
    np.testing.assert_array_equal(np.sort(rotated.ravel()), np.sort(image.ravel()))  # a permutation of the pixels
    assert not np.array_equal(rotated, image)


def test_same_seed_same_augmentation_other_seed_differs():
    images = _images()
    first = np.asarray(RandomAugment(seed=11)(images, training=True))
    again = np.asarray(RandomAugment(seed=11)(images, training=True))
    other = np.asarray(RandomAugment(seed=12)(images, training=True))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert first.min() >= 0 and first.max() <= 255


def test_invalid_ranges_are_refused():
    with pytest.raises(ValueError, match="rotation=-1"):
        RandomAugment(rotation=-1)
    with pytest.raises(ValueError, match="zoom=1.0"):
        RandomAugment(zoom=1.0)


def test_model_with_the_layer_round_trips_through_a_keras_file(tmp_path):
    model, _ = build_classifier("simple_cnn", 24, 8, seed=3, augment={"rotation": 10.0, "brightness": 0.05})
    layer = model.get_layer("augmentation")
    assert isinstance(layer, RandomAugment) and layer.rotation == 10.0
    model.save(tmp_path / "model.keras")
    loaded = load_classifier(tmp_path / "model.keras")
    restored = loaded.get_layer("augmentation")
    assert isinstance(restored, RandomAugment) and restored.get_config() == layer.get_config()
    images = _images(n=3, h=24, w=24)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_xla_resampler_matches_the_image_op_and_compiles():
    images = _images(n=6, h=20, w=24)
    plain = np.asarray(RandomAugment(seed=9)(images, training=True))
    gathered = np.asarray(RandomAugment(seed=9, xla=True)(images, training=True))
    np.testing.assert_allclose(gathered, plain, atol=2e-3)  # same seed, same transforms, same bilinear + reflect
    model, _ = build_classifier("simple_cnn", 16, 8, seed=0, augment={"xla": True})
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    history = model.fit(_images(n=8, h=16, w=16), np.zeros(8, "int32"), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
