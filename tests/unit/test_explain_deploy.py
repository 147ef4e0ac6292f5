import json

import numpy as np
import pandas as pd
import pytest

from dermpipe.components.deploy import next_version, push
from dermpipe.components.explain import gradcam_maps, last_feature_map_layer, overlay, select_examples
from dermpipe.models import build_classifier


@pytest.fixture(scope="module")
def small_model():
    model, _ = build_classifier("simple_cnn", 32, 8, seed=0)
    return model


def test_last_feature_map_layer_found_in_flat_and_nested_models(small_model):
    assert last_feature_map_layer(small_model).name == "pool2"
    mobilenet, _ = build_classifier("mobilenet_v3_small", 64, 8)
    layer = last_feature_map_layer(mobilenet)
    assert len(layer.output.shape) == 4 and layer.output.shape[1] == 2


def test_gradcam_maps_are_normalised_and_follow_the_lesion(small_model):
    images = np.full((2, 32, 32, 3), 200.0, np.float32)
    images[:, 8:24, 8:24] = 30.0  # dark square "lesion"
    maps = gradcam_maps(small_model, images, [0, 1])
    assert maps.shape == (2, 32, 32)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    blended = overlay(images[0], maps[0])
    assert blended.dtype == np.uint8 and blended.shape == (32, 32, 3)


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


def test_push_versions_the_registry_and_validates_serving(small_model, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    small_model.save(model_dir / "model.keras")
    registry = str(tmp_path / "registry")
    assert next_version(registry, "m") == 1
    version, target = push(model_dir, registry, "m", {"run": "r1"})
    assert version == 1 and target.endswith("/m/1")
    assert (tmp_path / "registry/m/1/saved_model.pb").exists()
    assert (tmp_path / "registry/m/1/variables").is_dir()
    record = json.loads((tmp_path / "registry/m/1/dermpipe.json").read_text())
    assert record["run"] == "r1" and record["serving_check"]["probe_output_sum"] == pytest.approx(1.0, abs=1e-3)
    version, _ = push(model_dir, registry, "m", {"run": "r2"})
    assert version == 2
    assert json.loads((tmp_path / "registry/m/current.json").read_text())["version"] == 2
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "registry/m/2"))
    out = served.serve(np.zeros((3, 32, 32, 3), np.float32)).numpy()
    np.testing.assert_allclose(out, small_model.predict(np.zeros((3, 32, 32, 3), np.float32), verbose=0), atol=1e-5)
