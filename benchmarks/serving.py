"""Serving benchmark: `dermpipe serve` against a naive baseline server, measured side by side in one run.

    python benchmarks/serving.py [--image-size 64] [--rss-requests 10000] [--json out.json]

Both servers run as subprocesses on loopback. The baseline answers TF Serving's REST request (POST
/v1/models/<name>:predict with {"instances": [{"b64": <JPEG>}]}); dermpipe serve is measured over each protocol it
speaks, with its default batching settings in every run: REST v1 (the same JSON request), the Open Inference
Protocol v2 (binary tensor data, as tritonclient sends it) and TF Serving's gRPC PredictionService.Predict
(tensorflow-serving-api stubs, one channel per client):
- dermpipe: micro-batching, each image checked and decoded once in its request's thread, one SavedModel call per
  batch, prediction log on;
- baseline: http.server (threaded) whose handler decodes the JPEG with PIL, resizes it and calls Keras
  `model.predict` on that one image per request.
The load generator sends real JPEGs (../shared/data/isic2020-sample/images, 512x512) from 1, 4 and 16 concurrent
clients, with 10% garbage requests mixed in (not an image, truncated JPEG, not JSON, wrong shape): those must get a
4xx and nothing may get a 5xx. Reported per level: p50/p99 latency of the valid requests, throughput, error counts.
Then an open loop (`--open-loop 0.5 0.8`): Poisson arrivals at those shares of gRPC's throughput at the top level,
the latency a steady stream of requests below saturation sees.
Also: the bare forward time of one batch (serving_default on encoded JPEGs, in this process: the ratio's
denominator), the part of it the server's batch call runs (serve_pixels on decoded pixels) and the server's
resident memory (VmRSS) before and after `--rss-requests` requests. `--server-cpus 0 1 ...` pins both servers (and the
bare-forward timing) to those CPUs and the load generator to the rest, so that a many-core machine can measure the
servers without the clients taking their cores.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO.parent / "shared" / "data" / "isic2020-sample" / "images"
MODEL = "bench"


# ------------------------------------------------------------------------------------------------ baseline server
def baseline_server(model_file: str, port: int) -> None:
    """The naive server: a plain threaded handler, PIL decode + resize, model.predict per request."""
    import io
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import numpy as np
    from PIL import Image

    from dermpipe.model.zoo import load_classifier

    model = load_classifier(model_file)
    size = int(model.input_shape[1])
    classes = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 - http.server API
            self._send(200, {"status": "ready"})

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                image_bytes = base64.b64decode(json.loads(body)["instances"][0]["b64"])
                image = Image.open(io.BytesIO(image_bytes)).convert("RGB").resize((size, size), Image.BILINEAR)
            except Exception as err:  # noqa: BLE001
                self._send(400, {"error": str(err)})
                return
            probabilities = model.predict(np.asarray(image, np.float32)[None], verbose=0)[0]
            best = int(probabilities.argmax())
            self._send(200, {"predictions": [{"probabilities": probabilities.tolist(),
                                              "predicted_class": classes[best]}]})

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# --------------------------------------------------------------------------------------------------------- set-up
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_registry(root: Path, image_size: int) -> Path:
    """A tiny simple_cnn exported as registry version 1 (+ model.keras for the baseline)."""
    from dermpipe.deploy import registry
    from dermpipe.model.export import export_serving_model
    from dermpipe.model.zoo import build_classifier

    model, _ = build_classifier("simple_cnn", image_size, 8, seed=0)
    folder = root / MODEL / "1"
    export_serving_model(model, folder)
    model.save(folder / "model.keras")
    registry.set_current(str(root), MODEL, 1)
    return folder


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server {url} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server {url} not ready after {timeout}s")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------------------------------------- load
def payloads(n_valid: int) -> tuple[list[bytes], list[bytes]]:
    """Valid request bodies (real JPEGs) and garbage bodies (each must get a 4xx)."""
    files = sorted(IMAGES.glob("*.jpg"))[:n_valid]
    if not files:
        raise SystemExit(f"no JPEGs in {IMAGES}: the isic2020-sample data kit is needed")
    jpegs = [f.read_bytes() for f in files]
    valid = [json.dumps({"instances": [{"b64": base64.b64encode(j).decode()}]}).encode() for j in jpegs]
    garbage = [
        json.dumps({"instances": [{"b64": base64.b64encode(b"definitely not an image").decode()}]}).encode(),
        json.dumps({"instances": [{"b64": base64.b64encode(jpegs[0][: len(jpegs[0]) // 3]).decode()}]}).encode(),
        b"{not json",
        json.dumps({"instances": "nope"}).encode(),
        json.dumps({"instances": [{"b64": "!!!"}]}).encode(),
    ]
    return valid, garbage


def rest_sender(url: str):
    """A per-client sender of (body, headers) pairs: POST with a requests.Session; returns the HTTP status."""
    import requests

    def make():
        session = requests.Session()

        def send(payload) -> int:
            body, headers = payload if isinstance(payload, tuple) else (payload, {"content-type": "application/json"})
            try:
                return session.post(url, data=body, headers=headers, timeout=60).status_code
            except requests.RequestException:
                return -1
        return send
    return make


def grpc_sender(target: str):
    """A per-client sender of PredictRequests over one channel; a gRPC status is mapped to HTTP's classes."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    client_errors = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}

    def make():
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", 64 << 20)]))

        def send(request) -> int:
            try:
                stub.Predict(request, timeout=60)
                return 200
            except grpc.RpcError as err:
                return 400 if err.code() in client_errors else 500
        return send
    return make


