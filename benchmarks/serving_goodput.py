"""Goodput at a p99 latency bound under Poisson load (MLPerf LoadGen, Server scenario): dermpipe serve against
MLServer 1.7 serving the same SavedModel, one at a time, each on the same core.

    python benchmarks/serving_goodput.py [--quick] [--model cluster|laptop] [--json out.json]

- f1: the median bare forward time of one real ISIC JPEG (the SavedModel's serving_default: decode + resize +
  model) in this process on the server's core, TensorFlow intra/inter-op threads 1. The bound is 5 x f1 (3 x and
  10 x reported too), the same for every server. X, the offline ceiling: max over batch sizes B of B / f(B).
- The server is pinned to --server-cpu, this process (LoadGen and its client) to --client-cpu (taskset /
  sched_setaffinity); TF_NUM_INTRAOP_THREADS = TF_NUM_INTEROP_THREADS = 1 in every server.
- LoadGen draws the Poisson arrivals from a fixed seed (the same trace for every server) and measures latency from
  each request's scheduled time; a non-2xx answer or a time-out counts as over the bound. A rate point lasts
  --duration seconds; it is void (failing) if the client issued below 98 % of the scheduled rate. The rate is found
  by binary search to within 2 %.
- Both servers' batching is tuned on the same grid (--grid-batch x --grid-wait); each is reported at its best.
- Payload: the same JPEG bytes for both, over the Open Inference Protocol v2 REST (the headline): dermpipe with
  Triton's binary tensor extension (its best), MLServer with base64 in JSON (its REST API has no binary extension).
  dermpipe's TF Serving REST (v1, base64 JSON) is reported beside it at its best setting.
The last line is the headline: goodput at p99 <= B ms (PROTOCOL): dermpipe G1 req/s, MLServer G2 req/s, ratio R;
offline ceiling X req/s, of the ceiling C.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import free_port, v2_payloads, wait_ready  # noqa: E402
from serving_loadgen import Client, Search, Target, search_rate, server_point, single_stream  # noqa: E402
from serving_mlserver import write_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO.parent / "shared" / "data" / "isic2019-sample" / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input"
MLSERVER = REPO / ".venv-mlserver" / "bin" / "mlserver"
MODEL = "bench"
MODELS = {"cluster": ("efficientnet_b0", 224), "laptop": ("simple_cnn", 64)}  # pipelines/profiles.py
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
              "CUDA_VISIBLE_DEVICES": ""}


# ------------------------------------------------------------------------------------------------- preparation
def real_jpegs(n: int) -> list[bytes]:
    files = sorted(IMAGES.glob("*.jpg"))[:n]
    if not files:
        raise SystemExit(f"no JPEGs in {IMAGES}: the isic2019-sample data kit (../shared/data) is needed")
    return [f.read_bytes() for f in files]


def export_model(root: Path, backbone: str, image_size: int) -> Path:
    """The model (untrained weights: timing only) as registry version 1; returns the SavedModel folder."""
    from dermpipe.deploy import registry
    from dermpipe.model.export import export_serving_model
    from dermpipe.model.zoo import build_classifier

    model, _ = build_classifier(backbone, image_size, 8, seed=0)
    folder = root / MODEL / "1"
    export_serving_model(model, folder)
    registry.set_current(str(root), MODEL, 1)
    return folder


def forward_times(saved_model: Path, jpegs: list[bytes], batches: list[int], repeats: int) -> dict[int, float]:
    """Median ms of serving_default (decode + resize + model) on B real JPEGs, in this process."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    times: dict[int, float] = {}
    for batch in batches:
        data = tf.constant((jpegs * batch)[:batch])
        for _ in range(3):
            serve(image_bytes=data)
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            serve(image_bytes=data)["probabilities"].numpy()
            runs.append(time.perf_counter() - started)
        times[batch] = 1000 * statistics.median(runs)
    return times


