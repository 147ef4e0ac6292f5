"""Schemathesis fuzzes every operation of `dermpipe serve`'s OpenAPI schema: whatever it sends, never a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from conftest import MODEL
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

pytestmark = pytest.mark.slow  # shares the session's server with test_server.py


def test_no_generated_request_gets_a_server_error(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    sent: dict[int, int] = {}

    for operation in operations:
        # valid and invalid data, for the served model's name (reaches the handlers) and for generated names
        variants = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None)]
        if "{name}" in operation.path:
            variants += [(GenerationMode.POSITIVE, {"name": MODEL}), (GenerationMode.NEGATIVE, {"name": MODEL})]
        for mode, path_parameters in variants:
            @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(mode, path_parameters=path_parameters))
            def fuzz(case):
                response = case.call(base_url=server.url, timeout=60)
                sent[response.status_code] = sent.get(response.status_code, 0) + 1
                assert response.status_code < 500, (f"{case.method} {case.formatted_path}: {response.status_code} "
                                                     f"{response.text[:500]}")
                if response.status_code >= 400:
                    assert response.json().get("error") or response.json().get("detail"), response.text

            try:
                fuzz()
            except Unsatisfiable:  # an operation without parameters or body has no invalid variant
                assert mode == GenerationMode.NEGATIVE, operation.path
    assert sum(sent.values()) >= 20 * len(operations)
    assert sum(n for code, n in sent.items() if 400 <= code < 500) > 0 and sent.get(200, 0) > 0
    assert server.get("/healthz").status_code == 200


def test_fuzzed_binary_framing_gets_client_errors_never_a_server_error(server, jpegs):
    """Triton's binary tensor data framing, fuzzed: header lengths past or inside the body, binary_data_size values
    that disagree with the body, length prefixes that overrun their tensor; every answer is 200 or a 4xx with an
    error, and the server keeps answering."""
    import json
    import struct

    from hypothesis import strategies as st

    image = jpegs[0]
    seen: dict[int, int] = {}

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(prefix=st.integers(0, 2**32 - 1) | st.just(len(image)), size_delta=st.integers(-12, 12),
           header_delta=st.integers(-40, 40) | st.just(0), shape=st.integers(0, 3), tail=st.binary(max_size=16))
    def fuzz(prefix, size_delta, header_delta, shape, tail):
        binary = struct.pack("<I", prefix) + image + tail
        head = json.dumps({"inputs": [{"name": "image_bytes", "shape": [shape], "datatype": "BYTES",
                                       "parameters": {"binary_data_size": len(binary) + size_delta}}]}).encode()
        response = server.post(f"/v2/models/{MODEL}/infer", data=head + binary,
                               headers={"Inference-Header-Content-Length": str(len(head) + header_delta)})
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text[:300]
        if response.status_code != 200:
            assert response.json()["error"], response.text

    fuzz()
    assert sum(n for code, n in seen.items() if 400 <= code < 500) > 30, seen
    assert server.get("/v2/health/live").json() == {"live": True}
