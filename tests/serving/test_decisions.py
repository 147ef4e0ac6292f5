"""Every protocol answers a decision, the operating point used and the OOD score; the prediction log records them.

Version 2 of the session's registry carries a clinical.json (conftest.write_clinical): melanoma_sens95 refers every
in-distribution image (threshold 0), melanoma_sens90 none (threshold 1), and the OOD threshold passes the ISIC 2020
images it was calibrated on. A noise image is out of distribution whatever the operating point. Version 1 has no
clinical.json: its decision fields are null.
"""

from __future__ import annotations

import base64
import io

import grpc
import numpy as np
import pytest
import tensorflow as tf
from conftest import MODEL
from PIL import Image
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from test_server import wait_for_lines

pytestmark = pytest.mark.slow


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def noise() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _predict(server, images: list[bytes], **body) -> dict:
    response = server.post(f"/v1/models/{MODEL}/versions/2:predict",
                           json={"instances": [{"b64": b64(j)} for j in images], **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_v1_rest_answers_decision_operating_point_and_ood_score(server, jpegs, noise):
    rows = _predict(server, [*jpegs[:3], noise])["predictions"]
    assert [r["decision"] for r in rows] == ["refer_melanoma"] * 3 + ["out_of_distribution"]
    assert {r["operating_point"] for r in rows} == {"melanoma_sens95"} and rows[0]["melanoma_threshold"] == 0.0
    assert ">= melanoma_sens95's threshold 0.000" in rows[0]["decision_reason"]
    assert "outside what the model was trained on" in rows[3]["decision_reason"]
    assert all(r["ood_score"] <= r["ood_threshold"] for r in rows[:3])
    assert rows[3]["ood_score"] > rows[3]["ood_threshold"] and rows[3]["ood_score"] > max(r["ood_score"]
                                                                                          for r in rows[:3])
    other = _predict(server, [*jpegs[:3], noise], operating_point="melanoma_sens90")["predictions"]
    assert [r["decision"] for r in other] == ["routine"] * 3 + ["out_of_distribution"]
    assert {r["operating_point"] for r in other} == {"melanoma_sens90"}
    assert [r["ood_score"] for r in other] == pytest.approx([r["ood_score"] for r in rows])
    unknown = server.post(f"/v1/models/{MODEL}/versions/2:predict",
                          json={"instances": [{"b64": b64(jpegs[0])}], "operating_point": "sens50"})
    assert unknown.status_code == 400
    assert "no operating point 'sens50'" in unknown.text and "melanoma_sens90" in unknown.text
    invalid = server.post(f"/v1/models/{MODEL}/versions/2:predict",
                          json={"instances": [{"b64": b64(jpegs[0])}], "operating_point": "melanoma_sens99"})
    assert invalid.status_code == 400 and "not achievable" in invalid.text and "under the floor" in invalid.text
    columnar = server.post(f"/v1/models/{MODEL}/versions/2:predict",
                           json={"inputs": {"image_bytes": [{"b64": b64(noise)}]}})
    assert columnar.json()["outputs"]["decision"] == ["out_of_distribution"], columnar.text


def test_a_version_without_clinical_json_answers_null_and_refuses_a_named_point(server, jpegs):
    row = server.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": b64(jpegs[0])}]}).json()
    assert row["model_version"] == 1 and row["predictions"][0]["decision"] is None
    refused = server.post(f"/v1/models/{MODEL}:predict",
                          json={"instances": [{"b64": b64(jpegs[0])}], "operating_point": "melanoma_sens95"})
    assert refused.status_code == 400 and "stores no operating points" in refused.text


def test_the_prediction_log_records_decision_point_and_score(server, jpegs, noise):
    body = _predict(server, [jpegs[0], noise], operating_point="melanoma_sens90")
    lines = sorted(wait_for_lines(server, body["request_id"], 2), key=lambda line: line["request_id"])
    assert [line["decision"] for line in lines] == ["routine", "out_of_distribution"]
    assert {line["operating_point"] for line in lines} == {"melanoma_sens90"}
    assert [line["ood_score"] for line in lines] == pytest.approx([r["ood_score"] for r in body["predictions"]])


def test_v2_infer_has_the_decision_outputs_and_takes_an_operating_point(server, jpegs, noise):
    def infer(**parameters):
        response = server.post(f"/v2/models/{MODEL}/versions/2/infer", json={"parameters": parameters, "inputs": [
            {"name": "image_bytes", "shape": [2], "datatype": "BYTES", "data": [b64(jpegs[1]), b64(noise)]}]})
        assert response.status_code == 200, response.text
        return {o["name"]: o for o in response.json()["outputs"]}

    out = infer()
    assert out["decision"]["datatype"] == "BYTES" and out["decision"]["data"] == ["refer_melanoma",
                                                                                   "out_of_distribution"]
    assert out["operating_point"]["data"] == ["melanoma_sens95"] * 2 and out["ood_score"]["shape"] == [2]
    assert out["decision_reason"]["datatype"] == "BYTES" and "threshold" in out["decision_reason"]["data"][0]
    assert out["ood_score"]["data"][1] > out["ood_score"]["data"][0]
    assert infer(operating_point="melanoma_sens90")["decision"]["data"] == ["routine", "out_of_distribution"]
    meta = server.get(f"/v2/models/{MODEL}/versions/2").json()
    assert {"decision", "ood_score"} <= {o["name"] for o in meta["outputs"]}


def test_grpc_predict_has_decision_tensors(server, jpegs, noise):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = 2
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([jpegs[2], noise], dtype=tf.string))
    with grpc.insecure_channel(server.grpc_target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
    assert [d.decode() for d in tf.make_ndarray(response.outputs["decision"])] == ["refer_melanoma",
                                                                                  "out_of_distribution"]
    assert tf.make_ndarray(response.outputs["ood_score"]).shape == (2,)
    assert tf.make_ndarray(response.outputs["operating_point"])[0] == b"melanoma_sens95"
    assert b"threshold" in tf.make_ndarray(response.outputs["decision_reason"])[0]


def test_grpc_predict_takes_an_operating_point_input(server, jpegs, noise):
    """PredictRequest has no parameters field: an `operating_point` DT_STRING input names the stored point."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = 2
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([jpegs[2], noise], dtype=tf.string))
    request.inputs["operating_point"].CopyFrom(tf.make_tensor_proto(["melanoma_sens90"], dtype=tf.string))
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=60)
        assert [p.decode() for p in tf.make_ndarray(response.outputs["operating_point"])] == ["melanoma_sens90"] * 2
        assert [d.decode() for d in tf.make_ndarray(response.outputs["decision"])] == _predict_decisions(
            server, [jpegs[2], noise], "melanoma_sens90")
        request.inputs["operating_point"].CopyFrom(tf.make_tensor_proto(["sens50"], dtype=tf.string))
        with pytest.raises(grpc.RpcError) as unknown:
            stub.Predict(request, timeout=60)
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "sens50" in unknown.value.details()
        request.inputs["operating_point"].CopyFrom(tf.make_tensor_proto(["a", "b"], dtype=tf.string))
        with pytest.raises(grpc.RpcError) as two:
            stub.Predict(request, timeout=60)
        assert two.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "one DT_STRING value" in two.value.details()


def _predict_decisions(server, images: list[bytes], point: str) -> list[str]:
    """The decisions REST answers at the named operating point: gRPC must agree."""
    return [row["decision"] for row in _predict(server, images, operating_point=point)["predictions"]]
