"""Retrieval links: PKCS#12 that openssl opens with the PIN and only with it,
PEM with the chain, single use, expiry on an injected clock, completion
notices, and the HTTP route."""

from __future__ import annotations

import datetime as dt
import shutil

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kakuin.app import create_app
from kakuin.clock import UTC
from kakuin.ra.retrieval import RetrievalGone
from kakuin.ra.services import RA
from tests.helpers import ec_key, run
from tests.ra_helpers import (
    INST,
    OP,
    body,
    client_fields,
    outbox,
    pin_of,
    server_fields,
    setup_institution,
    token_of,
    tsv,
)

AT = dt.datetime(2025, 6, 2, tzinfo=UTC)


def _openssl() -> str:
    path = shutil.which("openssl")
    assert path, "openssl is required for these tests (apt-get install openssl)"
    return path


@pytest.fixture
def ra(make_ctx) -> RA:  # type: ignore[no-untyped-def]
    r = RA(make_ctx(AT))
    setup_institution(r)
    return r


def test_pkcs12_opens_with_the_pin_only(ra: RA, tmp_path) -> None:  # type: ignore[no-untyped-def]
    report = ra.tsv.apply(tsv([client_fields(pin="Abcd1234efgh")]), institution=INST, actor=OP)
    serial = report.results[0].serial
    [link] = outbox(ra.ctx, "retrieval")
    assert link["To"] == "hanako@example.ac.jp"
    assert not outbox(ra.ctx, "access-pin")  # the PIN came with the TSV: nothing to mail
    d = ra.retrieval.fetch(token_of(link))
    assert d.media_type == "application/x-pkcs12" and d.serial == serial
    p12 = tmp_path / "c.p12"
    p12.write_bytes(d.content)
    ok = run([_openssl(), "pkcs12", "-info", "-nokeys", "-in", p12, "-passin", "pass:Abcd1234efgh"])
    assert ok.returncode == 0, ok.stderr
    assert "BEGIN CERTIFICATE" in ok.stdout and "Hanako Yamada" in ok.stdout
    for bad in (["-passin", "pass:wrong-pin-0000"], ["-passin", "pass:"]):
        res = run([_openssl(), "pkcs12", "-info", "-nokeys", "-in", p12, *bad])
        assert res.returncode != 0
        assert "mac verify error" in (res.stderr + res.stdout).lower()


def test_generated_pin_is_mailed_separately_and_key_is_dropped(ra: RA, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ra.tsv.apply(tsv([client_fields(profile_id="7", cn="Hanako Yamada")]), institution=INST, actor=OP)
    [link] = outbox(ra.ctx, "retrieval")
    [pin_mail] = outbox(ra.ctx, "access-pin")
    pin = pin_of(pin_mail)
    assert pin not in body(link) and "/retrieve/" not in body(pin_mail)
    assert "Access PIN" in body(pin_mail)  # English alongside
    d = ra.retrieval.fetch(token_of(link))
    (tmp_path / "s.p12").write_bytes(d.content)
    res = run([_openssl(), "pkcs12", "-info", "-nokeys", "-in", tmp_path / "s.p12", "-passin", f"pass:{pin}"])
    assert res.returncode == 0 and "hanako@example.ac.jp" in res.stdout, res.stderr
    from sqlalchemy import select

    from kakuin.ra.models import Retrieval

    with ra.ctx.db.session() as s:
        assert all(r.payload is None for r in s.scalars(select(Retrieval)))


def test_link_is_single_use_and_notifies(ra: RA) -> None:
    ra.tsv.apply(tsv([server_fields(ec_key(ec.SECP384R1()))]), institution=INST, actor=OP)
    token = token_of(outbox(ra.ctx, "retrieval")[0])
    info = ra.retrieval.peek(token)
    assert info.kind == "pem"
    d = ra.retrieval.fetch(token)
    assert d.content.count(b"BEGIN CERTIFICATE") == 2  # leaf + the intermediate to install
    with pytest.raises(RetrievalGone) as e:
        ra.retrieval.fetch(token)
    assert "使用済み" in e.value.message
    [done] = outbox(ra.ctx, "downloaded")
    assert done["To"] == "taro@example.ac.jp" and "downloaded" in body(done)


def test_link_expires(ra: RA) -> None:
    ra.tsv.apply(tsv([client_fields(pin="Abcd1234efgh")]), institution=INST, actor=OP)
    token = token_of(outbox(ra.ctx, "retrieval")[0])
    ra.ctx.clock.advance(dt.timedelta(days=ra.ctx.config.ra.retrieval_days, seconds=1))  # type: ignore[attr-defined]
    with pytest.raises(RetrievalGone) as e:
        ra.retrieval.fetch(token)
    assert "expired" in e.value.message
    assert ra.retrieval.purge_expired() == 1  # the encrypted key is not kept


@pytest.mark.anyio
async def test_http_route(ra: RA) -> None:
    ra.tsv.apply(tsv([client_fields(pin="Abcd1234efgh")]), institution=INST, actor=OP)
    token = token_of(outbox(ra.ctx, "retrieval")[0])
    app = create_app(ra.ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        page = await c.get(f"/retrieve/{token}")
        assert page.status_code == 200 and "ダウンロード / Download" in page.text
        got = await c.post(f"/retrieve/{token}")
        assert got.status_code == 200 and got.headers["content-type"] == "application/x-pkcs12"
        again = await c.get(f"/retrieve/{token}?download=1")
        assert again.status_code == 410
        assert (await c.get("/retrieve/nonsense")).status_code == 404


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
