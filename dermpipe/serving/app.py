"""`dermpipe serve`: a TF-Serving-compatible REST server for the current version of the model registry.

- TF Serving's REST API (GET /v1/models/{name}[/versions/{v}][/metadata], POST .../{name}[/versions/{v}]:predict with
  {"instances": [{"b64": ...}]} or {"inputs": ...}) plus a multipart POST /predict, /healthz, /readyz, /metrics.
- Dynamic micro-batching: concurrent requests are queued and run as one graph call (batch_runner: the decode of the
  serving_default signature, export.decode_batch, then the serve_pixels signature and the drift statistics on the same
  pixels), bounded by max_batch images and max_wait seconds counted from the oldest request's arrival.
- Hot reload: current.json is polled; a new version is loaded and warmed up beside the old one, then swapped in.
  Requests already queued keep the model object they were admitted with, so none fails during a swap.
- Every image is validated with PIL before the model sees it (empty, not an image, unsupported format, over the
  pixel limit, truncated/corrupt); bad input gets a 4xx with a message, never a 5xx.
- Prediction log (dermpipe.monitoring.prediction_log) with image statistics (from the batch call), the embedding summary
  (embedding_pca.npz) and metadata.
- Metadata fusion: when a version's signatures take age_approx, sex and anatom_site_general (read from the
  signature), each image's metadata from the request (row-format instances, /predict form fields) goes to the model;
  a value not sent is passed as unknown (NaN / ""). Other models ignore the metadata (it is still logged).
"""

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import functools
import io
import logging
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dermpipe import config
from dermpipe.data.image_stats import statistics_rows
from dermpipe.deploy import registry
from dermpipe.monitoring.prediction_log import PredictionLog, log_line

