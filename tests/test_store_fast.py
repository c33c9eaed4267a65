"""kakuin.store.fast: statements run on the driver's cursor give exactly what
``Connection.execute`` gives (types processed the same way), on SQLite and on
PostgreSQL; driver errors arrive as SQLAlchemy's; a connection the server
dropped is invalidated, not handed out again."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, exc, select, text

from kakuin.acme.models import ACMEAccount, ACMEAuthorization, ACMEChallenge, ACMEOrder
from kakuin.acme.repos import ACMELedger
from kakuin.store.db import Database
from kakuin.store.fast import Prepared
from tests.pg import fresh_database

UTC = dt.UTC


def _fill(db: Database) -> dict[str, int]:
    now = dt.datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    with db.session() as s:
        acct = ACMEAccount(thumbprint="tp", jwk={"kty": "EC", "crv": "P-256", "x": "x", "y": "y"},
                           contact=["mailto:a@example.ac.jp"], status="valid", tos_agreed=True, created_at=now)
        s.add(acct)
        s.flush()
        az = ACMEAuthorization(account_id=acct.id, identifier="www.example.ac.jp", wildcard=False,
                               status="valid", expires=now + dt.timedelta(days=7), validated_at=now, created_at=now)
        s.add(az)
        s.flush()
        ch = ACMEChallenge(authz_id=az.id, type="http-01", token="tok", status="valid", validated_at=now,
                           error=None, record={"hostname": "www.example.ac.jp", "addresses": ["127.0.0.1"]})
        s.add(ch)
        s.add(ACMEChallenge(authz_id=az.id, type="dns-01", token="tok", status="pending",
                            error={"type": "urn:ietf:params:acme:error:dns", "detail": "なし"}))
        order = ACMEOrder(account_id=acct.id, status="valid",
                          identifiers=[{"type": "dns", "value": "www.example.ac.jp"}], authz_ids=[az.id],
                          not_before=None, not_after=now + dt.timedelta(days=46), expires=now, error=None,
                          certificate_serial="0a1b", created_at=now)
        s.add(order)
        s.flush()
        return {"account": acct.id, "authz": az.id, "challenge": ch.id, "order": order.id}


def _same_as_sqlalchemy(db: Database) -> None:
    db.migrate()
    ids = _fill(db)
    ledger = ACMELedger(db.engine, db.autocommit)
    pairs: list[tuple[Any, Prepared, dict[str, Any]]] = [
        (ledger._account, ledger._f_account, {"id": ids["account"]}),
        (ledger._order, ledger._f_order, {"id": ids["order"]}),
        (ledger._authz, ledger._f_authz, {"id": ids["authz"]}),
        (ledger._challenge, ledger._f_challenge, {"id": ids["challenge"]}),
        (ledger._challenges, ledger._f_challenges, {"authz_id": ids["authz"]}),
    ]
    with ledger.reader.connect() as conn:
        for stmt, fast, params in pairs:
            want = [dict(r._mapping) for r in conn.execute(stmt, params)]
            got = fast.all(conn, params)
            assert got == want and want
            # Equal and of the same types (a datetime, not its text; a bool, not 1).
            assert [[type(v) for v in r.values()] for r in got] == [[type(v) for v in r.values()] for r in want]
            assert fast.first(conn, params) == want[0]
        assert ledger._f_account.first(conn, {"id": 10**9}) is None
    # The ledger's reads (fast) equal its views built the SQLAlchemy way.
    with ledger.pinned():
        acct = ledger.account(ids["account"])
        assert acct is not None and acct.jwk["crv"] == "P-256" and acct.contact == ["mailto:a@example.ac.jp"]
        assert acct.tos_agreed is True
        order, authzs = ledger.order(ids["order"])  # type: ignore[misc]
        assert order.authz_ids == [ids["authz"]] and [a.id for a in authzs] == [ids["authz"]]
        assert authzs[0].wildcard is False
        _, chals = ledger.authz(ids["authz"])  # type: ignore[misc]
        assert [c.type for c in chals] == ["http-01", "dns-01"]
        assert chals[1].error == {"type": "urn:ietf:params:acme:error:dns", "detail": "なし"}
        # A nonce is good once: the INSERT … RETURNING decides.
        now = dt.datetime.now(UTC)
        assert ledger.redeem_nonce("n-1", now) is True
        assert ledger.redeem_nonce("n-1", now) is False
        assert ledger.redeem_nonce("n-2", now) is True
        # Conditional writes with values written into the statement: the first
        # claim wins, the second finds the row no longer pending. A challenge is
        # claimed only while its authorization is pending.
        pending_one = next(c for c in chals if c.status == "pending")
        assert ledger.claim_challenge(pending_one.id, ids["authz"]) is False  # the authorization is valid
        ledger.set_authz(ids["authz"], status="pending")
        pending = next(c for c in chals if c.status == "pending")
        tried = next(c for c in chals if c.status != "pending")
        assert ledger.claim_challenge(pending.id, ids["authz"]) is False  # another was tried
        ledger.record_validation(tried.id, ids["authz"], {"status": "pending"}, {"status": "pending"})
        assert ledger.claim_challenge(pending.id, ids["authz"]) is True
        assert ledger.claim_challenge(pending.id, ids["authz"]) is False
        ledger.record_validation(pending.id, ids["authz"], {"status": "invalid", "record": {"k": [1]}},
                                 {"status": "invalid", "validated_at": now})
        _, chals = ledger.authz(ids["authz"])  # type: ignore[misc]
        assert [(c.status, c.record) for c in chals if c.id == pending.id] == [("invalid", {"k": [1]})]
        ledger.set_order(ids["order"], status="pending")
        assert ledger.claim_order(ids["order"]) is True and ledger.claim_order(ids["order"]) is False
        assert ledger.order(ids["order"])[0].status == "processing"  # type: ignore[index]


def test_fast_reads_match_sqlalchemy_on_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/fast.db")
    try:
        _same_as_sqlalchemy(db)
    finally:
        db.dispose()


def test_fast_reads_match_sqlalchemy_on_postgresql() -> None:
    with fresh_database() as url:
        db = Database(url)
        try:
            _same_as_sqlalchemy(db)
        finally:
            db.dispose()


def test_expanding_parameters_are_refused(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/fast.db")
    t = ACMEAccount.__table__
    with pytest.raises(ValueError, match="expanding"):
        Prepared(select(t.c.id).where(t.c.id.in_(bindparam("ids", expanding=True))), db.engine.dialect)
    db.dispose()


def test_driver_errors_are_sqlalchemy_errors(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/fast.db")
    db.migrate()
    t = ACMEAccount.__table__
    fast = Prepared(select(t.c.id).where(t.c.id == bindparam("id")), db.engine.dialect)
    with db.engine.connect() as conn:
        conn.execute(text("DROP TABLE acme_accounts"))
        with pytest.raises(exc.OperationalError, match="no such table"):
            fast.first(conn, {"id": 1})
    db.dispose()


def test_dropped_postgresql_connection_is_invalidated() -> None:
    """The server ends the session under a pooled connection: the fast path
    reports it as a disconnect and invalidates it, and the next checkout gets
    a working connection (as Connection.execute would have arranged)."""
    with fresh_database() as url:
        db = Database(url)
        try:
            db.migrate()
            _fill(db)
            ledger = ACMELedger(db.engine, db.autocommit)
            with ledger.reader.connect() as conn:
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
                with db.engine.connect() as killer:
                    killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                    killer.commit()
                with pytest.raises(exc.DBAPIError) as info:
                    ledger._f_account.first(conn, {"id": 1})
                assert info.value.connection_invalidated
            with ledger.reader.connect() as conn:
                assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
                assert ledger._f_account.first(conn, {"id": 1}) is not None
        finally:
            db.dispose()


def test_sqlite_autocommit_pool_keeps_prepared_statements(tmp_path: Path) -> None:
    """Database.autocommit on SQLite is a pool of its own, in autocommit from the
    start: a checkout and checkin runs no statement (the per-checkout switch of
    execution_options ran PRAGMA read_uncommitted on checkin, which expires every
    prepared statement of the connection), and writes through it are committed."""
    db = Database(f"sqlite:///{tmp_path}/fast.db")
    db.migrate()
    traced: list[str] = []
    with db.autocommit.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw.isolation_level is None  # type: ignore[union-attr]
        raw.set_trace_callback(traced.append)  # type: ignore[union-attr]
    ledger = ACMELedger(db.engine, db.autocommit)
    for _ in range(3):
        with ledger.pinned():
            assert ledger.account(1) is None
    assert traced and not [s for s in traced if "PRAGMA" in s.upper() or s.upper().startswith(("BEGIN", "COMMIT"))]
    with ledger.pinned():
        assert ledger.redeem_nonce("n", dt.datetime.now(UTC)) is True
    with db.engine.connect() as other:  # another pool sees it: committed
        assert other.execute(text("SELECT count(*) FROM acme_nonces")).scalar() == 1
    # The per-checkout switch (what the ledgers used before) does run the pragma.
    switched = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    seen: list[str] = []
    with switched.connect() as conn:
        conn.connection.dbapi_connection.set_trace_callback(seen.append)  # type: ignore[union-attr]
    assert any("read_uncommitted" in s for s in seen)
    db.dispose()
