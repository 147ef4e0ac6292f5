"""Prometheus metrics of one app. Each app builds its own Telemetry with its own CollectorRegistry, so two apps in one
process never register the same metric names twice; the batcher, the model manager and the BodyLimit middleware
report through its observe_* hooks, and /metrics renders it."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Telemetry:
    """The dermpipe_* metrics of one app, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = metrics = CollectorRegistry()
        self.requests = Counter("dermpipe_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=metrics)
        self.latency = Histogram("dermpipe_request_seconds", "request latency by route", ["route"], registry=metrics,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.images = Counter("dermpipe_images_predicted", "images predicted", registry=metrics)
        self.rejected = Counter("dermpipe_rejected", "requests refused with a 4xx, by status", ["status"],
                                registry=metrics)
        self.calls = Counter("dermpipe_model_calls", "model calls (one per batch)", registry=metrics)
        self.failed_calls = Counter("dermpipe_model_call_failures", "model calls that raised (the batch is then re-run "
                                    "job by job, so one bad job fails alone)", registry=metrics)
        self.batch = Histogram("dermpipe_batch_size", "images per model call", registry=metrics,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.model_seconds = Histogram("dermpipe_model_seconds", "seconds per model call", registry=metrics)
        self.version = Gauge("dermpipe_model_version", "version served", registry=metrics)
        self.reloads = Counter("dermpipe_reloads", "hot reloads by outcome", ["outcome"], registry=metrics)
        self.log_lines = Gauge("dermpipe_log_lines_written", "prediction-log lines written", registry=metrics)

    def observe_batch(self, size: int, seconds: float) -> None:
        """One model call of `size` images (MicroBatcher's observe hook)."""
        self.calls.inc()
        self.batch.observe(size)
        self.model_seconds.observe(seconds)

    def observe_failed_batch(self, size: int) -> None:
        """A model call of `size` images that raised (MicroBatcher's observe_failure hook)."""
        self.failed_calls.inc()

    def observe_reload(self, ok: bool, current_version: int | None) -> None:
        """A hot-reload attempt and the version served after it (None: none loaded yet)."""
        self.reloads.labels("ok" if ok else "failed").inc()
        if current_version is not None:
            self.version.set(current_version)

    def observe_request(self, scope: dict, status: int, seconds: float) -> None:
        """One HTTP request, by the route it matched (BodyLimit's observe hook)."""
        route = getattr(scope.get("route"), "path", "unmatched")
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def reject(self, status: int) -> None:
        self.rejected.labels(str(status)).inc()

    def render(self, log_lines_written: int | None) -> str:
        """The text exposition format; log_lines_written is None when the prediction log is off."""
        if log_lines_written is not None:
            self.log_lines.set(log_lines_written)
        return generate_latest(self.registry).decode()
