"""The gRPC Predict inputs' TensorProto checks (dermpipe.serving.grpc_server.request_values): declared shapes are
checked before any tensor is read, and the values present must match them."""

from __future__ import annotations

import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from dermpipe.serving.grpc_server import request_values, requested_operating_point
from dermpipe.serving.settings import ServingError


def proto(dtype: int, dims: list[int], strings=(), floats=(), content=b"", unknown_rank=False):
    tensor = tensor_pb2.TensorProto(dtype=dtype, string_val=list(strings), float_val=list(floats),
                                    tensor_content=content)
    tensor.tensor_shape.unknown_rank = unknown_rank
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    return tensor


def images(n: int, declared: int | None = None):
    return proto(types_pb2.DT_STRING, [n if declared is None else declared], strings=[b"jpeg"] * n)


def test_well_formed_inputs_give_one_value_per_image():
    ages = tf.make_tensor_proto([40.0, 55.0])  # tensor_content, as make_tensor_proto writes floats
    values = request_values({"image_bytes": images(2), "age_approx": ages,
                             "sex": proto(types_pb2.DT_STRING, [2], strings=[b"male", b"female"])}, 4)
    assert values == {"image_bytes": [b"jpeg", b"jpeg"], "age_approx": [40.0, 55.0], "sex": [b"male", b"female"]}
    assert request_values({"image_bytes": images(1),
                           "age_approx": proto(types_pb2.DT_FLOAT, [1], floats=[30.0])}, 4)["age_approx"] == [30.0]


@pytest.mark.parametrize("inputs, status, fragment", [
    # a 20-byte message declaring 10**12 elements: refused from its shape, never filled out to it
    ({"image_bytes": images(1, declared=10**12)}, 413, "1000000000000 images in one request; the limit is 4"),
    ({"image_bytes": images(1), "sex": proto(types_pb2.DT_STRING, [10**12], strings=[b"male"])}, 400,
     "input sex: 1000000000000 values for 1 images"),
    ({"image_bytes": images(1, declared=-3)}, 400, "input image_bytes: shape [-3]"),
    ({"image_bytes": proto(types_pb2.DT_STRING, [], strings=[b"jpeg"], unknown_rank=True)}, 400, "shape unknown"),
    ({"image_bytes": images(1, declared=3)}, 400, "1 values in a tensor of 3 elements"),  # TF would copy the last
    ({"image_bytes": images(3, declared=1)}, 400, "3 values in a tensor of 1 elements"),
    ({"image_bytes": proto(types_pb2.DT_STRING, [2])}, 400, "0 values in a tensor of 2 elements"),
    ({"image_bytes": images(1), "age_approx": proto(types_pb2.DT_FLOAT, [1], content=b"\x00\x00")}, 400,
     "0 values in a tensor of 1 elements"),
    ({"image_bytes": images(1), "age_approx": proto(types_pb2.DT_FLOAT, [1], content=b"\x00" * 6)}, 400,
     "input age_approx: not a readable TensorProto"),
    ({"image_bytes": images(0)}, 400, "no images"),
])
def test_malformed_tensors_are_refused_with_the_input_named(inputs, status, fragment):
    with pytest.raises(ServingError) as refused:
        request_values(inputs, max_instances=4)
    assert refused.value.status == status and fragment in refused.value.message, refused.value.message


def test_the_operating_point_input_is_one_declared_and_present_string():
    named = proto(types_pb2.DT_STRING, [], strings=[b"melanoma_sens90"])  # a scalar, as make_tensor_proto("x")
    assert requested_operating_point({"operating_point": named}) == "melanoma_sens90"
    assert requested_operating_point({}) is None
    for bad in (proto(types_pb2.DT_STRING, [10**12], strings=[b"x"]), proto(types_pb2.DT_STRING, [1]),
                proto(types_pb2.DT_STRING, [-1], strings=[b"x"]), proto(types_pb2.DT_FLOAT, [1], floats=[1.0])):
        with pytest.raises(ServingError, match="operating_point") as refused:
            requested_operating_point({"operating_point": bad})
        assert refused.value.status == 400
