"""Service: what one app serves with (settings, model manager, micro-batcher, prediction log, telemetry), kept on
app.state.service for the routes, with its start and stop for the app's lifespan and the prediction path every
predict route shares: check and decode the images, run their pixels in a batch, and log each prediction (image
statistics from the batch call, the embedding summary, the metadata) after the response, on the log worker."""

import datetime as dt
import functools
import logging
import threading
from dataclasses import replace

import numpy as np
from starlette.concurrency import run_in_threadpool

from dermpipe import config
from dermpipe.data.image_privacy import tally
from dermpipe.data.image_stats import statistics_rows
from dermpipe.serving.auth import Authenticator, check_settings, load_tokens
from dermpipe.serving.batching import MicroBatcher
from dermpipe.serving.decisions import check_operating_point, decide
from dermpipe.serving.images import CheckedImage, check_images
from dermpipe.serving.models import ModelManager, ServedModel
from dermpipe.serving.prediction_log import PredictionLog, log_line
from dermpipe.serving.settings import ServingError, Settings
from dermpipe.serving.telemetry import Telemetry

log = logging.getLogger("dermpipe.serve")


class Service:
    """The per-app state behind the routes (one per create_app, so two apps in one process share nothing)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.auth = Authenticator(load_tokens(settings.auth_token_file), settings.auth_rate_per_minute,
                                  token_file=settings.auth_token_file)
        check_settings(settings, self.auth)  # --auth-predict without tokens, half a TLS pair: refuse to start
        self.telemetry = Telemetry()
        self.manager = ModelManager(settings.registry_root, settings.model_name, settings.poll_seconds,
                                    self._on_reload)
        self.batcher = MicroBatcher(settings.max_batch, settings.max_wait_ms / 1000, self.telemetry.observe_batch,
                                    self.telemetry.observe_failed_batch)
        self.predlog = (PredictionLog(settings.log_root, settings.model_name, flush_seconds=settings.flush_seconds,
                                      log_images=settings.log_images) if settings.log_root else None)
        self.feedback_lock = threading.Lock()  # label submissions one at a time (dermpipe.serving.feedback)

    def _on_reload(self, ok: bool) -> None:
        current = self.manager.current
        self.telemetry.observe_reload(ok, None if current is None else current.version)

    async def start(self) -> None:
        """Load the current version (or say why there is none), then start polling, batching and logging."""
        manager, settings = self.manager, self.settings
        try:
            await run_in_threadpool(manager.refresh)
        except Exception as err:  # noqa: BLE001 - start anyway; /readyz says why
            manager.last_error = str(err)
            log.error("startup: %s", err)
        if manager.current is None:
            log.warning("no model version loaded from %s/%s yet (%s); /readyz answers 503 until one is promoted",
                        settings.registry_root, settings.model_name, manager.last_error or "no current.json")
        manager.start()
        self.batcher.start()
        if self.predlog is not None:
            self.predlog.start()

    async def stop(self) -> None:
        self.manager.stop()
        await self.batcher.stop()
        if self.predlog is not None:
            self.predlog.close()

    async def model(self, version: int | None = None) -> ServedModel:
        """The served model of `version` (None: the current one): at once when it is in memory, else loaded from the
        registry in a worker thread (404 for a version the registry does not have, 503 before any is loaded)."""
        return self.manager.loaded(version) or await run_in_threadpool(self.manager.get, version)

    def check_name(self, name: str) -> None:
        if name != self.settings.model_name:
            raise ServingError(404, f"Servable not found for request: model {name!r}; this server serves "
                                    f"{self.settings.model_name!r}")

    async def predict_images(self, model: ServedModel, images: list[bytes], metas: list[dict], request_id: str,
                             operating_point: str | None = None) -> tuple[np.ndarray, np.ndarray, str, list[dict]]:
        """(probabilities, embedding, timestamp, decisions) of checked images, run in a batch and logged once,
        whatever protocol they came by; decisions at the named operating point (None: the version's default)."""
        check_operating_point(model, operating_point)
        checked = await self.check_images(model, images)
        _log_stripped(request_id, checked)
        probabilities, embedding, pixel_stats = await self.batcher.submit(model, [c.pixels for c in checked], metas)
        checked = [replace(c, pixels=None) for c in checked]  # the log needs no pixels: none wait in its queue
        predlog = self.predlog
        self.telemetry.images.inc(len(images))
        timestamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        decisions = decide(model, probabilities, embedding, operating_point)
        if predlog is not None:
            build = functools.partial(self.log_lines, model, checked, probabilities, pixel_stats,
                                      model.summarise(embedding), metas, request_id, timestamp, decisions)
            if not predlog.submit(build):  # the log worker is behind: do it here (backpressure, nothing dropped)
                await run_in_threadpool(lambda: predlog.append(build()))
        return probabilities, embedding, timestamp, decisions

    async def check_images(self, model: ServedModel, images: list[bytes]) -> list[CheckedImage]:
        """The images checked and decoded at the model's size, in a worker thread (the decode releases the GIL); a
        batch being collected meanwhile waits for them (arriving() ends before the caller submits)."""
        with self.batcher.arriving():
            return await run_in_threadpool(check_images, images, max_pixels=self.settings.max_pixels,
                                           image_size=model.image_size)

    def log_lines(self, model: ServedModel, checked: list[CheckedImage], probabilities: np.ndarray,
                  pixel_stats: np.ndarray, summary: np.ndarray | None, metas: list[dict], request_id: str,
                  timestamp: str, decisions: list[dict]) -> list[dict]:
        """The prediction-log lines of one request (runs on the log worker, after the response has gone)."""
        lines = []
        all_stats = statistics_rows(pixel_stats, [(item.width, item.height) for item in checked])
        for i, (item, stats) in enumerate(zip(checked, all_stats, strict=True)):
            rid = request_id if len(checked) == 1 else f"{request_id}-{i}"
            line = log_line(timestamp=timestamp, request_id=rid, model_name=model.name, model_version=model.version,
                            classes=config.CLASSES, probabilities=probabilities[i].tolist(), stats=stats,
                            metadata=metas[i], embedding_summary=None if summary is None else summary[i].tolist(),
                            decision=decisions[i])
            if self.settings.log_images:
                ext = {"JPEG": "jpg"}.get(item.format, item.format.lower())
                line["image_uri"] = self.predlog.save_image(timestamp, f"{rid}.{ext}", item.data)  # stripped
                line["image_metadata_removed"] = list(item.metadata)
            lines.append(line)
        return lines


def _log_stripped(request_id: str, checked: list[CheckedImage]) -> None:
    """Say which kinds of health data came with a request's images and were stripped (never the values)."""
    counts = tally(item.metadata for item in checked)
    if counts["images_with_metadata"]:
        kinds = ", ".join(f"{kind} {n}" for kind, n in counts.items() if kind != "images_with_metadata")
        log.info("request %s: metadata stripped from %d of %d image(s) before the model and the log (%s)",
                 request_id, counts["images_with_metadata"], len(checked), kinds)
