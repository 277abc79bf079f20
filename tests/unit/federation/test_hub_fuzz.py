"""A bounded schemathesis run over the hub's OpenAPI schema: no input makes it answer 500.

Also checked: every status code, content type and body the hub answers with is
the one its schema documents.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taskorch_nb.federation.hub import create_app

APP = create_app(":memory:", rate_limit=None)
TOKEN = APP.state.store.issue_token("fuzzer")
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_no_input_makes_the_hub_fail(case: schemathesis.Case) -> None:
    headers = {} if case.path == "/v1/health" else {"Authorization": f"Bearer {TOKEN}"}
    response = case.call(headers=headers)
    case.validate_response(response, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance])