log = logging.getLogger("dermpipe.serve")

ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "GIF")  # what tf.io.decode_image (the model's decoder) reads
SIGNATURES = {b"\xff\xd8": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF"}


@dataclass
class Settings:
    registry_root: str
    model_name: str = config.MODEL_NAME
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_instances: int = 64
    max_body_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    poll_seconds: float = 2.0
    log_root: str | None = None
    log_images: bool = False
    flush_seconds: float = 2.0


class ServingError(Exception):
    """A request the server refuses, with the HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ----------------------------------------------------------------------------------------------- input validation
@dataclass
class CheckedImage:
    data: bytes
    format: str
    width: int
    height: int


def check_image(data: bytes, *, max_pixels: int, what: str = "image") -> CheckedImage:
    """Decode `data` with PIL (bounded by max_pixels) to prove it is a whole image; ServingError if unusable.

    JPEGs are decoded at 1/8 scale (libjpeg's DCT scaling): every byte of the stream is still read, so truncation
    and corruption are caught, at a fraction of a full decode's cost.
    """
    from PIL import Image

    if not data:
        raise ServingError(400, f"{what}: empty; send the bytes of a JPEG or PNG image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ServingError(413, f"{what}: over the pixel limit ({err})") from err
    except Exception as err:  # noqa: BLE001 - PIL raises many types for non-images
        for signature, name in SIGNATURES.items():
            if data.startswith(signature):
                raise ServingError(422, f"{what}: corrupt or truncated {name} ({len(data)} bytes; PIL: {err}); "
                                        f"re-encode or re-upload the file") from err
        raise ServingError(415, f"{what}: not an image PIL can read ({len(data)} bytes starting "
                                f"{data[:8]!r}); send a JPEG or PNG") from err
    with image:
        if image.format not in ACCEPTED_FORMATS:
            raise ServingError(415, f"{what}: {image.format} images are not served; send one of "
                                    f"{', '.join(ACCEPTED_FORMATS)}")
        width, height = image.size
        if width * height > max_pixels:
            raise ServingError(413, f"{what}: {width}x{height} = {width * height} pixels is over the limit of "
                                    f"{max_pixels} (decompression-bomb guard); downsize the image first")
        if width < 1 or height < 1:
            raise ServingError(422, f"{what}: {width}x{height} has no pixels")
        fmt = image.format
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                if fmt == "JPEG":
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()
        except Exception as err:  # noqa: BLE001 - truncated/corrupt data
            raise ServingError(422, f"{what}: corrupt or truncated {fmt} ({err}); re-encode or "
                                    f"re-upload the file") from err
        return CheckedImage(data=data, format=fmt, width=width, height=height)


def decode_b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ServingError(400, f"{what}: b64 is not valid base64 ({err})") from err


METADATA_FIELDS = ("age_approx", "sex", "anatom_site_general")


def check_metadata(age_approx: float | None, sex: str | None, site: str | None, what: str) -> dict[str, object]:
    """The optional patient metadata, checked against the ISIC 2019 vocabularies."""
    if age_approx is not None and not (0 <= age_approx <= 120):
        raise ServingError(422, f"{what}: age_approx {age_approx} is outside 0..120")
    if sex is not None and sex not in config.SEXES:
        raise ServingError(422, f"{what}: sex {sex!r} is not one of {list(config.SEXES)}")
    if site is not None and site not in config.SITES:
        raise ServingError(422, f"{what}: anatom_site_general {site!r} is not one of {list(config.SITES)}")
    return {"age_approx": age_approx, "sex": sex, "anatom_site_general": site}


# ----------------------------------------------------------------------------------------------------------- models
@dataclass
class ServedModel:
    """One loaded registry version: a batch runner over its serve_pixels signature plus what the log needs."""

    name: str
    version: int
    uri: str
    runner: Any  # encoded images [N] -> (serve_pixels outputs, pixel statistics [N, k]); see batch_runner
    image_size: int
    embedding_dim: int
    record: dict
    pca_mean: np.ndarray | None = None
    pca_components: np.ndarray | None = None
    loaded: Any = None  # keeps the SavedModel object (and so the signature's variables) alive
    signature_def: dict = field(default_factory=dict)
    metadata_inputs: bool = False  # a metadata-fusion model: serving_default also takes age_approx, sex, site

    def predict(self, images: list[bytes], metas: list[dict | None] | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, embedding, pixel statistics) of a batch of encoded images: one decode, one graph call; a
        fusion model also gets each image's metadata (None or absent values: unknown)."""
        import tensorflow as tf

        from dermpipe.model.export import metadata_tensors

        extra = metadata_tensors(list(metas or [None] * len(images))) if self.metadata_inputs else {}
        out, stats = self.runner(tf.constant(images, dtype=tf.string), extra)
        return out["probabilities"].numpy(), out["embedding"].numpy(), stats.numpy()

    def summarise(self, embedding: np.ndarray) -> np.ndarray | None:
        """emb_0..emb_{k-1}: the embedding projected on the reference PCA, when the version has one."""
        if self.pca_components is None:
            return None
        return (embedding - self.pca_mean) @ self.pca_components.T


def _spec(tensor: Any) -> dict:
    from tensorflow.core.framework import types_pb2

    dims = [{"size": str(-1 if d is None else d)} for d in tensor.shape.as_list()]
    return {"dtype": types_pb2.DataType.Name(tensor.dtype.as_datatype_enum), "tensor_shape": {"dim": dims},
            "name": tensor.name or ""}


def batch_runner(pixels_signature, image_size: int, *, metadata: bool = False):
    """One traced call per batch: decode as serving_default does (export.decode_batch), then the model (serve_pixels)
    and the drift statistics (imagestats.pixel_statistics) on the same pixels, so the prediction log costs no second
    decode. Called as run(image_bytes, extra): extra is {} or, for a fusion model (metadata=True),
    export.metadata_tensors' three tensors."""
    import tensorflow as tf

    from dermpipe.data.image_stats import pixel_statistics
    from dermpipe.model.export import METADATA_SPECS, decode_batch

    extra_specs = {name: tf.TensorSpec([None], getattr(tf, dtype), name=name)
                   for name, dtype in METADATA_SPECS} if metadata else {}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), extra_specs])
    def run(image_bytes, extra):
        pixels = decode_batch(image_bytes, image_size)
        return pixels_signature(image=pixels, **extra), pixel_statistics(pixels)

    return run


