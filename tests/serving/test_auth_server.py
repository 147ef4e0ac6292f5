"""`dermpipe serve --auth-token-file --auth-predict --tls-cert --tls-key --grpc-port` in a real subprocess, driven by
real clients: requests over HTTPS verifying a self-signed certificate made here with `cryptography`, and a gRPC
secure channel with TF Serving's own stubs and the token in the call's metadata."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pytest
import requests
from conftest import MODEL, reference, start_server, stop_server
from tls_files import self_signed

from dermpipe.serving.labels import read_labels

pytestmark = pytest.mark.slow  # one server start (TensorFlow import in a subprocess)

TOKENS = {"clinic-a": "Qm9vdHN0cmFwLXRva2VuLWNsaW5pYy1h", "pathology-lab": "cGF0aG9sb2d5LWxhYi10b2tlbi0wMDE",
          "load-test": "bG9hZC10ZXN0LXRva2VuLWZvci1yYXRl"}
RATE = 10  # requests a minute per token: the other tokens' tests stay under it, load-test goes over
WRONG = "d3JvbmctdG9rZW4tZm9yLXRoZS10ZXN0cw"


@pytest.fixture(scope="module")
def secure_server(serving_registry, tmp_path_factory):
    folder = tmp_path_factory.mktemp("auth-serve")
    cert, key = self_signed(folder)
    tokens = folder / "tokens.txt"
    tokens.write_text("".join(f"{name}:{token}\n" for name, token in TOKENS.items()))
    running = start_server(serving_registry, folder / "predictions", folder / "server.log", "--auth-token-file",
                           str(tokens), "--auth-predict", "--tls-cert", str(cert), "--tls-key", str(key),
                           "--auth-rate-per-minute", str(RATE), "--flush-seconds", "0.2", grpc=True, ca=cert)
    running.cert = cert
    yield running
    stop_server(running)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def predict(server, jpeg: bytes, **kwargs) -> requests.Response:
    return server.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": base64.b64encode(jpeg).decode()}]},
                       **kwargs)


def test_https_verifies_and_plain_http_is_not_served(secure_server):
    assert secure_server.url.startswith("https://")
    assert secure_server.get("/readyz").status_code == 200  # verified against the test's own certificate
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(secure_server.url + "/readyz", timeout=10)  # the system's CAs do not vouch for it
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(secure_server.url.replace("https://", "http://") + "/readyz", timeout=10)


def test_predict_needs_a_token_when_the_option_is_on(secure_server, jpegs):
    assert predict(secure_server, jpegs[0]).status_code == 401
    assert predict(secure_server, jpegs[0], headers=bearer(WRONG)).status_code == 403
    answer = predict(secure_server, jpegs[0], headers=bearer(TOKENS["clinic-a"]))
    assert answer.status_code == 200, answer.text
    expected, _ = reference(secure_server.registry_root, 1, [jpegs[0]])
    np.testing.assert_allclose(answer.json()["predictions"][0]["probabilities"], expected[0], atol=1e-5)


def _logged(server, request_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(request_id in path.read_text() for path in server.log_root.glob(f"{MODEL}/date=*/*.jsonl")):
            return
        time.sleep(0.2)
    raise AssertionError(f"{request_id} not in the prediction log under {server.log_root}")


@pytest.mark.parametrize(("path", "token_name", "jpeg_index"), [("/v1/feedback", "clinic-a", 1),
                                                                 (f"/v2/models/{MODEL}/feedback", "pathology-lab", 2)])
def test_feedback_401_403_200_with_the_token_name_stored(secure_server, jpegs, path, token_name, jpeg_index):
    rid = predict(secure_server, jpegs[jpeg_index], headers=bearer(TOKENS["clinic-a"])).json()["request_id"]
    _logged(secure_server, rid)
    body = {"labels": [{"request_id": rid, "diagnosis": "NV", "source": "biopsy", "date": "2026-12-01"}]}
    missing = secure_server.post(path, json=body)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert set(missing.json()) == {"error"}  # the protocols' one HTTP error shape
    assert secure_server.post(path, json=body, headers=bearer(WRONG)).status_code == 403
    right = secure_server.post(path, json=body, headers=bearer(TOKENS[token_name]))
    assert right.status_code == 200 and right.json()["accepted"] == 1, right.text
    stored = read_labels(str(secure_server.log_root), MODEL).set_index("request_id").loc[rid]
    assert (stored["submitted_by"], stored["auth"], stored["client"]) == (token_name, "bearer", "127.0.0.1")
    text = "".join(p.read_text() for p in secure_server.log_root.glob(f"{MODEL}/labels/*.jsonl"))
    assert all(token not in text for token in TOKENS.values())


def _grpc_predict(server, jpeg: bytes, metadata=(), credentials=None):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([jpeg], dtype=tf.string))
    credentials = credentials or grpc.ssl_channel_credentials(root_certificates=server.cert.read_bytes())
    with grpc.secure_channel(server.grpc_target, credentials) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60,
                                                                                  metadata=metadata)


def test_grpc_predict_over_tls_needs_the_token_in_the_call_metadata(secure_server, jpegs):
    import grpc
    import tensorflow as tf

    for metadata, code in (((), grpc.StatusCode.UNAUTHENTICATED),
                           ((("authorization", f"Bearer {WRONG}"),), grpc.StatusCode.PERMISSION_DENIED)):
        with pytest.raises(grpc.RpcError) as refused:
            _grpc_predict(secure_server, jpegs[3], metadata)
        assert refused.value.code() == code, refused.value.details()
    answer = _grpc_predict(secure_server, jpegs[3], (("authorization", f"Bearer {TOKENS['pathology-lab']}"),))
    expected, _ = reference(secure_server.registry_root, 1, [jpegs[3]])
    np.testing.assert_allclose(tf.make_ndarray(answer.outputs["probabilities"]), expected, atol=1e-5)
    with grpc.insecure_channel(secure_server.grpc_target) as plain:  # the port speaks TLS only
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_token_over_its_rate_is_refused_on_grpc_and_rest_alike(secure_server, jpegs):
    import grpc

    metadata = (("authorization", f"Bearer {TOKENS['load-test']}"),)
    for _ in range(RATE):  # the bucket holds a minute's worth
        _grpc_predict(secure_server, jpegs[5], metadata)
    with pytest.raises(grpc.RpcError) as limited:
        _grpc_predict(secure_server, jpegs[5], metadata)
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "over its rate of 10 requests a minute" in limited.value.details()
    rest = predict(secure_server, jpegs[5], headers=bearer(TOKENS["load-test"]))  # one bucket for both protocols
    assert rest.status_code == 429 and int(rest.headers["Retry-After"]) >= 1
    assert predict(secure_server, jpegs[5], headers=bearer(TOKENS["clinic-a"])).status_code == 200


def test_the_log_names_the_tokens_never_their_values(secure_server, jpegs):
    predict(secure_server, jpegs[4], headers=bearer(WRONG))
    log = secure_server.output.read_text()
    assert "auth: 3 tokens from" in log and "clinic-a, pathology-lab, load-test" in log and "predict too" in log
    assert "refused predict from 127.0.0.1" in log and "TLS on" in log
    assert all(token not in log for token in (*TOKENS.values(), WRONG))
    assert json.dumps(TOKENS["clinic-a"]) not in log
