"""A version deployed by a person's override of the gate (dermpipe.json `gate_override`) says so in every answer of
a real `dermpipe serve`: REST v1 and /predict JSON, the v2 response's parameters and gRPC's trailing metadata; a
blessed version says false (and nothing in gRPC)."""

from __future__ import annotations

import base64
import json

import grpc
import pytest
import tensorflow as tf
from conftest import MODEL, make_registry, start_server, stop_server
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from dermpipe.serving.grpc_server import GATE_OVERRIDE_METADATA


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_registry(tmp_path_factory.mktemp("registry"), {1: 1, 2: 2}, current=2)
    override = {"reason": "pilot at clinic A", "user": "dr-rossi", "at": "2026-12-07T10:00:00+00:00"}
    (root / MODEL / "2" / "dermpipe.json").write_text(json.dumps({"gate_override": override}))
    folder = tmp_path_factory.mktemp("serve")
    running = start_server(root, folder / "predictions", folder / "server.log", grpc=True)
    yield running
    stop_server(running)


def _grpc_trailer(server, jpeg: bytes, version: int) -> dict[str, str]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = version
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([jpeg], dtype=tf.string))
    with grpc.insecure_channel(server.grpc_target) as channel:
        _, call = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict.with_call(request, timeout=60)
    return dict(call.trailing_metadata())


def test_answers_of_an_overridden_version_carry_gate_override(server, jpegs):
    b64 = base64.b64encode(jpegs[0]).decode()
    for version, expected in ((2, True), (1, False)):
        v1 = server.post(f"/v1/models/{MODEL}/versions/{version}:predict", json={"instances": [{"b64": b64}]})
        assert v1.status_code == 200 and v1.json()["gate_override"] is expected, v1.text
        v2 = server.post(f"/v2/models/{MODEL}/versions/{version}/infer", json={"inputs": [
            {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [b64]}]})
        assert v2.status_code == 200 and v2.json()["parameters"]["gate_override"] is expected, v2.text
        assert (_grpc_trailer(server, jpegs[0], version).get(GATE_OVERRIDE_METADATA) == "true") is expected
    upload = server.post("/predict", files={"image": ("x.jpg", jpegs[0], "image/jpeg")})  # the current version: 2
    assert upload.status_code == 200 and upload.json()["gate_override"] is True
