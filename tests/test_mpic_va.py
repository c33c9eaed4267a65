"""CorroboratingVA against five real perspective processes, each resolving through
its own BIND (tests/perspectives.py): hijacked A (http-01), TXT (dns-01) and CAA
records seen by 0, 1 or 2 perspectives; a perspective down; the primary alone
wrong. Evidence rows are checked for every case."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count

import pytest

from kakuin.context import Context
from kakuin.perspective.client import PerspectiveClient
from kakuin.perspective.settings import MPICConfig, PerspectiveSpec
from kakuin.va import ValidationRecord
from kakuin.va.dns01 import expected_txt
from kakuin.va.evidence import check_ids_of, evidence_for, link_certificate
from kakuin.va.mpic import CorroboratingVA
from tests.bind import free_port
from tests.perspectives import NAMES, Fleet, fleet  # noqa: F401

pytestmark = pytest.mark.e2e
KEYAUTH = "token-abc.thumbprint-xyz"
TOKEN = "token-abc"
_n = count(1)


@pytest.fixture
def responder(fleet: Fleet) -> Iterator[None]:  # noqa: F811
    """http-01 responder on 127.0.0.1 at the fleet's http-01 port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            ok = self.path == f"/.well-known/acme-challenge/{TOKEN}"
            body = KEYAUTH.encode() if ok else b"no"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", fleet.http01_port), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield
    server.shutdown()
    server.server_close()


def make_va(ctx: Context, fleet: Fleet, urls: dict[str, str] | None = None) -> CorroboratingVA:  # noqa: F811
    urls = urls or fleet.urls
    config = ctx.config.va.model_copy(update={
        "resolver": fleet.dns.resolver_for("primary"), "http01_port": fleet.http01_port,
        "tlsalpn01_port": fleet.tlsalpn01_port, "timeout_seconds": 3, "dnssec": False,
        "allow_private_targets": True})
    mpic = MPICConfig(enabled=True, timeout_seconds=5, perspectives=tuple(
        PerspectiveSpec(name=n, url=urls[n], key_file=str(fleet.keys[n])) for n in NAMES))
    clients = [PerspectiveClient(n, urls[n], fleet.keys[n].read_bytes().strip(), timeout=5) for n in NAMES]
    return CorroboratingVA(config, ctx.clock, mpic, clients, db=ctx.db)


def setup_name(fleet: Fleet, kind: str, hijacked: list[str]) -> str:  # noqa: F811
    """A fresh name whose records every view agrees on, except ``hijacked`` views."""
    name = f"mv{next(_n)}-{kind.lower()}.loopback.ac.jp"
    honest = [v for v in ["primary", *NAMES] if v not in hijacked]
    fleet.dns.change("all", "add", name, "A", "127.0.0.1")
    if kind == "A" and hijacked:
        fleet.dns.change(hijacked, "replace", name, "A", "127.0.0.2")
    if kind == "TXT":
        fleet.dns.change(honest, "add", f"_acme-challenge.{name}", "TXT", f'"{expected_txt(KEYAUTH)}"')
        if hijacked:
            fleet.dns.change(hijacked, "add", f"_acme-challenge.{name}", "TXT", '"attacker-value"')
    if kind == "CAA":
        fleet.dns.change(honest, "add", name, "CAA", '0 issue "kakuin.example"')
        if hijacked:
            fleet.dns.change(hijacked, "add", name, "CAA", '0 issue "attacker-ca.example"')
    return name


def run(va: CorroboratingVA, kind: str, name: str) -> ValidationRecord:
    if kind == "A":
        return asyncio.run(va.validate_http01(name, TOKEN, KEYAUTH))
    if kind == "TXT":
        return asyncio.run(va.validate_dns01(name, KEYAUTH))
    return asyncio.run(va.check_caa(name, account_uri=None, method=None, wildcard=False))


CASES = [(kind, hijacked, ok) for kind in ("A", "TXT", "CAA")
         for hijacked, ok in (([], True), (["p4"], True), (["p4", "p5"], False))]


@pytest.mark.parametrize(("kind", "hijacked", "ok"), CASES,
                         ids=[f"{k}-{len(h)}-hijacked" for k, h, _ in CASES])
def test_quorum(ctx: Context, fleet: Fleet, responder: None, kind: str, hijacked: list[str],  # noqa: F811
                ok: bool) -> None:
    name = setup_name(fleet, kind, hijacked)
    va = make_va(ctx, fleet)
    rec = run(va, kind, name)
    assert rec.ok is ok, rec.error
    summary = rec.observed["mpic"]
    assert sorted(n["perspective"] for n in summary["non_corroborating"]) == hijacked
    if not ok:
        assert rec.problem == ("caa" if kind == "CAA" else "unauthorized")
        assert "p4 (" in rec.error and "p5 (" in rec.error  # type: ignore[operator]
        if kind != "CAA":
            assert "error 338" in rec.error  # type: ignore[operator]
    [cid] = check_ids_of([rec])
    link_certificate(ctx.db, f"serial-{cid}", [cid])
    rows = {e.perspective: e for e in evidence_for(ctx.db, f"serial-{cid}")}
    assert set(rows) == {"primary", *NAMES}
    assert rows["primary"].ok and rows["primary"].corroborates is ok
    for n in NAMES:
        assert rows[n].corroborates is (n not in hijacked)
        assert rows[n].perspective_at and rows[n].latency_ms is not None


@pytest.mark.parametrize("kind", ["A", "TXT", "CAA"])
def test_primary_alone_wrong_is_refused(ctx: Context, fleet: Fleet, responder: None, kind: str) -> None:  # noqa: F811
    name = setup_name(fleet, kind, ["primary"])
    rec = run(make_va(ctx, fleet), kind, name)
    assert not rec.ok
    # Every remote saw the honest data: they all disagree with the failing primary.
    assert len(rec.observed["mpic"]["non_corroborating"]) == 5
    assert "primary" in rec.observed["mpic"]["reason"]


def test_perspective_down_counts_as_failure(ctx: Context, fleet: Fleet, responder: None) -> None:  # noqa: F811
    dead = {**fleet.urls, "p5": f"http://127.0.0.15:{free_port('127.0.0.15')}"}
    name = setup_name(fleet, "A", [])
    rec = run(make_va(ctx, fleet, dead), "A", name)
    assert rec.ok  # one down of five: still 4 corroborate
    [bad] = rec.observed["mpic"]["non_corroborating"]
    assert bad["perspective"] == "p5" and bad["why"].startswith("error:")
    name = setup_name(fleet, "A", ["p4"])
    rec = run(make_va(ctx, fleet, dead), "A", name)
    assert not rec.ok and "p4 (" in rec.error and "p5 (error" in rec.error  # type: ignore[operator]


def test_metrics_count_each_perspective(ctx: Context, fleet: Fleet, responder: None) -> None:  # noqa: F811
    va = make_va(ctx, fleet)
    run(va, "CAA", setup_name(fleet, "CAA", ["p2"]))
    text = va.metrics.render()
    assert 'mpic_checks_total{check="caa",perspective="p2",result="disagreed"} 1' in text
    assert 'mpic_checks_total{check="caa",perspective="p1",result="corroborated"} 1' in text
    assert 'mpic_checks_total{check="caa",perspective="quorum",result="met"} 1' in text
    assert 'mpic_latency_seconds_count{perspective="all"} 1' in text


