"""Explanations at serving time: POST /v1/models/{name}:explain (KServe v1's verb) answers per image the predicted
class and probabilities with a Grad-CAM heat map (the low-resolution map as numbers, a PNG overlay in base64) and the
layer it came from, using the training-time Grad-CAM code (model.evaluation.gradcam, tf-keras-vis) on the version's
model.keras.

A backward pass costs several forward passes, so explanations run apart from the prediction batcher, in their own
thread, at most Settings.explain_capacity requests at a time (429 beyond: the caller retries later) and at most
Settings.max_explain_instances images per request (413). The probabilities come from the SavedModel's serve_pixels
signature on the pixels check_image decoded as serving_default does, so they are the served model's. Explanations are
not written to the prediction log (the drift monitor counts each image once): they go to their own log stream, the
"dermpipe.explain" logger, one line per image."""

import asyncio
import base64
import logging
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from dermpipe import config
from dermpipe.serving.dependencies import PREDICT_AUTH, ServiceDep, prediction_row
from dermpipe.serving.images import check_images
from dermpipe.serving.models import ServedModel
from dermpipe.serving.parsing import parse_tf_request
from dermpipe.serving.schemas import PredictRequest
from dermpipe.serving.settings import ServingError, Settings

log = logging.getLogger("dermpipe.explain")


class Explainer:
    """Grad-CAM for served versions: one model.keras per version (cached), one explanation thread, a capacity."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explain")
        self.in_flight = 0
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()

    async def explain(self, model: ServedModel, images: list[bytes], metas: list[dict]) -> list[dict]:
        if self.in_flight >= self.settings.explain_capacity:
            raise ServingError(429, f"{self.in_flight} explanations are running, the capacity "
                                    f"(--explain-capacity) is {self.settings.explain_capacity}; retry shortly")
        self.in_flight += 1
        try:
            checked = await run_in_threadpool(check_images, images, max_pixels=self.settings.max_pixels,
                                              image_size=model.image_size)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, self._explain, model,
                                              np.stack([c.pixels for c in checked]), metas)
        finally:
            self.in_flight -= 1

    def keras_model(self, model: ServedModel):
        """The version's model.keras (the registry keeps it beside the SavedModel), loaded once."""
        with self._lock:
            if model.uri not in self._models:
                import tensorflow as tf

                from dermpipe.model.zoo import load_classifier

                source = f"{model.uri}/model.keras"
                if not tf.io.gfile.exists(source):
                    raise ServingError(501, f"{source} does not exist: this version cannot be explained (Grad-CAM "
                                            "needs the Keras model the registry keeps beside the SavedModel)")
                with tempfile.TemporaryDirectory() as tmp:
                    local = Path(tmp) / "model.keras"
                    tf.io.gfile.copy(source, str(local))
                    self._models[model.uri] = load_classifier(local, compile=False)
            return self._models[model.uri]

    def _explain(self, model: ServedModel, pixels: np.ndarray, metas: list[dict]) -> list[dict]:
        """Explanations of decoded images (float32 [N, S, S, 3], as serving_default decodes them)."""
        import tensorflow as tf

        from dermpipe.model.evaluation.gradcam import cam_layer, cam_maps
        from dermpipe.model.export import PIXELS_SIGNATURE, metadata_tensors
        from dermpipe.model.metadata_inputs import raw_values, takes_metadata

        keras_model = self.keras_model(model)
        extra = metadata_tensors(metas) if model.metadata_inputs else {}
        probabilities = model.loaded.signatures[PIXELS_SIGNATURE](image=tf.constant(pixels), **extra)
        probabilities = probabilities["probabilities"].numpy()
        classes = [int(i) for i in probabilities.argmax(axis=1)]
        metadata = (raw_values(*([m[k] for m in metas] for k in ("age_approx", "sex", "anatom_site_general")))
                    if takes_metadata(keras_model) else None)
        maps = cam_maps(keras_model, pixels, classes, "gradcam", metadata, at_input_resolution=False)
        layer = cam_layer(keras_model)  # an ensemble: every member's layer (Grad-CAM of the ensemble)
        return [_explanation(p, pixels[i], maps[i], layer) for i, p in enumerate(probabilities)]


def _explanation(probabilities: np.ndarray, pixels: np.ndarray, small: np.ndarray, layer: str) -> dict:
    from dermpipe.data.image_privacy import encode_png
    from dermpipe.model.evaluation.gradcam import overlay, resize_maps

    full = np.clip(resize_maps(small[None], pixels.shape[:2])[0], 0.0, 1.0)
    png = encode_png(overlay(pixels, full))  # drawn on the stripped request's pixels; the PNG holds pixels only
    return {**prediction_row(probabilities), "probabilities": probabilities.tolist(),
            "gradcam": {"layer": layer, "map": small.tolist(), "map_shape": list(small.shape),
                        "overlay_png_b64": base64.b64encode(png).decode(),
                        "overlay_size": list(pixels.shape[:2])}}


async def tf_explain(service, explainer: Explainer, name: str, version: int | None, body: PredictRequest) -> dict:
    service.check_name(name)
    cap = service.settings.max_explain_instances
    images, metas, _ = parse_tf_request(body, service.settings.max_instances)
    if len(images) > cap:
        raise ServingError(413, f"{len(images)} instances to explain in one request; the limit is {cap} "
                                "(--max-explain-instances): a Grad-CAM costs a backward pass, split the request")
    model = await service.model(version)
    request_id = uuid.uuid4().hex
    explanations = await explainer.explain(model, images, metas)
    for i, item in enumerate(explanations):
        log.info("explain request_id=%s image=%d model_version=%d predicted_class=%s confidence=%.4f layer=%s",
                 request_id, i, model.version, item["predicted_class"], item["confidence"], item["gradcam"]["layer"])
    return {"explanations": explanations, "model_version": model.version, "classes": list(config.CLASSES),
            "request_id": request_id}


explain = APIRouter()


@explain.post("/v1/models/{name}:explain", summary="Explain: class, probabilities and a Grad-CAM per image",
              dependencies=PREDICT_AUTH)
async def explain_current(service: ServiceDep, request: Request, name: str, body: PredictRequest) -> dict:
    return await tf_explain(service, request.app.state.explainer, name, None, body)


@explain.post("/v1/models/{name}/versions/{version}:explain", summary="Explain with one version",
              dependencies=PREDICT_AUTH)
async def explain_version(service: ServiceDep, request: Request, name: str, version: int,
                          body: PredictRequest) -> dict:
    return await tf_explain(service, request.app.state.explainer, name, version, body)
