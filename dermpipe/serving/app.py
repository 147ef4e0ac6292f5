"""`dermpipe serve`, a TF-Serving-compatible REST server for the current version of the model registry: create_app
wires one Service (models, batching, prediction log, telemetry) to each protocol's routes (and gRPC's server, in the
lifespan) and the shared error handlers of a FastAPI app inside the BodyLimit middleware; serve runs it under
uvicorn (over TLS with --tls-cert/--tls-key). Start-up says what needs a token (dermpipe.serving.auth). The one
module that imports every protocol."""

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from dermpipe import config
from dermpipe.serving.auth import startup_lines
from dermpipe.serving.dependencies import add_error_handlers
from dermpipe.serving.explain import Explainer, explain
from dermpipe.serving.feedback import feedback
from dermpipe.serving.limits import BodyLimit
from dermpipe.serving.open_inference.routes import v2
from dermpipe.serving.operations import operations
from dermpipe.serving.service import Service
from dermpipe.serving.settings import Settings
from dermpipe.serving.tf_rest import tf_serving
from dermpipe.serving.upload import upload

log = logging.getLogger("dermpipe.serve")

# in this order: the order the app matches and documents the routes
ROUTERS = (tf_serving, upload, operations, explain, v2, feedback)


@asynccontextmanager
async def lifespan(app: FastAPI):
    service: Service = app.state.service
    for level, line in startup_lines(service.settings, service.auth):  # what needs a token, and TLS
        log.log(level, line)
    await service.start()
    grpc_server = None
    if service.settings.grpc_port:  # TF Serving's gRPC API on uvicorn's loop, beside the HTTP routes
        from dermpipe.serving.grpc_server import GrpcServer

        grpc_server = GrpcServer(service)
        await grpc_server.start()
    yield
    if grpc_server is not None:
        await grpc_server.stop()
    await service.stop()


def create_app(settings: Settings):
    """The FastAPI application (models load in the lifespan, so creating it is cheap)."""
    service = Service(settings)
    app = FastAPI(title="dermpipe serve", version=config.__version__, lifespan=lifespan,
                  description="ISIC 2019 skin-lesion classifier: TF Serving REST API, Open Inference Protocol (v2) "
                              "with binary tensor data, Grad-CAM :explain, multipart /predict, ground-truth feedback, "
                              "probes, Prometheus metrics.")
    app.state.service = service
    app.state.manager, app.state.batcher, app.state.predlog = service.manager, service.batcher, service.predlog
    add_error_handlers(app)
    app.state.explainer = Explainer(settings)
    for router in ROUTERS:
        app.include_router(router)
    return BodyLimit(app, settings.max_body_bytes or 1 << 62, service.telemetry.observe_request)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8501, log_level: str = "info") -> None:
    import uvicorn

    settings.grpc_host = settings.host = host

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tls = ({"ssl_certfile": str(Path(settings.tls_cert).expanduser()),
            "ssl_keyfile": str(Path(settings.tls_key).expanduser())} if settings.tls_cert else {})
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10, **tls)
