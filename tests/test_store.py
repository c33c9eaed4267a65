"""Repository behaviour, the same tests on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from kakuin.clock import UTC
from kakuin.errors import NotFound
from kakuin.store.db import Database
from kakuin.store.models import Certificate, CertificateAuthority
from kakuin.store.repos import (
    BlockedKeyRepo,
    CARepo,
    CertificateFilter,
    CertificateRepo,
    InstitutionRepo,
)
from tests.pg import fresh_database

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        d = Database(f"sqlite:///{tmp_path / 't.db'}")
        d.migrate()
        yield d
        d.dispose()
    else:
        with fresh_database() as url:
            d = Database(url)
            d.migrate()
            yield d
            d.dispose()


def _ca(
    slug: str,
    purpose: str,
    gen: int,
    active_from: dt.datetime,
    parent: int | None = None,
    not_after: dt.datetime | None = None,
) -> CertificateAuthority:
    return CertificateAuthority(
        slug=slug,
        name=f"{slug} - G{gen}",
        kind="intermediate" if parent else "root",
        purpose=purpose,
        generation=gen,
        parent_id=parent,
        key_backend="file",
        key_label=slug,
        key_type="ec-p384",
        serial="01",
        der=b"\x30\x00",
        not_before=T0 - dt.timedelta(days=1),
        not_after=not_after or T0 + dt.timedelta(days=3650),
        active_from=active_from,
        status="active",
        created_at=T0,
    )


def _cert(serial: str, issuer_id: int, **kw) -> Certificate:  # type: ignore[no-untyped-def]
    values = dict(
        serial=serial,
        issuer_id=issuer_id,
        profile="server-dv",
        state="reserved",
        subject="CN=www.example.ac.jp",
        sans="www.example.ac.jp",
        spki_sha256="ab" * 32,
        key_type="P-256",
        not_before=T0,
        not_after=T0 + dt.timedelta(days=199),
        crl_shard=3,
        reserved_at=T0,
    )
    values.update(kw)
    return Certificate(**values)


def test_issuing_generation_follows_switch_over_time(db: Database) -> None:
    with db.session() as s:
        repo = CARepo(s)
        root = repo.add(_ca("root", "root-ec", 1, T0))
        g3 = repo.add(_ca("tls-g3", "tls-ecdsa", 3, T0 - dt.timedelta(days=10), root.id))
        repo.add(_ca("tls-g4", "tls-ecdsa", 4, T0 + dt.timedelta(days=5), root.id))
    with db.session() as s:
        repo = CARepo(s)
        assert repo.issuing_for("tls-ecdsa", T0).slug == "tls-g3"
        assert repo.issuing_for("tls-ecdsa", T0 + dt.timedelta(days=5)).slug == "tls-g4"
        assert repo.issuing_for("client", T0) is None
        g3row = repo.by_id(g3.id)
        g3row.status = "revoked"
    with db.session() as s:
        assert CARepo(s).issuing_for("tls-ecdsa", T0) is None
        with pytest.raises(NotFound):
            CARepo(s).by_slug("nope")


def test_serial_is_unique_by_constraint(db: Database) -> None:
    with db.session() as s:
        root = CARepo(s).add(_ca("root", "root-ec", 1, T0))
    with db.session() as s:
        repo = CertificateRepo(s)
        assert repo.reserve(_cert("0abc", root.id))
        assert not repo.reserve(_cert("0abc", root.id))  # same serial: refused by the database
        assert repo.reserve(_cert("0abd", root.id))
    with db.session() as s:
        assert CertificateRepo(s).by_serial("0ABC").serial == "0abc"
        with pytest.raises(NotFound):
            CertificateRepo(s).by_serial("ffff")


def test_find_filters_and_abandon(db: Database) -> None:
    with db.session() as s:
        root = CARepo(s).add(_ca("root", "root-ec", 1, T0))
        inst = InstitutionRepo(s).add("Example University", domains=["Example.ac.jp."], now=T0)
        repo = CertificateRepo(s)
        repo.reserve(_cert("01", root.id, state="issued", institution_id=inst.id))
        repo.reserve(
            _cert("02", root.id, state="issued", sans="mail.example.ac.jp", revoked_at=T0, revocation_reason=1)
        )
        repo.reserve(_cert("03", root.id, state="linted", reserved_at=T0 - dt.timedelta(hours=1)))
        repo.reserve(_cert("04", root.id, state="reserved"))
    with db.session() as s:
        repo = CertificateRepo(s)
        assert [c.serial for c in repo.find(CertificateFilter(state="issued"))] == ["02", "01"]
        assert [c.serial for c in repo.find(CertificateFilter(revoked=True))] == ["02"]
        assert [c.serial for c in repo.find(CertificateFilter(name_contains="MAIL"))] == ["02"]
        assert [c.serial for c in repo.find(CertificateFilter(institution_id=inst.id))] == ["01"]
        assert repo.abandon_stale(T0 - dt.timedelta(minutes=10), T0) == 1
    with db.session() as s:
        abandoned = CertificateRepo(s).by_serial("03")
        assert abandoned.state == "abandoned"
        assert "after the lint" in (abandoned.failure or "") and "may have signed" in (abandoned.failure or "")
        assert CertificateRepo(s).by_serial("04").state == "reserved"
        assert [d.domain for d in InstitutionRepo(s).by_name("Example University").domains] == ["example.ac.jp"]


def test_blocked_keys(db: Database) -> None:
    with db.session() as s:
        repo = BlockedKeyRepo(s)
        assert not repo.is_blocked("cd" * 32)
        repo.block("cd" * 32, "keyCompromise", "01", T0)
        repo.block("cd" * 32, "again", "02", T0)  # idempotent
    with db.session() as s:
        assert BlockedKeyRepo(s).is_blocked("cd" * 32)


def test_failed_unit_of_work_rolls_back(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as s:
        InstitutionRepo(s).add("Rolled Back University", now=T0)
        raise RuntimeError("boom")
    with db.session() as s:
        assert InstitutionRepo(s).all() == []


def test_full_pipeline_on_postgresql(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """init + hierarchy + issuance with PostgreSQL as the store (KAKUIN_DATABASE_URL path)."""
    from kakuin.ca.issuer import IssueRequest
    from kakuin.clock import FixedClock
    from kakuin.context import Context, init_data_dir
    from tests.helpers import ec_key, ov_name

    with fresh_database() as url:
        d = tmp_path / "pgdata"
        init_data_dir(d, database_url=url)
        ctx = Context.open(d, clock=FixedClock(T0))
        assert ctx.db.engine.dialect.name == "postgresql"
        ctx.hierarchy().ensure()
        issued = ctx.issuance.issue(
            IssueRequest(
                profile="server-dv",
                public_key=ec_key().public_key(),
                subject=ov_name(),
                dns_names=("www.example.ac.jp",),
            )
        )
        with ctx.db.session() as s:
            assert CertificateRepo(s).by_serial(issued.serial).state == "issued"
        ctx.db.dispose()


def test_postgres_lock_wait_is_bounded() -> None:
    """A statement waiting on a row another session holds fails after the lock
    timeout (an error naming the wait), instead of hanging its request; the
    defaults are in the session."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    with fresh_database() as url:
        holder, waiter = Database(url), Database(url, lock_timeout_ms=300)
        try:
            with holder.engine.begin() as c:
                c.execute(text("CREATE TABLE t (id int PRIMARY KEY)"))
                c.execute(text("INSERT INTO t VALUES (1)"))
            with holder.engine.connect() as c:
                assert c.execute(text("SHOW lock_timeout")).scalar() == "30s"
                assert c.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "5min"
            # options given in the URL (a schema, say) are kept beside ours
            with holder.engine.begin() as c:
                c.execute(text("CREATE SCHEMA s1"))
            with_schema = Database(f"{url}?options=-csearch_path%3Ds1")
            try:
                with with_schema.engine.connect() as c:
                    assert c.execute(text("SHOW search_path")).scalar() == "s1"
                    assert c.execute(text("SHOW lock_timeout")).scalar() == "30s"
            finally:
                with_schema.dispose()
            with holder.engine.begin() as c:
                c.execute(text("SELECT id FROM t WHERE id = 1 FOR UPDATE"))
                t0 = time.monotonic()
                with pytest.raises(OperationalError, match="lock timeout"), waiter.engine.begin() as w:
                    w.execute(text("UPDATE t SET id = 2 WHERE id = 1"))
                assert time.monotonic() - t0 < 5
        finally:
            holder.dispose()
            waiter.dispose()
