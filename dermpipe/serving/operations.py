"""The routes that operate the server rather than ask the model: liveness /healthz, readiness /readyz (503 until a
version is loaded) and the Prometheus /metrics."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from dermpipe.serving.dependencies import ServiceDep

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