# ----------------------------------------------------------------------------------------------------- servers
def start_server(kind: str, work: Path, saved_model: Path, cpu: int, max_batch: int, max_wait_ms: float,
                 log_predictions: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, **ONE_THREAD}
    if kind == "dermpipe":
        command = [sys.executable, "-m", "dermpipe.cli.main", "serve", "--registry-root", str(work / "registry"),
                   "--model-name", MODEL, "--port", str(port), "--max-batch", str(max_batch),
                   "--max-wait-ms", str(max_wait_ms), "--log-level", "warning",
                   "--log-root", str(work / "predictions") if log_predictions else "none"]
    else:
        folder = write_settings(work / f"mlserver-{max_batch}-{max_wait_ms}", model_name=MODEL,
                                saved_model=saved_model, http_port=port, grpc_port=free_port(),
                                metrics_port=free_port(), max_batch=max_batch, max_wait_ms=max_wait_ms)
        command = [str(MLSERVER), "start", str(folder)]
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent)
    log = open(work / f"{kind}.log", "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(["taskset", "-c", str(cpu), *command], stdout=log, stderr=subprocess.STDOUT, env=env)
    wait_ready(f"http://127.0.0.1:{port}/v2/models/{MODEL}/ready", process)
    return process, port


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bodies(kind: str, protocol: str, jpegs: list[bytes]) -> list[tuple[bytes, dict[str, str]]]:
    import base64

    if kind == "dermpipe" and protocol == "v2":
        return v2_payloads(jpegs)[0]
    if kind == "dermpipe":  # TF Serving REST
        return [(json.dumps({"instances": [{"b64": base64.b64encode(j).decode()}]}).encode(),
                 {"content-type": "application/json"}) for j in jpegs]
    return [(json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"content_type": "base64"},
                                     "data": [base64.b64encode(j).decode()]}]}).encode(),
             {"content-type": "application/json"}) for j in jpegs]


def url(kind: str, protocol: str, port: int) -> str:
    path = f"/v1/models/{MODEL}:predict" if (kind, protocol) == ("dermpipe", "v1") else f"/v2/models/{MODEL}/infer"
    return f"http://127.0.0.1:{port}{path}"


# ------------------------------------------------------------------------------------------------- measurement
def measure(kind: str, protocol: str, setting: tuple[int, float], bound_ms: float, bracket: tuple[float, float],
            ctx: dict, stream: bool = False) -> tuple[Search, tuple | None]:
    """Start `kind` with this batching setting, warm it, binary-search its goodput at `bound_ms`, stop it;
    with `stream`, also LoadGen's SingleStream p50/p90 (ms) and its failures."""
    import requests

    process, port = start_server(kind, ctx["work"], ctx["saved_model"], ctx["server_cpu"], *setting, ctx["log"])
    client = None
    try:
        target = Target(url(kind, protocol, port), bodies(kind, protocol, ctx["jpegs"]))
        for body, headers in target.bodies[:16]:  # warm-up: first-call costs, not measured
            requests.post(target.url, data=body, headers=headers, timeout=60).raise_for_status()
        client = Client(target)
        search = search_rate(lambda rate: server_point(client, rate, bound_ms, ctx["duration"]), *bracket, bound_ms)
        streamed = single_stream(client, bound_ms, ctx["duration"]) if stream else None
        return search, streamed
    finally:
        if client is not None:
            client.close()
        stop_server(process)


def tune(kind: str, grid: list[tuple[int, float]], bound_ms: float, ceiling: float, ctx: dict,
         repeat: int) -> dict[tuple[int, float], Search]:
    """The headline search (v2 at `bound_ms`) at every grid setting; later settings start near the best so far."""
    found: dict[tuple[int, float], Search] = {}
    for setting in grid:
        best = max((s.best for s in found.values()), default=0.0)
        bracket = (0.8 * best, 1.2 * best) if best else (0.3 * ceiling, 0.9 * ceiling)
        found[setting] = measure(kind, "v2", setting, bound_ms, bracket, ctx)[0]
        print(f"  [{repeat}] {kind:<9} max_batch {setting[0]:>2} max_wait {setting[1]:>4g} ms: "
              f"{found[setting].best:7.1f} req/s at p99 <= {bound_ms:.1f} ms ({len(found[setting].points)} points, "
              f"{found[setting].void} void)", flush=True)
    return found