def load_version(registry_root: str, model_name: str, version: int) -> ServedModel:
    """Load a registry version, check its signatures and warm it up with a real JPEG."""
    import tensorflow as tf

    from dermpipe.model.export import BYTES_SIGNATURE, PIXELS_SIGNATURE, probe_jpeg, signature_takes_metadata

    uri = registry.version_dir(registry_root, model_name, version)
    loaded = tf.saved_model.load(uri)
    for wanted in (BYTES_SIGNATURE, PIXELS_SIGNATURE):
        if wanted not in loaded.signatures:
            raise RuntimeError(f"{uri}: the SavedModel has no {wanted} signature (has {list(loaded.signatures)}); "
                               "re-export it with dermpipe.model.export.export_serving_model")
    signature_def = {}
    for name, fn in loaded.signatures.items():
        inputs = {k: _spec(v) for k, v in fn.structured_input_signature[1].items()}
        outputs = {k: _spec(v) for k, v in fn.structured_outputs.items()}
        signature_def[name] = {"inputs": inputs, "outputs": outputs, "method_name": "tensorflow/serving/predict"}
    pixels = loaded.signatures[PIXELS_SIGNATURE]
    image_size = int(pixels.structured_input_signature[1]["image"].shape[1])
    fusion = signature_takes_metadata(pixels)
    served = ServedModel(name=model_name, version=version, uri=uri,
                         runner=batch_runner(pixels, image_size, metadata=fusion), image_size=image_size,
                         embedding_dim=0, record=registry.read_record(registry_root, model_name, version),
                         loaded=loaded, signature_def=signature_def, metadata_inputs=fusion)
    pca_path = f"{uri}/embedding_pca.npz"
    if tf.io.gfile.exists(pca_path):
        with tf.io.gfile.GFile(pca_path, "rb") as handle:
            pca = np.load(io.BytesIO(handle.read()))
            served.pca_mean = np.asarray(pca["mean"], np.float32)
            served.pca_components = np.asarray(pca["components"], np.float32)
    probabilities, embedding, _ = served.predict([probe_jpeg()])
    if probabilities.shape != (1, len(config.CLASSES)):
        raise RuntimeError(f"{uri}: warm-up answered probabilities of shape {probabilities.shape}; expected "
                           f"(1, {len(config.CLASSES)})")
    served.embedding_dim = int(embedding.shape[-1])
    if served.pca_components is not None and served.pca_components.shape[1] != served.embedding_dim:
        raise RuntimeError(f"{pca_path}: components have {served.pca_components.shape[1]} columns but the "
                           f"embedding has {served.embedding_dim}; re-write the profile for this model")
    return served


