"""The Open Inference Protocol (KServe v2 / Triton) over REST: server and model metadata, liveness and readiness,
and infer with Triton's binary tensor data extension (the tensors in tensors.py, the framing in binary_tensors.py).
Errors are the protocol's {"error": "..."} (dependencies.add_error_handlers). Infer goes through the same
Service.predict_images as TF Serving's REST API: same batcher, limits, hot reload and prediction log."""

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from dermpipe import config
from dermpipe.serving.decisions import columns
from dermpipe.serving.dependencies import ServiceDep
from dermpipe.serving.model_io import CLINICAL_OUTPUTS
from dermpipe.serving.models import ServedModel
from dermpipe.serving.open_inference.binary_tensors import HEADER, encode_reply, split_body
from dermpipe.serving.open_inference.tensors import INPUT_TYPES, output_tensors, parse_infer
from dermpipe.serving.schemas import V2InferRequest
from dermpipe.serving.service import Service
from dermpipe.serving.settings import ServingError

EXTENSIONS = ["binary_tensor_data"]


def _inline(schema: dict) -> dict:
    """A pydantic JSON schema with its $defs inlined (openapi_extra cannot add components)."""
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node

    return resolve(schema)


INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _inline(V2InferRequest.model_json_schema())},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                 "description": f"JSON header ({HEADER} bytes) then the binary tensor data"}}}}


def _version(version: str | None) -> int | None:
    if version is None or version == "":
        return None
    if not (version.isascii() and version.isdigit()):  # str.isdigit alone accepts "²", which int() refuses
        raise ServingError(400, f"model version {version!r} is not a number (send digits 0-9)")
    return int(version)


async def _model(service: Service, name: str, version: str | None) -> ServedModel:
    service.check_name(name)
    return await service.model(_version(version))


def model_metadata(model: ServedModel, loaded: list[int]) -> dict:
    inputs = [{"name": name, "datatype": datatype, "shape": [-1]} for name, datatype in INPUT_TYPES.items()
              if name == "image_bytes" or model.metadata_inputs]
    return {"name": model.name, "versions": [str(v) for v in loaded], "platform": "tensorflow_savedmodel",
            "inputs": inputs,
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(config.CLASSES)]},
                        {"name": "embedding", "datatype": "FP32", "shape": [-1, model.embedding_dim]},
                        *({"name": name, "datatype": kind, "shape": [-1]} for name, kind in CLINICAL_OUTPUTS.items()
                          if model.clinical is not None)],
            "parameters": {"classes": ",".join(config.CLASSES), "image_size": model.image_size,
                           "model_version": str(model.version)}}


async def infer(service: Service, request: Request, name: str, version: str | None) -> Response:
    model = await _model(service, name, version)
    header, binary = split_body(await request.body(), request.headers.get(HEADER))
    wanted = parse_infer(header, binary, service.settings.max_instances, clinical=model.clinical is not None)
    request_id = wanted.request_id or uuid.uuid4().hex
    probabilities, embedding, _, decisions = await service.predict_images(model, wanted.images, wanted.metas,
                                                                          request_id, wanted.operating_point)
    tensors, chunks = output_tensors({"probabilities": probabilities, "embedding": embedding, **columns(decisions)},
                                     wanted.outputs)
    reply = {"model_name": model.name, "model_version": str(model.version), "id": request_id, "outputs": tensors,
             "parameters": {"gate_override": model.gate_override}}
    if not chunks:
        return JSONResponse(reply)
    body, length = encode_reply(reply, chunks)
    return Response(body, media_type="application/octet-stream", headers={HEADER: str(length)})


def _ready(service: Service, name: str, version: str | None) -> dict:
    service.check_name(name)
    wanted, loaded = _version(version), service.manager.loaded_versions()
    if not loaded or (wanted is not None and wanted not in loaded):
        raise ServingError(400, f"model {name} version {version or '(current)'} is not ready; loaded versions: "
                                f"{loaded or 'none'}")
    return {"name": name, "ready": True}


v2 = APIRouter()


@v2.get("/v2", summary="Server metadata (Open Inference Protocol)")
async def server_metadata() -> dict:
    return {"name": "dermpipe", "version": config.__version__, "extensions": EXTENSIONS}


@v2.get("/v2/health/live", summary="Server live (Open Inference Protocol)")
async def server_live() -> dict:
    return {"live": True}


@v2.get("/v2/health/ready", summary="Server ready: a model version is loaded (Open Inference Protocol)")
async def server_ready(service: ServiceDep):
    ready = service.manager.current is not None
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


@v2.get("/v2/models/{name}", summary="Model metadata (Open Inference Protocol)")
async def v2_model_metadata(service: ServiceDep, name: str) -> dict:
    return model_metadata(await _model(service, name, None), service.manager.loaded_versions())


@v2.get("/v2/models/{name}/versions/{version}", summary="Model version metadata (Open Inference Protocol)")
async def v2_version_metadata(service: ServiceDep, name: str, version: str) -> dict:
    return model_metadata(await _model(service, name, version), service.manager.loaded_versions())


@v2.get("/v2/models/{name}/ready", summary="Model ready (Open Inference Protocol)")
async def v2_model_ready(service: ServiceDep, name: str) -> dict:
    return _ready(service, name, None)


@v2.get("/v2/models/{name}/versions/{version}/ready", summary="Model version ready (Open Inference Protocol)")
async def v2_version_ready(service: ServiceDep, name: str, version: str) -> dict:
    return _ready(service, name, version)


@v2.post("/v2/models/{name}/infer", summary="Infer (Open Inference Protocol, binary tensor data extension)",
         openapi_extra=INFER_BODY)
async def v2_infer(service: ServiceDep, request: Request, name: str) -> Response:
    return await infer(service, request, name, None)


@v2.post("/v2/models/{name}/versions/{version}/infer", summary="Infer with one version (Open Inference Protocol)",
         openapi_extra=INFER_BODY)
async def v2_infer_version(service: ServiceDep, request: Request, name: str, version: str) -> Response:
    return await infer(service, request, name, version)

