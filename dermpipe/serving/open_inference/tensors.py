"""Open Inference Protocol (v2) tensors to model input and model output to v2 tensors.

Inputs, each 1-D with one element per image:
    image_bytes          BYTES [N]  encoded JPEG/PNG: raw bytes as binary data, or base64 strings in JSON
    age_approx           FP32 [N]   optional; NaN or a negative value means unknown (JSON has no NaN: send -1)
    sex                  BYTES [N]  optional; "" means unknown
    anatom_site_general  BYTES [N]  optional; "" means unknown
    lesion_id, patient_id BYTES [N] optional grouping ids; logged for retraining on feedback, not model inputs
An input left out means unknown for every image. A model without metadata inputs ignores the metadata for the
prediction; the prediction log still records it. Outputs: probabilities FP32 [N, 8] and embedding FP32 [N, D], and,
for a version with clinical.json, decision BYTES [N], decision_reason BYTES [N], operating_point BYTES [N],
melanoma_threshold FP32 [N] and ood_score FP32 [N]. The request's parameters.operating_point names another stored
operating point."""

import base64
import binascii
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from dermpipe.serving.images import GROUPING_FIELDS
from dermpipe.serving.model_io import CLINICAL_OUTPUTS, IMAGE_INPUT, OUTPUTS, image_metadata
from dermpipe.serving.open_inference.binary_tensors import (
    NUMPY_TYPES,
    deserialize_bytes,
    deserialize_fixed,
    take_binary,
)
from dermpipe.serving.schemas import V2InferRequest, V2Tensor
from dermpipe.serving.settings import ServingError

INPUT_TYPES = {IMAGE_INPUT: "BYTES", "age_approx": "FP32", "sex": "BYTES", "anatom_site_general": "BYTES"}
GROUPING_TYPES = dict.fromkeys(GROUPING_FIELDS, "BYTES")  # optional, logged only (not model inputs)
ACCEPTED_TYPES = INPUT_TYPES | GROUPING_TYPES


@dataclass
class InferInputs:
    images: list[bytes]
    metas: list[dict]
    outputs: list[tuple[str, bool]]  # (output name, as binary data), in reply order
    request_id: str | None
    operating_point: str | None = None


