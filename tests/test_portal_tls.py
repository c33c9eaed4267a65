"""The portal's mutual-TLS listener, over real sockets: ``kakuin serve`` with
``[portal] enabled``. The server certificate is issued by kakuin's TLS CA for
``portal.server_name``; a browser without a certificate gets a bilingual 403
page (CERT_OPTIONAL); an officer's certificate signs in; a revoked officer
certificate, a subscriber's client certificate and a foreign certificate
are refused."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kakuin.clock import UTC
from kakuin.ra.services import RA
from tests.helpers import all_roots_pem
from tests.portal_helpers import INST_A, PIN, PortalServer, two_institutions, write_identity
from tests.ra_helpers import OP, client_fields, outbox, token_of, tsv


def _context(roots: Path, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(roots))
    ctx.check_hostname = False  # we connect to 127.0.0.1; the name is checked below
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def _foreign_identity(d: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Mallory")])
    now = dt.datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    c, k = d / "foreign.crt", d / "foreign.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return c, k


@pytest.fixture
def served(make_ctx, tmp_path):  # type: ignore[no-untyped-def]
    ctx = make_ctx()  # real time: the TLS peers check validity against the wall clock
    ra = RA(ctx)
    a, b = two_institutions(ra)
    roots = tmp_path / "roots.pem"
    roots.write_bytes(all_roots_pem(ctx))
    with PortalServer(ctx.config.data_dir) as server:
        yield ra, a, b, roots, server


def test_mtls_sign_in_and_refusals(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ra, a, b, roots, server = served
    url = server.portal_url

    # The server certificate: issued by kakuin's TLS CA for portal.server_name.
    pem = ssl.get_server_certificate(("127.0.0.1", server.portal_port))
    cert = x509.load_pem_x509_certificate(pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [ra.ctx.config.portal.server_name]
    assert "TLS" in cert.issuer.rfc4514_string()

    # No certificate: the handshake completes and a bilingual page refuses.
    r = httpx.get(url + "/", verify=_context(roots, None))
    assert r.status_code == 403
    assert "クライアント証明書が提示されていません" in r.text and "No client certificate was presented" in r.text
    assert '<html lang="ja">' in r.text
    api = httpx.get(url + "/api/v1/me", verify=_context(roots, None))
    assert api.status_code == 403 and api.headers["content-type"] == "application/problem+json"
    assert api.json()["reason"] == "no-certificate"

    # An officer of A signs in and sees A only.
    ident_a = write_identity(a.p12, tmp_path, "a")
    with httpx.Client(base_url=url, verify=_context(roots, ident_a)) as c:
        me = c.get("/api/v1/me").json()
        assert me == {
            "name": "Taro Kokuritsu",
            "actor": "officer:officer-a@example.ac.jp",
            "role": "officer",
            "institution": INST_A,
        }
        page = c.get("/", headers={"Accept-Language": "en"})
        assert page.status_code == 200 and "Dashboard" in page.text and INST_A in page.text
        assert "Other University" not in page.text

    # A certificate from kakuin's client CA that is not an officer's (a subscriber's).
    ra.tsv.apply(tsv([client_fields(pin="Abcd1234efgh")]), institution=INST_A, actor=OP)
    [link] = outbox(ra.ctx, "retrieval")
    sub = ra.retrieval.fetch(token_of(link))
    from cryptography.hazmat.primitives.serialization import pkcs12

    key, scert, _ = pkcs12.load_key_and_certificates(sub.content, b"Abcd1234efgh")
    sub_p12 = pkcs12.serialize_key_and_certificates(
        b"s",
        key,
        scert,
        None,
        serialization.BestAvailableEncryption(PIN.encode()),  # type: ignore[arg-type]
    )
    r = httpx.get(url + "/api/v1/me", verify=_context(roots, write_identity(sub_p12, tmp_path, "sub")))
    assert r.status_code == 403 and r.json()["reason"] == "not-officer"

    # A revoked officer certificate is refused (checked on each request).
    ra.revoke(b.serial, 9, actor=OP, comment="left the institution")
    r = httpx.get(url + "/", verify=_context(roots, write_identity(b.p12, tmp_path, "b")))
    assert r.status_code == 403 and "失効しています" in r.text and "has been revoked" in r.text

    # A certificate that does not chain to kakuin's client CA: the TLS layer refuses it.
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.get(url + "/", verify=_context(roots, _foreign_identity(tmp_path)))