def point_rows(search: Search) -> list[str]:
    return [f"    offered {p.offered:7.1f}  scheduled {p.scheduled:7.1f}  p50 {p.p50_ms:7.1f} ms"
            f"  p99 {p.p99_ms:8.1f} ms"
            f"  failures {p.failures:>4}/{p.samples:<5}{'  VOID (generator behind)' if not p.keep_up else ''}"
            for p in sorted(search.points, key=lambda p: p.offered)]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f}, n {len(values)})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, 15 s points, the quick grid")
    parser.add_argument("--model", choices=sorted(MODELS), default="cluster")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--grid-batch", type=int, nargs="+", default=None, help="[default: 4 8 16 32; quick: 8 16]")
    parser.add_argument("--grid-wait", type=float, nargs="+", default=None, help="ms [default: 0 1 2 5 10; quick: 2]")
    parser.add_argument("--duration", type=float, default=None, help="seconds a rate point lasts [60; quick 15]")
    parser.add_argument("--repeats", type=int, default=None, help="[3; quick 1]")
    parser.add_argument("--no-log", action="store_true", help="dermpipe serve without its prediction log")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    quick = args.quick
    args.grid_batch = args.grid_batch or ([8, 16] if quick else [4, 8, 16, 32])
    args.grid_wait = args.grid_wait or ([2.0] if quick else [0.0, 1.0, 2.0, 5.0, 10.0])
    args.duration = args.duration or (15.0 if quick else 60.0)
    args.repeats = args.repeats or (1 if quick else 3)
    if args.server_cpu == args.client_cpu or not {args.server_cpu, args.client_cpu} <= os.sched_getaffinity(0):
        raise SystemExit(f"--server-cpu {args.server_cpu} and --client-cpu {args.client_cpu} must be two different "
                         f"CPUs of this machine's {sorted(os.sched_getaffinity(0))}")
    if not MLSERVER.exists():
        raise SystemExit(f"{MLSERVER} is missing: `make .venv-mlserver` builds MLServer's own environment")
    return args


def offline(args: argparse.Namespace, work: Path) -> tuple[Path, list[bytes], dict[int, float]]:
    """Export the model and time its bare forward on the server's core (this process, TF threads 1)."""
    os.sched_setaffinity(0, {args.server_cpu})
    saved_model = export_model(work / "registry", *MODELS[args.model])
    jpegs = real_jpegs(64)
    times = forward_times(saved_model, jpegs, [1, 2, 4, 8, 16, 32], repeats=30 if args.quick else 60)
    os.sched_setaffinity(0, {args.client_cpu})  # from here on this process is the load generator
    return saved_model, jpegs, times


def extras(kind: str, setting: tuple[int, float], goodput: float, f1: float, ctx: dict) -> dict:
    """At a server's best setting: goodput at 3 x f1 and 10 x f1, SingleStream p50/p90."""
    tight, stream = measure(kind, "v2", setting, 3 * f1, (0.5 * goodput, goodput), ctx, stream=True)
    loose, _ = measure(kind, "v2", setting, 10 * f1, (goodput, 1.3 * goodput), ctx)
    return {"3xf1": tight.best, "10xf1": loose.best, "single_stream_p50_ms": stream[0],
            "single_stream_p90_ms": stream[1], "single_stream_failures": stream[2]}


