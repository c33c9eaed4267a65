"""Enrollment in the browser (TSV download method 3), without a browser: the
TSV apply stores the checked row and mails a link instead of issuing; the CSR
POST issues with the stored DN (not the CSR's), records the download and
notifies; malformed CSRs, wrong or blocked keys, reused and expired links are
refused with a specific problem document and nothing is issued. The browser
side (key pair, CSR and PKCS#12 in JavaScript) is in test_enrollment_browser.py."""

from __future__ import annotations

import base64
import datetime as dt
import re

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from kakuin.app import create_app
from kakuin.clock import UTC
from kakuin.policy.keys import spki_sha256
from kakuin.ra.actors import Actor
from kakuin.ra.models import Enrollment
from kakuin.ra.services import RA
from kakuin.store.models import Certificate
from kakuin.store.repos import BlockedKeyRepo, InstitutionRepo
from tests.ra_helpers import INST, OP, body, client_fields, outbox, setup_institution, tsv

AT = dt.datetime(2025, 6, 2, tzinfo=UTC)
OFFICER = "officer-a@example.ac.jp"


@pytest.fixture
def ra(make_ctx) -> RA:  # type: ignore[no-untyped-def]
    r = RA(make_ctx(AT))
    setup_institution(r)
    return r


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def officer(ra: RA) -> Actor:
    with ra.ctx.db.session() as s:
        return Actor(f"officer:{OFFICER}", InstitutionRepo(s).by_name(INST).id)


def enroll_token(msg) -> str:  # type: ignore[no-untyped-def]
    m = re.search(r"/enroll/([A-Za-z0-9_-]+)", body(msg))
    assert m, body(msg)
    return m.group(1)


def issued_count(ra: RA) -> int:
    with ra.ctx.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Certificate)) or 0)


def csr_der(key, cn: str = "Someone Else") -> bytes:  # type: ignore[no-untyped-def]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, algorithm).public_bytes(Encoding.DER)


def post_json(der: bytes) -> dict[str, object]:
    return {"json": {"csr": base64.b64encode(der).decode()}}


def apply_browser_row(ra: RA, *, pin: str = "") -> str:
    rows = [
        client_fields(method="3", pin=pin),
        client_fields(method="1", cn="Jiro Suzuki", email_addr="jiro@example.ac.jp"),
    ]
    report = ra.tsv.apply(tsv(rows), institution=INST, actor=officer(ra))
    pending, issued = report.results
    assert pending.ok and pending.serial is None and pending.enrollment is not None
    assert issued.serial is not None
    [mail] = outbox(ra.ctx, "enrollment")
    assert mail["To"] == "hanako@example.ac.jp"
    return enroll_token(mail)


def test_apply_stores_the_row_and_mails_a_link_without_issuing(ra: RA) -> None:
    token = apply_browser_row(ra)
    assert issued_count(ra) == 1  # only the method-1 row
    assert [m["To"] for m in outbox(ra.ctx, "retrieval")] == ["jiro@example.ac.jp"]
    assert "hanako@example.ac.jp" not in {m["To"] for m in outbox(ra.ctx, "access-pin")}
    with ra.ctx.db.session() as s:
        [e] = s.scalars(select(Enrollment)).all()
        assert e.subject_dn.startswith("CN=Hanako Yamada") and e.profile == "client" and e.officer.endswith(OFFICER)
        assert e.token_sha256 != token and e.used_at is None and e.serial is None
    stats = ra.stats.institution_stats(actor=OP, institution=INST)[0].counts
    assert (stats.issued, stats.downloaded, stats.not_downloaded) == (1, 0, 1)


@pytest.mark.anyio
async def test_csr_post_issues_with_the_checked_dn_once(ra: RA) -> None:
    token = apply_browser_row(ra)
    key = ec.generate_private_key(ec.SECP256R1())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ra.ctx)), base_url="http://t") as c:
        page = await c.get(f"/enroll/{token}")
        assert page.status_code == 200 and "パスワード / Password" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert '<script src="/static/ra/enroll.js"' in page.text
        js = await c.get("/static/ra/enroll.js")
        assert js.status_code == 200 and "makePkcs12" in js.text
        assert (await c.get(f"/enroll/{token}")).status_code == 200  # looking does not use the link

        got = await c.post(f"/enroll/{token}", **post_json(csr_der(key)))  # type: ignore[arg-type]
        assert got.status_code == 200, got.text
        answer = got.json()
        cert = x509.load_der_x509_certificate(base64.b64decode(answer["certificate"]))
        assert format(cert.serial_number, "x") == answer["serial"]
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Hanako Yamada"  # not the CSR's
        spki = PublicFormat.SubjectPublicKeyInfo
        assert cert.public_key().public_bytes(Encoding.DER, spki) == key.public_key().public_bytes(Encoding.DER, spki)
        assert answer["chain"] and answer["filename"] == f"{answer['serial']}.p12"

        again = await c.post(f"/enroll/{token}", **post_json(csr_der(key)))  # type: ignore[arg-type]
        assert again.status_code == 410 and again.headers["content-type"] == "application/problem+json"
        assert again.json()["type"].endswith(":gone")
        assert (await c.get(f"/enroll/{token}")).status_code == 410
    assert issued_count(ra) == 2
    stats = ra.stats.institution_stats(actor=OP, institution=INST)[0].counts
    assert (stats.issued, stats.downloaded, stats.not_downloaded) == (2, 1, 1)
    done = outbox(ra.ctx, "downloaded")
    assert {m["To"] for m in done} == {"hanako@example.ac.jp", OFFICER}


