"""POST /v1/models/{name}:explain of `dermpipe serve` over plain HTTP: the served model's probabilities and class, a
Grad-CAM map equal to the training-time Grad-CAM code's on the same pixels, a PNG overlay, the instance cap (413)
and the capacity (429), and the prediction log left alone (the drift monitor counts each image once)."""

from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import MODEL, assert_answers_like_the_saved_model
from PIL import Image

pytestmark = pytest.mark.slow  # shares the session's server with test_server.py


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def local_gradcam(registry_root, images: list[bytes], classes: list[int]) -> tuple[np.ndarray, str]:
    """Grad-CAM of the version's model.keras, computed here with the training-time code, on the served pixels."""
    import tensorflow as tf

    from dermpipe.model.backbones import last_feature_map_layer
    from dermpipe.model.evaluation.gradcam import cam_maps
    from dermpipe.model.export import decode_batch
    from dermpipe.model.zoo import load_classifier

    model = load_classifier(registry_root / MODEL / "1" / "model.keras", compile=False)
    pixels = decode_batch(tf.constant(images), int(model.input_shape[1])).numpy()
    maps = cam_maps(model, pixels, classes, "gradcam", at_input_resolution=False)
    return maps, last_feature_map_layer(model).name


def test_explain_answers_the_served_probabilities_and_a_gradcam(server, jpegs):
    from test_server import metric

    predicted = metric(server, "dermpipe_images_predicted_total")
    response = server.post(f"/v1/models/{MODEL}:explain", json={"instances": [{"b64": b64(j)} for j in jpegs[:2]]})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = assert_answers_like_the_saved_model(server.registry_root, 1, jpegs[:2], body["explanations"])
    maps, layer = local_gradcam(server.registry_root, jpegs[:2], [int(i) for i in expected.argmax(1)])
    for explanation, local in zip(body["explanations"], maps, strict=True):
        cam = explanation["gradcam"]
        assert cam["layer"] == layer and cam["map_shape"] == list(local.shape)
        assert local.shape[0] < 32  # the feature map's resolution, not the input's
        np.testing.assert_allclose(np.array(cam["map"]), local, atol=1e-4)
        assert 0.0 <= np.min(cam["map"]) and np.max(cam["map"]) <= 1.0
        png = Image.open(io.BytesIO(base64.b64decode(cam["overlay_png_b64"])))
        assert png.format == "PNG" and png.size == (32, 32) and cam["overlay_size"] == [32, 32]
    assert body["model_version"] == 1
    assert metric(server, "dermpipe_images_predicted_total") == predicted  # not a prediction: not in the log


def test_explain_refuses_bad_input_too_many_images_and_beyond_capacity(server, jpegs):
    cases = [({"instances": [{"b64": b64(b"no image here")}]}, 415, "not an image"),
             ({"instances": [{"b64": b64(jpegs[0][:3000])}]}, 422, "truncated"),
             ({"instances": [{"b64": b64(jpegs[0])}] * 4 + [{"b64": b64(jpegs[1])}]}, 413, "limit is 4")]
    for payload, status, fragment in cases:
        response = server.post(f"/v1/models/{MODEL}:explain", json=payload)
        assert response.status_code == status and fragment in response.json()["error"], response.text
    assert server.post("/v1/models/other:explain", json=cases[0][0]).status_code == 404
    barrier = threading.Barrier(8)

    def one(_: int) -> int:
        barrier.wait()
        return server.post(f"/v1/models/{MODEL}:explain",
                           json={"instances": [{"b64": b64(j)} for j in jpegs[:4]]}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(8)))
    assert set(codes) <= {200, 429} and codes.count(200) >= 2 and codes.count(429) >= 1, codes
    assert server.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": b64(jpegs[0])}]}).status_code == 200
