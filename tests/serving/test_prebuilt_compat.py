"""Our SavedModels (written by TensorFlow 2.21 / Keras 3) load and answer the same in the TensorFlow of Google's
prebuilt Vertex AI serving container (dermpipe.deploy.cloud_targets.VERTEX_TF_IMAGE: tf2-cpu.2-15), the runtime that
serves
them on Vertex without our code. `make install` puts that TensorFlow in .venv-tf-compat."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
COMPAT_PYTHON = REPO / ".venv-tf-compat" / "bin" / "python"
PROBE = Path(__file__).with_name("tf_compat_probe.py")
ISIC2020_IMAGES = REPO.parent / "shared" / "data" / "isic2020-sample" / "images"


def prebuilt_tf_version() -> str:
    from dermpipe.deploy.cloud_targets import VERTEX_TF_IMAGE

    match = re.search(r"tf2-(?:cpu|gpu)\.2-(\d+)", VERTEX_TF_IMAGE)
    assert match, f"cannot read a TensorFlow version from {VERTEX_TF_IMAGE}"
    return f"2.{match.group(1)}"


@pytest.fixture(scope="module")
def compat_python() -> Path:
    if not COMPAT_PYTHON.exists():
        pytest.fail(f"{COMPAT_PYTHON} is missing: `make install` creates it (tensorflow-cpu of the prebuilt serving "
                    "container's version, to check our SavedModels load there)")
    return COMPAT_PYTHON


@pytest.mark.parametrize("backbone,fusion", [("simple_cnn", False), ("efficientnet_b0", False), ("simple_cnn", True)])
def test_saved_model_serves_the_same_in_the_prebuilt_containers_tensorflow(compat_python, backbone, fusion, tmp_path):
    import keras
    import tensorflow as tf

    from dermpipe.model.export import export_serving_model, metadata_tensors
    from dermpipe.model.zoo import build_classifier

    keras.utils.set_random_seed(0)
    model, _ = build_classifier(backbone, 48, 8, seed=0, metadata_fusion=fusion)
    export_serving_model(model, tmp_path / "1")
    images = sorted(ISIC2020_IMAGES.glob("*.jpg"))[:3]
    run = subprocess.run([str(compat_python), str(PROBE), str(tmp_path / "1"), *map(str, images)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"TF {prebuilt_tf_version()} could not serve the SavedModel:\n{run.stderr[-3000:]}"
    theirs = json.loads(run.stdout.strip().splitlines()[-1])
    assert theirs["tf_version"].startswith(prebuilt_tf_version() + "."), theirs["tf_version"]
    assert theirs["signatures"] == ["serve_pixels", "serving_default"]

    loaded = tf.saved_model.load(str(tmp_path / "1"))
    # the probe's metadata for a fusion model: none for the first image, then a 55-year-old woman's head/neck lesion
    metas = [None] + [{"age_approx": 55.0, "sex": "female", "anatom_site_general": "head/neck"}] * (len(images) - 1)
    extra = metadata_tensors(metas) if fusion else {}
    ours = loaded.signatures["serving_default"](image_bytes=tf.constant([p.read_bytes() for p in images]), **extra)
    for key in ("probabilities", "embedding"):
        np.testing.assert_allclose(np.array(theirs["serving_default"][key]), ours[key].numpy(), atol=2e-3, rtol=1e-3,
                                   err_msg=f"serving_default {key}: TF {theirs['tf_version']} vs {tf.__version__}")
    size = 48
    pixels = np.random.default_rng(0).uniform(0, 255, (len(images), size, size, 3)).astype(np.float32)
    ours_pixels = loaded.signatures["serve_pixels"](image=tf.constant(pixels), **extra)
    np.testing.assert_allclose(np.array(theirs["serve_pixels"]["probabilities"]), ours_pixels["probabilities"].numpy(),
                               atol=1e-4)
    assert np.allclose(np.array(theirs["serving_default"]["probabilities"]).sum(axis=1), 1.0, atol=1e-4)
