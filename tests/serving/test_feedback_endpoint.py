"""POST /v1/feedback and /v2/models/{name}/feedback through FastAPI's TestClient (no model needed: the prediction log
is written by the real PredictionLog, as `dermpipe serve` writes it)."""

import pytest
from fastapi.testclient import TestClient
from logged_predictions import write_log

from dermpipe.serving.app import create_app
from dermpipe.serving.labels import read_labels
from dermpipe.serving.settings import Settings

MODEL = "derm"


def label(rid, diagnosis="MEL", source="biopsy", date="2026-11-30"):
    return {"request_id": rid, "diagnosis": diagnosis, "source": source, "date": date}


@pytest.fixture()
def client(tmp_path):
    log_root = tmp_path / "predictions"
    write_log(log_root, MODEL, ["aa", "bb", "cc-0", "cc-1"])
    app = create_app(Settings(registry_root=str(tmp_path / "registry"), model_name=MODEL, log_root=str(log_root)))
    return TestClient(app), str(log_root)  # no lifespan: no model is loaded, feedback needs none


def test_partly_valid_submission_is_200_with_every_outcome(client):
    http, log_root = client
    response = http.post("/v1/feedback", json={"labels": [label("aa"), label("zz"), label("bb", "Melanoma")]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicate"], body["refused"]) == (1, 0, 2)
    assert [o["status"] for o in body["labels"]] == ["accepted", "refused", "refused"]
    assert "unknown request id 'zz'" in body["labels"][1]["reason"]
    assert "unknown diagnosis 'Melanoma'" in body["labels"][2]["reason"]
    assert body["submission"].endswith(".jsonl") and "uri" not in body
    assert read_labels(log_root, MODEL)["request_id"].tolist() == ["aa"]


def test_nothing_valid_is_400_with_the_protocol_error_and_the_outcomes(client):
    http, log_root = client
    http.post("/v1/feedback", json={"labels": [label("aa")]})
    response = http.post("/v1/feedback", json={"labels": [label("aa", "NV"), label("cc")]})
    assert response.status_code == 400
    body = response.json()
    assert body["error"].startswith("no valid label among 2; the first: conflict: 'aa' is already labelled MEL")
    assert "label cc-0, cc-1 instead" in body["labels"][1]["reason"]
    assert read_labels(log_root, MODEL)["diagnosis"].tolist() == ["MEL"]  # nothing written


def test_v2_path_checks_the_model_name_and_reports_duplicates(client):
    http, _ = client
    assert http.post("/v2/models/other/feedback", json={"labels": [label("aa")]}).status_code == 404
    first = http.post(f"/v2/models/{MODEL}/feedback", json={"labels": [label("cc-0", "NV", "consensus")]})
    again = http.post(f"/v2/models/{MODEL}/feedback", json={"labels": [label("cc-0", "NV", "consensus")]})
    assert first.json()["accepted"] == 1
    assert again.status_code == 200 and again.json()["duplicate"] == 1 and again.json()["submission"] is None


@pytest.mark.parametrize("body", [{"labelz": []}, {"labels": "aa"}, {"labels": []}, [label("aa")]])
def test_malformed_bodies_are_400_never_5xx(client, body):
    response = client[0].post("/v1/feedback", json=body)
    assert response.status_code == 400 and "error" in response.json()


def test_a_server_without_a_prediction_log_answers_404(tmp_path):
    http = TestClient(create_app(Settings(registry_root=str(tmp_path), model_name=MODEL)))
    response = http.post("/v1/feedback", json={"labels": [label("aa")]})
    assert response.status_code == 404 and "--log-root" in response.json()["error"]


def test_a_store_outage_is_503_and_stores_nothing(client, monkeypatch):
    from dermpipe.serving import feedback_store as feedback

    def refuse(*args, **kwargs):
        raise OSError("bucket unreachable")

    monkeypatch.setattr(feedback, "append_labels", refuse)
    response = client[0].post("/v1/feedback", json={"labels": [label("aa")]})
    assert response.status_code == 503 and "bucket unreachable" in response.json()["error"]
    assert read_labels(client[1], MODEL).empty
