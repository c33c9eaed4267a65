"""CAA end to end: kakuin's VA asks a real BIND 9 on loopback (tests/bind.py).

BIND here is an authoritative, non-validating server used as the VA's resolver,
so these tests run with ``va.dnssec = false`` (answers are relied on without
DNSSEC proof); the DNSSEC rules are tested through Unbound in test_dnssec_*.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from kakuin.clock import SystemClock
from kakuin.config import VAConfig
from kakuin.va import ValidationAuthority, ValidationRecord
from tests.bind import BindServer, SilentUDP, bind  # noqa: F401

ACCT = "https://acme.kakuin.example/acme/acct/42"


def make_va(resolver: str, timeout: float = 3.0) -> ValidationAuthority:
    return ValidationAuthority(VAConfig(resolver=resolver, timeout_seconds=timeout,
                                                        dnssec=False),
                               SystemClock())


def check(va: ValidationAuthority, domain: str, *, wildcard: bool = False,
          account: str | None = ACCT, method: str | None = "http-01") -> ValidationRecord:
    return asyncio.run(va.check_caa(domain, account_uri=account, method=method,
                                    wildcard=wildcard))


@pytest.fixture(scope="module")
def va(bind: BindServer) -> ValidationAuthority:  # noqa: F811
    return make_va(bind.resolver)


def assert_refused(record: ValidationRecord) -> None:
    assert record.ok is False
    assert record.problem == "caa"
    assert record.error is not None and "338" in record.error


def test_issue_for_us_allows(va: ValidationAuthority) -> None:
    r = check(va, "caa-ok.test")
    assert r.ok and r.method == "caa" and r.problem is None and r.error is None
    assert r.observed["found_at"] == "caa-ok.test"
    assert r.observed["records"] == ['0 issue "kakuin.example"']
    assert r.observed["matched"] == '0 issue "kakuin.example"'
    json.dumps(r.observed)  # audit records are stored as JSON


def test_issue_for_other_ca_refuses(va: ValidationAuthority) -> None:
    r = check(va, "caa-other.test")
    assert_refused(r)
    assert "caa-other.test" in r.error and "other-ca.example" in r.error


def test_no_caa_anywhere_allows(va: ValidationAuthority) -> None:
    r = check(va, "www.test")
    assert r.ok and r.observed["found_at"] is None
    assert [(s["name"], s["rcode"]) for s in r.observed["trail"]] == [
        ("www.test", "NOERROR"), ("test", "NOERROR")]


def test_nxdomain_climbs_and_allows(va: ValidationAuthority) -> None:
    r = check(va, "no-such-name.test")
    assert r.ok
    assert r.observed["trail"][0] == {"name": "no-such-name.test", "rcode": "NXDOMAIN",
                                      "records": []}


def test_noerror_empty_answer_allows(va: ValidationAuthority) -> None:
    r = check(va, "nodata.test")
    assert r.ok and r.observed["trail"][0]["rcode"] == "NOERROR"


def test_parent_found_by_climbing(va: ValidationAuthority) -> None:
    r = check(va, "a.b.caa-other.test")
    assert_refused(r)
    assert r.observed["found_at"] == "caa-other.test"
    assert [s["name"] for s in r.observed["trail"]] == [
        "a.b.caa-other.test", "b.caa-other.test", "caa-other.test"]
    assert check(va, "deep.sub.caa-ok.test").ok


def test_closest_rrset_wins_over_parent(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("child.caa-other.test", "CAA", '0 issue "kakuin.example"')
    r = check(va, "child.caa-other.test")
    assert r.ok and r.observed["found_at"] == "child.caa-other.test"


def test_cname_to_name_with_caa(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("cname-target-other.test", "CAA", '0 issue "other-ca.example"')
    bind.add("cname-other.test", "CNAME", "cname-target-other.test.")
    r = check(va, "cname-other.test")
    assert_refused(r)
    assert r.observed["trail"][0]["chain"] == ["cname-other.test -> cname-target-other.test"]
    bind.add("cname-target-ok.test", "CAA", '0 issue "kakuin.example"')
    bind.add("cname-ok.test", "CNAME", "cname-target-ok.test.")
    assert check(va, "cname-ok.test").ok


def test_critical_unknown_tag_refuses(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("critical.test", "CAA", '0 issue "kakuin.example"')
    bind.add("critical.test", "CAA", '128 tbs "Unknown"')
    r = check(va, "critical.test")
    assert_refused(r)
    assert "critical" in r.error


def test_issuewild_for_wildcard(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("wild.test", "CAA", '0 issue "other-ca.example"')
    bind.add("wild.test", "CAA", '0 issuewild "kakuin.example"')
    assert check(va, "wild.test", wildcard=True).ok
    assert check(va, "*.wild.test", wildcard=False).ok  # the "*." prefix means wildcard
    assert_refused(check(va, "wild.test", wildcard=False))


def test_accounturi(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("acct.test", "CAA", f'0 issue "kakuin.example; accounturi={ACCT}"')
    assert check(va, "acct.test").ok
    r = check(va, "acct.test", account="https://acme.kakuin.example/acme/acct/43")
    assert_refused(r)
    assert "accounturi" in r.error


def test_validationmethods(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("methods.test", "CAA", '0 issue "kakuin.example; validationmethods=dns-01"')
    assert check(va, "methods.test", method="dns-01").ok
    r = check(va, "methods.test", method="http-01")
    assert_refused(r)
    assert "validationmethods" in r.error


def test_iodef_reported(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("iodef.test", "CAA", '0 issue "other-ca.example"')
    bind.add("iodef.test", "CAA", '0 iodef "mailto:security@iodef.test"')
    r = check(va, "iodef.test")
    assert_refused(r)
    assert r.observed["iodef"] == ["mailto:security@iodef.test"]


def test_servfail_refuses(va: ValidationAuthority) -> None:
    r = check(va, "www.servfail.test")
    assert_refused(r)
    assert "CAA lookup failed" in r.error and "SERVFAIL" in r.error
    assert r.observed["trail"] == [{"name": "www.servfail.test", "error": "SERVFAIL"}]


def test_refused_refuses(va: ValidationAuthority) -> None:
    # A name outside every zone of this authoritative-only server: REFUSED.
    r = check(va, "example.com")
    assert_refused(r)
    assert "REFUSED" in r.error


def test_timeout_refuses() -> None:
    with SilentUDP() as dead:
        r = check(make_va(f"{dead.address}:{dead.port}", timeout=0.5), "caa-ok.test")
    assert_refused(r)
    assert "timeout" in r.error
