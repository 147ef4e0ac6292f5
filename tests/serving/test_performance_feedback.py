"""End to end: predictions logged by a real `dermpipe serve`, labels fed back through POST /v1/feedback (bad ones
refused, each with its reason), then `dermpipe monitor` reports the served version's performance with intervals and
sample sizes, against the test figures the registry version holds."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time

import pytest
from conftest import MODEL, PCA_K, make_registry, start_server, stop_server
from synthetic_traffic import synthetic_features
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.model.profile.reference import PROFILE_FILE

pytestmark = pytest.mark.slow  # a tiny model export and one server start (TensorFlow in a subprocess)

DIAGNOSES = ["MEL", "NV", "BCC", "MEL", "NV", "NV", "BKL", "MEL", "NV", "AK"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Version 1 with clinical.json (test sensitivity 0.95 [0.90, 0.99] at melanoma_sens95), test BMA 0.80 [0.75,
    0.85] in dermpipe.json and a reference profile; `dermpipe serve` logging its predictions."""
    root = tmp_path_factory.mktemp("perf-serve")
    registry = make_registry(root / "registry", {1: 0}, current=1, clinical=(1,))
    folder = registry / MODEL / "1"
    clinical = json.loads((folder / "clinical.json").read_text())
    clinical["operating_points"][0]["test"] = {"sensitivity": 0.95, "sensitivity_lower": 0.9,
                                               "sensitivity_upper": 0.99, "specificity": 0.3,
                                               "specificity_lower": 0.25, "specificity_upper": 0.35, "n": 400,
                                               "positives": 100}
    (folder / "clinical.json").write_text(json.dumps(clinical))
    (folder / "dermpipe.json").write_text(json.dumps({"evaluation": {
        "balanced_accuracy": 0.8, "balanced_accuracy_lower": 0.75, "balanced_accuracy_upper": 0.85,
        "test_rows": 400}}))
    synthetic_features(200, seed=1, n_components=PCA_K).assign(split="val").to_parquet(folder / PROFILE_FILE,
                                                                                        index=False)
    running = start_server(registry, root / "predictions", root / "server.log", "--flush-seconds", "0.2")
    yield running
    stop_server(running)


def _logged_ids(server, wanted: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = [json.loads(line)["request_id"] for path in sorted(server.log_root.glob(f"{MODEL}/date=*/*.jsonl"))
               for line in path.read_text().splitlines()]
        if len(ids) >= wanted:
            return ids
        time.sleep(0.2)
    raise AssertionError(f"{wanted} log lines expected in {server.log_root}")


def test_labels_fed_back_to_served_predictions_are_monitored_per_version(served, jpegs, tmp_path):
    b64 = [base64.b64encode(j).decode() for j in jpegs]
    request_ids = []
    for _ in range(2):
        answer = served.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": b} for b in b64]})
        assert answer.status_code == 200, answer.text
        request_ids += [f"{answer.json()['request_id']}-{i}" for i in range(len(b64))]
    assert sorted(_logged_ids(served, 12)) == sorted(request_ids)

    today = dt.datetime.now(dt.UTC).date().isoformat()
    good = [{"request_id": rid, "diagnosis": d, "source": "biopsy", "date": today}
            for rid, d in zip(request_ids, DIAGNOSES, strict=False)]
    bad = [{"request_id": "no-such-request", "diagnosis": "NV", "source": "biopsy", "date": today},
           {"request_id": request_ids[10], "diagnosis": "MOLE", "source": "biopsy", "date": today},
           {"request_id": request_ids[10], "diagnosis": "NV", "source": "rumour", "date": today},
           {"request_id": request_ids[11], "diagnosis": "NV", "source": "biopsy", "date": "2999-01-01"},
           {"request_id": request_ids[11], "diagnosis": "NV", "source": "biopsy"}]
    response = served.post("/v1/feedback", json={"labels": good + bad})
    assert response.status_code == 200, response.text
    outcomes = response.json()["labels"]
    assert [o["status"] for o in outcomes] == ["accepted"] * 10 + ["refused"] * 5
    reasons = [o["reason"] for o in outcomes[10:]]
    for reason, words in zip(reasons, ("unknown request id", "unknown diagnosis 'MOLE'", "unknown source 'rumour'",
                                       "is in the future", "missing date"), strict=True):
        assert words in reason, reasons

    result = CliRunner().invoke(app, ["monitor", "--current", str(served.log_root), "--model-name", MODEL,
                                      "--registry-root", str(served.registry_root), "--out", str(tmp_path),
                                      "--n-bootstrap", "300", "--min-labels", "5", "--min-melanomas", "3"])
    assert result.exit_code == 0, result.output
    assert "version 1: 12 predictions, 10 labelled, 16.7% still without a label" in result.output
    rows = {(r["metric"], r["operating_point"]): r
            for r in json.loads((tmp_path / "performance.json").read_text())["versions"][0]["estimates"]}
    bma, sens = rows[("bma", "")], rows[("melanoma_sensitivity", "melanoma_sens95")]
    assert bma["n"] == 10 and bma["lower"] <= bma["point"] <= bma["upper"] and bma["test_lower"] == 0.75
    # melanoma_sens95 of this test version has threshold 0: every melanoma is referred, so nothing dropped there
    assert (sens["n"], sens["point"], sens["lower"], sens["upper"], sens["verdict"]) == (3, 1.0, 1.0, 1.0, "no drop")
    assert rows[("melanoma_specificity", "melanoma_sens95")]["point"] == 0.0  # and no other lesion is spared
    assert rows[("melanoma_specificity", "melanoma_sens95")]["verdict"] == "drop"
    assert "Evidently ClassificationPreset" in (tmp_path / "performance_report.html").read_text()
    line = next(x for x in result.output.splitlines() if x.startswith("1  ") and " bma " in x)
    assert f"{bma['point']:.3f}" in line and f"[{bma['lower']:.3f}, {bma['upper']:.3f}]" in line and " 10 " in line
