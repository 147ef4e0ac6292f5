"""TF Serving's gRPC API on its own port: PredictionService.Predict and GetModelMetadata, ModelService.GetModelStatus
and the standard gRPC health service, with TF Serving's own protos (the tensorflow-serving-api package).

The server is grpc.aio on uvicorn's event loop (started in the app's lifespan), so Predict awaits the same
Service.predict_images as the REST routes: one micro-batcher, one model manager, one prediction log, no locks.
Messages up to Settings.grpc_max_message_bytes (64 MiB by default, gRPC's own default is 4 MiB) are accepted either
way; a larger one is refused by gRPC with RESOURCE_EXHAUSTED. ServingError statuses map to gRPC codes the way TF
Serving answers: unknown model or version NOT_FOUND, too many images RESOURCE_EXHAUSTED, other bad input
INVALID_ARGUMENT, no version loaded UNAVAILABLE."""

import asyncio
import contextlib
import logging
import math
import uuid

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from starlette.concurrency import run_in_threadpool
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from dermpipe.serving.decisions import columns
from dermpipe.serving.dependencies import model_version_status
from dermpipe.serving.model_io import CLINICAL_OUTPUTS, IMAGE_INPUT, OUTPUTS, image_metadata
from dermpipe.serving.service import Service
from dermpipe.serving.settings import ServingError

log = logging.getLogger("dermpipe.serve")
CODES = {404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
         429: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE}
INPUT_DTYPES = {IMAGE_INPUT: "DT_STRING", "age_approx": "DT_FLOAT", "sex": "DT_STRING",
                "anatom_site_general": "DT_STRING", "lesion_id": "DT_STRING", "patient_id": "DT_STRING"}
SERVICES = ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")
# PredictRequest has no parameters field (v2 infer's `parameters.operating_point`): a stored operating point is named
# by this optional DT_STRING input with one element, as REST's `operating_point` field.
OPERATING_POINT_INPUT = "operating_point"
GATE_OVERRIDE_METADATA = "dermpipe-gate-override"  # trailing metadata of a Predict on a version deployed by override


@contextlib.asynccontextmanager
async def refusals(service: Service, context: grpc.aio.ServicerContext):
    """A ServingError becomes the gRPC status TF Serving would answer, with the same message as over REST."""
    try:
        yield
    except ServingError as err:
        service.telemetry.reject(err.status)
        code = CODES.get(err.status, grpc.StatusCode.INVALID_ARGUMENT if err.status < 500 else
                         grpc.StatusCode.INTERNAL)
        await context.abort(code, err.message)


def _version(spec) -> int | None:
    if spec.version_label:
        raise ServingError(400, f"model_spec.version_label {spec.version_label!r}: labels are not served; "
                                "send model_spec.version or nothing (the current version)")
    return spec.version.value if spec.HasField("version") else None


