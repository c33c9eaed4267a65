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


def test_answers_kept_for_their_ttl_and_failures_never(bind: BindServer) -> None:  # noqa: F811
    """A CAA answer is kept for its TTL (capped by va.dns_cache_seconds) and
    marked as kept in its evidence; with the cache off a change shows at once.
    TXT is never kept. Uses its own name so other tests see the zone as written."""
    cached = ValidationAuthority(VAConfig(resolver=bind.resolver, timeout_seconds=3.0, dnssec=False,
                                          dns_cache_seconds=300), SystemClock())
    fresh = ValidationAuthority(VAConfig(resolver=bind.resolver, timeout_seconds=3.0, dnssec=False,
                                         dns_cache_seconds=0), SystemClock())
    bind.add("kept.test", "CAA", '0 issue "kakuin.example"', ttl=120)
    bind.add("kept.test", "TXT", '"one"', ttl=120)

    async def caa(va: ValidationAuthority) -> tuple[list[str], dict]:
        r = await va.resolver.lookup("kept.test", "CAA")
        return sorted(rd.to_text() for rd in r.records), r.evidence

    async def txt(va: ValidationAuthority) -> list[str]:
        return [rd.to_text() for rd in (await va.resolver.lookup("kept.test", "TXT")).records]

    try:
        first, ev = asyncio.run(caa(cached))
        assert first == ['0 issue "kakuin.example"'] and not ev.get("cached")
        assert asyncio.run(txt(cached)) == ['"one"']
        bind.replace("kept.test", "CAA", '0 issue "other-ca.example"', ttl=120)
        bind.replace("kept.test", "TXT", '"two"', ttl=120)
        again, ev = asyncio.run(caa(cached))
        assert again == first and ev.get("cached") is True  # within the TTL: the kept answer
        assert asyncio.run(txt(cached)) == ['"two"']  # TXT: always asked afresh
        assert asyncio.run(caa(fresh))[0] == ['0 issue "other-ca.example"']
        # A negative answer is kept for the SOA's negative TTL (here the zone's 60 s).
        r = asyncio.run(cached.resolver.lookup("nothing-here.kept.test", "CAA"))
        assert r.rcode == "NXDOMAIN"
        assert asyncio.run(cached.resolver.lookup("nothing-here.kept.test", "CAA")).evidence.get("cached")
    finally:
        bind.delete("kept.test")


def test_cache_ttl_rules() -> None:
    import dns.message
    import dns.rrset

    from kakuin.va.resolver import AnswerCache, LookupResult, cache_ttl

    q = dns.message.make_query("a.example.", "CAA")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("a.example.", 30, "IN", "CNAME", "b.example."))
    r.answer.append(dns.rrset.from_text("b.example.", 300, "IN", "CAA", '0 issue "x"'))
    assert cache_ttl(r) == 30  # the shortest link of the chain
    neg = dns.message.make_response(q)
    neg.set_rcode(dns.rcode.NXDOMAIN)
    neg.authority.append(dns.rrset.from_text("example.", 900, "IN", "SOA", "ns. h. 1 2 3 4 120"))
    assert cache_ttl(neg) == 120  # RFC 2308: min(SOA TTL, MINIMUM)
    assert cache_ttl(dns.message.make_response(q)) is None  # NODATA without SOA: not kept
    c = AnswerCache(max_seconds=10, size=2)
    res = LookupResult("a.example", "CAA", "NOERROR")
    c.put(res, 0)
    assert c.get("a.example", "CAA") is None  # TTL 0: never kept
    c.put(res, 3600)
    assert c.get("a.example", "CAA") is res
    off = AnswerCache(max_seconds=0)
    off.put(res, 3600)
    assert off.get("a.example", "CAA") is None
