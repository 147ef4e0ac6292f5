"""The Open Inference Protocol (KServe v2) of `dermpipe serve`, driven by Triton's own client (tritonclient.http,
binary tensor data by default) and by plain HTTP for JSON mode and the error cases."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
import tritonclient.http as httpclient
from conftest import MODEL, reference
from tritonclient.utils import InferenceServerException

from dermpipe import config

pytestmark = pytest.mark.slow  # shares the session's server with test_server.py


@pytest.fixture(scope="module")
def triton(server):
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


def image_input(images: list[bytes], binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput("image_bytes", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object), binary_data=binary)
    return tensor


def test_tritonclient_binary_infer_equals_the_saved_model(server, triton, jpegs):
    assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready(MODEL)
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    meta = triton.get_model_metadata(MODEL)
    loaded = [s["version"] for s in server.get(f"/v1/models/{MODEL}").json()["model_version_status"]]
    assert meta["versions"] == loaded and loaded[0] == "1" and [i["name"] for i in meta["inputs"]] == ["image_bytes"]
    result = triton.infer(MODEL, [image_input(jpegs[:3])])  # no outputs named: all of them, as binary data
    probabilities, embedding = reference(server.registry_root, 1, jpegs[:3])
    assert {o["name"]: o["shape"] for o in meta["outputs"]} == {"probabilities": [-1, 8],
                                                                "embedding": [-1, embedding.shape[1]]}
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-5)
    np.testing.assert_allclose(result.as_numpy("embedding"), embedding, atol=1e-5)
    reply = result.get_response()
    assert reply["model_version"] == "1"
    assert reply["outputs"][0]["parameters"]["binary_data_size"] == 3 * 8 * 4
    assert result.as_numpy("probabilities").dtype == np.float32


def test_json_outputs_version_path_and_base64_json_images(server, triton, jpegs):
    outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=False),
               httpclient.InferRequestedOutput("embedding", binary_data=True)]
    result = triton.infer(MODEL, [image_input([jpegs[3]])], model_version="2", outputs=outputs)
    expected, embedding = reference(server.registry_root, 2, [jpegs[3]])
    assert "data" in result.get_output("probabilities") and "data" not in result.get_output("embedding")
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5)
    np.testing.assert_allclose(result.as_numpy("embedding"), embedding, atol=1e-5)
    assert result.get_response()["model_version"] == "2"
    # JSON mode: a BYTES element is a string, so an image travels as its base64 text
    as_text = np.array([base64.b64encode(j) for j in jpegs[:2]], dtype=object)
    tensor = httpclient.InferInput("image_bytes", [2], "BYTES")
    tensor.set_data_from_numpy(as_text, binary_data=False)
    json_result = triton.infer(MODEL, [tensor], outputs=[httpclient.InferRequestedOutput("probabilities", False)])
    np.testing.assert_allclose(json_result.as_numpy("probabilities"),
                               reference(server.registry_root, 1, jpegs[:2])[0], atol=1e-5)
    plain = server.post(f"/v2/models/{MODEL}/infer", json={"id": "plain-1", "inputs": [
        {"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(jpegs[0]).decode()]},
        {"name": "age_approx", "shape": [1], "datatype": "FP32", "data": [-1]},
        {"name": "sex", "shape": [1], "datatype": "BYTES", "data": [""]}]})
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/json", plain.text
    out = {o["name"]: o for o in plain.json()["outputs"]}
    assert plain.json()["id"] == "plain-1" and out["probabilities"]["shape"] == [1, 8]
    np.testing.assert_allclose(out["probabilities"]["data"], reference(server.registry_root, 1, [jpegs[0]])[0][0],
                               atol=1e-5)


def _framed(header: dict, binary: bytes) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + binary, {"Inference-Header-Content-Length": str(len(head)),
                           "Content-Type": "application/octet-stream"}


def _bytes_tensor(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def test_binary_framing_defects_get_400_naming_the_problem(server, jpegs):
    good = _bytes_tensor(jpegs[0])

    def request(size: int, shape: int = 1) -> dict:
        return {"inputs": [{"name": "image_bytes", "shape": [shape], "datatype": "BYTES",
                            "parameters": {"binary_data_size": size}}]}

    cases = [
        ("header length past the body", *_framed(request(len(good)), good), {"Inference-Header-Content-Length":
                                                                             "999999"}, "is 999999 but the body"),
        ("header length not a number", *_framed(request(len(good)), good), {"Inference-Header-Content-Length":
                                                                            "ten"}, "not a number"),
        ("sizes do not add up", *_framed(request(len(good) + 7), good), {}, "add up to"),
        ("length prefix overrun", *_framed(request(8), struct.pack("<I", 10**6) + b"abcd"), {}, "declares 1000000"),
        ("prefix cut short", *_framed(request(2), b"\x01\x00"), {}, "length prefix"),
        ("left over bytes", *_framed(request(len(good) + 3), good + b"xyz"), {}, "left over"),
        ("two elements, one sent", *_framed(request(len(good), shape=2), good), {}, "element 1"),
        ("binary and data", *_framed({"inputs": [{**request(len(good))["inputs"][0], "data": ["x"]}]}, good), {},
         "both"),
        ("header not json", b"{{{{" + good, {"Inference-Header-Content-Length": "4"}, {}, "not JSON"),
    ]
    for name, body, headers, override, fragment in cases:
        response = server.post(f"/v2/models/{MODEL}/infer", data=body, headers={**headers, **override})
        assert response.status_code == 400, (name, response.status_code, response.text)
        assert fragment.lower() in response.json()["error"].lower(), (name, response.text)
    body, headers = _framed(request(len(good)), good)
    assert server.post(f"/v2/models/{MODEL}/infer", data=body, headers=headers).status_code == 200


def test_bad_v2_requests_get_a_4xx_error_json(server, triton, jpegs):
    def bytes_input(data: list, datatype: str = "BYTES", shape: list | None = None, name: str = "image_bytes"):
        return {"name": name, "shape": shape or [len(data)], "datatype": datatype, "data": data}

    b64 = base64.b64encode(jpegs[0]).decode()
    cases = [
        ("not an image", [bytes_input([base64.b64encode(b"plain text").decode()])], 415, "not an image"),
        ("truncated jpeg", [bytes_input([base64.b64encode(jpegs[0][:3000]).decode()])], 422, "truncated"),
        ("not base64", [bytes_input(["***"])], 400, "base64"),
        ("wrong dtype", [bytes_input([1.0], "FP32")], 400, "datatype"),
        ("wrong shape", [bytes_input([b64], shape=[1, 1])], 400, "shape"),
        ("unknown input", [bytes_input([b64], name="pixels")], 400, "not an input"),
        ("too many", [bytes_input([b64] * 5)], 413, "limit is 4"),
        ("no images", [bytes_input([])], 400, "no images"),
        ("metadata count", [bytes_input([b64]), bytes_input(["male", "female"], name="sex")], 400, "shape"),
        ("unknown site", [bytes_input([b64]), bytes_input(["moon"], name="anatom_site_general")], 422, "site"),
        ("sex isic-metadata refuses", [bytes_input([b64]), bytes_input(["F"], name="sex")], 422,
         "image 0: sex 'F': isic-metadata refused it (Input should be 'male' or 'female'); expected one of"),
        ("fractional age", [bytes_input([b64]), bytes_input([47.5], "FP32", name="age_approx")], 422,
         "image 0: age_approx 47.5: isic-metadata refused it"),
    ]
    for name, inputs, status, fragment in cases:
        response = server.post(f"/v2/models/{MODEL}/infer", json={"inputs": inputs})
        assert response.status_code == status, (name, response.status_code, response.text)
        assert fragment.lower() in response.json()["error"].lower(), (name, response.text)
    ok = [bytes_input([b64])]
    for path, status in (("/v2/models/other/infer", 404), (f"/v2/models/{MODEL}/versions/9/infer", 404),
                         (f"/v2/models/{MODEL}/versions/x/infer", 400)):
        response = server.post(path, json={"inputs": ok})
        assert response.status_code == status and response.json()["error"], (path, response.text)
    with pytest.raises(InferenceServerException, match=r"\[415\] image: not an image"):
        triton.infer(MODEL, [image_input([b"plain words, no image"])])
    assert not triton.is_model_ready(MODEL, "9") and not triton.is_model_ready("other")
    assert server.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    assert triton.is_server_live()


def test_v2_requests_are_logged_once_with_their_metadata(server, jpegs):
    b64 = base64.b64encode(jpegs[5]).decode()
    response = server.post(f"/v2/models/{MODEL}/infer", json={"id": "v2-logged", "inputs": [
        {"name": "image_bytes", "shape": [2], "datatype": "BYTES", "data": [b64, b64]},
        {"name": "age_approx", "shape": [2], "datatype": "FP32", "data": [40, -1]},
        {"name": "sex", "shape": [2], "datatype": "BYTES", "data": ["male", ""]}]})
    assert response.status_code == 200, response.text
    from test_server import wait_for_lines

    lines = sorted(wait_for_lines(server, "v2-logged", 2), key=lambda line: line["request_id"])
    assert [line["request_id"] for line in lines] == ["v2-logged-0", "v2-logged-1"]
    assert [(line["age_approx"], line["sex"]) for line in lines] == [(40.0, "male"), (None, None)]
    assert lines[0]["predicted_class"] in config.CLASSES


def test_v2_metadata_is_normalised_the_isic_archive_way(server, jpegs):
    b64 = base64.b64encode(jpegs[3]).decode()
    response = server.post(f"/v2/models/{MODEL}/infer", json={"id": "v2-archive", "inputs": [
        {"name": "image_bytes", "shape": [2], "datatype": "BYTES", "data": [b64, b64]},
        {"name": "age_approx", "shape": [2], "datatype": "FP32", "data": [47, 85]},
        {"name": "sex", "shape": [2], "datatype": "BYTES", "data": ["Female", " male "]},
        {"name": "anatom_site_general", "shape": [2], "datatype": "BYTES", "data": ["Anterior Torso", ""]}]})
    assert response.status_code == 200, response.text
    from test_server import wait_for_lines

    lines = sorted(wait_for_lines(server, "v2-archive", 2), key=lambda line: line["request_id"])
    assert [(line["age_approx"], line["sex"], line["anatom_site_general"]) for line in lines] == [
        (45.0, "female", "anterior torso"), (85.0, "male", None)]


@pytest.mark.parametrize("text", ["\u00b2", "1\u00b2", "\u0663", "-1", "1.0", " 1"])
def test_a_version_that_is_not_ascii_digits_is_a_400_not_a_500(text):
    from dermpipe.serving.open_inference.routes import _version
    from dermpipe.serving.settings import ServingError

    with pytest.raises(ServingError) as err:
        _version(text)
    assert err.value.status == 400 and "not a number" in err.value.message
    assert _version("12") == 12 and _version("") is None and _version(None) is None
