"""Schemathesis against the HTTP API's own OpenAPI schema: requests generated from the schema
(and requests that break it) never get a server error, and every response matches the schema."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(searcher):
    from search.server import create_app

    return schemathesis.openapi.from_asgi("/openapi.json", create_app(searcher))


def test_every_request_the_schema_allows_gets_an_answer_that_matches_it(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 4
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            # Blank text (whitespace or the separators Python counts as such) is refused with a 422
            # the schema cannot foresee, so "every schema-valid request is accepted" is not checked.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
