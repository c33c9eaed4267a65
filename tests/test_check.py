"""``kakuin check`` against real TLS servers (Python ssl in threads, free ports):
a good chain, a leaf without its intermediate, the old generation's chain after
a rotation (and a new leaf served with the old intermediate), an expired leaf,
a revoked leaf, a certificate an open incident affects. Each verdict and exit
code (0 ok, 1 warning, 2 critical) is checked through the CLI."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding
from typer.testing import CliRunner

from kakuin.ca.issuer import IssueRequest
from kakuin.ca.rotation import RotationService
from kakuin.clock import UTC
from kakuin.context import Context
from kakuin.incident.check import analyze, check_server, fetch_chain
from kakuin.incident.html import render_check
from kakuin.incident.report import IncidentService, make_rule
from tests.helpers import ec_key

NAME = "www.example.ac.jp"
NOW = dt.datetime.now(UTC)


@contextmanager
def tls_server(tmp: Path, certs: list[x509.Certificate], key) -> Iterator[int]:  # type: ignore[no-untyped-def]
    """Serve ``certs`` (leaf first, as given) on a free loopback port."""
    chain = tmp / f"chain-{id(certs)}.pem"
    chain.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    keyfile = tmp / f"key-{id(certs)}.pem"
    keyfile.write_bytes(
        key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(chain, keyfile)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            try:
                conn.settimeout(5)
                with tls.wrap_socket(conn, server_side=True) as s:
                    s.recv(1)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        t.join(timeout=5)
        sock.close()


def issue(ctx: Context, days: int | None = None, name: str = NAME):  # type: ignore[no-untyped-def]
    key = ec_key()
    issued = ctx.issuance.issue(
        IssueRequest(
            profile="server-dv",
            public_key=key.public_key(),
            subject=x509.Name([]),
            dns_names=(name,),
            requested_days=days,
            requested_by="test",
        )
    )
    return issued, key


def cli(ctx: Context, port: int, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    from kakuin.cli import app

    r = CliRunner().invoke(
        app, ["check", f"127.0.0.1:{port}", "--sni", NAME, "--json", "--data-dir", str(ctx.config.data_dir), *extra]
    )
    return r.exit_code, json.loads(r.stdout)


def codes(body: dict) -> set[str]:  # type: ignore[type-arg]
    return {f["code"] for f in body["findings"]}


def test_check_verdicts(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    ctx = make_ctx(NOW)
    good, good_key = issue(ctx)
    assert good.issuer_slug == "tls-ecdsa-g1"

    # a good chain
    with tls_server(tmp_path, [good.certificate, *good.chain], good_key) as port:
        sent = fetch_chain("127.0.0.1", port, sni=NAME)
        assert [c.serial_number for c in sent] == [good.certificate.serial_number, good.chain[0].serial_number]
        code, body = cli(ctx, port)
        assert code == 0 and body["severity"] == "ok", body
        assert body["complete"] and body["in_order"] and body["revocation"] == "good"
        assert body["generation"] == 1 and "tls-ecdsa-g1" in body["intermediate"]
        assert 150 < body["days_left"] < 400
        page = render_check(check_server(ctx, f"127.0.0.1:{port}", sni=NAME), "ja")
        assert "問題ありません" in page

    # the leaf without its intermediate
    with tls_server(tmp_path, [good.certificate], good_key) as port:
        code, body = cli(ctx, port)
        assert code == 2 and "incomplete-chain" in codes(body) and not body["complete"]
        text = check_server(ctx, f"127.0.0.1:{port}", sni=NAME).text("en")
        assert "fullchain.pem" in text and "CRITICAL" in text

    # an expired leaf (issued 100 days ago for 30 days)
    ctx.clock.set(NOW - dt.timedelta(days=100))  # type: ignore[attr-defined]
    old, old_key = issue(ctx, days=30)
    ctx.clock.set(NOW)  # type: ignore[attr-defined]
    with tls_server(tmp_path, [old.certificate, *old.chain], old_key) as port:
        code, body = cli(ctx, port)
        assert code == 2 and "expired" in codes(body) and body["days_left"] < 0

    # a revoked leaf
    revoked, revoked_key = issue(ctx)
    ctx.revocation.revoke(revoked.serial, 1, actor="test")
    with tls_server(tmp_path, [revoked.certificate, *revoked.chain], revoked_key) as port:
        code, body = cli(ctx, port)
        assert code == 2 and "revoked" in codes(body) and body["revocation"] == "revoked"

    # the old generation: after a rotation to G2 the G1 chain still works, with a warning
    RotationService(ctx).rotate("tls-ecdsa")
    ctx.authorities.forget()
    with tls_server(tmp_path, [good.certificate, *good.chain], good_key) as port:
        code, body = cli(ctx, port)
        assert code == 1 and codes(body) == {"old-generation"}, body
        assert (body["generation"], body["current_generation"]) == (1, 2)
        # ...and once an incident covers G1, the holder is told the deadline
        IncidentService(ctx).open(
            "g1", make_rule(["tls-ecdsa-g1"]), deadline=NOW + dt.timedelta(days=30), replacement="tls-ecdsa-g2"
        )
        code, body = cli(ctx, port)
        assert code == 1 and codes(body) == {"old-generation", "incident"} and body["incident"] == "g1"
        code, body = cli(ctx, port, "--lang", "ja")
        assert code == 1

    # a new G2 leaf served with the old G1 intermediate
    new, new_key = issue(ctx)
    assert new.issuer_slug == "tls-ecdsa-g2"
    with tls_server(tmp_path, [new.certificate, *good.chain], new_key) as port:
        code, body = cli(ctx, port)
        assert code == 2 and "wrong-intermediate" in codes(body), body

    # a server nobody listens on
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    code, body = cli(ctx, port)
    assert code == 2 and "cannot connect" in body["error"]


def test_analyze_without_a_store_uses_the_given_anchors(make_ctx: Callable[..., Context]) -> None:
    ctx = make_ctx(NOW)
    good, _ = issue(ctx)
    from kakuin.store.repos import CARepo

    with ctx.db.session() as s:
        root = x509.load_der_x509_certificate(CARepo(s).by_slug("root-ecc").der)
    r = analyze(None, [good.certificate, *good.chain], host=NAME, extra_anchors=[root], now=NOW)
    assert r.exit_code == 0 and r.complete and r.revocation == "not-ours"
    r = analyze(None, [good.certificate, *good.chain], host=NAME, now=NOW)
    assert r.exit_code == 2 and not r.complete
    r = analyze(None, [good.certificate, *good.chain], host="other.example.ac.jp", extra_anchors=[root], now=NOW)
    assert "name-mismatch" in {f.code for f in r.findings}
