"""Health data out of what `dermpipe serve --log-images` stores: a real ISIC image re-saved the way a clinic camera
writes it (GPS, device serial, owner, capture time, a comment naming the patient, XMP, IPTC) is predicted as its
stripped copy is, and logged without any of it; checked with exifread, an EXIF reader that is not ours."""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import exifread
import numpy as np
import pytest
from conftest import MODEL, reference, start_server, stop_server
from PIL import Image
from private_images import SECRETS, leaked, private_jpeg

from dermpipe.data.image_privacy import strip_metadata

pytestmark = pytest.mark.slow  # one server start (TensorFlow import in a subprocess)


@pytest.fixture(scope="module")
def logging_server(serving_registry, tmp_path_factory):
    folder = tmp_path_factory.mktemp("privacy-serve")
    running = start_server(serving_registry, folder / "predictions", folder / "server.log", "--log-images",
                           "--flush-seconds", "0.2", grpc=True)
    yield running
    stop_server(running)


def logged(server, request_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in server.log_root.glob(f"{MODEL}/date=*/*.jsonl"):
            for line in path.read_text().splitlines():
                if json.loads(line)["request_id"] == request_id:
                    return json.loads(line)
        time.sleep(0.2)
    raise AssertionError(f"request {request_id} not logged in {server.log_root}")


def camera_jpeg(jpeg: bytes, **options) -> bytes:
    with Image.open(io.BytesIO(jpeg)) as image:
        return private_jpeg(np.asarray(image.convert("RGB")), **options)


def test_a_camera_jpeg_is_logged_without_its_metadata_and_classified_as_its_stripped_copy(logging_server, jpegs):
    original = camera_jpeg(jpegs[0])
    assert exifread.process_file(io.BytesIO(original))["GPS GPSLatitude"]  # the fixture does carry them
    stripped = strip_metadata(original).data
    form = logging_server.post("/predict", files={"image": ("clinic.jpg", original, "image/jpeg")})
    rest = logging_server.post(f"/v1/models/{MODEL}:predict",
                               json={"instances": [{"b64": base64.b64encode(original).decode()}]})
    assert form.status_code == 200 and rest.status_code == 200, (form.text, rest.text)
    expected, _ = reference(logging_server.registry_root, 1, [stripped])
    unstripped, _ = reference(logging_server.registry_root, 1, [original])
    np.testing.assert_array_equal(expected, unstripped)  # the model's inputs are unchanged by stripping
    np.testing.assert_allclose(rest.json()["predictions"][0]["probabilities"], expected[0], atol=1e-5)
    np.testing.assert_allclose(list(form.json()["probabilities"].values()), expected[0], atol=1e-5)
    for request_id in (form.json()["request_id"], rest.json()["request_id"]):
        line = logged(logging_server, request_id)
        data = Path(line["image_uri"]).read_bytes()
        assert data == stripped and leaked(data) == [] and exifread.process_file(io.BytesIO(data)) == {}
        assert line["image_metadata_removed"] == ["gps", "serial", "owner", "capture_time", "comment", "other_exif",
                                                  "xmp", "iptc"]
        assert not any(secret.decode() in json.dumps(line) for secret in SECRETS)
    server_log = logging_server.output.read_text(errors="replace")
    assert "metadata stripped from 1 of 1 image(s)" in server_log and "gps 1" in server_log
    assert not any(secret.decode() in server_log for secret in SECRETS)


def test_a_sideways_phone_photo_is_predicted_and_logged_upright(logging_server, jpegs):
    original = camera_jpeg(jpegs[1], orientation=6)
    response = logging_server.post("/predict", files={"image": ("phone.jpg", original, "image/jpeg")})
    assert response.status_code == 200, response.text
    line = logged(logging_server, response.json()["request_id"])
    data = Path(line["image_uri"]).read_bytes()
    assert leaked(data) == [] and exifread.process_file(io.BytesIO(data)) == {}
    with Image.open(io.BytesIO(original)) as before, Image.open(io.BytesIO(data)) as after:
        assert after.size == before.size[::-1]  # turned by the EXIF orientation
    assert (line["width"], line["height"]) == (float(after.size[0]), float(after.size[1]))
    expected, _ = reference(logging_server.registry_root, 1, [data])  # the stored pixels are the ones the model saw
    np.testing.assert_allclose(list(response.json()["probabilities"].values()), expected[0], atol=1e-5)


def grpc_predict(server, jpeg: bytes) -> None:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([jpeg], dtype=tf.string))
    with grpc.insecure_channel(server.grpc_target) as channel:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)


def test_open_inference_and_grpc_requests_are_logged_stripped_too(logging_server, jpegs):
    original = camera_jpeg(jpegs[2])
    v2 = logging_server.post(f"/v2/models/{MODEL}/infer", json={"inputs": [
        {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(original).decode()]}]})
    assert v2.status_code == 200, v2.text
    v2_image = Path(logged(logging_server, v2.json()["id"])["image_uri"])  # the log is written asynchronously
    assert v2_image.read_bytes() == strip_metadata(original).data
    before = set(logging_server.log_root.rglob("images/*")) | {v2_image}
    grpc_predict(logging_server, original)
    deadline = time.monotonic() + 30
    while not (new := set(logging_server.log_root.rglob("images/*")) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p.read_bytes() for p in new] == [strip_metadata(original).data]  # the gRPC request's image
