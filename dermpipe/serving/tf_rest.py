"""TF Serving's REST API v1 as an APIRouter over the app's Service: model and version status, metadata, and :predict
with row-format `instances` or columnar `inputs`. Route functions carry no docstrings on purpose: FastAPI would
publish them as the OpenAPI descriptions."""

import uuid

from fastapi import APIRouter

from dermpipe import config
from dermpipe.deploy import registry
from dermpipe.serving.decisions import columns
from dermpipe.serving.dependencies import ServiceDep, model_version_status, prediction_row
from dermpipe.serving.parsing import parse_tf_request
from dermpipe.serving.schemas import PredictRequest
from dermpipe.serving.service import Service


async def tf_predict(service: Service, name: str, version: int | None, body: PredictRequest) -> dict:
    service.check_name(name)
    images, metas, columnar = parse_tf_request(body, service.settings.max_instances)
    model = await service.model(version)
    request_id = uuid.uuid4().hex
    probabilities, _, _, decisions = await service.predict_images(model, images, metas, request_id,
                                                                  body.operating_point)
    rows = [prediction_row(p) for p in probabilities]
    extra = {"model_version": model.version, "classes": list(config.CLASSES), "request_id": request_id,
             "gate_override": model.gate_override}
    if columnar:
        outputs = {"probabilities": probabilities.tolist(), "predicted_class": [r["predicted_class"] for r in rows],
                   "confidence": [r["confidence"] for r in rows], **columns(decisions)}
        return {"outputs": outputs, **extra}
    predictions = [{**r, "probabilities": p.tolist(), **d} for r, p, d in zip(rows, probabilities, decisions,
                                                                               strict=True)]
    return {"predictions": predictions, **extra}


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
    return model_version_status(service, name, None)


@tf_serving.get("/v1/models/{name}/versions/{version}", summary="Version status (TF Serving)")
async def version_status(service: ServiceDep, name: str, version: int) -> dict:
    return model_version_status(service, name, version)


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