class ModelManager:
    """The current version (hot-reloaded from current.json) and a small cache of explicitly requested versions."""

    def __init__(self, registry_root: str, model_name: str, poll_seconds: float, on_reload=None) -> None:
        self.registry_root = registry_root
        self.model_name = model_name
        self.poll_seconds = poll_seconds
        self.current: ServedModel | None = None
        self.last_error = ""
        self._seen_pointer: dict | None = None
        self._others: dict[int, ServedModel] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_reload = on_reload or (lambda ok: None)

    def refresh(self) -> bool:
        """Load the version current.json names if it is not the one served; True when a new version was swapped in."""
        pointer = registry.read_current(self.registry_root, self.model_name)
        if pointer is None or pointer == self._seen_pointer:
            return False
        self._seen_pointer = pointer
        version = int(pointer["version"])
        if self.current is not None and self.current.version == version:
            return False
        try:
            model = self._others.get(version) or load_version(self.registry_root, self.model_name, version)
        except Exception as err:  # noqa: BLE001 - keep serving the old version
            self.last_error = f"version {version}: {err}"
            log.error("hot reload: could not load %s/%s version %d (%s); still serving version %s",
                      self.registry_root, self.model_name, version, err,
                      self.current.version if self.current else "none")
            self._on_reload(False)
            return False
        old, self.current = self.current, model
        self.last_error = ""
        log.info("serving %s version %d (was %s)", self.model_name, version, old.version if old else "none")
        self._on_reload(True)
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="registry-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as err:  # noqa: BLE001 - a bad current.json must not stop polling
                self.last_error = str(err)
                log.error("registry poll: %s", err)

    def stop(self) -> None:
        self._stop.set()

    def get(self, version: int | None = None) -> ServedModel:
        current = self.current
        if version is None or (current is not None and current.version == version):
            if current is None:
                raise ServingError(503, f"no model version loaded yet from {self.registry_root}/{self.model_name}"
                                        f" ({self.last_error or 'no current.json'})")
            return current
        with self._lock:
            if version not in self._others:
                if version not in registry.versions(self.registry_root, self.model_name):
                    raise ServingError(404, f"model {self.model_name} has no version {version}; versions: "
                                            f"{registry.versions(self.registry_root, self.model_name)}")
                if len(self._others) >= 3:
                    self._others.pop(next(iter(self._others)))
                self._others[version] = load_version(self.registry_root, self.model_name, version)
            return self._others[version]

    def loaded_versions(self) -> list[int]:
        found = {m.version for m in self._others.values()}
        if self.current is not None:
            found.add(self.current.version)
        return sorted(found)


# ------------------------------------------------------------------------------------------------- micro-batching
@dataclass
class _Job:
    model: ServedModel
    images: list[bytes]
    future: asyncio.Future
    enqueued: float
    metas: list[dict | None] | None = None  # per image; only a metadata-fusion model reads them


class MicroBatcher:
    """Queue of prediction jobs run as batches: one model call per batch, in one dedicated model thread.

    A batch waits for more jobs (at most max_wait_s after its first) only while requests are on their way: announced
    with `arriving()` (being validated) and not yet submitted. A lone request is not held back for company that is
    not coming."""

    def __init__(self, max_batch: int, max_wait_s: float, observe=None) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._carry: _Job | None = None
        self._task: asyncio.Task | None = None
        self._observe = observe or (lambda size, seconds: None)
        self.on_the_way = 0  # requests inside arriving(): admitted, not yet submitted

    @contextlib.contextmanager
    def arriving(self):
        """Wrap a request's work before submit() (validation): batches being collected wait for it."""
        self.on_the_way += 1
        try:
            yield
        finally:
            self.on_the_way -= 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=True)

    async def submit(self, model: ServedModel, images: list[bytes],
                     metas: list[dict | None] | None = None) -> tuple[np.ndarray, ...]:
        """The model's outputs (each an array with one row per image) for these images."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        await self.queue.put(_Job(model, images, future, loop.time(), metas))
        return await future

    async def _collect(self) -> list[_Job]:
        loop = asyncio.get_running_loop()
        first, self._carry = self._carry or await self.queue.get(), None
        jobs, size = [first], len(first.images)
        deadline = first.enqueued + self.max_wait_s
        while size < self.max_batch:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0 or self.on_the_way == 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            if size + len(job.images) > self.max_batch:
                self._carry = job
                break
            jobs.append(job)
            size += len(job.images)
        return jobs

    async def _loop(self) -> None:
        while True:
            jobs = await self._collect()
            groups: dict[int, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(id(job.model), []).append(job)
            for group in groups.values():
                try:
                    await self._run(group)
                except Exception as err:  # noqa: BLE001 - the batch loop must survive anything
                    log.exception("batch failed: %s", err)
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(err)

    async def _run(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        images = [image for job in jobs for image in job.images]
        predict = jobs[0].model.predict
        if getattr(jobs[0].model, "metadata_inputs", False):
            metas = [meta for job in jobs for meta in (job.metas or [None] * len(job.images))]
            predict = functools.partial(predict, metas=metas)
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self.executor, predict, images)
        except Exception as err:  # noqa: BLE001
            if len(jobs) > 1:  # isolate the job that broke the batch; the others still get answers
                for job in jobs:
                    await self._run([job])
                return
            if not jobs[0].future.done():
                jobs[0].future.set_exception(_model_error(err))
            return
        self._observe(len(images), time.perf_counter() - started)
        offset = 0
        for job in jobs:
            n = len(job.images)
            if not job.future.done():  # a client that went away cancelled its future
                job.future.set_result(tuple(output[offset:offset + n] for output in outputs))
            offset += n


def _model_error(err: Exception) -> Exception:
    """A decoding failure inside the graph is the input's fault (4xx); anything else stays a server error."""
    import tensorflow as tf

    if isinstance(err, tf.errors.InvalidArgumentError):
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return ServingError(422, f"the model could not decode the image ({first_line[:300]})")
    return err


