"""Schemathesis over the app's own OpenAPI schema, against the real server over HTTP:
every route, positive and negative cases, a fixed seed and a bounded number of cases per
route (CI). No response may be a 5xx, and every error is in its route's protocol format.
"""

from __future__ import annotations

import hypothesis
import schemathesis
from hypothesis import HealthCheck, settings

from mlxserve.api.app import build_app
from mlxserve.config import ServerConfig
from robust_support import assert_error_format

CASES_PER_ROUTE = 80
# Routes whose answers are not JSON (and never errors): checked for status only.
NOT_JSON = ("/metrics",)


def _app_schema() -> dict:
    """The schema of the app exactly as served (routes come from build_app)."""

    class NoEngine:  # the schema is built from the routes; nothing is started
        pass

    return build_app(NoEngine(), ServerConfig()).openapi()


schema = schemathesis.openapi.from_dict(_app_schema())


@schema.parametrize()
@hypothesis.seed(20261201)
@settings(max_examples=CASES_PER_ROUTE, deadline=None, derandomize=False, database=None,
          suppress_health_check=list(HealthCheck), print_blob=True)
def test_no_5xx_and_errors_in_protocol_format(case, robust_server):
    response = case.call(base_url=robust_server.base_url, timeout=120)
    assert response.status_code < 500, (case.path, case.body, response.text[:500])
    if response.status_code >= 400 and case.path not in NOT_JSON:
        assert_error_format(case.path, response)
