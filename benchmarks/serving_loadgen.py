"""MLPerf LoadGen's Server and SingleStream scenarios against an HTTP server, and the pure parts of the goodput
benchmark (benchmarks/serving_goodput.py): percentiles with failures, the pass rule of a rate point, the
generator's keep-up check and the binary search of the highest passing rate.

LoadGen (mlcommons-loadgen) draws the Poisson schedule from a fixed seed, so every server gets the same arrival
trace, and measures each sample's latency from its scheduled time (no coordinated omission). The client sends each
sample as one request from an asyncio loop (aiohttp) in its own thread; a non-2xx answer or a time-out completes the
sample for LoadGen and is counted as a failure, which this module ranks above every latency (over any bound)."""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SCHEDULE_SEED = 20190101  # one Poisson trace for every server and repeat
KEEP_UP_SHARE = 0.98


# ------------------------------------------------------------------------------------------------- pure parts
def percentile_ms(latencies_ms: list[float], failures: int, q: float) -> float:
    """The q-th percentile (nearest rank, as LoadGen reports it) with each failure ranked as infinitely slow."""
    ranked = sorted(latencies_ms) + [math.inf] * failures
    if not ranked:
        return math.nan
    return ranked[min(len(ranked) - 1, max(0, math.ceil(q / 100 * len(ranked)) - 1))]


def keeps_up(offered_per_s: float, issued: int, span_s: float, share: float = KEEP_UP_SHARE) -> bool:
    """Whether the generator issued at >= share of the offered rate: if not, the point is void."""
    return span_s > 0 and issued / span_s >= share * offered_per_s


@dataclass
class Point:
    """One rate point: what LoadGen scheduled and measured, what the client saw."""

    offered: float
    scheduled: float  # LoadGen's realised schedule (samples/s)
    p50_ms: float
    p99_ms: float  # from the scheduled time (LoadGen), failures ranked over everything
    failures: int
    samples: int
    keep_up: bool

    def passes(self, bound_ms: float) -> bool:
        return self.keep_up and self.p99_ms <= bound_ms


@dataclass
class Search:
    best: float = 0.0  # the highest passing offered rate found (0: none passed)
    points: list[Point] = field(default_factory=list)

    @property
    def void(self) -> int:
        return sum(not p.keep_up for p in self.points)


def search_rate(measure: Callable[[float], Point], low: float, high: float, bound_ms: float,
                tolerance: float = 0.02, max_points: int = 14) -> Search:
    """Binary search of the highest rate whose point passes, to within `tolerance` (relative). `low` is lowered
    (halved) until a point passes, `high` raised (doubled) while one passes; a void point counts as failing."""
    result = Search()

    def run(rate: float) -> bool:
        point = measure(rate)
        result.points.append(point)
        ok = point.passes(bound_ms)
        if ok:
            result.best = max(result.best, rate)
        return ok

    floor, high_fails = low / 16, False  # below a sixteenth of the first guess the server is broken, not slow
    while not run(low):
        high, low, high_fails = low, low / 2, True  # the failed low is the new high: not run again
        if low < floor or len(result.points) >= max_points:
            return result
    while not high_fails and run(high):
        low, high = high, high * 2
        if len(result.points) >= max_points:
            return result
    while (high - low) / low > tolerance and len(result.points) < max_points:
        middle = (low + high) / 2
        low, high = (middle, high) if run(middle) else (low, middle)
    return result


def read_loadgen_log(outdir: Path) -> dict[str, object]:
    """The result_* entries of mlperf_log_detail.txt (':::MLLOG {json}' lines) by key."""
    values: dict[str, object] = {}
    for line in (outdir / "mlperf_log_detail.txt").read_text().splitlines():
        if line.startswith(":::MLLOG "):
            entry = json.loads(line[len(":::MLLOG "):])
            values[entry["key"]] = entry["value"]
    return values


# -------------------------------------------------------------------------------------------------- the client
@dataclass
class Target:
    """Where and how to send one sample: url, per-sample (body, headers), the request time-out."""

    url: str
    bodies: list[tuple[bytes, dict[str, str]]]
    timeout_s: float = 10.0


