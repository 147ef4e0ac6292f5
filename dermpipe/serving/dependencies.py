"""What the server's protocol modules share, so that none of them imports another: the app's Service as a FastAPI
dependency (ServiceDep), a prediction's class and confidence row, TF Serving's model version status (REST's
GET /v1/models/{name} and gRPC's ModelService.GetModelStatus answer the same), and the error shape of every HTTP
protocol, {"error": "..."} with the ServingError's status, which add_error_handlers installs on the app. gRPC turns
a ServingError into a gRPC status itself (grpc_server.refusals): no other protocol answers in that shape.

The protocol modules (tf_rest, upload, operations, open_inference, grpc_server, explain, feedback) import this
module, the Service and the helpers below them, never one another: pyproject.toml's "serving protocols"
independence contract fails `make lint` and tests/architecture on a cross-import."""

from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from dermpipe import config
from dermpipe.deploy import registry
from dermpipe.serving.service import Service
from dermpipe.serving.settings import ServingError


async def get_service(request: Request) -> Service:
    # async, so FastAPI calls it on the event loop rather than sending every request through the thread pool
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def prediction_row(probabilities: np.ndarray) -> dict:
    """The predicted class, its confidence and every class's probability by name."""
    best = int(np.argmax(probabilities))
    return {"predicted_class": config.CLASSES[best], "confidence": float(probabilities[best]),
            "probabilities": {c: float(p) for c, p in zip(config.CLASSES, probabilities, strict=True)}}


def model_version_status(service: Service, name: str, version: int | None) -> dict:
    """TF Serving's model_version_status: the loaded versions (AVAILABLE), or one version, loaded or not (END)."""
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


async def serving_error(request: Request, err: ServingError) -> JSONResponse:
    request.app.state.service.telemetry.reject(err.status)
    return JSONResponse({"error": err.message}, status_code=err.status)


async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in
                         err.errors()[:5])
    request.app.state.service.telemetry.reject(400)
    return JSONResponse({"error": f"request does not have the expected shape: {problems}"}, status_code=400)


def add_error_handlers(app: FastAPI) -> None:
    """Every HTTP protocol's refusals as {"error": "..."}: a ServingError with its status, a body FastAPI could not
    validate with 400 (FastAPI's default would be 422 with its own shape), each counted in the telemetry."""
    app.add_exception_handler(ServingError, serving_error)
    app.add_exception_handler(RequestValidationError, validation_error)