# ------------------------------------------------------------------------------------------------------------ app
class BodyLimit:
    """ASGI middleware: read the whole body up to max_bytes (413 beyond), then hand it on; observe(scope, status,
    seconds) after each request (pure ASGI: cheaper than Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app, max_bytes: int, observe=None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.observe = observe or (lambda scope, status, seconds: None)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [0]

        async def send_observed(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._limited(scope, receive, send_observed)
        finally:
            self.observe(scope, status[0], time.perf_counter() - started)

    async def _limited(self, scope, receive, send) -> None:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await _plain_error(send, 400, f"Content-Length {declared!r} is not a number")
                return
            if too_big:
                await _plain_error(send, 413, f"body of {int(declared)} bytes is over the limit of "
                                              f"{self.max_bytes} bytes (--max-body-mb)")
                return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await _plain_error(send, 413, f"body is over the limit of {self.max_bytes} bytes (--max-body-mb)")
                return
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _plain_error(send, status: int, message: str) -> None:
    import json

    payload = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def create_app(settings: Settings):
    """The FastAPI application (models load in the lifespan, so creating it is cheap)."""
    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from pydantic import BaseModel, ConfigDict, ValidationError
    from starlette.concurrency import run_in_threadpool

    metrics = CollectorRegistry()
    m_requests = Counter("dermpipe_requests", "HTTP requests by route and status", ["route", "status"],
                         registry=metrics)
    m_latency = Histogram("dermpipe_request_seconds", "request latency by route", ["route"], registry=metrics,
                          buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
    m_images = Counter("dermpipe_images_predicted", "images predicted", registry=metrics)
    m_rejected = Counter("dermpipe_rejected", "requests refused with a 4xx, by status", ["status"], registry=metrics)
    m_calls = Counter("dermpipe_model_calls", "model calls (one per batch)", registry=metrics)
    m_batch = Histogram("dermpipe_batch_size", "images per model call", registry=metrics,
                        buckets=(1, 2, 4, 8, 16, 32, 64, 128))
    m_model_seconds = Histogram("dermpipe_model_seconds", "seconds per model call", registry=metrics)
    m_version = Gauge("dermpipe_model_version", "version served", registry=metrics)
    m_reloads = Counter("dermpipe_reloads", "hot reloads by outcome", ["outcome"], registry=metrics)
    m_log_lines = Gauge("dermpipe_log_lines_written", "prediction-log lines written", registry=metrics)

    def observe(size: int, seconds: float) -> None:
        m_calls.inc()
        m_batch.observe(size)
        m_model_seconds.observe(seconds)

    def on_reload(ok: bool) -> None:
        m_reloads.labels("ok" if ok else "failed").inc()
        if manager.current is not None:
            m_version.set(manager.current.version)

    manager = ModelManager(settings.registry_root, settings.model_name, settings.poll_seconds, on_reload)
    batcher = MicroBatcher(settings.max_batch, settings.max_wait_ms / 1000, observe)
    predlog = (PredictionLog(settings.log_root, settings.model_name, flush_seconds=settings.flush_seconds,
                             log_images=settings.log_images) if settings.log_root else None)

    @asynccontextmanager
    async def lifespan(app):
        try:
            await run_in_threadpool(manager.refresh)
        except Exception as err:  # noqa: BLE001 - start anyway; /readyz says why
            manager.last_error = str(err)
            log.error("startup: %s", err)
        if manager.current is None:
            log.warning("no model version loaded from %s/%s yet (%s); /readyz answers 503 until one is promoted",
                        settings.registry_root, settings.model_name, manager.last_error or "no current.json")
        manager.start()
        batcher.start()
        if predlog is not None:
            predlog.start()
        yield
        manager.stop()
        await batcher.stop()
        if predlog is not None:
            predlog.close()

    app = FastAPI(title="dermpipe serve", version=config.__version__, lifespan=lifespan,
                  description="ISIC 2019 skin-lesion classifier: TF Serving REST API, multipart /predict, probes, "
                              "Prometheus metrics.")
    app.state.manager, app.state.batcher, app.state.predlog = manager, batcher, predlog

    class B64(BaseModel):
        model_config = ConfigDict(extra="forbid")
        b64: str

    class Instance(BaseModel):
        model_config = ConfigDict(extra="forbid")
        b64: str | None = None
        image_bytes: B64 | None = None
        age_approx: float | None = None
        sex: str | None = None
        anatom_site_general: str | None = None

    class PredictRequest(BaseModel):
        """TF Serving REST predict: row format `instances` or columnar `inputs`."""

        model_config = ConfigDict(extra="forbid")
        signature_name: str | None = None
        instances: list[Instance] | None = None
        inputs: list[Instance] | dict[str, list[B64] | list[float | None] | list[str | None]] | None = None

    class Prediction(BaseModel):
        predicted_class: str
        confidence: float
        probabilities: dict[str, float]

    class PredictFileResponse(Prediction):
        request_id: str
        model_name: str
        model_version: int

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, err: ServingError):
        m_rejected.labels(str(err.status)).inc()
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in
                             err.errors()[:5])
        m_rejected.labels("400").inc()
        return JSONResponse({"error": f"request does not have the expected shape: {problems}"}, status_code=400)

    def observe_request(scope: dict, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        m_requests.labels(route, str(status)).inc()
        m_latency.labels(route).observe(seconds)

    def check_name(name: str) -> None:
        if name != settings.model_name:
            raise ServingError(404, f"Servable not found for request: model {name!r}; this server serves "
                                    f"{settings.model_name!r}")

    async def predict_images(model: ServedModel, images: list[bytes], metas: list[dict], request_id: str,
                             ) -> tuple[np.ndarray, str]:
        what = [f"instance {i}" if len(images) > 1 else "image" for i in range(len(images))]
        with batcher.arriving():  # a batch being collected waits for this request (the with ends before submit)
            checked = await run_in_threadpool(
                lambda: [check_image(d, max_pixels=settings.max_pixels, what=w)
                         for d, w in zip(images, what, strict=True)])
        probabilities, embedding, pixel_stats = await batcher.submit(model, images, metas)
        m_images.inc(len(images))
        timestamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        if predlog is not None:
            build = functools.partial(log_lines, model, checked, probabilities, pixel_stats,
                                      model.summarise(embedding), metas, request_id, timestamp)
            if not predlog.submit(build):  # the log worker is behind: do it here (backpressure, nothing dropped)
                await run_in_threadpool(lambda: predlog.append(build()))
        return probabilities, timestamp

    def log_lines(model: ServedModel, checked: list[CheckedImage], probabilities: np.ndarray,
                  pixel_stats: np.ndarray, summary: np.ndarray | None, metas: list[dict], request_id: str,
                  timestamp: str) -> list[dict]:
        """The prediction-log lines of one request (runs on the log worker, after the response has gone)."""
        lines = []
        all_stats = statistics_rows(pixel_stats, [(item.width, item.height) for item in checked])
        for i, (item, stats) in enumerate(zip(checked, all_stats, strict=True)):
            rid = request_id if len(checked) == 1 else f"{request_id}-{i}"
            line = log_line(timestamp=timestamp, request_id=rid, model_name=model.name, model_version=model.version,
                            classes=config.CLASSES, probabilities=probabilities[i].tolist(), stats=stats,
                            metadata=metas[i], embedding_summary=None if summary is None else summary[i].tolist())
            if settings.log_images:
                ext = {"JPEG": "jpg"}.get(item.format, item.format.lower())
                line["image_uri"] = predlog.save_image(timestamp, f"{rid}.{ext}", item.data)
            lines.append(line)
        return lines

    def row(probabilities: np.ndarray) -> dict:
        best = int(np.argmax(probabilities))
        return {"predicted_class": config.CLASSES[best], "confidence": float(probabilities[best]),
                "probabilities": {c: float(p) for c, p in zip(config.CLASSES, probabilities, strict=True)}}

    def columnar_instances(inputs: dict[str, list]) -> list[Instance]:
        """{"image_bytes": [{"b64": ...}, ...], optional "age_approx" / "sex" / "anatom_site_general": [one value
        (or null) per image]} -> one Instance per image."""
        extra = sorted(set(inputs) - {"image_bytes", *METADATA_FIELDS})
        images = inputs.get("image_bytes")
        if extra or not images or not all(isinstance(v, B64) for v in images):
            raise ServingError(400, f'"inputs" has keys {sorted(inputs)}; expected {{"image_bytes": [{{"b64": ...}}, '
                                    f'...]}} plus optional {", ".join(METADATA_FIELDS)} lists, one value per image')
        for key in METADATA_FIELDS:
            if key in inputs and len(inputs[key]) != len(images):
                raise ServingError(400, f'"inputs": {key} has {len(inputs[key])} values for {len(images)} images; '
                                        "send one value (or null) per image")
        try:
            return [Instance(b64=image.b64, **{k: inputs[k][i] for k in METADATA_FIELDS if k in inputs})
                    for i, image in enumerate(images)]
        except ValidationError as err:
            first = err.errors()[0]
            raise ServingError(400, f'"inputs": {".".join(map(str, first["loc"]))}: {first["msg"]}') from err

    def parse_tf_request(body: PredictRequest) -> tuple[list[bytes], list[dict], bool]:
        if body.signature_name not in (None, "", "serving_default"):
            raise ServingError(400, f"signature_name {body.signature_name!r}: only serving_default (encoded "
                                    f"images as b64) is served over REST")
        if (body.instances is None) == (body.inputs is None):
            raise ServingError(400, 'send exactly one of "instances" (row format) or "inputs" (columnar format), '
                                    'e.g. {"instances": [{"b64": "<base64 JPEG>"}]}')
        columnar = body.inputs is not None
        if isinstance(body.inputs, dict):
            items = columnar_instances(body.inputs)
        else:
            items = body.instances if body.instances is not None else body.inputs
        if not items:
            raise ServingError(400, "no instances: the list is empty")
        if len(items) > settings.max_instances:
            raise ServingError(413, f"{len(items)} instances in one request; the limit is {settings.max_instances}"
                                    f" (--max-instances): split the request")
        images, metas = [], []
        for i, item in enumerate(items):
            what = f"instance {i}"
            encoded = item.b64 if item.b64 is not None else (item.image_bytes.b64 if item.image_bytes else None)
            if encoded is None or (item.b64 is not None and item.image_bytes is not None):
                raise ServingError(400, f'{what}: expected exactly one of {{"b64": ...}} or '
                                        f'{{"image_bytes": {{"b64": ...}}}}')
            images.append(decode_b64(encoded, what))
            metas.append(check_metadata(item.age_approx, item.sex, item.anatom_site_general, what))
        return images, metas, columnar

    async def tf_predict(name: str, version: int | None, body: PredictRequest) -> dict:
        check_name(name)
        images, metas, columnar = parse_tf_request(body)
        model = await run_in_threadpool(manager.get, version)
        request_id = uuid.uuid4().hex
        probabilities, _ = await predict_images(model, images, metas, request_id)
        rows = [row(p) for p in probabilities]
        extra = {"model_version": model.version, "classes": list(config.CLASSES), "request_id": request_id}
        if columnar:
            outputs = {"probabilities": probabilities.tolist(), "predicted_class": [r["predicted_class"] for r in rows],
                       "confidence": [r["confidence"] for r in rows]}
            return {"outputs": outputs, **extra}
        predictions = [{**r, "probabilities": p.tolist()} for r, p in zip(rows, probabilities, strict=True)]
        return {"predictions": predictions, **extra}

    def status(name: str, version: int | None) -> dict:
        check_name(name)
        loaded = manager.loaded_versions()
        if version is not None and version not in registry.versions(settings.registry_root, settings.model_name):
            raise ServingError(404, f"model {name} has no version {version}")
        shown = [version] if version is not None else loaded
        return {"model_version_status": [
            {"version": str(v), "state": "AVAILABLE" if v in loaded else "END",
             "status": {"error_code": "OK", "error_message": ""}} for v in shown]}

    async def metadata(name: str, version: int | None) -> dict:
        check_name(name)
        model = await run_in_threadpool(manager.get, version)
        return {"model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
                "metadata": {"signature_def": {"signature_def": model.signature_def}},
                "dermpipe": {"classes": list(config.CLASSES), "image_size": model.image_size,
                             "embedding_dim": model.embedding_dim, "uri": model.uri,
                             "embedding_summary": 0 if model.pca_components is None else
                             int(model.pca_components.shape[0]),
                             "evaluation": registry.headline(model.record)}}

    @app.get("/v1/models/{name}", summary="Model status (TF Serving)")
    async def model_status(name: str) -> dict:
        return status(name, None)

    @app.get("/v1/models/{name}/versions/{version}", summary="Version status (TF Serving)")
    async def version_status(name: str, version: int) -> dict:
        return status(name, version)

    @app.get("/v1/models/{name}/metadata", summary="Signatures and classes (TF Serving)")
    async def model_metadata(name: str) -> dict:
        return await metadata(name, None)

    @app.get("/v1/models/{name}/versions/{version}/metadata", summary="Signatures of one version (TF Serving)")
    async def version_metadata(name: str, version: int) -> dict:
        return await metadata(name, version)

    @app.post("/v1/models/{name}:predict", summary="Predict (TF Serving REST)")
    async def predict_current(name: str, body: PredictRequest) -> dict:
        return await tf_predict(name, None, body)

    @app.post("/v1/models/{name}/versions/{version}:predict", summary="Predict with one version (TF Serving REST)")
    async def predict_version(name: str, version: int, body: PredictRequest) -> dict:
        return await tf_predict(name, version, body)

    @app.post("/predict", summary="Predict one uploaded image (multipart)", response_model=PredictFileResponse)
    async def predict_file(image: UploadFile = File(..., description="JPEG or PNG"),
                           age_approx: float | None = Form(None), sex: str | None = Form(None),
                           anatom_site_general: str | None = Form(None)) -> dict:
        meta = check_metadata(age_approx, sex or None, anatom_site_general or None, "form")
        data = await image.read()
        model = manager.get(None)
        request_id = uuid.uuid4().hex
        probabilities, _ = await predict_images(model, [data], [meta], request_id)
        return {**row(probabilities[0]), "request_id": request_id, "model_name": model.name,
                "model_version": model.version}

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: a model version is loaded")
    async def readyz():
        if manager.current is None:
            return JSONResponse({"status": "not ready", "reason": manager.last_error or "no current.json"},
                                status_code=503)
        return {"status": "ready", "model_name": settings.model_name, "model_version": manager.current.version}

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus():
        if predlog is not None:
            m_log_lines.set(predlog.lines_written)
        return PlainTextResponse(generate_latest(metrics).decode(), media_type=CONTENT_TYPE_LATEST)

    return BodyLimit(app, settings.max_body_bytes or 1 << 62, observe_request)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8501, log_level: str = "info") -> None:
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
