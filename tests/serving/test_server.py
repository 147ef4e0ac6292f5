"""`dermpipe serve` in a real subprocess on loopback: TF Serving API, /predict, bad input, batching, log, reload."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from conftest import MODEL, PCA_K, assert_answers_like_the_saved_model, reference
from PIL import Image

from dermpipe import config
from dermpipe.data.image_stats import STAT_COLUMNS
from dermpipe.deploy import registry

pytestmark = pytest.mark.slow  # one server start (TensorFlow import in a subprocess): about a minute on 2 cores


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def metric(server, name: str) -> float:
    text = server.get("/metrics").text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def log_lines(server, wait: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + wait
    lines: list[dict] = []
    while time.monotonic() < deadline:
        files = sorted(server.log_root.glob(f"{MODEL}/date=*/*.jsonl"))
        lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
        if lines:
            break
        time.sleep(0.2)
    return lines


def wait_for_lines(server, request_id: str, n: int, wait: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = [line for line in log_lines(server, 0.1) if line["request_id"].startswith(request_id)]
        if len(found) >= n:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{n} log lines for {request_id} not written within {wait}s")


def test_tf_serving_predict_answers_what_the_saved_model_answers(server, jpegs):
    response = server.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": b64(j)} for j in jpegs[:3]]})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = assert_answers_like_the_saved_model(server.registry_root, 1, jpegs[:3], body["predictions"])
    assert [p["confidence"] for p in body["predictions"]] == pytest.approx(expected.max(1).tolist(), abs=1e-6)
    assert body["model_version"] == 1 and body["classes"] == list(config.CLASSES)


def test_columnar_inputs_and_named_instances(server, jpegs):
    columnar = server.post(f"/v1/models/{MODEL}:predict",
                           json={"inputs": {"image_bytes": [{"b64": b64(jpegs[0])}, {"b64": b64(jpegs[1])}]}})
    named = server.post(f"/v1/models/{MODEL}:predict",
                        json={"signature_name": "serving_default",
                              "instances": [{"image_bytes": {"b64": b64(jpegs[0])}}]})
    assert columnar.status_code == 200 and named.status_code == 200, (columnar.text, named.text)
    outputs = columnar.json()["outputs"]
    assert np.array(outputs["probabilities"]).shape == (2, 8)
    assert len(outputs["predicted_class"]) == 2
    np.testing.assert_allclose(outputs["probabilities"][0], named.json()["predictions"][0]["probabilities"],
                               atol=1e-6)


def test_multipart_predict_with_metadata_is_logged_with_statistics_and_embedding_summary(server, jpegs):
    response = server.post("/predict", files={"image": ("lesion.jpg", jpegs[4], "image/jpeg")},
                           data={"age_approx": "55", "sex": "female", "anatom_site_general": "head/neck"})
    assert response.status_code == 200, response.text
    body = response.json()
    expected, embedding = reference(server.registry_root, 1, [jpegs[4]])
    assert body["probabilities"] == pytest.approx(dict(zip(config.CLASSES, expected[0].tolist(), strict=True)),
                                                  abs=1e-5)
    assert body["predicted_class"] == config.CLASSES[int(expected[0].argmax())]
    (line,) = wait_for_lines(server, body["request_id"], 1)
    expected_keys = {"timestamp", "request_id", "model_name", "model_version", "predicted_class", "confidence",
                     "probabilities", *STAT_COLUMNS, "age_approx", "sex", "anatom_site_general",
                     "lesion_id", "patient_id", *(f"emb_{i}" for i in range(PCA_K)), "decision", "operating_point",
                     "ood_score"}
    assert set(line) == expected_keys
    assert (line["lesion_id"], line["patient_id"]) == (None, None)  # optional grouping ids, not sent here
    assert line["decision"] is None and body["decision"] is None  # version 1 was deployed without clinical.json
    assert (line["age_approx"], line["sex"], line["anatom_site_general"]) == (55.0, "female", "head/neck")
    assert line["model_name"] == MODEL and line["model_version"] == 1
    stamp = dt.datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 120
    pca = np.load(server.registry_root / MODEL / "1" / "embedding_pca.npz")
    summary = (embedding[0] - pca["mean"]) @ pca["components"].T
    np.testing.assert_allclose([line[f"emb_{i}"] for i in range(PCA_K)], summary, rtol=1e-4, atol=1e-4)
    image = Image.open(io.BytesIO(jpegs[4]))
    assert (line["width"], line["height"]) == image.size
    assert len(line["probabilities"]) == 8 and line["probabilities"][0] == pytest.approx(expected[0][0], abs=1e-5)
    folder = next(server.log_root.glob(f"{MODEL}/date=*"))
    assert folder.name == f"date={line['timestamp'][:10]}"
    assert not list(server.log_root.rglob("images")), "images are stored only with --log-images"


def test_metadata_is_normalised_the_way_merge_normalises_the_training_data(server, jpegs):
    import pandas as pd

    from dermpipe.data.schema import check_metadata as merge_check

    raw = {"age_approx": 47, "sex": "Female", "anatom_site_general": "Anterior Torso"}
    response = server.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": b64(jpegs[3]), **raw}]})
    form = server.post("/predict", files={"image": ("a.jpg", jpegs[3], "image/jpeg")},
                       data={"age_approx": "90", "sex": "MALE", "anatom_site_general": "Head/Neck"})
    assert response.status_code == 200 and form.status_code == 200, (response.text, form.text)
    (line,) = wait_for_lines(server, response.json()["request_id"], 1)
    (form_line,) = wait_for_lines(server, form.json()["request_id"], 1)
    row = pd.DataFrame([{"image": "ISIC_0000000", "lesion_id": None, **raw}])
    merged = merge_check(row, "metadata.csv").table.iloc[0]
    served = (line["age_approx"], line["sex"], line["anatom_site_general"])
    assert served == (45.0, "female", "anterior torso")  # isic-metadata's forms, as merge wrote them for training
    assert served == (merged["age_approx"], merged["sex"], merged["anatom_site_general"])
    assert (form_line["age_approx"], form_line["sex"], form_line["anatom_site_general"]) == (85.0, "male",
                                                                                             "head/neck")


def test_status_metadata_and_versions(server, jpegs):
    status = server.get(f"/v1/models/{MODEL}").json()
    assert status["model_version_status"][0] == {"version": "1", "state": "AVAILABLE",
                                                 "status": {"error_code": "OK", "error_message": ""}}
    meta = server.get(f"/v1/models/{MODEL}/metadata").json()
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert signature["outputs"]["probabilities"]["tensor_shape"]["dim"] == [{"size": "-1"}, {"size": "8"}]
    assert meta["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
    assert meta["dermpipe"]["image_size"] == 32 and meta["dermpipe"]["embedding_summary"] == PCA_K
    v2 = server.post(f"/v1/models/{MODEL}/versions/2:predict", json={"instances": [{"b64": b64(jpegs[0])}]})
    assert v2.status_code == 200 and v2.json()["model_version"] == 2
    expected, _ = reference(server.registry_root, 2, [jpegs[0]])
    np.testing.assert_allclose(v2.json()["predictions"][0]["probabilities"], expected[0], atol=1e-5)
    assert server.get(f"/v1/models/{MODEL}/versions/2/metadata").json()["model_spec"]["version"] == "2"
    assert server.get(f"/v1/models/{MODEL}/versions/2").json()["model_version_status"][0]["version"] == "2"
    assert server.get(f"/v1/models/{MODEL}").json()["model_version_status"][0]["version"] == "1"
    for path, status_code in ((f"/v1/models/{MODEL}/versions/9:predict", 404), ("/v1/models/other:predict", 404)):
        response = server.post(path, json={"instances": [{"b64": b64(jpegs[0])}]})
        assert response.status_code == status_code and "error" in response.json()
    assert server.get("/v1/models/other").status_code == 404
    assert server.get("/openapi.json").json()["paths"]["/v1/models/{name}:predict"]["post"]


def _png(size: tuple[int, int], mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 120, 90)).save(buffer, format="TIFF")
    return buffer.getvalue()


def _bad_json_cases(jpeg: bytes) -> list[tuple[str, object, int, str]]:
    good = {"b64": b64(jpeg)}
    return [
        ("not an image", {"instances": [{"b64": b64(b"hello, not a picture at all")}]}, 415, "not an image"),
        ("truncated jpeg", {"instances": [{"b64": b64(jpeg[: len(jpeg) // 2])}]}, 422, "truncated"),
        ("unsupported format", {"instances": [{"b64": b64(_tiff())}]}, 415, "TIFF"),
        ("pixel bomb", {"instances": [{"b64": b64(_png((2500, 2000)))}]}, 413, "pixel"),
        ("empty image", {"instances": [{"b64": ""}]}, 400, "empty"),
        ("bad base64", {"instances": [{"b64": "***"}]}, 400, "base64"),
        ("too many instances", {"instances": [good] * 5}, 413, "limit is 4"),
        ("no instances", {"instances": []}, 400, "empty"),
        ("instances not a list", {"instances": 3}, 400, "instances"),
        ("b64 not a string", {"instances": [{"b64": 5}]}, 400, "b64"),
        ("unknown key", {"instances": [good], "extra": 1}, 400, "extra"),
        ("both formats", {"instances": [good], "inputs": [good]}, 400, "exactly one"),
        ("neither format", {}, 400, "exactly one"),
        ("wrong columnar key", {"inputs": {"pixels": [good]}}, 400, "image_bytes"),
        ("other signature", {"signature_name": "serve_pixels", "instances": [good]}, 400, "serving_default"),
        ("unknown sex", {"instances": [{**good, "sex": "x"}]}, 422, "sex"),
        ("sex isic-metadata refuses", {"instances": [{**good, "sex": "F"}]}, 422,
         "instance 0: sex 'F': isic-metadata refused it (Input should be 'male' or 'female'); expected one of"),
        ("site isic-metadata refuses", {"instances": [{**good, "anatom_site_general": "torso"}]}, 422,
         "anatom_site_general 'torso': isic-metadata refused it"),
        ("json array", [good], 400, "expected shape"),
    ]


def test_every_bad_json_request_gets_a_4xx_with_a_message(server, jpegs):
    for name, payload, status, fragment in _bad_json_cases(jpegs[0]):
        response = server.post(f"/v1/models/{MODEL}:predict", json=payload)
        assert response.status_code == status, (name, response.status_code, response.text)
        assert fragment.lower() in response.json()["error"].lower(), (name, response.text)
    raw = [("empty body", b"", 400), ("not json", b"{{{", 400), ("over the body limit", b"x" * (3 << 20), 413)]
    for name, data, status in raw:
        response = server.post(f"/v1/models/{MODEL}:predict", data=data,
                               headers={"content-type": "application/json"})
        assert response.status_code == status, (name, response.status_code, response.text)
        assert response.json()["error"], name
    assert server.get("/healthz").json() == {"status": "ok"}
    ok = server.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": b64(jpegs[0])}]})
    assert ok.status_code == 200


def test_every_bad_upload_gets_a_4xx_with_a_message(server, jpegs):
    cases = [
        ("empty file", {"image": ("a.jpg", b"", "image/jpeg")}, {}, 400, "empty"),
        ("not an image", {"image": ("a.jpg", b"GIF? no: plain text", "image/jpeg")}, {}, 415, "not an image"),
        ("truncated", {"image": ("a.jpg", jpegs[1][:4000], "image/jpeg")}, {}, 422, "truncated"),
        ("pixel bomb", {"image": ("a.png", _png((4000, 4000), "1"), "image/png")}, {}, 413, "decompression"),
        ("no file", None, {"sex": "male"}, 400, "image"),
        ("bad age", {"image": ("a.jpg", jpegs[1], "image/jpeg")}, {"age_approx": "-3"}, 422,
         "form: age_approx -3.0: isic-metadata refused it"),
        ("fractional age", {"image": ("a.jpg", jpegs[1], "image/jpeg")}, {"age_approx": "47.5"}, 422,
         "expected a whole number of years"),
        ("age not a number", {"image": ("a.jpg", jpegs[1], "image/jpeg")}, {"age_approx": "old"}, 400, "age"),
        ("bad site", {"image": ("a.jpg", jpegs[1], "image/jpeg")}, {"anatom_site_general": "moon"}, 422, "site"),
    ]
    for name, files, data, status, fragment in cases:
        response = server.post("/predict", files=files, data=data)
        assert response.status_code == status, (name, response.status_code, response.text)
        assert fragment.lower() in response.json()["error"].lower(), (name, response.text)
    big = server.post("/predict", files={"image": ("a.jpg", b"\xff\xd8" + b"0" * (3 << 20), "image/jpeg")})
    assert big.status_code == 413
    assert server.get("/readyz").status_code == 200


def _bmp_1bit(jpeg: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("1").save(buffer, format="BMP")
    return buffer.getvalue()


def test_images_only_the_decoder_refuses_are_answered_422_without_a_model_call(server, jpegs):
    # Each has a header PIL reads; only the decode shows the defect. They are refused in the request's own decode,
    # so no batch fails (a failed batch is re-run job by job, which every other request in it would pay for).
    jpeg = jpegs[0]
    cases = {"1-bit BMP (the model's decoder reads no channels)": _bmp_1bit(jpeg),
             "JPEG scrambled after the header": jpeg[:5000] + bytes(b ^ 0x5A for b in jpeg[5000:5300]) + jpeg[5300:],
             "JPEG cut short": jpeg[: len(jpeg) * 9 // 10]}
    calls, failed = metric(server, "dermpipe_model_calls_total"), metric(server, "dermpipe_model_call_failures_total")
    for name, data in cases.items():
        response = server.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": b64(data)}]})
        assert response.status_code == 422, (name, response.status_code, response.text)
        assert "corrupt or truncated" in response.json()["error"], (name, response.text)
    assert metric(server, "dermpipe_model_calls_total") == calls
    assert metric(server, "dermpipe_model_call_failures_total") == failed
    assert server.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": b64(jpeg)}]}).status_code == 200


def test_concurrent_requests_are_batched_into_fewer_model_calls(server, jpegs):
    calls, images = metric(server, "dermpipe_model_calls_total"), metric(server, "dermpipe_images_predicted_total")
    ok = 'dermpipe_requests_total{route="/v1/models/{name}:predict",status="200"}'
    answered = metric(server, ok)
    barrier = threading.Barrier(16)

    def one(i: int) -> int:
        barrier.wait()
        return server.post(f"/v1/models/{MODEL}:predict",
                           json={"instances": [{"b64": b64(jpegs[i % len(jpegs)])}]}).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(one, range(16)))
    assert codes == [200] * 16
    assert metric(server, "dermpipe_images_predicted_total") - images == 16
    assert metric(server, ok) - answered == 16
    assert metric(server, "dermpipe_model_calls_total") - calls <= 8, "16 concurrent requests should share batches"


def test_hot_reload_after_promote_fails_no_request(server, jpegs):
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def hammer() -> None:
        session = requests.Session()
        while not stop.is_set():
            response = session.post(f"{server.url}/v1/models/{MODEL}:predict",
                                    json={"instances": [{"b64": b64(jpegs[2])}]}, timeout=60)
            seen.append((response.status_code, response.json().get("model_version", -1)))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(seen) < 3 and time.monotonic() < deadline:  # answers from version 1 first, however busy the host
            time.sleep(0.1)
        registry.set_current(str(server.registry_root), MODEL, 2)
        deadline = time.monotonic() + 30
        while server.get("/readyz").json().get("model_version") != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        registry.set_current(str(server.registry_root), MODEL, 1)
    assert {code for code, _ in seen} == {200}
    versions = [version for _, version in seen]
    assert versions[0] == 1 and versions[-1] == 2 and versions.index(2) > 0
    assert metric(server, "dermpipe_model_version") == 2
    deadline = time.monotonic() + 30
    while server.get("/readyz").json().get("model_version") != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.get("/readyz").json()["model_version"] == 1
