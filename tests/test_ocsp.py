"""The OCSP responder in process (httpx.ASGITransport): statuses, CertID hashes,
nonces, malformed input, cache headers, and pkilint's lint_ocsp_response."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from kakuin.app import create_app
from kakuin.ra.revocation import KEY_COMPROMISE
from kakuin.status.http import MAX_OCSP_REQUEST
from tests.status_helpers import issue_dv, tool

OCSP_REQ = {"content-type": "application/ocsp-request"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def request(cert, issuer, alg=None, nonce: bytes | None = None) -> bytes:  # type: ignore[no-untyped-def]
    b = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, alg or hashes.SHA1())
    if nonce is not None:
        b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
    return b.build().public_bytes(Encoding.DER)


def two_certids(single: bytes) -> bytes:
    """``single`` (a one-CertID OCSPRequest) with its Request twice in requestList."""
    from kakuin.ca.der import read_tlv, tlv

    _, s0, _ = read_tlv(single, 0)  # OCSPRequest
    _, s1, _ = read_tlv(single, s0)  # TBSRequest
    _, s2, e2 = read_tlv(single, s1)  # requestList
    return tlv(0x30, tlv(0x30, tlv(0x30, single[s2:e2] * 2)))


def lint(der: bytes, tmp: Path) -> None:
    p = tmp / "resp.der"
    p.write_bytes(der)
    res = subprocess.run([tool("lint_ocsp_response"), "lint", "-s", "WARNING", str(p)], capture_output=True, text=True)
    assert "ERROR" not in res.stdout + res.stderr and "FATAL" not in res.stdout + res.stderr, res.stdout


@pytest.mark.anyio
async def test_good_revoked_unknown_and_lint(ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    issued = issue_dv(ctx)
    inter = issued.chain[0]
    app = create_app(ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        req = request(issued.certificate, inter)
        r = await c.post("/ocsp", content=req, headers=OCSP_REQ)
        assert r.status_code == 200 and r.headers["content-type"] == "application/ocsp-response"
        resp = ocsp.load_der_ocsp_response(r.content)
        assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert resp.serial_number == issued.certificate.serial_number
        cc = r.headers["cache-control"]
        assert "public" in cc and "no-transform" in cc and "max-age=" in cc
        assert r.headers["etag"] and r.headers["last-modified"] and r.headers["expires"]
        assert resp.next_update_utc - resp.this_update_utc <= __import__("datetime").timedelta(days=10)
        # signed by a delegated responder, never by the intermediate itself
        [responder] = resp.certificates
        assert responder.issuer == inter.subject and responder.subject != inter.subject
        eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
        responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
        responder.verify_directly_issued_by(inter)
        lint(r.content, tmp_path)
        # GET form, base64 and URL-encoded
        path = "/ocsp/" + base64.b64encode(req).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        r = await c.get(path)
        assert r.content == (await c.post("/ocsp", content=req)).content
        # revoked: at once, with time and reason
        ctx.revocation.revoke(issued.serial, KEY_COMPROMISE, actor="t")
        r = await c.post("/ocsp", content=req)
        resp = ocsp.load_der_ocsp_response(r.content)
        assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert resp.revocation_reason == x509.ReasonFlags.key_compromise and resp.revocation_time_utc
        lint(r.content, tmp_path)
        # unknown serial of our issuer
        fake = (
            ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(resp.issuer_name_hash, resp.issuer_key_hash, 0x1234567, hashes.SHA1())
            .build()
            .public_bytes(Encoding.DER)
        )
        r = await c.post("/ocsp", content=fake)
        resp = ocsp.load_der_ocsp_response(r.content)
        assert resp.certificate_status == ocsp.OCSPCertStatus.UNKNOWN
        lint(r.content, tmp_path)


@pytest.mark.anyio
async def test_sha256_certid_and_nonce(ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    issued = issue_dv(ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://t") as c:
        r = await c.post("/ocsp", content=request(issued.certificate, issued.chain[0], hashes.SHA256()))
        resp = ocsp.load_der_ocsp_response(r.content)
        assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert isinstance(resp.hash_algorithm, hashes.SHA256)
        nonce = b"\x42" * 32
        r = await c.post("/ocsp", content=request(issued.certificate, issued.chain[0], nonce=nonce))
        resp = ocsp.load_der_ocsp_response(r.content)
        assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce  # RFC 8954: echoed
        assert r.headers["cache-control"] == "no-store"
        lint(r.content, tmp_path)
        r = await c.post("/ocsp", content=request(issued.certificate, issued.chain[0], nonce=b"\x42" * 33))
        assert ocsp.load_der_ocsp_response(r.content).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.anyio
async def test_malformed_requests_never_500(ctx) -> None:  # type: ignore[no-untyped-def]
    issued = issue_dv(ctx)
    good = request(issued.certificate, issued.chain[0])
    # an unknown hash algorithm: SHA-1's OID swapped for MD2's (1.2.840.113549.2.2)
    sha1_alg = bytes.fromhex("06052b0e03021a")
    assert sha1_alg in good
    unknown_alg = good.replace(sha1_alg, bytes.fromhex("06082a864886f70d0202")).replace(
        b"\x30\x09\x06\x08", b"\x30\x0c\x06\x08"
    )
    bodies = [
        b"garbage",
        good[: len(good) // 2],
        b"",
        b"\x30\x00",
        b"\x30\x82\xff\xff",
        unknown_alg,
        good + b"trailing",
        two_certids(good),
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://t") as c:
        for body in bodies:
            r = await c.post("/ocsp", content=body)
            assert r.status_code == 200, body
            assert (
                ocsp.load_der_ocsp_response(r.content).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
            ), body
        for path in ("/ocsp/%%%", "/ocsp/not-base64!", "/ocsp/" + base64.b64encode(b"garbage").decode(), "/ocsp"):
            r = await c.get(path)
            assert r.status_code == 200
            assert (
                ocsp.load_der_ocsp_response(r.content).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
            ), path
        r = await c.put("/ocsp", content=good)
        assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
        assert "POST" in r.headers["allow"]
        r = await c.delete("/ocsp/abc")
        assert r.status_code == 405
        r = await c.post("/ocsp", content=b"\x30" * (MAX_OCSP_REQUEST + 1))
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"

        async def chunks():  # no Content-Length: the limit still holds
            for _ in range(10):
                yield b"\x00" * 1000

        r = await c.post("/ocsp", content=chunks())
        assert r.status_code == 413


@pytest.mark.anyio
async def test_issuer_not_ours_is_unauthorized(ctx) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import ec_key

    key = ec_key()
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Someone Else CA")])
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    foreign = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://t") as c:
        r = await c.post("/ocsp", content=request(foreign, foreign))
        assert ocsp.load_der_ocsp_response(r.content).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_presign_and_refresh(ctx) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    a, b = issue_dv(ctx), issue_dv(ctx)
    assert ctx.ocsp.refresh_due() >= 2  # both pre-signed (and the responder certificate)
    assert ctx.ocsp.refresh_due() == 0
    ctx.clock.advance(dt.timedelta(days=3, seconds=1))  # BR 4.9.10: re-signed ≤ 4 days after thisUpdate
    assert ctx.ocsp.refresh_due() >= 2
    assert a.serial != b.serial


def test_responder_renewed_before_expiry(ctx) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    issued = issue_dv(ctx)
    with ctx.db.session() as s:
        issuer_id = (
            __import__("kakuin.store.repos", fromlist=["CertificateRepo"])
            .CertificateRepo(s)
            .by_serial(issued.serial)
            .issuer_id
        )
    first = ctx.ocsp.responders.current(issuer_id)
    assert ctx.ocsp.responders.current(issuer_id).generation == first.generation
    ctx.clock.advance(dt.timedelta(days=21))  # under a third of 30 days left
    second = ctx.ocsp.responders.current(issuer_id)
    assert second.generation == first.generation + 1 and second.not_after > first.not_after


def test_one_worker_of_a_data_directory_takes_each_refresh_pass(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The workers of one serve refresh in turn, not all at once (kakuin.status.http.refresh_turn)."""
    from kakuin.status.http import refresh_turn

    with refresh_turn(tmp_path) as first:
        assert first
        with refresh_turn(tmp_path) as second:  # another worker, same moment
            assert not second
    with refresh_turn(tmp_path) as again:  # released after the pass
        assert again
    (tmp_path / "ro").mkdir(mode=0o500)
    import os

    if os.geteuid() != 0:  # root ignores the mode; a read-only directory refreshes as before
        with refresh_turn(tmp_path / "ro") as ro:
            assert ro
