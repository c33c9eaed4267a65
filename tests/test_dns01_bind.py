"""dns-01 (RFC 8555 §8.4) and the VA resolver against a real BIND 9 on loopback.

BIND is authoritative-only and does not validate: ``va.dnssec = false`` here (the
DNSSEC rules are tested through Unbound in test_dnssec_*.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

import pytest

from kakuin.clock import SystemClock
from kakuin.config import VAConfig
from kakuin.va import ValidationAuthority
from kakuin.va.dns01 import expected_txt, validation_name
from kakuin.va.resolver import LookupFailed, parse_resolver
from tests.bind import BindServer, SilentUDP, bind  # noqa: F401

KEY_AUTHZ = ("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
             ".nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ")


@pytest.fixture(scope="module")
def va(bind: BindServer) -> ValidationAuthority:  # noqa: F811
    return ValidationAuthority(VAConfig(resolver=bind.resolver, timeout_seconds=3, dnssec=False),
                               SystemClock())


def validate(va: ValidationAuthority, domain: str, key_authz: str = KEY_AUTHZ):
    return asyncio.run(va.validate_dns01(domain, key_authz))


def test_expected_txt_is_unpadded_base64url_sha256() -> None:
    digest = hashlib.sha256(KEY_AUTHZ.encode()).digest()
    assert expected_txt(KEY_AUTHZ) == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert "=" not in expected_txt(KEY_AUTHZ) and len(expected_txt(KEY_AUTHZ)) == 43


def test_validation_name() -> None:
    assert validation_name("www.example.org") == "_acme-challenge.www.example.org"
    assert validation_name("*.example.org") == "_acme-challenge.example.org"


def test_txt_present(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("_acme-challenge.dns01-ok.test", "TXT", '"unrelated"')
    bind.add("_acme-challenge.dns01-ok.test", "TXT", f'"{expected_txt(KEY_AUTHZ)}"')
    r = validate(va, "dns01-ok.test")
    assert r.ok and r.method == "dns-01" and r.domain == "dns01-ok.test"
    assert sorted(r.observed["txt"]) == sorted(["unrelated", expected_txt(KEY_AUTHZ)])
    assert r.error is None and r.problem is None
    json.dumps(r.observed)  # audit records are stored as JSON


def test_wildcard_validates_base_domain(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("_acme-challenge.dns01-wild.test", "TXT", f'"{expected_txt(KEY_AUTHZ)}"')
    r = validate(va, "*.dns01-wild.test")
    assert r.ok and r.domain == "dns01-wild.test"
    assert r.observed["name"] == "_acme-challenge.dns01-wild.test"


def test_wrong_value(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("_acme-challenge.dns01-wrong.test", "TXT", f'"{expected_txt("other.thumbprint")}"')
    r = validate(va, "dns01-wrong.test")
    assert not r.ok and r.problem == "unauthorized"
    assert "Incorrect TXT record" in r.error
    assert r.observed["txt"] == [expected_txt("other.thumbprint")]


def test_missing(va: ValidationAuthority) -> None:
    r = validate(va, "dns01-missing.test")
    assert not r.ok and r.problem == "unauthorized"
    assert "No TXT record found at _acme-challenge.dns01-missing.test" in r.error
    assert r.observed["txt"] == [] and r.observed["rcode"] == "NXDOMAIN"


def test_cname_is_followed(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("delegated.test", "TXT", f'"{expected_txt(KEY_AUTHZ)}"')
    bind.add("_acme-challenge.dns01-cname.test", "CNAME", "delegated.test.")
    r = validate(va, "dns01-cname.test")
    assert r.ok
    assert r.observed["chain"] == ["_acme-challenge.dns01-cname.test -> delegated.test"]


def test_split_txt_strings_are_joined(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    value = expected_txt(KEY_AUTHZ)
    bind.add("_acme-challenge.dns01-split.test", "TXT", f'"{value[:20]}" "{value[20:]}"')
    assert validate(va, "dns01-split.test").ok


def test_record_replaced_at_runtime(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    name = "_acme-challenge.dns01-replace.test"
    bind.add(name, "TXT", '"old"')
    assert not validate(va, "dns01-replace.test").ok
    bind.replace(name, "TXT", f'"{expected_txt(KEY_AUTHZ)}"')
    assert validate(va, "dns01-replace.test").ok
    bind.delete(name, "TXT")
    assert validate(va, "dns01-replace.test").observed["txt"] == []


def test_servfail_is_a_dns_problem(va: ValidationAuthority) -> None:
    r = validate(va, "www.servfail.test")
    assert not r.ok and r.problem == "dns" and "SERVFAIL" in r.error


def test_timeout_is_a_dns_problem() -> None:
    with SilentUDP() as dead:
        va = ValidationAuthority(VAConfig(resolver=f"127.0.0.1:{dead.port}", timeout_seconds=0.5,
                                          dnssec=False),
                                 SystemClock())
        r = validate(va, "dns01-ok.test")
    assert not r.ok and r.problem == "dns" and "timeout" in r.error


# -- resolve_addresses (shared with http-01 and tls-alpn-01) ---------------------

def test_resolve_addresses(va: ValidationAuthority) -> None:
    assert asyncio.run(va.resolve_addresses("www.test")) == ["127.0.0.1"]
    assert asyncio.run(va.resolve_addresses("v6only.test")) == ["::1"]
    assert asyncio.run(va.resolve_addresses("no-such-name.test")) == []


def test_resolve_addresses_a_then_aaaa(bind: BindServer, va: ValidationAuthority) -> None:  # noqa: F811
    bind.add("dual.test", "AAAA", "::1")
    bind.add("dual.test", "A", "127.0.0.2")
    assert asyncio.run(va.resolve_addresses("dual.test")) == ["127.0.0.2", "::1"]


def test_resolve_addresses_failure_raises(va: ValidationAuthority) -> None:
    with pytest.raises(LookupFailed, match="SERVFAIL"):
        asyncio.run(va.resolve_addresses("www.servfail.test"))


def test_address_override_wins(bind: BindServer) -> None:  # noqa: F811
    va = ValidationAuthority(VAConfig(resolver=bind.resolver, dnssec=False), SystemClock(),
                             address_override=lambda d: ["127.0.0.9"])
    assert asyncio.run(va.resolve_addresses("www.test")) == ["127.0.0.9"]


def test_no_search_domains_are_applied(va: ValidationAuthority) -> None:
    # "www" alone must be asked as "www." (which this server refuses), never "www.test.".
    with pytest.raises(LookupFailed, match="REFUSED"):
        asyncio.run(va.resolver.lookup("www", "A"))


def test_queries_carry_edns_do_bit(va: ValidationAuthority) -> None:
    import dns.flags

    inner = va.resolver._inner
    assert inner.edns == 0 and inner.ednsflags & dns.flags.DO


@pytest.mark.parametrize(("value", "parsed"), [
    ("", None),
    ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("127.0.0.1", ("127.0.0.1", 53)),
    ("[::1]:5353", ("::1", 5353)),
    ("::1", ("::1", 53)),
])
def test_parse_resolver(value: str, parsed: tuple | None) -> None:
    assert parse_resolver(value) == parsed


@pytest.mark.parametrize("value", ["127.0.0.1:0", "127.0.0.1:x", ":53"])
def test_parse_resolver_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_resolver(value)
