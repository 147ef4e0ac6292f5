import base64
import re
from types import SimpleNamespace

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermpipe.model.backbones import last_feature_map_layer
from dermpipe.model.evaluation.explain import run
from dermpipe.model.evaluation.gradcam import (
    CAM_METHODS,
    cam_maps,
    gradcam_maps,
    overlay,
    select_examples,
    write_gallery,
)
from dermpipe.model.zoo import build_classifier


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(0)  # build_classifier's seed only drives augmentation; pin the initial weights too
    model, _ = build_classifier("simple_cnn", 32, 8, seed=0)
    return model


@pytest.fixture(scope="module")
def lesions():
    """Light skin with dark "lesions": one central square, and two blobs in opposite corners."""
    images = np.full((2, 32, 32, 3), 200.0, np.float32)
    images[0, 8:24, 8:24] = 30.0
    images[1, 2:12, 18:30] = 30.0
    images[1, 20:30, 2:12] = 60.0
    return images


@pytest.fixture(scope="module")
def both_maps(small_model, lesions):
    return {method: cam_maps(small_model, lesions, [0, 1], method) for method in ("gradcam", "gradcam++")}


def test_last_feature_map_layer_is_the_last_spatial_map(small_model):
    assert last_feature_map_layer(small_model).name == "pool2"
    mobilenet, _ = build_classifier("mobilenet_v3_small", 64, 8)
    layer = last_feature_map_layer(mobilenet)
    assert len(layer.output.shape) == 4 and layer.output.shape[1] == 2


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_cam_maps_are_normalised_per_image_at_input_resolution(both_maps, method):
    maps = both_maps[method]
    assert maps.shape == (2, 32, 32) and maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    # normalize_cam: every map spans [0, 1] (the heat is not uniformly zero)
    assert (maps.reshape(2, -1).max(axis=1) > 0.99).all()
    assert (maps.reshape(2, -1).min(axis=1) < 0.01).all()


def test_gradcam_and_gradcam_plus_plus_give_different_maps(both_maps):
    plain, plus = both_maps["gradcam"], both_maps["gradcam++"]
    assert not np.allclose(plain, plus, atol=1e-3)
    for i in range(len(plain)):  # per image, not just somewhere in the batch
        assert np.abs(plain[i] - plus[i]).max() > 0.1


def test_gradcam_maps_is_the_gradcam_method(small_model, lesions, both_maps):
    np.testing.assert_allclose(gradcam_maps(small_model, lesions, [0, 1]), both_maps["gradcam"], atol=1e-5)


def test_unknown_cam_method_names_the_valid_ones(small_model, lesions):
    with pytest.raises(ValueError, match=r"'scorecam'.*'gradcam', 'gradcam\+\+'"):
        cam_maps(small_model, lesions, [0, 1], "scorecam")


def test_overlay_blends_to_uint8_rgb(lesions, both_maps):
    blended = overlay(lesions[0], both_maps["gradcam"][0])
    assert blended.dtype == np.uint8 and blended.shape == (32, 32, 3)
    assert not np.array_equal(blended, lesions[0].astype(np.uint8))


def test_select_examples_takes_confident_hits_and_misses_per_class():
    preds = pd.DataFrame({
        "image": list("abcdef"),
        "label": ["MEL", "MEL", "MEL", "NV", "NV", "NV"],
        "predicted": ["MEL", "MEL", "NV", "NV", "MEL", "MEL"],
        "confidence": [0.9, 0.6, 0.8, 0.7, 0.95, 0.5],
    })
    picked = select_examples(preds, per_class=1)
    assert picked["image"].tolist() == ["a", "c", "d", "e"]
    assert picked["correct"].tolist() == [True, False, True, False]


def _examples():
    return pd.DataFrame({
        "image": ["ISIC_1", "ISIC_2"],
        "label": ["MEL", "NV"],
        "predicted": ["MEL", "MEL"],
        "confidence": [0.91, 0.64],
        "correct": [True, False],
    })


def test_write_gallery_writes_original_and_one_overlay_per_method(tmp_path, lesions, both_maps):
    html = write_gallery(_examples(), lesions, both_maps, tmp_path / "pngs")
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [
        f"ISIC_{i}_{kind}.png" for i in (1, 2) for kind in ("gradcam", "gradcampp", "original")
    ]
    original = np.asarray(Image.open(tmp_path / "pngs/ISIC_2_original.png"))
    np.testing.assert_array_equal(original, lesions[1].astype(np.uint8))
    plain = np.asarray(Image.open(tmp_path / "pngs/ISIC_2_gradcam.png"))
    plus = np.asarray(Image.open(tmp_path / "pngs/ISIC_2_gradcampp.png"))
    np.testing.assert_array_equal(plain, overlay(lesions[1], both_maps["gradcam"][1]))
    np.testing.assert_array_equal(plus, overlay(lesions[1], both_maps["gradcam++"][1]))

    assert html.count("<figure>") == 2
    assert "Grad-CAM" in html and "Grad-CAM++" in html
    assert re.search(r"<title>[^<]*Grad-CAM", html)
    # self-contained: three inlined PNGs per figure, no file references
    assert html.count("src='data:image/png;base64,") == 6
    assert "ISIC_2_gradcampp.png" not in html
    inlined = re.findall(r"alt='ISIC_1 Grad-CAM\+\+' width='128' src='data:image/png;base64,([^']+)'", html)
    assert inlined == [base64.b64encode((tmp_path / "pngs/ISIC_1_gradcampp.png").read_bytes()).decode()]
    # captions: true / predicted label and confidence, errors marked
    assert "true <b>MEL</b> · predicted <b class='good'>MEL</b> · confidence 0.91" in html
    assert "true <b>NV</b> · predicted <b class='bad'>MEL</b> · confidence 0.64" in html
    assert html.index("<h2>MEL</h2>") < html.index("<h2>NV</h2>")


