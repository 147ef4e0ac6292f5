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
