"""The operating loop end to end: the pipeline's deployed version is served by `dermpipe serve` (a real subprocess on
loopback), its prediction log is read by `dermpipe monitor` against the reference profile that training wrote.

Traffic like the training data (the demo images) must not raise drift; ISIC 2020 dermoscopy images, a different
population from the synthetic demo lesions, must.
"""

import base64
import datetime as dt
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.config import CLASSES, MODEL_NAME

pytestmark = pytest.mark.slow
ISIC2020 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "isic2020-sample" / "images"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(first_run, home, tmp_path_factory):
    assert first_run.status == "succeeded", first_run.error
    log_root = tmp_path_factory.mktemp("loop") / "predictions"
    port = _free_port()
    output = log_root.parent / "serve.log"
    with open(output, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "dermpipe.cli.main", "serve", "--registry-root", str(home / "registry"), "--port",
             str(port), "--log-root", str(log_root), "--flush-seconds", "0.2"], stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, output.read_text()[-3000:]
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"dermpipe serve not ready:\n{output.read_text()[-3000:]}")
    yield url, log_root
    process.terminate()
    process.wait(timeout=30)


def _predict(url: str, files: list[Path]) -> list[dict]:
    answers = []
    for start in range(0, len(files), 8):
        body = {"instances": [{"b64": base64.b64encode(f.read_bytes()).decode()} for f in files[start:start + 8]]}
        response = requests.post(f"{url}/v1/models/{MODEL_NAME}:predict", json=body, timeout=120)
        assert response.status_code == 200, response.text
        answers += response.json()["predictions"]
    return answers


def _monitor(home: Path, log_root: Path, since: str, until: str, out: Path) -> dict:
    result = CliRunner().invoke(app, ["monitor", "--reference", str(home / "registry" / MODEL_NAME / "1"),
                                      "--current", str(log_root), "--since", since, "--until", until,
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "drift.json").read_text())


def _utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def test_served_predictions_are_logged_and_monitored(served, first_run, home, tmp_path):
    url, log_root = served
    demo_root = Path(first_run.artifact("ingest", "dataset")["uri"])
    # a seeded random sample: the demo's image ids run class by class, so the first 60 would be another mix
    every_demo_image = sorted(demo_root.rglob("ISIC_*.jpg"))
    picked = np.random.default_rng(0).choice(len(every_demo_image), 60, replace=False)
    demo_images = [every_demo_image[i] for i in sorted(picked)]
    isic2020 = sorted(ISIC2020.glob("*.jpg"))[:60]
    assert len(demo_images) == 60 and len(isic2020) == 60

    start = _utc()
    answers = _predict(url, demo_images)
    assert len(answers) == 60 and {a["predicted_class"] for a in answers} <= set(CLASSES)
    middle = _utc()
    time.sleep(0.05)
    _predict(url, isic2020)
    end = _utc()
    logged = _wait_for_log(log_root, 120)  # lines are written by the log worker after the responses have gone
    assert len(logged) == 120 and (logged["model_version"] == 1).all()
    assert {"emb_0", "brightness", "predicted_class", "confidence"} <= set(logged.columns)

    same = _monitor(home, log_root, start, middle, tmp_path / "same")
    other = _monitor(home, log_root, middle, end, tmp_path / "other")
    assert same["current_rows"] == 60 and other["current_rows"] == 60
    assert same["drift_detected"] is False, same
    assert other["drift_detected"] is True, other
    assert other["drifted_columns"], other


def _wait_for_log(log_root, lines: int, timeout: float = 60):
    """The prediction log once it holds `lines` lines (polled: on a busy machine the worker can lag the answers)."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(log_root.rglob("*.jsonl"))
        try:
            logged = pd.concat(pd.read_json(f, lines=True) for f in files) if files else pd.DataFrame()
        except ValueError:  # a line being written
            logged = pd.DataFrame()
        if len(logged) >= lines or time.monotonic() > deadline:
            return logged
        time.sleep(0.2)
