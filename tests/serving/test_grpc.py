"""TF Serving's gRPC API of `dermpipe serve`, driven by the tensorflow-serving-api stubs and grpc health checking:
answers equal the SavedModel's, the signatures come from the SavedModel itself, bad input gets INVALID_ARGUMENT /
NOT_FOUND / RESOURCE_EXHAUSTED and the server keeps answering."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from conftest import MODEL, reference
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

pytestmark = pytest.mark.slow  # shares the session's server with test_server.py

LIMIT = 8 * 1024 * 1024  # the server fixture's --grpc-max-message-mb


@pytest.fixture(scope="module")
def channel(server):
    options = [("grpc.max_send_message_length", 4 * LIMIT), ("grpc.max_receive_message_length", 4 * LIMIT)]
    with grpc.insecure_channel(server.grpc_target, options=options) as opened:
        yield opened


def predict_request(images: list[bytes], version: int | None = None, **extra) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = extra.pop("name", MODEL)
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    for key, value in extra.items():
        request.inputs[key].CopyFrom(value)
    return request


def test_predict_equals_the_saved_model_and_health_is_serving(server, channel, jpegs):
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = stub.Predict(predict_request(jpegs[:3]), timeout=60)
    probabilities, embedding = reference(server.registry_root, 1, jpegs[:3])
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), probabilities, atol=1e-5)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["embedding"]), embedding, atol=1e-5)
    assert response.model_spec.version.value == 1 and response.model_spec.signature_name == "serving_default"
    filtered = stub.Predict(_with_filter(predict_request([jpegs[4]], version=2), ["probabilities"]), timeout=60)
    assert list(filtered.outputs) == ["probabilities"] and filtered.model_spec.version.value == 2
    np.testing.assert_allclose(tf.make_ndarray(filtered.outputs["probabilities"]),
                               reference(server.registry_root, 2, [jpegs[4]])[0], atol=1e-5)


def _with_filter(request: predict_pb2.PredictRequest, names: list[str]) -> predict_pb2.PredictRequest:
    request.output_filter.extend(names)
    return request


def test_metadata_is_the_saved_models_signature_def_map_and_status_is_available(server, channel):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, timeout=60)
    served = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(served)
    saved = saved_model_pb2.SavedModel.FromString((server.registry_root / MODEL / "1" / "saved_model.pb")
                                                  .read_bytes())
    assert dict(served.signature_def) == dict(saved.meta_graphs[0].signature_def)
    assert served.signature_def["serving_default"].inputs["image_bytes"].dtype == tf.string.as_datatype_enum
    assert response.model_spec.version.value == 1
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL
    statuses = models.GetModelStatus(status_request, timeout=30).model_version_status
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert (statuses[0].version, statuses[0].state) == (1, available)
    rest = server.get(f"/v1/models/{MODEL}").json()["model_version_status"]  # every loaded version, as over REST
    assert [(s.version, s.state) for s in statuses] == [(int(r["version"]), available) for r in rest]
    status_request.model_spec.version.value = 9
    with pytest.raises(grpc.RpcError) as missing:
        models.GetModelStatus(status_request, timeout=30)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def _bad_requests(jpeg: bytes) -> list[tuple[str, predict_pb2.PredictRequest, grpc.StatusCode, str]]:
    invalid, exhausted = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
    wrong_dtype = predict_pb2.PredictRequest()
    wrong_dtype.model_spec.name = MODEL
    wrong_dtype.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([1.0, 2.0]))
    wrong_shape = predict_pb2.PredictRequest()
    wrong_shape.model_spec.name = MODEL
    wrong_shape.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([[jpeg]], dtype=tf.string))
    other_signature = predict_request([jpeg])
    other_signature.model_spec.signature_name = "serve_pixels"
    return [
        ("not an image", predict_request([b"plain words"]), invalid, "not an image"),
        ("truncated jpeg", predict_request([jpeg[:3000]]), invalid, "truncated"),
        ("pixel bomb", predict_request([_bomb()]), exhausted, "pixel"),
        ("wrong dtype", wrong_dtype, invalid, "DT_FLOAT"),
        ("wrong shape", wrong_shape, invalid, "shape"),
        ("metadata count", predict_request([jpeg], sex=tf.make_tensor_proto(["male", "female"])), invalid,
         "2 values for 1"),
        ("unknown sex", predict_request([jpeg], sex=tf.make_tensor_proto(["x"])), invalid, "sex"),
        ("too many images", predict_request([jpeg] * 5), exhausted, "limit is 4"),
        ("other signature", other_signature, invalid, "serving_default"),
        ("unknown output", _with_filter(predict_request([jpeg]), ["logits"]), invalid, "output_filter"),
        ("unknown model", predict_request([jpeg], name="other"), grpc.StatusCode.NOT_FOUND, "other"),
        ("unknown version", predict_request([jpeg], version=9), grpc.StatusCode.NOT_FOUND, "no version 9"),
        ("declared 10**12 images", _declared(predict_request([jpeg]), "image_bytes", 10**12), exhausted,
         "1000000000000 images in one request"),
        ("one sex for 2 images", predict_request([jpeg] * 2, sex=tf.make_tensor_proto(["male"], shape=[2])),
         invalid, "1 values in a tensor of 2 elements"),
    ]


def _declared(request: predict_pb2.PredictRequest, name: str, size: int) -> predict_pb2.PredictRequest:
    """The request with input `name`'s shape declared as [size], its values unchanged."""
    request.inputs[name].tensor_shape.dim[0].size = size
    return request