def _weak_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("make", "status", "kind"),
    [
        (lambda k: b"\x30\x03\x02\x01\x00", 400, "bad-csr"),  # not a CSR
        (lambda k: csr_der(k)[:-8] + b"\x00" * 8, 400, "bad-csr"),  # signature broken
        (lambda k: csr_der(ec.generate_private_key(ec.SECP521R1())), 422, "bad-key"),  # curve not allowed
        (lambda k: csr_der(_weak_rsa()), 422, "bad-key"),  # RSA < 2048
        (lambda k: csr_der(ed25519.Ed25519PrivateKey.generate()), 422, "bad-key"),  # key type not allowed
        (lambda k: csr_der(k), 422, "blocked-key"),  # on the blocklist
    ],
    ids=["not-a-csr", "bad-signature", "p521", "rsa-1024", "ed25519", "blocked"],
)
async def test_refused_csrs_issue_nothing_and_keep_the_link(ra: RA, make, status: int, kind: str) -> None:  # type: ignore[no-untyped-def]
    token = apply_browser_row(ra)
    key = ec.generate_private_key(ec.SECP256R1())
    if kind == "blocked-key":
        with ra.ctx.db.session() as s:
            BlockedKeyRepo(s).block(spki_sha256(key.public_key()), "keyCompromise", None, AT)
    before = issued_count(ra)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ra.ctx)), base_url="http://t") as c:
        bad = await c.post(f"/enroll/{token}", **post_json(make(key)))  # type: ignore[arg-type]
        assert bad.status_code == status, bad.text
        problem = bad.json()
        assert problem["type"] == f"urn:kakuin:problem:enroll:{kind}" and problem["detail"] and problem["detail_ja"]
        assert issued_count(ra) == before
        with ra.ctx.db.session() as s:
            assert s.scalars(select(Enrollment)).one().used_at is None
        good = await c.post(f"/enroll/{token}", **post_json(csr_der(ec.generate_private_key(ec.SECP256R1()))))  # type: ignore[arg-type]
        assert good.status_code == 200, good.text


@pytest.mark.anyio
async def test_bad_requests_unknown_and_expired_links(ra: RA) -> None:
    token = apply_browser_row(ra)
    der = csr_der(ec.generate_private_key(ec.SECP256R1()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ra.ctx)), base_url="http://t") as c:
        form = await c.post(f"/enroll/{token}", content=der, headers={"content-type": "application/pkcs10"})
        assert form.status_code == 400 and form.json()["type"].endswith(":bad-request")
        junk = await c.post(f"/enroll/{token}", json={"csr": "!!not base64!!"})
        assert junk.status_code == 400
        big = b'{"csr": "' + b"A" * (70 * 1024) + b'"}'
        huge = await c.post(f"/enroll/{token}", content=big, headers={"content-type": "application/json"})
        assert huge.status_code == 400 and "too large" in huge.json()["detail"]

        async def chunks():  # no Content-Length: refused while streaming
            for _ in range(80):
                yield b"A" * 1024

        streamed = await c.post(f"/enroll/{token}", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 400 and "too large" in streamed.json()["detail"]
        unknown = await c.post("/enroll/nonsense", **post_json(der))  # type: ignore[arg-type]
        assert unknown.status_code == 404 and unknown.json()["type"].endswith(":not-found")
        assert (await c.get("/enroll/nonsense")).status_code == 404
        ra.ctx.clock.advance(dt.timedelta(days=ra.ctx.config.ra.retrieval_days, seconds=1))  # type: ignore[attr-defined]
        expired = await c.post(f"/enroll/{token}", **post_json(der))  # type: ignore[arg-type]
        assert expired.status_code == 410 and "expired" in expired.json()["detail"]
        assert "有効期限切れ" in (await c.get(f"/enroll/{token}")).text
    assert issued_count(ra) == 1


def test_pin_from_the_tsv_is_asked_for_and_never_stored(ra: RA) -> None:
    token = apply_browser_row(ra, pin="Abcd1234efgh")
    info = ra.enrollment.peek(token)
    assert info.pin_required
    mail = outbox(ra.ctx, "enrollment")[0]
    assert "Abcd1234efgh" not in body(mail) and "access PIN" in body(mail)
    with ra.ctx.db.session() as s:
        row = s.scalars(select(Enrollment)).one()
        assert "Abcd1234efgh" not in repr([getattr(row, c.key) for c in Enrollment.__table__.columns])
