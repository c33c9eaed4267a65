"""schemathesis against /api/v1/openapi.json, in process (the ASGI app with an
officer's real client certificate presented through the TLS extension): no
server error, responses match the documented schemas, status codes and
content types. Bounded examples so it stays well under a minute."""

from __future__ import annotations

import datetime as dt

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from kakuin.clock import UTC
from kakuin.portal.app import create_portal_app
from kakuin.ra.services import RA
from tests.helpers import ec_key
from tests.portal_helpers import two_institutions, with_peer
from tests.ra_helpers import OP, server_fields, tsv

AT = dt.datetime(2025, 6, 2, tzinfo=UTC)


@pytest.fixture
def api_schema(make_ctx):  # type: ignore[no-untyped-def]
    ra = RA(make_ctx(AT))
    a, _b = two_institutions(ra)
    serial = ra.tsv.apply(tsv([server_fields(ec_key(ec.SECP384R1()))]), institution="Example University", actor=OP)
    ra.ctx.revocation.report(serial.results[0].serial, 4, reported_by="subscriber:taro@example.ac.jp")
    app = with_peer(create_portal_app(ra.ctx), a.pem)
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


def test_api_conforms(api_schema) -> None:  # type: ignore[no-untyped-def]
    # Driven through hypothesis directly (schemathesis' pytest plugin does not
    # load with this pytest): every operation, a bounded number of examples.
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert len(operations) >= 13  # every route (schemathesis leaves out the document itself)
    statuses: dict[str, set[int]] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call_and_validate(checks=CHECKS)
            statuses.setdefault(case.operation.label, set()).add(response.status_code)

        run()
    assert len(statuses) == len(operations), statuses
    # The reads answered for real, not only with refusals.
    for label in ("GET /api/v1/me", "GET /api/v1/stats", "GET /api/v1/eab", "GET /api/v1/revocation-requests"):
        assert 200 in statuses[label], statuses
    print(sorted((k, sorted(v)) for k, v in statuses.items()))