def parse_infer(header: dict, binary: bytes, max_instances: int, clinical: bool = False) -> InferInputs:
    """The images, checked metadata and wanted outputs of a v2 infer request (JSON header + binary part)."""
    try:
        request = V2InferRequest.model_validate(header)
    except ValidationError as err:
        first = err.errors()[0]
        raise ServingError(400, f"infer request: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    tensors = _check_names(request.inputs)
    count = _count(tensors[IMAGE_INPUT])
    if count == 0:
        raise ServingError(400, f"input {IMAGE_INPUT}: no images (shape {tensors[IMAGE_INPUT].shape})")
    if count > max_instances:
        raise ServingError(413, f"{count} images in one request; the limit is {max_instances} (--max-instances): "
                                "split the request")
    sizes = [(t.name, _binary_size(t)) for t in request.inputs if (t.parameters or {}).get("binary_data_size")
             is not None]
    parts = take_binary(binary, sizes)
    values = {name: _values(tensor, count, parts.get(name)) for name, tensor in tensors.items()}
    images = [_image(value, i, name=IMAGE_INPUT, binary=IMAGE_INPUT in parts)
              for i, value in enumerate(values[IMAGE_INPUT])]
    metas = [image_metadata(values, i) for i in range(count)]
    point = (request.parameters or {}).get("operating_point")
    if point is not None and not isinstance(point, str):
        raise ServingError(400, f"parameters.operating_point: {point!r}; expected the name of a stored operating "
                                "point, e.g. \"melanoma_sens95\"")
    return InferInputs(images, metas, _outputs(request, clinical), request.id, point)


def _check_names(inputs: list[V2Tensor]) -> dict[str, V2Tensor]:
    tensors: dict[str, V2Tensor] = {}
    for tensor in inputs:
        if tensor.name not in ACCEPTED_TYPES:
            raise ServingError(400, f"input {tensor.name!r} is not an input of this model; inputs: "
                                    f"{', '.join(f'{k} {v}' for k, v in ACCEPTED_TYPES.items())}")
        if tensor.name in tensors:
            raise ServingError(400, f"input {tensor.name} is given twice")
        if tensor.datatype != ACCEPTED_TYPES[tensor.name]:
            raise ServingError(400, f"input {tensor.name}: datatype {tensor.datatype}; expected "
                                    f"{ACCEPTED_TYPES[tensor.name]}")
        tensors[tensor.name] = tensor
    if IMAGE_INPUT not in tensors:
        raise ServingError(400, f"no {IMAGE_INPUT} input: send the encoded images as a BYTES tensor of shape [N]")
    count = _count(tensors[IMAGE_INPUT])
    for tensor in tensors.values():
        if _count(tensor) != count:
            raise ServingError(400, f"input {tensor.name}: shape {tensor.shape}; expected [{count}], one value "
                                    f"per image")
    return tensors


def _count(tensor: V2Tensor) -> int:
    if len(tensor.shape) != 1 or tensor.shape[0] < 0:
        raise ServingError(400, f"input {tensor.name}: shape {tensor.shape}; expected [N], one element per image")
    return tensor.shape[0]


def _binary_size(tensor: V2Tensor) -> int:
    size = (tensor.parameters or {})["binary_data_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ServingError(400, f"input {tensor.name}: binary_data_size {size!r} is not a byte count")
    return size


def _values(tensor: V2Tensor, count: int, raw: bytes | None) -> list:
    """The tensor's `count` elements: bytes for BYTES, floats for FP32."""
    if raw is not None:
        if tensor.data is not None:
            raise ServingError(400, f"input {tensor.name}: has both data and binary_data_size; send one")
        if tensor.datatype == "BYTES":
            return deserialize_bytes(raw, count, tensor.name)
        return deserialize_fixed(raw, tensor.datatype, count, tensor.name).tolist()
    if tensor.data is None:
        raise ServingError(400, f"input {tensor.name}: no data; send data (JSON) or parameters.binary_data_size "
                                "(binary tensor data extension)")
    data = _flatten(tensor.data)
    if len(data) != count:
        raise ServingError(400, f"input {tensor.name}: {len(data)} values for shape {tensor.shape}")
    return [_json_element(tensor, value, i) for i, value in enumerate(data)]


def _flatten(data: list) -> list:
    """Row-major elements of JSON data, nested or flat (the protocol allows both)."""
    flat: list = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _json_element(tensor: V2Tensor, value, i: int):
    if tensor.datatype == "BYTES":
        if not isinstance(value, str):
            raise ServingError(400, f"input {tensor.name}: element {i} is {type(value).__name__}; BYTES in JSON "
                                    "are strings")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ServingError(400, f"input {tensor.name}: element {i} is {value!r}; expected a number")
    return float(value)


def _image(value, i: int, *, name: str, binary: bool) -> bytes:
    if binary:
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ServingError(400, f"input {name}: element {i} is not base64 ({err}); in JSON an image is its "
                                "base64 string") from None


def _outputs(request: V2InferRequest, clinical: bool) -> list[tuple[str, bool]]:
    default = (request.parameters or {}).get("binary_data_output", False) is True
    names = (*OUTPUTS, *CLINICAL_OUTPUTS) if clinical else OUTPUTS
    if not request.outputs:
        return [(name, default) for name in names]
    wanted = []
    for output in request.outputs:
        if output.name not in names:
            raise ServingError(400, f"output {output.name!r} is not an output of this model; outputs: "
                                    f"{', '.join(names)}")
        binary = (output.parameters or {}).get("binary_data", default)
        wanted.append((output.name, binary is True))
    return wanted


def output_tensors(arrays: dict[str, np.ndarray | list], wanted: list[tuple[str, bool]],
                   ) -> tuple[list[dict], list[bytes]]:
    """(the outputs' JSON, the binary chunks in output order): FP32 arrays, and BYTES lists of strings (binary data
    as Triton frames them: a 4-byte little-endian length before each element), each as binary data or JSON data."""
    tensors, chunks = [], []
    for name, binary in wanted:
        if CLINICAL_OUTPUTS.get(name) == "BYTES":
            texts = [str(v or "") for v in arrays[name]]
            tensor = {"name": name, "datatype": "BYTES", "shape": [len(texts)]}
            raw = b"".join(len(t.encode()).to_bytes(4, "little") + t.encode() for t in texts)
            data: list = texts
        else:
            values = [np.nan if v is None else v for v in arrays[name]] if isinstance(arrays[name], list) \
                else arrays[name]
            array = np.ascontiguousarray(values, dtype=NUMPY_TYPES["FP32"])
            tensor = {"name": name, "datatype": "FP32", "shape": list(array.shape)}
            raw, data = array.tobytes(), array.reshape(-1).tolist()
        if binary:
            chunks.append(raw)
            tensor["parameters"] = {"binary_data_size": len(raw)}
        else:
            tensor["data"] = data
        tensors.append(tensor)
    return tensors, chunks