def declared_shape(name: str, proto) -> list[int]:
    """The shape a TensorProto declares, read before tf.make_ndarray: make_ndarray fills a short value list up to
    the declared shape, so a 20-byte message declaring [10**9] strings would take tens of gigabytes."""
    dims = [dim.size for dim in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(size < 0 for size in dims):
        raise ServingError(400, f"input {name}: shape {'unknown' if proto.tensor_shape.unknown_rank else dims}; "
                                "a request's tensors need a known shape")
    return dims


def tensor_values(name: str, proto, count: int) -> list:
    """The `count` values of a DT_STRING or DT_FLOAT TensorProto whose shape declares `count` elements.

    make_ndarray would fill a short value list with its last value (zeros when there is none), so exactly `count`
    values must be present: a sex tensor with one value for three images is refused, not copied three times.
    """
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    if proto.dtype == types_pb2.DT_STRING:
        present = len(proto.string_val)
    else:
        present = len(proto.tensor_content) // 4 if proto.tensor_content else len(proto.float_val)
    if present != count:
        raise ServingError(400, f"input {name}: {present} values in a tensor of {count} elements; send every value")
    try:
        return tf.make_ndarray(proto).reshape(-1).tolist()
    except Exception as err:  # noqa: BLE001 - a malformed TensorProto is the caller's
        raise ServingError(400, f"input {name}: not a readable TensorProto ({err})") from None


def requested_operating_point(inputs) -> str | None:
    """The operating point an `operating_point` input names (DT_STRING, one element), or None: the default."""
    from tensorflow.core.framework import types_pb2

    if OPERATING_POINT_INPUT not in inputs:
        return None
    proto = inputs[OPERATING_POINT_INPUT]
    if proto.dtype != types_pb2.DT_STRING or math.prod(declared_shape(OPERATING_POINT_INPUT, proto)) != 1:
        raise ServingError(400, f"input {OPERATING_POINT_INPUT}: expected one DT_STRING value naming a stored "
                                "operating point, e.g. melanoma_sens90")
    return tensor_values(OPERATING_POINT_INPUT, proto, 1)[0].decode("utf-8", "replace")


def request_values(inputs, max_instances: int) -> dict[str, list]:
    """Each input's elements (bytes for DT_STRING, floats for DT_FLOAT), checked: known names, dtypes, 1-D [N].

    Every declared shape is checked against the image count and --max-instances before any tensor is read.
    """
    from tensorflow.core.framework import types_pb2

    if IMAGE_INPUT not in inputs:
        raise ServingError(400, f"inputs has {sorted(inputs)}; expected {IMAGE_INPUT} (DT_STRING [N], encoded "
                                f"images) and optionally {', '.join(list(INPUT_DTYPES)[1:])}")
    shapes = {name: declared_shape(name, proto) for name, proto in inputs.items()}
    for name, shape in shapes.items():
        if len(shape) != 1:
            raise ServingError(400, f"input {name}: shape {shape}; expected [N], one per image")
    count = shapes[IMAGE_INPUT][0]
    if count == 0:
        raise ServingError(400, f"input {IMAGE_INPUT}: no images")
    if count > max_instances:
        raise ServingError(413, f"{count} images in one request; the limit is {max_instances} (--max-instances)")
    values = {}
    for name, proto in inputs.items():
        dtype = types_pb2.DataType.Name(proto.dtype)
        if INPUT_DTYPES.get(name) != dtype:
            raise ServingError(400, f"input {name} ({dtype}): expected one of "
                                    f"{', '.join(f'{k} {v}' for k, v in INPUT_DTYPES.items())}")
        if shapes[name][0] != count:
            raise ServingError(400, f"input {name}: {shapes[name][0]} values for {count} images; send one per image")
        values[name] = tensor_values(name, proto, count)
    return values


class Predictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService: Predict on serving_default (encoded images), GetModelMetadata from the SavedModel."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._signatures: dict[str, object] = {}  # SavedModel uri -> its SignatureDefMap

    async def Predict(self, request, context):  # noqa: N802 - the proto's method name
        service = self.service
        async with refusals(service, context):
            service.check_name(request.model_spec.name)
            if request.model_spec.signature_name not in ("", "serving_default"):
                raise ServingError(400, f"signature_name {request.model_spec.signature_name!r}: only "
                                        "serving_default (encoded images) is served")
            model = await service.model(_version(request.model_spec))
            names = (*OUTPUTS, *CLINICAL_OUTPUTS) if model.clinical is not None else OUTPUTS
            unknown = sorted(set(request.output_filter) - set(names))
            if unknown:
                raise ServingError(400, f"output_filter {unknown}: outputs are {', '.join(names)}")
            point = requested_operating_point(request.inputs)
            values = request_values({k: v for k, v in request.inputs.items() if k != OPERATING_POINT_INPUT},
                                    service.settings.max_instances)
            metas = [image_metadata(values, i) for i in range(len(values[IMAGE_INPUT]))]
            probabilities, embedding, _, decisions = await service.predict_images(
                model, values[IMAGE_INPUT], metas, uuid.uuid4().hex, operating_point=point)
        if model.gate_override:  # PredictResponse has no field for it: trailing metadata, as REST's JSON field
            context.set_trailing_metadata(((GATE_OVERRIDE_METADATA, "true"),))
        return _predict_response(model, {"probabilities": probabilities, "embedding": embedding,
                                         **columns(decisions)}, list(request.output_filter) or list(names))

    async def GetModelMetadata(self, request, context):  # noqa: N802
        async with refusals(self.service, context):
            self.service.check_name(request.model_spec.name)
            if list(request.metadata_field) != ["signature_def"]:
                raise ServingError(400, f"metadata_field {list(request.metadata_field)}: only ['signature_def'] "
                                        "is supported, as in TF Serving")
            model = await self.service.model(_version(request.model_spec))
            signatures = await run_in_threadpool(self._signature_map, model.uri)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name, response.model_spec.version.value = model.name, model.version
        response.metadata["signature_def"].Pack(signatures)
        return response

    def _signature_map(self, uri: str):
        """The SignatureDefMap of the SavedModel's own saved_model.pb (its first meta graph, TF Serving's)."""
        if uri not in self._signatures:
            import tensorflow as tf
            from tensorflow.core.protobuf import saved_model_pb2

            with tf.io.gfile.GFile(f"{uri}/saved_model.pb", "rb") as handle:
                saved = saved_model_pb2.SavedModel.FromString(handle.read())
            signatures = get_model_metadata_pb2.SignatureDefMap()
            for key, value in saved.meta_graphs[0].signature_def.items():
                signatures.signature_def[key].CopyFrom(value)
            self._signatures[uri] = signatures
        return self._signatures[uri]


def _predict_response(model, arrays: dict[str, np.ndarray], names: list[str]):
    import tensorflow as tf

    response = predict_pb2.PredictResponse()
    response.model_spec.name, response.model_spec.version.value = model.name, model.version
    response.model_spec.signature_name = "serving_default"
    for name in names:
        if CLINICAL_OUTPUTS.get(name) == "BYTES":  # decision, operating_point: DT_STRING [N]
            proto = tf.make_tensor_proto([str(v or "").encode() for v in arrays[name]], dtype=tf.string)
        else:
            proto = tf.make_tensor_proto(np.asarray([np.nan if v is None else v for v in arrays[name]]
                                                    if isinstance(arrays[name], list) else arrays[name], np.float32))
        response.outputs[name].CopyFrom(proto)
    return response


class Models(model_service_pb2_grpc.ModelServiceServicer):
    """ModelService.GetModelStatus, answered as REST's GET /v1/models/{name} is (dependencies.model_version_status)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def GetModelStatus(self, request, context):  # noqa: N802
        async with refusals(self.service, context):
            answer = model_version_status(self.service, request.model_spec.name, _version(request.model_spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        for row in answer["model_version_status"]:
            response.model_version_status.add(version=int(row["version"]),
                                              state=get_model_status_pb2.ModelVersionStatus.State.Value(row["state"]))
        return response


async def _follow_readiness(service: Service, health: health_aio.HealthServicer, period: float) -> None:
    """SERVING while a model version is loaded, NOT_SERVING before (what /readyz says)."""
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    while True:
        state = serving if service.manager.current is not None else not_serving
        for name in SERVICES:
            await health.set(name, state)
        await asyncio.sleep(period)


class GrpcServer:
    """The gRPC server and its readiness task, started and stopped with the app."""

    def __init__(self, service: Service) -> None:
        settings = service.settings
        limit = settings.grpc_max_message_bytes
        self.server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                               ("grpc.max_send_message_length", limit)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Predictions(service), self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(Models(service), self.server)
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.address = f"{settings.grpc_host}:{settings.grpc_port}"
        if not self.server.add_insecure_port(self.address):
            raise RuntimeError(f"gRPC: could not listen on {self.address} (--grpc-port)")
        self.service = service
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.server.start()
        self._task = asyncio.get_running_loop().create_task(
            _follow_readiness(self.service, self.health, min(self.service.settings.poll_seconds, 1.0)))
        log.info("gRPC (TF Serving PredictionService, ModelService, health) on %s, messages up to %d bytes",
                 self.address, self.service.settings.grpc_max_message_bytes)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.server.stop(grace=5)
