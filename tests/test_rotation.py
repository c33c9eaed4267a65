"""Generations: switch-over at a chosen time, a new root with a cross-certificate
served as an ACME alternate chain (verified by openssl against the old root
alone), scheduled CA revocation reaching the ARL at its time, key destruction
refused while a CA may sign, and the ceremony log detecting tampering."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from kakuin.app import create_app
from kakuin.ca.ceremony import KeyCeremonyEntry
from kakuin.ca.issuer import IssueRequest
from kakuin.ca.keystore import KeyType
from kakuin.ca.rotation import RotationService
from kakuin.clock import UTC
from kakuin.context import Context
from kakuin.errors import KakuinError
from kakuin.status.http import refresh_once
from kakuin.store.repos import CARepo
from tests.acme_client import Client
from tests.helpers import add_institution, rsa_key

T0 = dt.datetime(2026, 4, 1, tzinfo=UTC)


def issue(ctx: Context, name: str = "www.example.ac.jp"):  # type: ignore[no-untyped-def]
    return ctx.issuance.issue(
        IssueRequest(
            profile="server-dv",
            public_key=rsa_key().public_key(),
            subject=x509.Name([]),
            dns_names=(name,),
            requested_by="test",
        )
    )


def test_switch_over_at_the_chosen_time(make_ctx: Callable[..., Context]) -> None:
    ctx = make_ctx(T0)
    r = RotationService(ctx).rotate("tls-rsa", at=T0 + dt.timedelta(days=1))
    assert (r.slug, r.name, r.generation, r.parent) == (
        "tls-rsa-g2",
        "kakuin Development TLS RSA CA - G2",
        2,
        "root-rsa",
    )
    assert issue(ctx).issuer_slug == "tls-rsa-g1"
    ctx.clock.set(T0 + dt.timedelta(days=1, seconds=1))  # type: ignore[attr-defined]
    ctx.authorities.forget()
    issued = issue(ctx)
    assert issued.issuer_slug == "tls-rsa-g2"
    assert issued.chain[0].subject.rfc4514_string().startswith("CN=kakuin Development TLS RSA CA - G2")


def test_new_root_cross_signed_alternate_chain(make_ctx: Callable[..., Context], tmp_path: Path) -> None:
    ctx = make_ctx(T0)
    rot = RotationService(ctx)
    rot.new_root("root-rsa-g2", "kakuin Development Root CA RSA - G2", KeyType.RSA3072)
    cross = rot.cross_sign("root-rsa-g2", by="root-rsa")
    rot.rotate("tls-rsa", under="root-rsa-g2")
    issued = issue(ctx)
    assert issued.issuer_slug == "tls-rsa-g2"

    # The chains as an ACME client reads them: POST-as-GET by an account.
    add_institution(ctx)
    cred = ctx.acme.eab.new("Example University")
    with TestClient(create_app(ctx), base_url="http://127.0.0.1:8080") as http:
        client = Client(http, "http://127.0.0.1:8080/acme/directory")
        assert client.register((cred.kid, cred.hmac_key)).status_code == 201

        def fetch(path: str) -> httpx.Response:
            return client.get("http://127.0.0.1:8080" + path)

        default = fetch(f"/acme/cert/{issued.serial}")
        assert default.status_code == 200, default.text
        links = default.headers.get_list("link")
        alt = [x for x in links if 'rel="alternate"' in x]
        assert len(alt) == 1
        alt_path = alt[0].split(">")[0].lstrip("<").split("://", 1)[1].split("/", 1)[1]
        alternate = fetch("/" + alt_path)
    certs = x509.load_pem_x509_certificates(alternate.content)
    assert certs[-1] == cross and len(certs) == 3

    with ctx.db.session() as s:
        old_root = x509.load_der_x509_certificate(CARepo(s).by_slug("root-rsa").der)
        new_root = x509.load_der_x509_certificate(CARepo(s).by_slug("root-rsa-g2").der)
    (tmp_path / "old-root.pem").write_bytes(old_root.public_bytes(Encoding.PEM))
    (tmp_path / "new-root.pem").write_bytes(new_root.public_bytes(Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(certs[0].public_bytes(Encoding.PEM))
    (tmp_path / "alt.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs[1:]))
    (tmp_path / "default.pem").write_bytes(
        b"".join(c.public_bytes(Encoding.PEM) for c in x509.load_pem_x509_certificates(default.content)[1:])
    )

    def verify(anchor: str, untrusted: str) -> subprocess.CompletedProcess[str]:
        at = str(int((T0 + dt.timedelta(days=1)).timestamp()))  # the test's date, not today's
        return subprocess.run(
            [
                "openssl",
                "verify",
                "-attime",
                at,
                "-CAfile",
                str(tmp_path / anchor),
                "-untrusted",
                str(tmp_path / untrusted),
                str(tmp_path / "leaf.pem"),
            ],
            capture_output=True,
            text=True,
        )

    assert verify("old-root.pem", "alt.pem").returncode == 0  # only the old root trusted: via the cross cert
    assert verify("old-root.pem", "default.pem").returncode != 0
    assert verify("new-root.pem", "default.pem").returncode == 0


def test_scheduled_revocation_reaches_the_arl_at_its_time(make_ctx: Callable[..., Context]) -> None:
    ctx = make_ctx(T0)
    rot = RotationService(ctx)
    rot.rotate("tls-rsa")
    when = T0 + dt.timedelta(days=10)
    s1 = rot.schedule_revocation("tls-rsa-g1", at=when, reason="superseded")
    assert not s1.applied

    def arl() -> set[int]:
        return {r.serial_number for r in x509.load_der_x509_crl(ctx.crls.current("root-rsa")[3])}

    with ctx.db.session() as s:
        g1 = CARepo(s).by_slug("tls-rsa-g1")
    serial = int(g1.serial, 16)
    refresh_once(ctx)
    assert serial not in arl() and g1.status == "active"
    ctx.clock.set(when + dt.timedelta(seconds=1))  # type: ignore[attr-defined]
    refresh_once(ctx)  # what kakuin serve does every 30 s
    assert serial in arl()
    entry = next(r for r in x509.load_der_x509_crl(ctx.crls.current("root-rsa")[3]) if r.serial_number == serial)
    assert entry.revocation_date_utc == when
    with ctx.db.session() as s:
        assert CARepo(s).by_slug("tls-rsa-g1").status == "revoked"
    with pytest.raises(KakuinError, match="already revoked"):
        rot.schedule_revocation("tls-rsa-g1", at=when)


def test_destroy_key_refused_while_the_ca_may_sign_and_log_detects_tampering(
    make_ctx: Callable[..., Context],
) -> None:
    ctx = make_ctx(T0)
    rot = RotationService(ctx)
    with pytest.raises(KakuinError, match="revoke it first"):
        rot.destroy_key("client-g1")
    rot.schedule_revocation("client-g1", at=T0)
    d = rot.destroy_key("client-g1", witnesses=("a@example.ac.jp", "b@example.ac.jp"))
    assert d["verified_absent"] and not (ctx.config.keys_dir / "client-g1.key.pem").exists()
    refresh_once(ctx)  # the status pass skips a CA whose key is gone
    from kakuin.cli import app

    r = CliRunner().invoke(app, ["ca", "log", "--data-dir", str(ctx.config.data_dir)])
    assert r.exit_code == 0, r.stdout
    assert "verified" in r.stdout and "key-destroyed" in r.stdout
    with ctx.db.session() as s:
        s.execute(
            update(KeyCeremonyEntry)
            .where(KeyCeremonyEntry.action == "key-destroyed")
            .values(details='{"key": "file:someone-else"}')
        )
    v = rot.log.verify()
    assert not v.ok and any("altered" in p for p in v.problems)
    r = CliRunner().invoke(app, ["ca", "log", "--data-dir", str(ctx.config.data_dir)])
    assert r.exit_code == 2 and "NOT verified" in r.stdout


def test_cli_rotate_and_revoke(make_ctx: Callable[..., Context]) -> None:
    from kakuin.cli import app

    ctx = make_ctx(T0)
    d = str(ctx.config.data_dir)
    r = CliRunner().invoke(app, ["ca", "rotate", "smime", "--at", "2030-01-01", "--data-dir", d])
    assert r.exit_code == 0 and "smime-g2" in r.stdout, r.stdout
    r = CliRunner().invoke(
        app, ["ca", "revoke", "smime-g1", "--at", "2031-01-01", "--reason", "superseded", "--data-dir", d]
    )
    assert r.exit_code == 0 and "scheduled" in r.stdout, r.stdout
