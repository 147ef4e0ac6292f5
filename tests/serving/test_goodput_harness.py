"""The goodput benchmark's harness (benchmarks/serving_goodput.py, serving_loadgen.py, serving_mlserver.py): its
pure parts on constructed latencies and rates, a real LoadGen Server run against a local HTTP server, and the
MLServer runtime answering a real v2 request (skipped where `make .venv-mlserver` has not built MLServer's venv)."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import serving_loadgen as lg_harness  # noqa: E402
from serving_loadgen import Point, keeps_up, percentile_ms, search_rate  # noqa: E402


def test_percentile_ranks_failures_over_every_latency():
    latencies = [float(i) for i in range(1, 101)]  # 1..100 ms
    assert percentile_ms(latencies, 0, 99) == 99.0
    assert percentile_ms(latencies, 0, 50) == 50.0
    assert percentile_ms(latencies, 1, 99) == 100.0  # 101 samples: the 100th is still a latency
    assert percentile_ms(latencies, 2, 99) == math.inf  # 102 samples: the 101st is a failure
    assert math.isnan(percentile_ms([], 0, 99))


def test_keep_up_needs_98_percent_of_the_offered_rate():
    assert keeps_up(100.0, 98, 1.0)
    assert not keeps_up(100.0, 97, 1.0)
    assert not keeps_up(100.0, 1, 0.0)


def _point(rate: float, p99: float, keep_up: bool = True) -> Point:
    return Point(offered=rate, scheduled=rate, p50_ms=p99 / 2, p99_ms=p99, failures=0, samples=100, keep_up=keep_up)


def test_void_point_fails_whatever_its_latency():
    assert _point(10, 5.0).passes(10.0)
    assert not _point(10, 5.0, keep_up=False).passes(10.0)
    assert not _point(10, 10.5).passes(10.0)


@pytest.mark.parametrize("bracket", [(10.0, 30.0), (60.0, 80.0), (40.0, 200.0)])
def test_search_finds_the_knee_within_2_percent(bracket):
    knee = 47.3  # a server whose p99 crosses the bound at 47.3 req/s

    def measure(rate):
        return _point(rate, 50.0 if rate <= knee else 500.0)

    found = search_rate(measure, *bracket, bound_ms=100.0)
    assert knee / 1.02 <= found.best <= knee
    assert all(p.passes(100.0) == (p.offered <= knee) for p in found.points)
    rates = [p.offered for p in found.points]
    assert len(rates) == len(set(rates))  # no rate is measured twice


def test_search_counts_void_points_as_failing():
    found = search_rate(lambda rate: _point(rate, 1.0, keep_up=rate <= 40.0), 10.0, 30.0, bound_ms=100.0)
    assert 40.0 / 1.02 <= found.best <= 40.0
    assert found.void >= 1


def test_search_gives_zero_when_nothing_passes():
    found = search_rate(lambda rate: _point(rate, 1e9), 64.0, 128.0, bound_ms=100.0)
    assert found.best == 0.0
    assert min(p.offered for p in found.points) < 64.0 / 8


def test_loadgen_log_values_are_read(tmp_path):
    (tmp_path / "mlperf_log_detail.txt").write_text(
        ':::MLLOG {"key": "result_99.00_percentile_latency_ns", "value": 1234, "time_ms": 1}\n'
        'not a log line\n:::MLLOG {"key": "result_validity", "value": "VALID", "time_ms": 2}\n')
    assert lg_harness.read_loadgen_log(tmp_path) == {"result_99.00_percentile_latency_ns": 1234,
                                                     "result_validity": "VALID"}


def _http_server(status: int, delay_s: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802 - http.server API
            self.rfile.read(int(self.headers.get("content-length", 0)))
            time.sleep(delay_s)
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(("status", "passes"), [(200, True), (503, False)])
def test_a_real_loadgen_server_run_counts_samples_latency_and_failures(status, passes):
    pytest.importorskip("mlperf_loadgen")
    server = _http_server(status, delay_s=0.005)
    client = lg_harness.Client(lg_harness.Target(f"http://127.0.0.1:{server.server_port}/", [(b"x", {})] * 4))
    try:
        point = lg_harness.server_point(client, rate=40.0, bound_ms=200.0, duration_s=2.0)
    finally:
        client.close()
        server.shutdown()
    assert point.samples >= 50 and point.keep_up  # ~80 Poisson arrivals in 2 s
    assert point.failures == (0 if status == 200 else point.samples)
    assert point.p50_ms >= 5.0  # the server's 5 ms are in every latency
    assert point.passes(200.0) is passes
    assert (point.p99_ms < 200.0) is passes


MLSERVER = REPO / ".venv-mlserver" / "bin" / "mlserver"


@pytest.mark.skipif(not MLSERVER.exists(), reason="MLServer's venv is absent (make .venv-mlserver builds it)")
def test_mlserver_runtime_answers_a_real_v2_request_like_the_savedmodel(tmp_path, isic_sample):
    import requests
    import tensorflow as tf
    from serving import free_port, wait_ready
    from serving_mlserver import write_settings

    from dermpipe.model.export import export_serving_model
    from dermpipe.model.zoo import build_classifier

    saved_model = tmp_path / "model"
    export_serving_model(build_classifier("simple_cnn", 64, 8, seed=0)[0], saved_model)
    jpeg = sorted(isic_sample.rglob("*.jpg"))[0].read_bytes()
    port = free_port()
    folder = write_settings(tmp_path / "mlserver", model_name="bench", saved_model=saved_model, http_port=port,
                            grpc_port=free_port(), metrics_port=free_port(), max_batch=8, max_wait_ms=2)
    env = {"PYTHONPATH": str(REPO / "benchmarks"), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen([str(MLSERVER), "start", str(folder)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v2/models/bench/ready", process, timeout=180)
        body = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                            "parameters": {"content_type": "base64"}, "data": [base64.b64encode(jpeg).decode()]}]}
        reply = requests.post(f"http://127.0.0.1:{port}/v2/models/bench/infer", data=json.dumps(body),
                              headers={"content-type": "application/json"}, timeout=60)
        missing = requests.post(f"http://127.0.0.1:{port}/v2/models/bench/infer", timeout=60,
                                json={"inputs": [{"name": "other", "shape": [1], "datatype": "FP32", "data": [1]}]})
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    assert output["name"] == "probabilities" and output["shape"] == [1, 8] and output["datatype"] == "FP32"
    expected = tf.saved_model.load(str(saved_model)).signatures["serving_default"](
        image_bytes=tf.constant([jpeg]))["probabilities"].numpy()[0]
    np.testing.assert_allclose(output["data"], expected, atol=1e-5)
    assert missing.status_code >= 400 and "image_bytes" in missing.text