class Client:
    """Sends LoadGen's samples from an asyncio loop in a thread; completes each with LoadGen when answered."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.session = asyncio.run_coroutine_threadsafe(self._session(), self.loop).result()
        self.reset()

    async def _session(self):
        import aiohttp

        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=self.target.timeout_s))

    def reset(self) -> None:
        self.latencies_ms: list[float] = []
        self.failures: list[str] = []
        self.issue_times: list[float] = []

    def issue(self, samples) -> None:  # LoadGen's issue thread
        now = time.perf_counter()
        for sample in samples:
            self.issue_times.append(now)
            self.loop.call_soon_threadsafe(self.loop.create_task, self._send(sample.id, sample.index, now))

    async def _send(self, sample_id: int, index: int, issued: float) -> None:
        import mlperf_loadgen as lg

        body, headers = self.target.bodies[index % len(self.target.bodies)]
        ok = False
        try:
            async with self.session.post(self.target.url, data=body, headers=headers) as reply:
                await reply.read()
                ok = 200 <= reply.status < 300
                if not ok:
                    self.failures.append(f"HTTP {reply.status}")
        except Exception as err:  # noqa: BLE001 - a time-out or a refused connection is a failed sample
            self.failures.append(type(err).__name__)
        if ok:
            self.latencies_ms.append(1000 * (time.perf_counter() - issued))
        lg.QuerySamplesComplete([lg.QuerySampleResponse(sample_id, 0, 0)])

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.session.close(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)


def run_loadgen(client: Client, *, scenario: str, rate: float, bound_ms: float, duration_s: float) -> dict:
    """One LoadGen test (Server at `rate`, or SingleStream), performance mode; its log values and the client's."""
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server if scenario == "server" else lg.TestScenario.SingleStream
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = rate or 1.0
    settings.server_target_latency_ns = int(bound_ms * 1e6)
    settings.server_target_latency_percentile = 0.99
    settings.single_stream_expected_latency_ns = int(bound_ms * 1e6)
    settings.min_duration_ms = settings.max_duration_ms = int(duration_s * 1000)
    settings.min_query_count, settings.max_query_count = 1, 0
    settings.schedule_rng_seed = settings.sample_index_rng_seed = settings.qsl_rng_seed = SCHEDULE_SEED
    n = len(client.target.bodies)
    client.reset()
    sut = lg.ConstructSUT(client.issue, lambda: None)
    qsl = lg.ConstructQSL(n, n, lambda indices: None, lambda indices: None)
    with tempfile.TemporaryDirectory(prefix="loadgen-") as outdir:
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = outdir
        log_settings.log_output.copy_summary_to_stdout = False
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
        values = read_loadgen_log(Path(outdir))
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    return values


def server_point(client: Client, rate: float, bound_ms: float, duration_s: float) -> Point:
    """A Server-scenario point: LoadGen's p50/p99 from the scheduled time, unless failures push p99 higher."""
    values = run_loadgen(client, scenario="server", rate=rate, bound_ms=bound_ms, duration_s=duration_s)
    issued = len(client.issue_times)
    span = client.issue_times[-1] - client.issue_times[0] if issued > 1 else 0.0
    failures = len(client.failures)
    loadgen_p99 = float(values["result_99.00_percentile_latency_ns"]) / 1e6
    own_p99 = percentile_ms(client.latencies_ms, failures, 99)  # failures over any bound
    return Point(offered=rate, scheduled=float(values["result_scheduled_samples_per_sec"]),
                 p50_ms=float(values["result_50.00_percentile_latency_ns"]) / 1e6,
                 p99_ms=max(loadgen_p99, own_p99), failures=failures, samples=issued,
                 keep_up=keeps_up(float(values["result_scheduled_samples_per_sec"]), issued, span))


def single_stream(client: Client, bound_ms: float, duration_s: float) -> tuple[float, float, int]:
    """SingleStream: one request at a time; (p50 ms, p90 ms, failures)."""
    values = run_loadgen(client, scenario="single", rate=0, bound_ms=bound_ms, duration_s=duration_s)
    return (float(values["result_50.00_percentile_latency_ns"]) / 1e6,
            float(values["result_90.00_percentile_latency_ns"]) / 1e6, len(client.failures))
