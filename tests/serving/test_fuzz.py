"""Schema fuzzing of the live OpenAPI document: whatever a client sends, never a 500.

Every operation gets schema-conforming (positive) and schema-violating (negative) requests from
schemathesis, a few dozen in all, so this stays a default test; the test limits of the served app
keep every accepted generation tiny. Responses must also match the documented status codes,
content types and schemas.

(schemathesis' own pytest integration, ``from_fixture``, relies on pytest internals that pytest 9
removed, so the operations' Hypothesis strategies are driven directly.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


@schemathesis.check
def no_server_error(ctx, response, case):
    """``not_a_server_error``, except the two documented 5xx: 503 (queue full) and 504 (a fuzzed
    ``timeout_s`` so small that the request cannot finish)."""
    if response.status_code in (503, 504):
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 12


@pytest.fixture(scope="module")
def operations(served):
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    found = {f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in schema.get_all_operations())}
    assert set(WITH_INPUT) <= set(found)
    return found


WITH_INPUT = ["GET /v1/models", "POST /v1/personalize", "POST /v1/personalize/upload", "POST /v1/generate"]
CASES = [(name, GenerationMode.POSITIVE) for name in ["GET /healthz", "GET /readyz", *WITH_INPUT]] + [
    (name, GenerationMode.NEGATIVE)
    for name in WITH_INPUT  # parameterless routes have nothing to violate
]


@pytest.mark.parametrize(("name", "mode"), CASES, ids=lambda v: str(v))
def test_no_request_makes_the_server_fail(operations, served, name, mode):
    seen: list[int] = []

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(case=operations[name].as_strategy(mode))
    def run(case):
        response = case.call(base_url=served.url, headers=served.headers("fuzz"), timeout=60)
        seen.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    run()
    assert seen and all(status < 500 or status in (503, 504) for status in seen), seen