def _bomb() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_input_gets_client_error_codes_and_the_server_survives(server, channel, jpegs):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for name, request, code, fragment in _bad_requests(jpegs[0]):
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(request, timeout=60)
        assert refused.value.code() == code, (name, refused.value.code(), refused.value.details())
        assert fragment.lower() in refused.value.details().lower(), (name, refused.value.details())
    # above gRPC's default 4 MiB but under the server's limit: reaches the image check; over the limit: gRPC refuses
    big = predict_request([b"\xff\xd8" + b"0" * (6 << 20)])
    with pytest.raises(grpc.RpcError) as checked:
        stub.Predict(big, timeout=60)
    assert checked.value.code() == grpc.StatusCode.INVALID_ARGUMENT, checked.value.details()
    with pytest.raises(grpc.RpcError) as oversized:
        stub.Predict(predict_request([b"\xff\xd8" + b"0" * (LIMIT + 1024)]), timeout=60)
    assert oversized.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, oversized.value.details()
    ok = stub.Predict(predict_request([jpegs[0]]), timeout=60)
    assert tf.make_ndarray(ok.outputs["probabilities"]).shape == (1, 8)
    assert server.get("/healthz").status_code == 200


def test_fuzzed_predict_requests_get_client_errors_never_a_server_error(server, channel, jpegs):
    """Hypothesis builds PredictRequests from any dtype, declared shape (negative, unknown rank, 10**12), value
    lists that disagree with the shape, unknown inputs, model names, versions, signatures and output filters: every
    answer is OK or a client error code with details, never UNKNOWN or INTERNAL, and the server keeps answering."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from tensorflow.core.framework import tensor_pb2, types_pb2

    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    client_codes = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}
    dtypes = st.sampled_from([types_pb2.DT_STRING, types_pb2.DT_FLOAT, types_pb2.DT_INT32, types_pb2.DT_DOUBLE,
                              types_pb2.DT_INVALID]) | st.integers(0, 30)
    sizes = st.integers(-2, 5) | st.sampled_from([10**12, 2**62])
    strings = st.lists(st.sampled_from([jpegs[0], b"", b"male", b"melanoma_sens90"]) | st.binary(max_size=24),
                       max_size=6)

    @st.composite
    def tensors(draw):
        tensor = tensor_pb2.TensorProto(dtype=draw(dtypes), string_val=draw(strings),
                                        float_val=draw(st.lists(st.floats(width=32), max_size=6)),
                                        tensor_content=draw(st.binary(max_size=30)))
        tensor.tensor_shape.unknown_rank = draw(st.booleans())
        for size in draw(st.lists(sizes, max_size=3)):
            tensor.tensor_shape.dim.add(size=size)
        return tensor

    names = st.sampled_from(["image_bytes", "sex", "age_approx", "anatom_site_general", "operating_point", "x"])
    seen: dict[str, int] = {}

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(inputs=st.dictionaries(names, tensors(), max_size=4), name=st.sampled_from([MODEL, MODEL, "other", ""]),
           version=st.none() | st.sampled_from([1, 2, 9, 0, -1, 2**62]),
           signature=st.sampled_from(["", "serving_default", "serve_pixels"]),
           output_filter=st.lists(st.sampled_from(["probabilities", "embedding", "logits"]), max_size=2))
    def fuzz(inputs, name, version, signature, output_filter):
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = name, signature
        if version is not None:
            request.model_spec.version.value = version
        request.output_filter.extend(output_filter)
        for key, tensor in inputs.items():
            request.inputs[key].CopyFrom(tensor)
        try:
            stub.Predict(request, timeout=60)
            seen["OK"] = seen.get("OK", 0) + 1
        except grpc.RpcError as err:
            assert err.code() in client_codes and err.details(), (err.code(), err.details(), request)
            seen[err.code().name] = seen.get(err.code().name, 0) + 1

    fuzz()
    assert seen.get("INVALID_ARGUMENT", 0) > 0 and sum(seen.values()) == 150
    assert stub.Predict(predict_request([jpegs[0]]), timeout=60).outputs["probabilities"].tensor_shape.dim[0].size == 1
