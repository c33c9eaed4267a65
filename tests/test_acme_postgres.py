"""A whole ACME order on PostgreSQL, through a real client: lego (EAB, http-01)
against kakuin whose database is a fresh PostgreSQL database (tests/pg.py),
made by ``kakuin init --database-url``, with the ACME database work in threads
(PostgreSQL's default). The certificate goes through pkilint, and what the
order left is read back from PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import select

from kakuin.acme.models import ACMEOrder
from kakuin.store.repos import CertificateRepo
from tests.acme_server import DOMAIN, Server, start_server
from tests.conftest import PASSPHRASE
from tests.pg import fresh_database
from tests.status_helpers import kakuin
from tests.test_acme_certbot import lint
from tests.test_acme_lego import issued, lego

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def pg_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("KAKUIN_CA_PASSPHRASE", PASSPHRASE)
    with fresh_database() as url:
        template = tmp_path / "pg-template"
        res = kakuin(template, "init", "--data-dir", str(template), "--database-url", url)
        assert res.returncode == 0, res.stderr
        yield from start_server(template, tmp_path)


def test_lego_http01_on_postgresql(pg_server: Server, tmp_path: Path) -> None:
    ctx = pg_server.ctx
    assert ctx.db.engine.dialect.name == "postgresql"
    assert not ctx.acme.flow.inline_db  # [database] work = auto: threads on PostgreSQL
    name = f"pg.{DOMAIN}"
    r = lego(pg_server, tmp_path, name, "--http", "--http.port", f"127.0.0.1:{pg_server.http01_port}")
    assert r.returncode == 0, r.stdout + r.stderr
    pem = issued(tmp_path, name)
    lint(pem)
    serial = format(x509.load_pem_x509_certificates(pem.read_bytes())[0].serial_number, "x")
    with ctx.db.session() as s:
        row = CertificateRepo(s).by_serial(serial)
        order = s.scalars(select(ACMEOrder).where(ACMEOrder.certificate_serial == serial)).one()
    assert row.state == "issued" and row.linted_at is not None and row.sans == name
    assert order.status == "valid"