def test_write_gallery_rejects_unknown_methods(tmp_path, lesions, both_maps):
    with pytest.raises(ValueError, match="scorecam"):
        write_gallery(_examples(), lesions, {"scorecam": both_maps["gradcam"]}, tmp_path)


def test_run_writes_both_methods_and_records_them(tmp_path, small_model, lesions):
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    for i, image in enumerate(lesions, start=1):
        Image.fromarray(image.astype(np.uint8)).save(raw / f"images/ISIC_{i}.png")
    (tmp_path / "model").mkdir()
    small_model.save(tmp_path / "model/model.keras")
    predictions = _examples().drop(columns="correct").assign(
        path=["images/ISIC_1.png", "images/ISIC_2.png"], predicted_index=[0, 0])
    predictions.to_parquet(tmp_path / "predictions.parquet")

    def artifact(name):
        return SimpleNamespace(path=str(tmp_path / name), uri=f"file://{tmp_path / name}", metadata={})

    gallery, pngs = artifact("gallery.html"), artifact("pngs")
    run(artifact("raw"), artifact("model"), artifact("predictions.parquet"), gallery, pngs, per_class=1)

    html = (tmp_path / "gallery.html").read_text()
    assert html.count("<figure>") == gallery.metadata["examples"] == 2
    assert "Grad-CAM++" in html
    assert gallery.metadata["method"] == ["gradcam", "gradcam++"] == list(CAM_METHODS)
    assert gallery.metadata["layer"] == "pool2" and gallery.metadata["correct"] == 1
    assert pngs.metadata["files"] == sorted(
        f"ISIC_{i}_{kind}.png" for i in (1, 2) for kind in ("gradcam", "gradcampp", "original"))


@pytest.mark.parametrize("backbone, layer", [("efficientnet_b0", "top_activation"), ("mobilenet_v3_small", None)])
def test_both_cam_methods_work_on_transfer_backbones(backbone, layer):
    """Keras-applications backbones (with their preprocessing and dermpipe's augmentation layers inside the model)."""
    model, _ = build_classifier(backbone, 64, 8)
    found = last_feature_map_layer(model)
    assert layer is None or found.name == layer
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    for method in ("gradcam", "gradcam++"):
        maps = cam_maps(model, images, [0, 1], method)
        # Untrained backbones give weak, sometimes near-flat maps: check they are well-formed, not what they show.
        assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()
        assert maps.min() >= 0.0 and 0.0 < maps.max() <= 1.0


def _nested_model(pool_inside: bool) -> keras.Model:
    """The usual hand-written transfer pattern: a backbone keras.Model called as one layer of the classifier."""
    keras.utils.set_random_seed(3)
    inner_in = keras.Input((32, 32, 3))
    y = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(inner_in)
    y = keras.layers.Conv2D(16, 3, activation="relu", name="c2")(y)
    if pool_inside:
        y = keras.layers.GlobalAveragePooling2D(name="inner_pool")(y)
    backbone = keras.Model(inner_in, y, name="backbone")
    inputs = keras.Input((32, 32, 3))
    x = backbone(keras.layers.Rescaling(1 / 255.0)(inputs))
    if not pool_inside:
        x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(8, activation="softmax")(x)), backbone


def _manual_gradcam(backbone, model, images, class_index):
    """Grad-CAM by hand at the backbone's last conv layer: the oracle for the nested case."""
    import tensorflow as tf

    features_model = keras.Model(backbone.input, backbone.get_layer("c2").output)
    head = model.layers[-1]
    with tf.GradientTape() as tape:
        features = features_model(images / 255.0)
        tape.watch(features)
        pooled = tf.reduce_mean(features, axis=(1, 2))
        score = head(pooled)[:, class_index]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()


@pytest.mark.parametrize("pool_inside", [False, True], ids=["backbone-outputs-maps", "backbone-pools-inside"])
def test_gradcam_reaches_into_a_nested_backbone(pool_inside, lesions):
    from dermpipe.model.evaluation.gradcam import cam_view

    model, backbone = _nested_model(pool_inside)
    view, layer = cam_view(model)
    assert layer == "cam_features" and view is not model
    np.testing.assert_allclose(view.predict(lesions, verbose=0), model.predict(lesions, verbose=0), atol=1e-5)
    maps = cam_maps(model, lesions, [2, 2], "gradcam")
    assert maps.shape == (2, 32, 32) and maps.max() == pytest.approx(1.0, abs=1e-3)
    oracle = _manual_gradcam(backbone, model, lesions, 2)  # (2, 28, 28) at the conv layer's resolution
    for produced, expected in zip(maps, oracle, strict=True):
        resized = np.asarray(Image.fromarray(produced).resize(expected.shape[::-1], Image.BILINEAR))
        assert np.corrcoef(resized.ravel(), expected.ravel())[0, 1] > 0.9


def test_flat_dermpipe_models_are_used_as_they_are(small_model):
    from dermpipe.model.evaluation.gradcam import cam_view

    view, layer = cam_view(small_model)
    assert view is small_model and layer == "pool2"
