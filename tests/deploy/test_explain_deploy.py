import json

import numpy as np
import pytest

from dermpipe.deploy import registry as model_registry
from dermpipe.deploy.deploy import push
from dermpipe.model.zoo import build_classifier


@pytest.fixture(scope="module")
def small_model():
    model, _ = build_classifier("simple_cnn", 32, 8, seed=0)
    return model


def test_push_versions_the_registry_and_validates_serving(small_model, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    small_model.save(model_dir / "model.keras")
    registry = str(tmp_path / "registry")
    assert model_registry.allocated_versions(registry, "m") == []
    version, target = push(model_dir, registry, "m", {"run": "r1"})
    assert version == 1 and target.endswith("/m/1")
    assert (tmp_path / "registry/m/1/saved_model.pb").exists()
    assert (tmp_path / "registry/m/1/variables").is_dir()
    record = json.loads((tmp_path / "registry/m/1/dermpipe.json").read_text())
    assert record["run"] == "r1"
    assert record["serving_check"]["check"]["probe_output_sum"] == pytest.approx(1.0, abs=1e-3)
    version, _ = push(model_dir, registry, "m", {"run": "r2"})
    assert version == 2 and model_registry.versions(registry, "m") == [1, 2]
    assert not (tmp_path / "registry/m/current.json").exists()  # push commits; promoting is deploy's next step
    assert model_registry.promote(registry, "m", 2, expected=None, reason="test").promoted
    assert json.loads((tmp_path / "registry/m/current.json").read_text())["version"] == 2
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "registry/m/2"))
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    out = served.signatures["serve_pixels"](image=tf.constant(pixels))["probabilities"].numpy()
    np.testing.assert_allclose(out, small_model.predict(pixels, verbose=0), atol=1e-5)