def report(args, ctx: dict, times: dict[int, float], tuned: dict, best: dict, more: dict, v1: Search) -> str:
    f1, bound = times[1], 5 * times[1]
    ceiling = max(b * 1000 / t for b, t in times.items())
    print(f"\ngoodput benchmark: {args.model} model {MODELS[args.model]}, {len(ctx['jpegs'])} real ISIC 2019 JPEGs, "
          f"server on CPU {args.server_cpu}, LoadGen on CPU {args.client_cpu}, TF threads 1, {args.duration:g} s "
          f"points, {args.repeats} repeat(s), prediction log {'off' if args.no_log else 'on'}; load average "
          f"before {ctx['load_before']:.1f}, after {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    print("bare forward (serving_default: decode + resize + model), ms: "
          + ", ".join(f"B={b} {t:.1f}" for b, t in times.items()) + f"; f1 {f1:.1f} ms, offline ceiling X "
          f"{ceiling:.1f} req/s")
    medians = {}
    for kind, setting in best.items():
        values = [s.best for s in tuned[kind][setting]]
        medians[kind] = statistics.median(values)
        print(f"\n{kind}: best setting max_batch {setting[0]} max_wait {setting[1]:g} ms; goodput at p99 <= "
              f"{bound:.1f} ms (5 x f1): {spread(values)} req/s; at 3 x f1: {more[kind]['3xf1']:.1f}; at 10 x f1: "
              f"{more[kind]['10xf1']:.1f}; single-stream p50 {more[kind]['single_stream_p50_ms']:.1f} ms, p90 "
              f"{more[kind]['single_stream_p90_ms']:.1f} ms (target p90 <= 1.1 x f1 + 2 = {1.1 * f1 + 2:.1f})")
        for setting_, searches in tuned[kind].items():
            print(f"  grid max_batch {setting_[0]:>2} max_wait {setting_[1]:>4g} ms: "
                  + ", ".join(f"{s.best:.1f}" for s in searches) + " req/s")
        print("  p50/p99 against offered rate at the best setting (last repeat, latency from the scheduled time):")
        print("\n".join(point_rows(tuned[kind][setting][-1])))
    print(f"\ndermpipe TF Serving REST (v1, base64 JSON) at its v2 best setting: {v1.best:.1f} req/s at p99 <= "
          f"{bound:.1f} ms")
    ratio = (medians["dermpipe"] / medians["mlserver"] if medians["mlserver"]  # both 0: no ratio (nan)
             else float("inf") if medians["dermpipe"] else float("nan"))
    return (f"goodput at p99 <= {bound:.1f} ms (Open Inference v2 REST): dermpipe {medians['dermpipe']:.1f} req/s, "
            f"MLServer {medians['mlserver']:.1f} req/s, ratio {ratio:.2f}; offline ceiling X {ceiling:.1f} req/s, "
            f"of the ceiling {medians['dermpipe'] / ceiling:.2f}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.update(ONE_THREAD)  # before TensorFlow is imported: this process times f1 and X
    ctx = {"load_before": os.getloadavg()[0], "work": Path(tempfile.mkdtemp(prefix="dermpipe-goodput-")),
           "server_cpu": args.server_cpu, "duration": args.duration, "log": not args.no_log}
    ctx["saved_model"], ctx["jpegs"], times = offline(args, ctx["work"])
    f1, ceiling = times[1], max(b * 1000 / t for b, t in times.items())
    print(f"f1 {f1:.1f} ms, bound 5 x f1 = {5 * f1:.1f} ms, offline ceiling {ceiling:.1f} req/s", flush=True)
    grid = [(b, w) for b in args.grid_batch for w in args.grid_wait]
    kinds = ("dermpipe", "mlserver")
    tuned: dict = {kind: {setting: [] for setting in grid} for kind in kinds}
    for repeat in range(args.repeats):  # alternating which server goes first
        for kind in kinds if repeat % 2 == 0 else kinds[::-1]:
            for setting, search in tune(kind, grid, 5 * f1, ceiling, ctx, repeat).items():
                tuned[kind][setting].append(search)
    best = {kind: max(grid, key=lambda s, k=kind: statistics.median(x.best for x in tuned[k][s])) for kind in kinds}
    goodput = {kind: statistics.median(x.best for x in tuned[kind][best[kind]]) for kind in kinds}
    more = {kind: extras(kind, best[kind], goodput[kind] or ceiling / 4, f1, ctx) for kind in kinds}
    top = goodput["dermpipe"] or ceiling / 4
    v1 = measure("dermpipe", "v1", best["dermpipe"], 5 * f1, (0.7 * top, 1.1 * top), ctx)[0]
    line = report(args, ctx, times, tuned, best, more, v1)
    if args.json:
        args.json.write_text(json.dumps({
            "forward_ms": times, "best": {k: list(v) for k, v in best.items()}, "extras": more,
            "tuned": {k: {f"{s[0]}x{s[1]:g}": [asdict(x) for x in v] for s, v in d.items()} for k, d in tuned.items()},
            "v1": asdict(v1), "headline": line}, indent=1, default=str))
    print(line)


if __name__ == "__main__":
    main()
