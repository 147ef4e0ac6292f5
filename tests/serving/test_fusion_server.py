"""`dermpipe serve` with a metadata-fusion model, in a real subprocess on loopback: the request's age, sex and site
reach the model (read from its signature); an image sent without them is answered with every value unknown."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest
from conftest import MODEL, start_server, stop_server

from dermpipe import config

pytestmark = pytest.mark.slow  # one server start (TensorFlow import in a subprocess)

META = {"age_approx": 65.0, "sex": "female", "anatom_site_general": "head/neck"}


@pytest.fixture(scope="module")
def fusion_server(tmp_path_factory):
    from dermpipe.deploy import registry
    from dermpipe.model.export import export_serving_model
    from dermpipe.model.zoo import build_classifier

    root = tmp_path_factory.mktemp("fusion-registry")
    model, _ = build_classifier("simple_cnn", 32, 8, seed=5, metadata_fusion=True)
    export_serving_model(model, root / MODEL / "1")
    registry.set_current(str(root), MODEL, 1)
    folder = tmp_path_factory.mktemp("fusion-serve")
    running = start_server(root, folder / "predictions", folder / "server.log", "--flush-seconds", "0.2")
    yield running
    stop_server(running)


def reference(registry_root, images: list[bytes], metas: list[dict | None]) -> np.ndarray:
    """What the exported SavedModel answers for these bytes and metadata, in this process."""
    import tensorflow as tf

    from dermpipe.model.export import metadata_tensors

    served = tf.saved_model.load(str(registry_root / MODEL / "1")).signatures["serving_default"]
    return served(image_bytes=tf.constant(images), **metadata_tensors(metas))["probabilities"].numpy()


def test_metadata_reaches_a_fusion_model_and_absent_metadata_is_unknown(fusion_server, jpegs):
    b64 = base64.b64encode(jpegs[0]).decode()
    response = fusion_server.post(f"/v1/models/{MODEL}:predict",
                                  json={"instances": [{"b64": b64, **META}, {"b64": b64}]})
    assert response.status_code == 200, response.text
    got = np.array([p["probabilities"] for p in response.json()["predictions"]])
    expected = reference(fusion_server.registry_root, [jpegs[0]] * 2, [META, None])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got[0] - got[1]).max() > 1e-4  # same image: only the metadata differs

    form = fusion_server.post("/predict", files={"image": ("a.jpg", jpegs[0], "image/jpeg")},
                              data={k: str(v) for k, v in META.items()})
    bare = fusion_server.post("/predict", files={"image": ("a.jpg", jpegs[0], "image/jpeg")})
    assert form.status_code == 200 and bare.status_code == 200, (form.text, bare.text)
    np.testing.assert_allclose([form.json()["probabilities"][c] for c in config.CLASSES], expected[0], atol=1e-5)
    np.testing.assert_allclose([bare.json()["probabilities"][c] for c in config.CLASSES], expected[1], atol=1e-5)

    columnar = fusion_server.post(f"/v1/models/{MODEL}:predict", json={"inputs": {
        "image_bytes": [{"b64": b64}, {"b64": b64}], "age_approx": [META["age_approx"], None],
        "sex": [META["sex"], None], "anatom_site_general": [META["anatom_site_general"], None]}})
    assert columnar.status_code == 200, columnar.text
    np.testing.assert_allclose(columnar.json()["outputs"]["probabilities"], expected, atol=1e-5)
    short = fusion_server.post(f"/v1/models/{MODEL}:predict",
                               json={"inputs": {"image_bytes": [{"b64": b64}], "sex": ["male", "female"]}})
    bad = fusion_server.post(f"/v1/models/{MODEL}:predict",
                             json={"inputs": {"image_bytes": [{"b64": b64}], "age_approx": ["old"]}})
    assert short.status_code == 400 and "2 values for 1 images" in short.text
    assert bad.status_code == 400 and "age_approx" in bad.text

    signature = fusion_server.get(f"/v1/models/{MODEL}/metadata").json()["metadata"]["signature_def"]
    assert set(signature["signature_def"]["serving_default"]["inputs"]) == {"image_bytes", "age_approx", "sex",
                                                                           "anatom_site_general"}
    deadline, lines = time.monotonic() + 10, []
    while time.monotonic() < deadline and len(lines) < 6:
        lines = [json.loads(line) for f in fusion_server.log_root.glob(f"{MODEL}/date=*/*.jsonl")
                 for line in f.read_text().splitlines()]
        time.sleep(0.2)
    assert sorted((line["sex"] or "", line["anatom_site_general"] or "") for line in lines) == \
        [("", "")] * 3 + [("female", "head/neck")] * 3