def v2_payloads(jpegs: list[bytes]) -> tuple[list, list]:
    """Binary-framed v2 infer bodies (one image each, outputs as binary data) and garbage ones."""
    import struct

    def framed(data: bytes, size: int | None = None) -> tuple[bytes, dict]:
        head = json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": size or len(data) + 4}}],
                           "parameters": {"binary_data_output": True}}).encode()
        return head + struct.pack("<I", len(data)) + data, {"Inference-Header-Content-Length": str(len(head))}

    garbage = [framed(b"definitely not an image"), framed(jpegs[0][: len(jpegs[0]) // 3]),
               framed(jpegs[0], size=len(jpegs[0]) + 99), (b"{not json", {"content-type": "application/json"})]
    return [framed(j) for j in jpegs], garbage


def grpc_payloads(jpegs: list[bytes]) -> tuple[list, list]:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    def request(data, dtype=tf.string):
        message = predict_pb2.PredictRequest()
        message.model_spec.name = MODEL
        message.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(data, dtype=dtype))
        return message

    garbage = [request([b"definitely not an image"]), request([jpegs[0][: len(jpegs[0]) // 3]]),
               request([1.0], dtype=tf.float32)]
    return [request([j]) for j in jpegs], garbage


def load(sender, clients: int, total: int, valid: list, garbage: list, garbage_share: float, seed: int = 0,
         rate: float = 0.0) -> dict:
    """`clients` threads send `total` requests in all; latencies of valid requests, status counts. sender: a URL
    (REST, JSON bodies) or a factory of per-client send(payload) -> status functions.

    rate 0: a closed loop (each client sends its next request when the last is answered). rate > 0: an open loop,
    requests due at Poisson arrival times of `rate` per second, sent by whichever client is free; latency counts from
    the time a request was due, so a request that waited for a free client is not reported as fast."""
    make = rest_sender(sender) if isinstance(sender, str) else sender
    rng = random.Random(seed)
    plan = [(True, rng.choice(garbage)) if rng.random() < garbage_share else (False, rng.choice(valid))
            for _ in range(total)]
    due = [0.0] * total
    for i in range(1, total if rate > 0 else 0):
        due[i] = due[i - 1] + rng.expovariate(rate)
    lock = threading.Lock()
    cursor = iter(range(total))
    latencies: list[float] = []
    counts = {"ok": 0, "4xx_garbage": 0, "4xx_valid": 0, "5xx": 0, "garbage_2xx": 0, "other": 0}

    def client() -> None:
        send = make()
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            is_garbage, body = plan[i]
            if rate > 0:
                time.sleep(max(0.0, begin + due[i] - time.perf_counter()))
            started = begin + due[i] if rate > 0 else time.perf_counter()
            status = send(body)
            elapsed = time.perf_counter() - started
            with lock:
                if status >= 500:
                    counts["5xx"] += 1
                elif 400 <= status < 500:
                    counts["4xx_garbage" if is_garbage else "4xx_valid"] += 1
                elif status == 200:
                    counts["garbage_2xx" if is_garbage else "ok"] += 1
                    if not is_garbage:
                        latencies.append(elapsed)
                else:
                    counts["other"] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    begin = started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"clients": clients, "requests": total, "seconds": wall, "throughput": total / wall,
            "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else
            float("nan"), **counts}


def bare_forward_ms(saved_model: Path, jpegs: list[bytes], batch: int, repeats: int = 20,
                    signature: str = "serving_default") -> float:
    """Median time of one call on `batch` images, in this process: serving_default on encoded JPEGs (decode and
    model: all the model work a request needs), or serve_pixels on pixels decoded beforehand (the server's batch
    call: the server decodes each image in its request's thread)."""
    import tensorflow as tf

    from dermpipe.model.export import decode_batch

    served = tf.saved_model.load(str(saved_model)).signatures[signature]
    data = tf.constant((jpegs * batch)[:batch])
    inputs = ({"image_bytes": data} if signature == "serving_default" else
              {"image": decode_batch(data, int(served.structured_input_signature[1]["image"].shape[1]))})
    for _ in range(3):
        served(**inputs)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        served(**inputs)["probabilities"].numpy()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def server_batches(url: str) -> tuple[float, float]:
    """(images, model calls) so far, from dermpipe serve's /metrics."""
    import re

    import requests

    text = requests.get(url + "/metrics", timeout=10).text
    total = float(re.search(r"^dermpipe_batch_size_sum ([0-9.e+]+)$", text, re.M).group(1))
    count = float(re.search(r"^dermpipe_batch_size_count ([0-9.e+]+)$", text, re.M).group(1))
    return total, count


# ----------------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests-per-client", type=int, default=60)
    parser.add_argument("--rss-requests", type=int, default=10_000)
    parser.add_argument("--garbage", type=float, default=0.1)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--no-log", action="store_true", help="run dermpipe serve without the prediction log")
    parser.add_argument("--server-cpus", type=int, nargs="+", default=None,
                        help="pin both servers (and the bare-forward timing) to these CPUs and the load generator "
                             "to the others, so that clients do not take the servers' cores")
    parser.add_argument("--open-loop", type=float, nargs="*", default=[0.5, 0.8],
                        help="also offer Poisson arrivals at these fractions of gRPC's closed-loop throughput at the "
                             "top level, the same rate to every protocol (none: skip)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-file", default="", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        baseline_server(args.model_file, args.port)
        return

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    load_before = os.getloadavg()[0]
    server_cpus = set(args.server_cpus or [])
    client_cpus = os.sched_getaffinity(0) - server_cpus if server_cpus else os.sched_getaffinity(0)
    if server_cpus and not client_cpus:
        raise SystemExit(f"--server-cpus {sorted(server_cpus)} leaves no CPU for the load generator")
    pin = (lambda: os.sched_setaffinity(0, server_cpus)) if server_cpus else None
    os.sched_setaffinity(0, client_cpus)
    work = Path(tempfile.mkdtemp(prefix="dermpipe-bench-"))
    version = make_registry(work / "registry", args.image_size)
    ports = {"dermpipe": free_port(), "baseline": free_port()}
    grpc_port = free_port()
    out = {name: open(work / f"{name}.log", "wb") for name in ports}  # noqa: SIM115
    servers = {
        "dermpipe": subprocess.Popen(
            [sys.executable, "-m", "dermpipe.cli.main", "serve", "--registry-root", str(work / "registry"),
             "--model-name", MODEL, "--port", str(ports["dermpipe"]),
             "--log-root", "none" if args.no_log else str(work / "predictions"),
             "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--log-level", "warning",
             "--grpc-port", str(grpc_port)],
            stdout=out["dermpipe"], stderr=subprocess.STDOUT, preexec_fn=pin),
        "baseline": subprocess.Popen(
            [sys.executable, __file__, "--baseline-server", "--model-file", str(version / "model.keras"),
             "--port", str(ports["baseline"])], stdout=out["baseline"], stderr=subprocess.STDOUT, preexec_fn=pin),
    }
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        for name in servers:
            wait_ready(urls[name] + ("/readyz" if name == "dermpipe" else "/"), servers[name])
        valid, garbage = payloads(64)
        jpegs = [f.read_bytes() for f in sorted(IMAGES.glob("*.jpg"))[:64]]
        # protocol -> (sender, valid payloads, garbage payloads)
        protocols = {
            "baseline": (f"{urls['baseline']}/v1/models/{MODEL}:predict", valid, garbage),
            "v1": (f"{urls['dermpipe']}/v1/models/{MODEL}:predict", valid, garbage),
            "v2": (rest_sender(f"{urls['dermpipe']}/v2/models/{MODEL}/infer"), *v2_payloads(jpegs)),
            "grpc": (grpc_sender(f"127.0.0.1:{grpc_port}"), *grpc_payloads(jpegs)),
        }
        predict = {"dermpipe": protocols["v1"][0]}
        for sender, good, bad in protocols.values():  # warm-up (tracing, first-call costs), not measured
            load(sender, 4, 40, good, bad, 0.0)
        results: dict[str, list[dict]] = {name: [] for name in protocols}
        batch_at: dict[str, dict[int, float]] = {name: {} for name in protocols}
        for clients in args.levels:
            for name, (sender, good, bad) in protocols.items():
                before = server_batches(urls["dermpipe"])
                row = load(sender, clients, clients * args.requests_per_client, good, bad, args.garbage, seed=clients)
                results[name].append(row)
                after = server_batches(urls["dermpipe"])
                batch_at[name][clients] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
        top = max(args.levels)
        open_rows: dict[str, list[dict]] = {name: [] for name in ("v1", "v2", "grpc")}
        for fraction in args.open_loop:  # below saturation: the latency a steady stream of requests sees
            rate = fraction * results["grpc"][-1]["throughput"]
            for name in open_rows:
                sender, good, bad = protocols[name]
                before = server_batches(urls["dermpipe"])
                row = load(sender, 4 * top, top * args.requests_per_client, good, bad, args.garbage, seed=top,
                           rate=rate)
                after = server_batches(urls["dermpipe"])
                open_rows[name].append({**row, "offered": rate, "fraction": fraction,
                                        "batch": (after[0] - before[0]) / max(1.0, after[1] - before[1])})
        sizes = {1, top} | {max(1, round(mean)) for name in ("v1", "v2", "grpc") for mean in batch_at[name].values()}
        sizes |= {max(1, round(row["batch"])) for rows in open_rows.values() for row in rows}
        os.sched_setaffinity(0, server_cpus or client_cpus)  # the forward is timed on the servers' CPUs
        bare = {size: bare_forward_ms(version, jpegs, size) for size in sorted(sizes)}
        pixels_only = {size: bare_forward_ms(version, jpegs, size, signature="serve_pixels") for size in sorted(sizes)}
        os.sched_setaffinity(0, client_cpus)
        pid = servers["dermpipe"].pid
        rss = [(0, rss_mib(pid))]
        chunk = max(1, args.rss_requests // 8)
        for done in range(chunk, args.rss_requests + 1, chunk):
            soak = load(predict["dermpipe"], top, chunk, valid, garbage, args.garbage, seed=done)
            rss.append((done, rss_mib(pid)))
            if soak["5xx"]:
                print(f"!! {soak['5xx']} 5xx during the memory soak")
    finally:
        for process in servers.values():
            process.terminate()
        for process in servers.values():
            process.wait(timeout=30)

    print(f"\nserving benchmark: simple_cnn {args.image_size}px, real 512x512 JPEGs, {args.garbage:.0%} garbage, "
          f"max_batch {args.max_batch}, max_wait {args.max_wait_ms} ms, "
          f"prediction log {'off' if args.no_log else 'on'}, "
          f"{os.cpu_count()} CPUs, load average before {load_before:.1f}"
          + (f", servers pinned to CPUs {sorted(server_cpus)}, load generator to {sorted(client_cpus)}"
             if server_cpus else ", servers and load generator share every CPU"))
    header = (f"{'protocol':<9}{'clients':>8}{'req':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'batch':>7}"
              f"{'p50/bare':>9}{'x base':>8}{'ok':>6}{'4xx bad':>8}{'4xx ok':>7}{'5xx':>5}")
    print(header)
    for i, clients in enumerate(args.levels):
        for name in ("v1", "v2", "grpc", "baseline"):
            r, base = results[name][i], results["baseline"][i]
            batch = max(1, round(batch_at[name].get(clients, 1))) if name != "baseline" else 1
            ratio = r["p50_ms"] / bare[batch] if batch in bare else float("nan")
            print(f"{name:<9}{clients:>8}{r['requests']:>6}{r['throughput']:>9.1f}{r['p50_ms']:>9.1f}"
                  f"{r['p99_ms']:>9.1f}{batch:>7}{ratio:>9.2f}{r['throughput'] / base['throughput']:>8.2f}"
                  f"{r['ok']:>6}{r['4xx_garbage']:>8}{r['4xx_valid']:>7}{r['5xx']:>5}")
    print("(batch: the server's mean batch over the run, rounded; p50/bare: p50 over the bare forward time of that "
          "batch; x base: throughput over the naive baseline's at the same clients)")
    if args.open_loop:
        print(f"\nopen loop: Poisson arrivals at a share of gRPC's {top}-client throughput, the same rate to every "
              f"protocol, up to {4 * top} requests in flight; latency from the time each request was due")
        print(f"{'protocol':<9}{'share':>7}{'offered':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'batch':>7}"
              f"{'p50/bare':>9}{'ok':>6}{'4xx bad':>8}{'4xx ok':>7}{'5xx':>5}")
        for i, fraction in enumerate(args.open_loop):
            for name, rows in open_rows.items():
                r = rows[i]
                batch = max(1, round(r["batch"]))
                print(f"{name:<9}{fraction:>7.0%}{r['offered']:>9.1f}{r['throughput']:>9.1f}{r['p50_ms']:>9.1f}"
                      f"{r['p99_ms']:>9.1f}{batch:>7}{r['p50_ms'] / bare[batch]:>9.2f}{r['ok']:>6}"
                      f"{r['4xx_garbage']:>8}{r['4xx_valid']:>7}{r['5xx']:>5}")
    print("\nbare forward (serving_default on encoded JPEGs, this process): "
          + ", ".join(f"batch {k}: {v:.1f} ms" for k, v in sorted(bare.items())))
    print("of which the model on decoded pixels (serve_pixels: the server's batch call; it decodes each image in "
          "its request's thread): " + ", ".join(f"batch {k}: {v:.1f} ms" for k, v in sorted(pixels_only.items())))
    print(f"5xx total: {sum(r['5xx'] for rows in (*results.values(), *open_rows.values()) for r in rows)}")
    print("dermpipe serve RSS (MiB) after N requests: " + ", ".join(f"{n}: {m:.0f}" for n, m in rss))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "open_loop": open_rows, "bare_forward_ms": bare,
                                         "serve_pixels_ms": pixels_only,
                                         "batch_mean": batch_at,
                                         "rss_mib": rss, "args": {k: str(v) for k, v in vars(args).items()}},
                                        indent=1))


if __name__ == "__main__":
    main()
