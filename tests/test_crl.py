"""CRLs: full, partitioned and ARLs verify with openssl, lint clean with
pkilint's lint_crl (BR profile), carry reasons and invalidity dates, and are
served over HTTP with cache headers."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kakuin.app import create_app
from kakuin.clock import UTC
from kakuin.ra.revocation import AFFILIATION_CHANGED, KEY_COMPROMISE, UNSPECIFIED
from kakuin.status.crl import FULL, encode_entries
from kakuin.store.models import CertificateAuthority
from kakuin.store.repos import CARepo
from tests.status_helpers import issue_dv, kakuin, tool


def ca_pems(ctx, tmp: Path) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    out = {}
    with ctx.db.session() as s:
        for ca in CARepo(s).all():
            p = tmp / f"{ca.slug}.pem"
            p.write_bytes(x509.load_der_x509_certificate(ca.der).public_bytes(Encoding.PEM))
            out[ca.slug] = p
    return out


def openssl_verify_crl(crl: Path, ca: Path) -> None:
    res = subprocess.run([tool("openssl"), "crl", "-inform", "DER", "-in", str(crl), "-CAfile", str(ca),
                          "-verify", "-noout"], capture_output=True, text=True)
    assert res.returncode == 0 and "verify OK" in (res.stdout + res.stderr), res.stdout + res.stderr


def lint_crl(path: Path, kind: str = "CRL") -> None:
    res = subprocess.run([tool("lint_crl"), "lint", "-t", kind, "-p", "BR", "-s", "WARNING", str(path)],
                         capture_output=True, text=True)
    text = res.stdout + res.stderr
    assert "ERROR" not in text and "FATAL" not in text and res.returncode in (0,), text


def test_encode_entries_round_trip() -> None:
    rows = [("7f" * 16, "2025-06-02 01:02:03.000000", 1, "2025-06-01 00:00:00.000000"),
            ("01", dt.datetime(2051, 1, 1, tzinfo=UTC), None, None),
            ("80", "2025-06-02 01:02:03", 0, None)]
    seq, n = encode_entries(rows)
    assert n == 3
    from asn1crypto import crl as acrl

    parsed = acrl.RevokedCertificates.load(seq)
    assert parsed[0]["user_certificate"].native == int("7f" * 16, 16)
    assert parsed[0]["crl_entry_extensions"][0]["extn_value"].native == "key_compromise"
    assert parsed[1]["revocation_date"].name == "general_time"  # 2050 and later (RFC 5280 §4.1.2.5)
    assert parsed[2]["user_certificate"].native == 0x80  # leading zero octet keeps it positive
    assert len(parsed[2]["crl_entry_extensions"]) == 0  # unspecified: no reasonCode (BR 7.2.2)


def test_publish_every_crl_verifies_and_lints(ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b, c = issue_dv(ctx, "a.example.ac.jp"), issue_dv(ctx, "b.example.ac.jp"), issue_dv(ctx, "c.example.ac.jp")
    invalid = ctx.clock.now() - dt.timedelta(days=2)
    ctx.revocation.revoke(a.serial, KEY_COMPROMISE, actor="t", invalidity_date=invalid)
    ctx.revocation.revoke(b.serial, UNSPECIFIED, actor="t", comment="test")
    ctx.revocation.revoke(c.serial, AFFILIATION_CHANGED, actor="t")
    # an intermediate revoked by its root: in the root's ARL
    with ctx.db.session() as s:
        smime = CARepo(s).by_slug("smime-g1")
        s.query(CertificateAuthority).filter_by(id=smime.id).update(
            {"status": "revoked", "revoked_at": ctx.clock.now(), "revocation_reason": KEY_COMPROMISE})
    out = tmp_path / "crl"
    res = kakuin(ctx.config.data_dir, "crl", "publish", "--out", str(out))
    assert res.returncode == 0, res.stderr
    cas = ca_pems(ctx, tmp_path)
    files = sorted(out.rglob("*.crl"))
    assert len(files) == 2 + 6 * 17  # full + 16 shards per intermediate, one ARL per root
    for f in files:
        slug = f.stem if f.parent == out else f.parent.name
        openssl_verify_crl(f, cas[slug])
    issuer = a.issuer_slug
    full = x509.load_der_x509_crl((out / f"{issuer}.crl").read_bytes())
    got = {format(e.serial_number, "x"): e for e in full}
    assert set(got) == {a.serial, b.serial, c.serial}
    exts = got[a.serial].extensions
    assert exts.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert exts.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc == invalid.replace(microsecond=0)
    assert len(got[b.serial].extensions) == 0
    assert full.next_update_utc - full.last_update_utc == dt.timedelta(days=7)  # BR 4.9.7: ≤ 10 days
    # the shard of a certificate is exactly the URL in its CRL DP
    dp = a.certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0].full_name[0].value
    shard_path = out / issuer / dp.rsplit("/", 1)[1]
    shard = x509.load_der_x509_crl(shard_path.read_bytes())
    idp = shard.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.full_name[0].value == dp and idp.value.only_contains_user_certs
    assert shard.get_revoked_certificate_by_serial_number(a.certificate.serial_number) is not None
    arl = x509.load_der_x509_crl((out / "root-rsa.crl").read_bytes())
    assert [format(e.serial_number, "x") for e in arl] == [smime.serial]
    lint_crl(out / f"{issuer}.crl")
    lint_crl(shard_path)
    lint_crl(out / issuer / "0.crl" if shard_path.name != "0.crl" else out / issuer / "1.crl")
    lint_crl(out / "root-rsa.crl", "ARL")
    lint_crl(out / "root-ecc.crl", "ARL")


def test_crl_numbers_increase(ctx) -> None:  # type: ignore[no-untyped-def]
    with ctx.db.session() as s:
        ca = CARepo(s).by_slug("tls-rsa-g1")
    numbers = [ctx.crls.generate(ca, shard).number for shard in (FULL, 0, FULL, 3, FULL)]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


@pytest.mark.anyio
async def test_http_serves_crls_and_reflects_a_revocation(ctx) -> None:  # type: ignore[no-untyped-def]
    issued = issue_dv(ctx)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get(f"/crl/{issued.issuer_slug}.crl")
        assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl"
        assert "max-age=60" in r.headers["cache-control"] and r.headers["etag"] and r.headers["last-modified"]
        first = x509.load_der_x509_crl(r.content)
        assert len(first) == 0
        r304 = await client.get(f"/crl/{issued.issuer_slug}.crl", headers={"if-none-match": r.headers["etag"]})
        assert r304.status_code == 304
        ctx.revocation.revoke(issued.serial, KEY_COMPROMISE, actor="t")
        r = await client.get(f"/crl/{issued.issuer_slug}.crl")
        again = x509.load_der_x509_crl(r.content)
        assert again.get_revoked_certificate_by_serial_number(issued.certificate.serial_number) is not None
        n1 = first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        n2 = again.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        assert n2 > n1
        dp = issued.certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        path = "/crl/" + dp[0].full_name[0].value.split("/crl/", 1)[1]
        r = await client.get(path)
        assert r.status_code == 200
        assert x509.load_der_x509_crl(r.content).get_revoked_certificate_by_serial_number(
            issued.certificate.serial_number) is not None
        for bad in ("/crl/nope.crl", f"/crl/{issued.issuer_slug}/99.crl", f"/crl/{issued.issuer_slug}/x.crl",
                    "/crl/root-rsa/1.crl", f"/crl/{issued.issuer_slug}.pem"):
            r = await client.get(bad)
            assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", bad


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
