"""The validity schedule at its boundary dates, through an injected clock."""

from __future__ import annotations

import datetime as dt

import pytest

from kakuin.ca.issuer import IssueRequest
from kakuin.clock import UTC
from kakuin.errors import ValidityError
from kakuin.policy.validity import (
    OverLimit,
    dcv_reuse_days,
    decide_validity,
    max_tls_validity_days,
    period_days,
)
from tests.helpers import ec_key, ov_name

# The history the table keeps (to judge and reissue old certificates).
HISTORY = [
    (dt.datetime(2018, 2, 28, 23, 59, 59, tzinfo=UTC), 1185, 1185),
    (dt.datetime(2018, 3, 1, 0, 0, 0, tzinfo=UTC), 825, 825),
    (dt.datetime(2020, 8, 31, 23, 59, 59, tzinfo=UTC), 825, 825),
    (dt.datetime(2020, 9, 1, 0, 0, 0, tzinfo=UTC), 398, 825),
    (dt.datetime(2021, 9, 30, 23, 59, 59, tzinfo=UTC), 398, 825),
    (dt.datetime(2021, 10, 1, 0, 0, 0, tzinfo=UTC), 398, 398),
]
BOUNDARIES = [
    # (issuance moment, max days, DCV reuse days)
    (dt.datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC), 398, 398),
    (dt.datetime(2026, 3, 15, 0, 0, 0, tzinfo=UTC), 200, 200),
    (dt.datetime(2027, 3, 14, 23, 59, 59, tzinfo=UTC), 200, 200),
    (dt.datetime(2027, 3, 15, 0, 0, 0, tzinfo=UTC), 100, 100),
    (dt.datetime(2029, 3, 14, 23, 59, 59, tzinfo=UTC), 100, 100),
    (dt.datetime(2029, 3, 15, 0, 0, 0, tzinfo=UTC), 47, 10),
]


@pytest.mark.parametrize("at,max_days,reuse", HISTORY + BOUNDARIES)
def test_schedule_table(at: dt.datetime, max_days: int, reuse: int) -> None:
    assert max_tls_validity_days(at) == max_days
    assert dcv_reuse_days(at) == reuse


@pytest.mark.parametrize("at,max_days,reuse", BOUNDARIES)
def test_issued_certificate_is_one_day_under_the_limit(make_ctx, at, max_days, reuse) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(at)
    issued = ctx.issuance.issue(
        IssueRequest(
            profile="server-dv", public_key=ec_key().public_key(), subject=ov_name(), dns_names=("www.example.ac.jp",)
        )
    )
    c = issued.certificate
    # BR 6.3.2: inclusive count, notAfter - notBefore + 1 s.
    assert period_days(c.not_valid_before_utc, c.not_valid_after_utc) == max_days - 1
    assert c.not_valid_before_utc == at.replace(microsecond=0)


@pytest.mark.parametrize("at,max_days,reuse", BOUNDARIES)
def test_request_at_the_limit_is_accepted_and_one_over_is_shortened(make_ctx, at, max_days, reuse) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(at)
    ok = ctx.issuance.issue(
        IssueRequest(
            profile="server-dv",
            public_key=ec_key().public_key(),
            subject=ov_name(),
            dns_names=("www.example.ac.jp",),
            requested_days=max_days,
        )
    )
    assert period_days(ok.certificate.not_valid_before_utc, ok.certificate.not_valid_after_utc) == max_days
    assert ok.note is None
    over = ctx.issuance.issue(
        IssueRequest(
            profile="server-dv",
            public_key=ec_key().public_key(),
            subject=ov_name(),
            dns_names=("www.example.ac.jp",),
            requested_days=max_days + 1,
        )
    )
    assert period_days(over.certificate.not_valid_before_utc, over.certificate.not_valid_after_utc) == max_days - 1
    assert over.note and f"limit of {max_days} days" in over.note


def test_refuse_mode_refuses_and_stores_nothing(make_ctx) -> None:  # type: ignore[no-untyped-def]
    at = dt.datetime(2027, 3, 15, tzinfo=UTC)
    with pytest.raises(ValidityError) as e:
        decide_validity(
            now=at,
            limit_days=100,
            limit_months=None,
            requested_days=101,
            default_days=None,
            over_limit=OverLimit.REFUSE,
        )
    assert e.value.rule == "validity-max"
    assert "100 days" in e.value.message


def test_client_certificates_are_not_affected_by_the_tls_schedule(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(dt.datetime(2029, 6, 1, tzinfo=UTC))
    from tests.helpers import add_institution, rsa_key

    add_institution(ctx)
    issued = ctx.issuance.issue(
        IssueRequest(
            profile="client",
            public_key=rsa_key().public_key(),
            subject=ov_name(cn="Taro Suzuki"),
            institution="Example University",
        )
    )
    c = issued.certificate
    # 52 calendar months end 2033-09-30T23:59:59; like every limit, we stay one day under.
    assert c.not_valid_after_utc == dt.datetime(2033, 9, 29, 23, 59, 59, tzinfo=UTC)
