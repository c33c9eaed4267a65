"""DNSSEC end to end (issue #8): the VA asks a validating Unbound, which resolves a
signed hierarchy served by BIND 9 (tests/dnssec_zones.py) from a local trust anchor.

CAA, dns-01 and the address lookups of http-01/tls-alpn-01 against: a signed zone
(secure), an unsigned delegation (insecure), a DS without a signed child and
expired signatures (bogus), servers that time out or answer REFUSED under
unsigned and signed delegations, our own resolver refusing or silent, a resolver
that does not validate, and one without Extended DNS Errors.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from kakuin.clock import SystemClock
from kakuin.config import VAConfig
from kakuin.va import ValidationAuthority, ValidationRecord
from kakuin.va.dns01 import expected_txt
from kakuin.va.dnssec import AddressRefused, checked_addresses
from tests.bind import BindServer, SilentUDP, Zone, free_port
from tests.dnssec_zones import hierarchy
from tests.unbound import UnboundServer

ACCT = "https://acme.kakuin.example/acme/acct/8"
KEY_AUTHZ = "dnssec-token.thumbprint-of-the-account-key"


@dataclass
class World:
    bind: BindServer
    unbound: UnboundServer
    stubs: dict[str, str]
    trust_anchor: str
    workdir: Path

    def va(self, *, resolver: str | None = None, dnssec: bool = True, timeout: float = 5.0,
           http01_port: int = 80) -> ValidationAuthority:
        cfg = VAConfig(resolver=resolver or self.unbound.resolver, timeout_seconds=timeout,
                       dnssec=dnssec, dnssec_retry_delay=0.2, http01_port=http01_port,
                       allow_private_targets=True)
        return ValidationAuthority(cfg, SystemClock())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("dnssec")
    txt = f'_acme-challenge.ok IN TXT "{expected_txt(KEY_AUTHZ)}"'
    with SilentUDP() as silent, BindServer(tmp / "refuser", [Zone("refuser.invalid.")]) as refuser:
        port = free_port()
        h = hierarchy(tmp / "zones", port, silent=f"127.0.0.1@{silent.port}",
                      refuser=f"127.0.0.1@{refuser.port}",
                      leaf_records=[txt, "alias IN CNAME ok.unsigned.test."])
        with BindServer(tmp / "bind", h.zones, port=port) as bind, UnboundServer(
                tmp / "unbound", h.stubs, h.trust_anchor,
                # Our own resolver refuses this name: a failure inside the CA.
                options='local-zone: "blocked.unsigned.test." refuse') as unbound:
            yield World(bind, unbound, h.stubs, h.trust_anchor, tmp)


def caa(va: ValidationAuthority, domain: str, method: str | None = "dns-01") -> ValidationRecord:
    return asyncio.run(va.check_caa(domain, account_uri=ACCT, method=method, wildcard=False))


def dns01(va: ValidationAuthority, domain: str) -> ValidationRecord:
    return asyncio.run(va.validate_dns01(domain, KEY_AUTHZ))


def assert_caa_refused(r: ValidationRecord, *words: str) -> None:
    assert r.ok is False and r.problem == "caa", r
    assert r.error is not None and "error 338" in r.error
    for w in words:
        assert w in r.error, r.error
    json.dumps(r.observed)


# -- CAA --------------------------------------------------------------------------

def test_caa_signed_zone_naming_us_is_secure(world: World) -> None:
    r = caa(world.va(), "ok.signed.test")
    assert r.ok and r.dnssec == "secure"
    assert r.observed["matched"] == '0 issue "kakuin.example"'
    assert r.observed["dnssec"]["lookups"][0]["ad"] is True
    json.dumps(r.observed)


def test_caa_signed_zone_naming_another_ca_refuses(world: World) -> None:
    r = caa(world.va(), "other.signed.test")
    assert_caa_refused(r, "other.signed.test", "other-ca.example")
    assert r.dnssec == "secure"


def test_caa_climb_through_secure_denials(world: World) -> None:
    r = caa(world.va(), "a.b.signed.test")
    assert r.ok and r.dnssec == "secure"
    assert [(s["name"], s["rcode"]) for s in r.observed["trail"]] == [
        ("a.b.signed.test", "NXDOMAIN"), ("b.signed.test", "NXDOMAIN"),
        ("signed.test", "NOERROR"), ("test", "NOERROR")]


def test_caa_unsigned_zone_is_insecure_by_ds_proof(world: World) -> None:
    r = caa(world.va(), "ok.unsigned.test")
    assert r.ok and r.dnssec == "insecure"
    proof = r.observed["dnssec"]["lookups"][0]["proof"][-1]
    assert proof["status"] == "insecure"
    assert proof["steps"][-1] == {"name": "unsigned.test", "type": "DS", "rcode": "NOERROR",
                                  "ad": True, "delegation": True}


def test_caa_cname_from_signed_to_unsigned_is_insecure(world: World) -> None:
    r = caa(world.va(), "alias.signed.test")
    assert r.ok and r.dnssec == "insecure"
    assert r.observed["trail"][0]["chain"] == ["alias.signed.test -> ok.unsigned.test"]


def test_caa_expired_signatures_are_bogus(world: World) -> None:
    r = caa(world.va(), "ok.expired.test")
    assert_caa_refused(r, "ok.expired.test", "bogus", "EDE 7")
    assert r.dnssec == "bogus"


def test_caa_ds_without_signed_child_is_bogus(world: World) -> None:
    r = caa(world.va(), "ok.dsonly.test")
    assert_caa_refused(r, "ok.dsonly.test", "bogus", "EDE 9")
    assert r.dnssec == "bogus"


def test_caa_timeout_in_unsigned_zone_is_permitted_after_retry(world: World) -> None:
    # BR 3.2.2.8: outside the CA (our resolver answered SERVFAIL), retried, and the
    # zone provably has no DNSSEC chain: the failure is treated as permission.
    r = caa(world.va(), "ok.timeout.test")
    assert r.ok and r.dnssec == "insecure"
    lookup = r.observed["dnssec"]["lookups"][0]
    assert lookup["retried"] is True and lookup["outside"] is True
    assert lookup["status"] == "insecure" and "SERVFAIL" in lookup["error"]
    assert "treated as permission" in r.observed["decision"]


def test_caa_timeout_in_signed_zone_refuses(world: World) -> None:
    r = caa(world.va(), "ok.timeout-signed.test")
    assert_caa_refused(r, "ok.timeout-signed.test", "SERVFAIL")
    assert r.dnssec != "insecure"


def test_caa_authority_refused_in_signed_zone_refuses(world: World) -> None:
    r = caa(world.va(), "ok.refused-signed.test")
    assert_caa_refused(r, "ok.refused-signed.test", "SERVFAIL")
    assert r.dnssec != "insecure"


def test_caa_authority_refused_in_unsigned_zone_is_an_outside_failure(world: World) -> None:
    # A validating resolver reports an upstream REFUSED as SERVFAIL, like a timeout:
    # the same BR 3.2.2.8 exception applies (see docs/dnssec.md).
    r = caa(world.va(), "ok.refused.test")
    assert r.ok and r.dnssec == "insecure"


def test_caa_our_resolver_refusing_refuses(world: World) -> None:
    # REFUSED from our own resolver is inside the CA's infrastructure.
    r = caa(world.va(), "x.blocked.unsigned.test")
    assert_caa_refused(r, "REFUSED")
    lookup = r.observed["dnssec"]["lookups"][0]
    assert lookup["status"] == "insecure" and lookup["outside"] is False
    assert "inside the CA" in r.observed["decision"]


def test_caa_our_resolver_silent_refuses(world: World) -> None:
    with SilentUDP() as dead:
        r = caa(world.va(resolver=f"127.0.0.1:{dead.port}", timeout=0.5), "ok.unsigned.test")
    assert_caa_refused(r, "timeout")
    assert r.dnssec == "indeterminate"
    assert r.observed["dnssec"]["lookups"][0]["outside"] is False


# -- dns-01 -------------------------------------------------------------------------

def test_dns01_signed_is_secure(world: World) -> None:
    r = dns01(world.va(), "ok.signed.test")
    assert r.ok and r.dnssec == "secure" and r.observed["dnssec"]["ad"] is True


def test_dns01_unsigned_is_insecure(world: World) -> None:
    r = dns01(world.va(), "ok.unsigned.test")
    assert r.ok and r.dnssec == "insecure"


@pytest.mark.parametrize(("zone", "ede"), [("expired", "EDE 7"), ("dsonly", "EDE 9")])
def test_dns01_bogus_refuses(world: World, zone: str, ede: str) -> None:
    r = dns01(world.va(), f"ok.{zone}.test")
    assert not r.ok and r.problem == "dns" and r.dnssec == "bogus"
    assert f"_acme-challenge.ok.{zone}.test" in r.error and "bogus" in r.error and ede in r.error


@pytest.mark.parametrize("zone", ["timeout", "refused", "timeout-signed", "refused-signed"])
def test_dns01_failure_refuses_even_when_insecure(world: World, zone: str) -> None:
    # BR 3.2.2.4: the CAA exception does not exist for domain validation.
    r = dns01(world.va(), f"ok.{zone}.test")
    assert not r.ok and r.problem == "dns" and "SERVFAIL" in r.error
    assert r.observed["dnssec"]["retried"] is True


# -- address lookups (http-01, tls-alpn-01) ---------------------------------------------

def test_addresses_secure_and_insecure(world: World) -> None:
    va = world.va()
    signed = asyncio.run(checked_addresses(va, "www.signed.test"))
    assert signed.addresses == ["127.0.0.1"] and signed.dnssec == "secure"
    unsigned = asyncio.run(checked_addresses(va, "www.unsigned.test"))
    assert unsigned.addresses == ["127.0.0.1"] and unsigned.dnssec == "insecure"


@pytest.mark.parametrize(("host", "status"), [
    ("www.expired.test", "bogus"), ("www.dsonly.test", "bogus"),
    ("www.timeout.test", "insecure"), ("www.timeout-signed.test", None),
])
def test_addresses_refused(world: World, host: str, status: str | None) -> None:
    with pytest.raises(AddressRefused) as info:
        asyncio.run(checked_addresses(world.va(), host))
    if status is not None:
        assert info.value.dnssec == status


class _Challenge(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = KEY_AUTHZ.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_http01_through_signed_zone(world: World) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Challenge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        va = world.va(http01_port=server.server_address[1])
        r = asyncio.run(va.validate_http01("www.signed.test", "tok", KEY_AUTHZ))
        assert r.ok and r.dnssec == "secure", r.error
        assert r.observed["dnssec"][0]["host"] == "www.signed.test"
        bad = asyncio.run(va.validate_http01("www.expired.test", "tok", KEY_AUTHZ))
        assert not bad.ok and bad.problem == "dns" and bad.dnssec == "bogus"
        assert "www.expired.test" in bad.error and "bogus" in bad.error
    finally:
        server.shutdown()
        server.server_close()


def test_tlsalpn01_bogus_address_refuses(world: World) -> None:
    r = asyncio.run(world.va().validate_tlsalpn01("www.dsonly.test", KEY_AUTHZ))
    assert not r.ok and r.problem == "dns" and r.dnssec == "bogus"
    assert "www.dsonly.test" in r.error


# -- resolvers that do not do their part ----------------------------------------------------

@pytest.fixture(scope="module")
def plain_unbound(world: World) -> Iterator[UnboundServer]:
    """The same tree through an Unbound that does not validate (no validator module)."""
    with UnboundServer(world.workdir / "plain", world.stubs, None, validate=False) as u:
        yield u


def test_non_validating_resolver_is_indeterminate_and_refused(
        world: World, plain_unbound: UnboundServer) -> None:
    va = world.va(resolver=plain_unbound.resolver)
    r = caa(va, "ok.signed.test")
    assert_caa_refused(r, "DNSSEC indeterminate")
    assert r.dnssec == "indeterminate"
    assert not dns01(va, "ok.signed.test").ok
    # Not even an unsigned zone is "insecure": without AD=1 there is no DS proof.
    assert caa(va, "ok.unsigned.test").dnssec == "indeterminate"


def test_non_validating_resolver_with_dnssec_off(world: World,
                                                 plain_unbound: UnboundServer) -> None:
    va = world.va(resolver=plain_unbound.resolver, dnssec=False)
    r = caa(va, "ok.signed.test")
    assert r.ok and r.dnssec == "indeterminate"
    assert dns01(va, "ok.signed.test").ok


def test_bogus_found_without_ede_by_cd_query(world: World) -> None:
    with UnboundServer(world.workdir / "no-ede", world.stubs, world.trust_anchor,
                       ede=False) as quiet:
        r = caa(world.va(resolver=quiet.resolver), "ok.expired.test")
    assert_caa_refused(r, "bogus", "checking disabled")
    assert r.dnssec == "bogus"
    assert r.observed["dnssec"]["lookups"][0]["cd_query"]["rcode"] == "NOERROR"
