"""`dermpipe serve --log-images` in a real subprocess: requests carry lesion and patient ids (TF REST, multipart,
v2), the log keeps them beside each image, and labels posted for the logged request ids are stored."""

from __future__ import annotations

import base64
import json
import time

import pytest
from conftest import MODEL, start_server, stop_server

from dermpipe.serving.labels import read_labels

pytestmark = pytest.mark.slow  # one server start (TensorFlow import in a subprocess)


@pytest.fixture(scope="module")
def logging_server(serving_registry, tmp_path_factory):
    folder = tmp_path_factory.mktemp("feedback-serve")
    running = start_server(serving_registry, folder / "predictions", folder / "server.log", "--log-images",
                           "--flush-seconds", "0.2", grpc=True)
    yield running
    stop_server(running)


def log_lines(server, wanted: int, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [json.loads(line) for path in sorted(server.log_root.glob(f"{MODEL}/date=*/*.jsonl"))
                 for line in path.read_text().splitlines()]
        if len(lines) >= wanted:
            return lines
        time.sleep(0.2)
    raise AssertionError(f"{wanted} log lines expected in {server.log_root}")


def grpc_predict(server, jpeg: bytes, **ids: bytes) -> None:
    """TF Serving's gRPC Predict with the grouping ids as DT_STRING inputs (one element per image)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([jpeg], dtype=tf.string))
    for key, value in ids.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto([value], dtype=tf.string))
    with grpc.insecure_channel(server.grpc_target) as channel:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)


def test_grouping_ids_are_logged_and_labels_for_logged_ids_are_stored(logging_server, jpegs):
    b64 = [base64.b64encode(j).decode() for j in jpegs[:2]]
    rest = logging_server.post(f"/v1/models/{MODEL}:predict", json={"instances": [
        {"b64": b64[0], "lesion_id": "IL_0000001", "patient_id": "IP_0000001"}, {"b64": b64[1]}]})
    assert rest.status_code == 200, rest.text
    form = logging_server.post("/predict", files={"image": ("a.jpg", jpegs[2], "image/jpeg")},
                               data={"lesion_id": "IL_0000002"})
    v2 = logging_server.post(f"/v2/models/{MODEL}/infer", json={"inputs": [
        {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [b64[0]]},
        {"name": "patient_id", "shape": [1], "datatype": "BYTES", "data": ["IP_0000003"]}]})
    assert form.status_code == 200 and v2.status_code == 200, (form.text, v2.text)
    grpc_predict(logging_server, jpegs[3], lesion_id=b"IL_0000004")
    rid = rest.json()["request_id"]
    lines = {line["request_id"]: line for line in log_lines(logging_server, 5)}
    assert (lines[f"{rid}-0"]["lesion_id"], lines[f"{rid}-0"]["patient_id"]) == ("IL_0000001", "IP_0000001")
    assert (lines[f"{rid}-1"]["lesion_id"], lines[f"{rid}-1"]["patient_id"]) == (None, None)
    assert lines[form.json()["request_id"]]["lesion_id"] == "IL_0000002"
    assert [line["patient_id"] for line in lines.values()].count("IP_0000003") == 1
    assert [line["lesion_id"] for line in lines.values()].count("IL_0000004") == 1  # gRPC
    assert all(line["image_uri"].endswith(".jpg") for line in lines.values())

    response = logging_server.post("/v1/feedback", json={"labels": [
        {"request_id": f"{rid}-0", "diagnosis": "MEL", "source": "biopsy", "date": "2026-12-01"},
        {"request_id": rid, "diagnosis": "NV", "source": "biopsy", "date": "2026-12-01"}]})
    assert response.status_code == 200, response.text
    assert [o["status"] for o in response.json()["labels"]] == ["accepted", "refused"]
    stored = read_labels(str(logging_server.log_root), MODEL)
    assert stored[["request_id", "diagnosis"]].values.tolist() == [[f"{rid}-0", "MEL"]]


@pytest.mark.parametrize(("path", "kwargs"), [
    (f"/v1/models/{MODEL}:predict", {"json": {"instances": [{"b64": "AAAA", "lesion_id": "Jane Doe"}]}}),
    ("/predict", {"files": {"image": ("a.jpg", b"x", "image/jpeg")}, "data": {"patient_id": "a/b"}}),
])
def test_malformed_grouping_ids_are_refused(logging_server, path, kwargs):
    response = logging_server.post(path, **kwargs)
    assert response.status_code == 422 and "never a name" in response.json()["error"]
