"""The HTTP routes, as APIRouters over the app's Service (the `service` dependency reads it from app.state):
TF Serving's REST API v1 (model and version status, metadata, :predict with row-format `instances` or columnar
`inputs`), the multipart /predict, the probes /healthz and /readyz, and /metrics. Route functions carry no
docstrings on purpose: FastAPI would publish them as the OpenAPI descriptions."""

import uuid
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from dermpipe import config
from dermpipe.deploy import registry
from dermpipe.serving.decisions import columns
from dermpipe.serving.images import check_grouping, check_metadata
from dermpipe.serving.parsing import parse_tf_request
from dermpipe.serving.schemas import PredictFileResponse, PredictRequest
from dermpipe.serving.service import Service
from dermpipe.serving.settings import ServingError


async def get_service(request: Request) -> Service:
    # async, so FastAPI calls it on the event loop rather than sending every request through the thread pool
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def row(probabilities: np.ndarray) -> dict:
    best = int(np.argmax(probabilities))
    return {"predicted_class": config.CLASSES[best], "confidence": float(probabilities[best]),
            "probabilities": {c: float(p) for c, p in zip(config.CLASSES, probabilities, strict=True)}}


async def tf_predict(service: Service, name: str, version: int | None, body: PredictRequest) -> dict:
    service.check_name(name)
    images, metas, columnar = parse_tf_request(body, service.settings.max_instances)
    model = await service.model(version)
    request_id = uuid.uuid4().hex
    probabilities, _, _, decisions = await service.predict_images(model, images, metas, request_id,
                                                                  body.operating_point)
    rows = [row(p) for p in probabilities]
    extra = {"model_version": model.version, "classes": list(config.CLASSES), "request_id": request_id,
             "gate_override": model.gate_override}
    if columnar:
        outputs = {"probabilities": probabilities.tolist(), "predicted_class": [r["predicted_class"] for r in rows],
                   "confidence": [r["confidence"] for r in rows], **columns(decisions)}
        return {"outputs": outputs, **extra}
    predictions = [{**r, "probabilities": p.tolist(), **d} for r, p, d in zip(rows, probabilities, decisions,
                                                                               strict=True)]
    return {"predictions": predictions, **extra}


def status(service: Service, name: str, version: int | None) -> dict:
    service.check_name(name)
    loaded = service.manager.loaded_versions()
    settings = service.settings
    if version is not None and version not in registry.versions(settings.registry_root, settings.model_name):
        raise ServingError(404, f"model {name} has no version {version}")
    if version is None and not loaded:  # TF Serving: 404 with an error, not 200 with an empty list
        reason = service.manager.last_error or f"no current.json in {settings.registry_root}/{settings.model_name}"
        raise ServingError(404, f"model {name}: no version loaded yet ({reason})")
    shown = [version] if version is not None else loaded
    return {"model_version_status": [
        {"version": str(v), "state": "AVAILABLE" if v in loaded else "END",
         "status": {"error_code": "OK", "error_message": ""}} for v in shown]}


async def metadata(service: Service, name: str, version: int | None) -> dict:
    service.check_name(name)
    model = await service.model(version)
    return {"model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
            "metadata": {"signature_def": {"signature_def": model.signature_def}},
            "dermpipe": {"classes": list(config.CLASSES), "image_size": model.image_size,
                         "embedding_dim": model.embedding_dim, "uri": model.uri,
                         "embedding_summary": 0 if model.pca_components is None else
                         int(model.pca_components.shape[0]),
                         "evaluation": registry.headline(model.record),
                         "operating_points": [] if model.clinical is None else
                         [p.name for p in model.clinical.operating_points]}}


tf_serving = APIRouter()


@tf_serving.get("/v1/models/{name}", summary="Model status (TF Serving)")
async def model_status(service: ServiceDep, name: str) -> dict:
    return status(service, name, None)


@tf_serving.get("/v1/models/{name}/versions/{version}", summary="Version status (TF Serving)")
async def version_status(service: ServiceDep, name: str, version: int) -> dict:
    return status(service, name, version)


@tf_serving.get("/v1/models/{name}/metadata", summary="Signatures and classes (TF Serving)")
async def model_metadata(service: ServiceDep, name: str) -> dict:
    return await metadata(service, name, None)


@tf_serving.get("/v1/models/{name}/versions/{version}/metadata", summary="Signatures of one version (TF Serving)")
async def version_metadata(service: ServiceDep, name: str, version: int) -> dict:
    return await metadata(service, name, version)


@tf_serving.post("/v1/models/{name}:predict", summary="Predict (TF Serving REST)")
async def predict_current(service: ServiceDep, name: str, body: PredictRequest) -> dict:
    return await tf_predict(service, name, None, body)


@tf_serving.post("/v1/models/{name}/versions/{version}:predict", summary="Predict with one version (TF Serving REST)")
async def predict_version(service: ServiceDep, name: str, version: int, body: PredictRequest) -> dict:
    return await tf_predict(service, name, version, body)


upload = APIRouter()


@upload.post("/predict", summary="Predict one uploaded image (multipart)", response_model=PredictFileResponse)
async def predict_file(service: ServiceDep, image: UploadFile = File(..., description="JPEG or PNG"),
                       age_approx: float | None = Form(None), sex: str | None = Form(None),
                       anatom_site_general: str | None = Form(None),
                       operating_point: str | None = Form(None), lesion_id: str | None = Form(None),
                       patient_id: str | None = Form(None)) -> dict:
    meta = {**check_metadata(age_approx, sex or None, anatom_site_general or None, "form"),
            **check_grouping(lesion_id or None, patient_id or None, "form")}
    data = await image.read()
    model = service.manager.get(None)
    request_id = uuid.uuid4().hex
    probabilities, _, _, decisions = await service.predict_images(model, [data], [meta], request_id,
                                                                  operating_point or None)
    return {**row(probabilities[0]), **decisions[0], "request_id": request_id, "model_name": model.name,
            "model_version": model.version, "gate_override": model.gate_override}


operations = APIRouter()


@operations.get("/healthz", summary="Liveness")
async def healthz() -> dict:
    return {"status": "ok"}


@operations.get("/readyz", summary="Readiness: a model version is loaded")
async def readyz(service: ServiceDep):
    manager = service.manager
    if manager.current is None:
        return JSONResponse({"status": "not ready", "reason": manager.last_error or "no current.json"},
                            status_code=503)
    return {"status": "ready", "model_name": service.settings.model_name, "model_version": manager.current.version}


@operations.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def prometheus(service: ServiceDep):
    written = None if service.predlog is None else service.predlog.lines_written
    return PlainTextResponse(service.telemetry.render(written), media_type=CONTENT_TYPE_LATEST)


ROUTERS = (tf_serving, upload, operations)  # in this order: the order the app matches and documents the routes
