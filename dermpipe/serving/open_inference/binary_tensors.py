"""Triton's binary tensor data extension of the Open Inference Protocol (KServe v2), as tritonclient speaks it.

A request or reply body is a JSON header followed by raw tensor bytes; the header's length is the
Inference-Header-Content-Length HTTP header, and each binary tensor says its size in parameters.binary_data_size,
the tensors' bytes following in the order the tensors are listed. A BYTES tensor is serialized element by element
as a 4-byte little-endian length and then the element's bytes; fixed-size types are their little-endian values in
row-major order. Every framing defect (a header length past the body, sizes that do not add up, a length prefix
running past its tensor) is the client's: a ServingError(400) that names the tensor and the numbers."""

import json
import struct

import numpy as np

from dermpipe.serving.settings import ServingError

HEADER = "Inference-Header-Content-Length"
# the fixed-size datatypes dermpipe reads or writes, little-endian as the extension specifies
NUMPY_TYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8")}


def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """(the JSON header as a dict, the binary bytes after it) of a request body."""
    if header_length is None:
        return _json(body, "request body"), b""
    try:
        length = int(header_length)
    except ValueError:
        raise ServingError(400, f"{HEADER} {header_length!r} is not a number; it must be the byte length of the "
                                "JSON header at the start of the body") from None
    if not 0 < length <= len(body):
        raise ServingError(400, f"{HEADER} is {length} but the body has {len(body)} bytes; it must be the byte "
                                "length of the JSON header at the start of the body")
    return _json(body[:length], f"the first {length} bytes (the JSON header)"), body[length:]


def _json(data: bytes, what: str) -> dict:
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ServingError(400, f"{what}: not JSON ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(parsed, dict):
        raise ServingError(400, f"{what}: expected a JSON object, got {type(parsed).__name__}")
    return parsed


def take_binary(binary: bytes, sizes: list[tuple[str, int]]) -> dict[str, bytes]:
    """Cut the binary part into each tensor's bytes: sizes are (tensor name, binary_data_size) in request order."""
    declared = sum(size for _, size in sizes)
    if declared != len(binary):
        listed = ", ".join(f"{name}: {size}" for name, size in sizes) or "none"
        raise ServingError(400, f"the binary part of the body has {len(binary)} bytes but the inputs' "
                                f"binary_data_size add up to {declared} ({listed})")
    parts, offset = {}, 0
    for name, size in sizes:
        parts[name], offset = binary[offset:offset + size], offset + size
    return parts


def deserialize_bytes(raw: bytes, count: int, name: str) -> list[bytes]:
    """A BYTES tensor's elements: `count` times a 4-byte little-endian length and that many bytes, nothing after."""
    elements, offset = [], 0
    for i in range(count):
        if offset + 4 > len(raw):
            raise ServingError(400, f"input {name}: element {i} of {count}: its 4-byte length prefix starts at byte "
                                    f"{offset} of a {len(raw)}-byte tensor")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ServingError(400, f"input {name}: element {i} declares {length} bytes but only "
                                    f"{len(raw) - offset} remain in the tensor's binary data")
        elements.append(raw[offset:offset + length])
        offset += length
    if offset != len(raw):
        raise ServingError(400, f"input {name}: {len(raw) - offset} bytes left over after its {count} elements; "
                                "the shape and the binary data disagree")
    return elements


def deserialize_fixed(raw: bytes, datatype: str, count: int, name: str) -> np.ndarray:
    """A fixed-size tensor's `count` values from its little-endian bytes."""
    dtype = NUMPY_TYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise ServingError(400, f"input {name}: {len(raw)} bytes of binary data for {count} {datatype} values; "
                                f"expected {count * dtype.itemsize}")
    return np.frombuffer(raw, dtype=dtype)


def encode_reply(header: dict, chunks: list[bytes]) -> tuple[bytes, int]:
    """(body, JSON header length) of a reply whose outputs carry binary data in `chunks`, in output order."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([head, *chunks]), len(head)
