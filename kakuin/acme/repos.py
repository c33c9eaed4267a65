"""ACME repositories: the only ACME code that writes SQL. Services own transactions."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    String,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kakuin.acme.limits import Count, LimitQuery, enforce
from kakuin.acme.models import (
    Account,
    ACMEAccount,
    ACMEAuthorization,
    ACMEChallenge,
    ACMENonce,
    ACMEOrder,
    ARIOverride,
    Authorization,
    Challenge,
    EABCredential,
    Order,
)
from kakuin.clock import as_utc
from kakuin.policy.validity import dcv_reuse_days
from kakuin.store.fast import InsertsReturningId, Prepared, UpdatesById, UpdatesPendingById
from kakuin.store.models import Certificate, Institution, InstitutionDomain


class AccountRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def by_id(self, account_id: int) -> ACMEAccount | None:
        return self.s.get(ACMEAccount, account_id)

    def by_thumbprint(self, thumbprint: str) -> ACMEAccount | None:
        return self.s.scalar(select(ACMEAccount).where(ACMEAccount.thumbprint == thumbprint))

    def add(self, account: ACMEAccount) -> bool:
        """Insert; False when the key or the EAB credential is already bound."""
        try:
            with self.s.begin_nested():
                self.s.add(account)
                self.s.flush()
        except IntegrityError:
            return False
        return True

    def count(self) -> int:
        return self.s.scalar(select(func.count()).select_from(ACMEAccount)) or 0


class OrderRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def add(self, order: ACMEOrder) -> ACMEOrder:
        self.s.add(order)
        self.s.flush()
        return order

    def by_id(self, order_id: int) -> ACMEOrder | None:
        return self.s.get(ACMEOrder, order_id)

    def of_account(
        self, account_id: int, *, before_id: int | None, limit: int, now: dt.datetime
    ) -> Sequence[ACMEOrder]:
        """The account's orders, newest first, without the invalid ones (RFC 8555
        §7.1.2.1: the list SHOULD NOT include them): neither those stored invalid
        nor pending ones past their expiry."""
        q = select(ACMEOrder).where(
            ACMEOrder.account_id == account_id,
            ACMEOrder.status != "invalid",
            or_(ACMEOrder.status.in_(("processing", "valid")), ACMEOrder.expires > now),
        )
        if before_id is not None:
            q = q.where(ACMEOrder.id < before_id)
        return self.s.scalars(q.order_by(ACMEOrder.id.desc()).limit(limit)).all()

    def claim_for_finalization(self, order_id: int) -> bool:
        """pending → processing, once: the database decides which request wins."""
        result = self.s.execute(
            update(ACMEOrder)
            .where(ACMEOrder.id == order_id, ACMEOrder.status == "pending")
            .values(status="processing")
        )
        return (result.rowcount or 0) == 1

    def set(self, order_id: int, **values: object) -> None:
        self.s.execute(update(ACMEOrder).where(ACMEOrder.id == order_id).values(**values))

    def by_serial(self, serial: str) -> ACMEOrder | None:
        return self.s.scalar(
            select(ACMEOrder).where(ACMEOrder.certificate_serial == serial).limit(1)
        )

    def replacing(self, cert_id: str) -> Sequence[ACMEOrder]:
        return self.s.scalars(select(ACMEOrder).where(ACMEOrder.replaces == cert_id)).all()

    def count(self) -> int:
        return self.s.scalar(select(func.count()).select_from(ACMEOrder)) or 0


class AuthzRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def add(
        self, authz: ACMEAuthorization, challenge_types: Sequence[str], token: str
    ) -> ACMEAuthorization:
        self.s.add(authz)
        self.s.flush()
        for t in challenge_types:
            self.s.add(ACMEChallenge(authz_id=authz.id, type=t, token=token, status="pending"))
        self.s.flush()
        return authz

    def by_id(self, authz_id: int) -> ACMEAuthorization | None:
        return self.s.get(ACMEAuthorization, authz_id)

    def by_ids(self, ids: Sequence[int]) -> list[ACMEAuthorization]:
        rows = {
            a.id: a
            for a in self.s.scalars(
                select(ACMEAuthorization).where(ACMEAuthorization.id.in_(list(ids)))
            ).all()
        }
        return [rows[i] for i in ids if i in rows]

    def reusable(
        self, account_id: int, identifier: str, wildcard: bool, now: dt.datetime
    ) -> ACMEAuthorization | None:
        """Boulder reuses an account's valid, unexpired authorization for a name."""
        return self.s.scalar(
            select(ACMEAuthorization)
            .where(
                ACMEAuthorization.account_id == account_id,
                ACMEAuthorization.identifier == identifier,
                ACMEAuthorization.wildcard == wildcard,
                ACMEAuthorization.status == "valid",
                ACMEAuthorization.expires > now,
            )
            .order_by(ACMEAuthorization.expires.desc())
            .limit(1)
        )

    def valid_for(self, account_id: int, identifiers: Sequence[str], now: dt.datetime) -> set[str]:
        rows = self.s.scalars(
            select(ACMEAuthorization.identifier).where(
                ACMEAuthorization.account_id == account_id,
                ACMEAuthorization.identifier.in_(list(identifiers)),
                ACMEAuthorization.status == "valid",
                ACMEAuthorization.expires > now,
            )
        ).all()
        return set(rows)

    def challenges(self, authz_ids: Sequence[int]) -> list[ACMEChallenge]:
        return list(
            self.s.scalars(
                select(ACMEChallenge)
                .where(ACMEChallenge.authz_id.in_(list(authz_ids)))
                .order_by(ACMEChallenge.id)
            ).all()
        )

    def challenge(self, challenge_id: int) -> ACMEChallenge | None:
        return self.s.get(ACMEChallenge, challenge_id)

    def claim_challenge(self, challenge_id: int, authz_id: int) -> bool:
        """pending → processing for one challenge of a pending authorization, once."""
        busy = self.s.scalar(
            select(func.count())
            .select_from(ACMEChallenge)
            .where(ACMEChallenge.authz_id == authz_id, ACMEChallenge.status != "pending")
        )
        if busy:
            return False
        result = self.s.execute(
            update(ACMEChallenge)
            .where(ACMEChallenge.id == challenge_id, ACMEChallenge.status == "pending")
            .values(status="processing")
        )
        return (result.rowcount or 0) == 1

    def set_challenge(self, challenge_id: int, **values: object) -> None:
        self.s.execute(
            update(ACMEChallenge).where(ACMEChallenge.id == challenge_id).values(**values)
        )

    def set(self, authz_id: int, **values: object) -> None:
        self.s.execute(
            update(ACMEAuthorization).where(ACMEAuthorization.id == authz_id).values(**values)
        )


class EABRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def add(self, cred: EABCredential) -> EABCredential:
        self.s.add(cred)
        self.s.flush()
        return cred

    def by_kid(self, kid: str) -> EABCredential | None:
        return self.s.scalar(select(EABCredential).where(EABCredential.kid == kid))

    def all(self) -> Sequence[EABCredential]:
        return self.s.scalars(select(EABCredential).order_by(EABCredential.id)).all()

    def bound_account(self, cred_id: int) -> int | None:
        return self.s.scalar(select(ACMEAccount.id).where(ACMEAccount.eab_credential_id == cred_id))

    def count(self) -> int:
        return self.s.scalar(select(func.count()).select_from(EABCredential)) or 0


class ARIRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def get(self, serial: str) -> ARIOverride | None:
        return self.s.get(ARIOverride, serial)

    def put(self, serial: str, explanation_url: str | None, now: dt.datetime) -> None:
        row = self.s.get(ARIOverride, serial)
        if row is None:
            self.s.add(ARIOverride(serial=serial, explanation_url=explanation_url, created_at=now))
        else:
            row.explanation_url, row.created_at = explanation_url, now
        self.s.flush()


class ACMELedger:
    """The ACME request path in SQLAlchemy Core.

    Every ACME request authenticates (account, nonce) and reads or moves one
    object; through the ORM that bookkeeping cost more than the request. These
    statements are built once (SQLAlchemy's compiled cache serves them), each
    method is one short transaction on one pooled connection, and reads return
    frozen views (``models.Account`` …). Semantics are those of the repositories
    above: the database decides every race (nonce INSERT row count, conditional
    UPDATEs for the challenge and finalization claims).
    """

    def __init__(self, engine: Engine, autocommit: Engine) -> None:
        self.engine = engine
        # Reads run without a transaction (PostgreSQL: no BEGIN/ROLLBACK round
        # trips around a SELECT). Each statement sees what is committed, as under
        # READ COMMITTED; the decisions are the conditional writes, never a read.
        # ``autocommit``: Database.autocommit (on SQLite a pool of its own, see there).
        self.reader = autocommit
        self._pin = threading.local()  # the connection of pinned(), per thread
        n, a = ACMENonce.__table__, ACMEAccount.__table__
        o, z, c = ACMEOrder.__table__, ACMEAuthorization.__table__, ACMEChallenge.__table__
        e, d, cert = EABCredential.__table__, InstitutionDomain.__table__, Certificate.__table__
        self._o, self._z, self._c = o, z, c

        def cols(table: Any, view: type) -> list[Any]:
            # The view's fields only: a column added later does not break the views.
            return [table.c[f.name] for f in dataclasses.fields(view)]

        acols, ocols, zcols, ccols = cols(a, Account), cols(o, Order), cols(z, Authorization), cols(c, Challenge)
        # INSERT … ON CONFLICT DO NOTHING RETURNING: a row back says this caller used
        # the nonce first (psycopg reports no row count for ON CONFLICT inserts).
        upsert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self._nonce_use = upsert(n).on_conflict_do_nothing(index_elements=[n.c.nonce]).returning(n.c.nonce)
        self._nonce_purge = delete(n).where(n.c.created_at < bindparam("older_than"))
        self._account = select(*acols).where(a.c.id == bindparam("id"))
        self._order = select(*ocols).where(o.c.id == bindparam("id"))
        self._authzs = select(*zcols).where(z.c.id.in_(bindparam("ids", expanding=True)))
        self._authz = select(*zcols).where(z.c.id == bindparam("id"))
        self._challenges = select(*ccols).where(c.c.authz_id == bindparam("authz_id")).order_by(c.c.id)
        self._challenges_of = (
            select(*ccols).where(c.c.authz_id.in_(bindparam("ids", expanding=True))).order_by(c.c.id)
        )
        self._challenge = select(*ccols).where(c.c.id == bindparam("id"))
        # pending → processing for one challenge, only while its authorization is
        # pending and none of its challenges has been tried: one statement, so the
        # database decides (on PostgreSQL after locking the authorization row).
        other = c.alias("other")
        self._claim_challenge = (
            update(c)
            .where(
                c.c.id == bindparam("cid"),
                c.c.status == "pending",
                exists().where(z.c.id == bindparam("aid"), z.c.status == "pending"),
                ~exists().where(other.c.authz_id == bindparam("aid"), other.c.status != "pending"),
            )
            .values(status="processing")
        )
        self._claim_order = (
            update(o)
            .where(o.c.id == bindparam("_id"), o.c.status == "pending")
            .values(status="processing")
        )
        self._reusable = (
            select(*zcols)
            .where(
                z.c.account_id == bindparam("account_id"),
                z.c.identifier == bindparam("identifier"),
                z.c.wildcard == bindparam("wildcard"),
                z.c.status == "valid",
                z.c.expires > bindparam("now"),
                # BR 3.2.2.4: the validation may be relied on for dcv_reuse_days at most.
                z.c.validated_at > bindparam("validated_after"),
            )
            .order_by(z.c.expires.desc())
            .limit(1)
        )
        self._cred_domains = select(e.c.domains).where(e.c.id == bindparam("id"))
        self._inst_domains = select(d.c.domain).where(
            and_(d.c.institution_id == bindparam("id"), d.c.approved.is_(True))
        )
        self._certificate = select(cert).where(cert.c.serial == bindparam("serial"))
        self._cert = cert
        self._cred_kid = select(e.c.kid).where(e.c.id == bindparam("id"))
        self._limit_statements: dict[tuple[bool, bool, bool, bool], Any] = {}
        self._sqlite = engine.dialect.name == "sqlite"
        self._lock_account = (
            select(a.c.id).where(a.c.id == bindparam("id")).with_for_update(key_share=True)
            if engine.dialect.name == "postgresql"
            else None
        )
        # What every request runs, on the driver's cursor (kakuin.store.fast).
        fast = engine.dialect
        self._f_nonce_use = Prepared(self._nonce_use, fast)
        self._f_account = Prepared(self._account, fast)
        self._f_order = Prepared(self._order, fast)
        self._f_authz = Prepared(self._authz, fast)
        self._f_challenges = Prepared(self._challenges, fast)
        self._f_challenge = Prepared(self._challenge, fast)
        self._f_claim_challenge = Prepared(self._claim_challenge, fast)
        self._f_claim_order = Prepared(self._claim_order, fast)
        self._f_certificate = Prepared(self._certificate, fast)
        self._f_set_challenge = UpdatesById(c, fast)
        self._f_set_authz = UpdatesById(z, fast)
        self._f_settle_authz = UpdatesPendingById(z, fast)
        # PostgreSQL: claiming a challenge first locks its authorization row, so two
        # challenges of one authorization cannot both be claimed (each UPDATE alone
        # sees its own snapshot). SQLite serialises writers: one statement suffices.
        self._lock_authz = (
            None if fast.name == "sqlite"
            else select(z.c.id).where(z.c.id == bindparam("id"), z.c.status == "pending").with_for_update()
        )
        self._f_set_order = UpdatesById(o, fast)
        self._f_reusable = Prepared(self._reusable, fast)
        self._f_insert_authz = InsertsReturningId(z, fast)
        self._f_insert_challenge = InsertsReturningId(c, fast)
        self._f_insert_order = InsertsReturningId(o, fast)
        self._f_cred_domains = Prepared(self._cred_domains, fast)
        self._f_inst_domains = Prepared(self._inst_domains, fast)
        self._f_cred_kid = Prepared(self._cred_kid, fast)
        self._f_lock_account = Prepared(self._lock_account, fast) if self._lock_account is not None else None
        inst = Institution.__table__
        self._institution_name = select(inst.c.name_en).where(inst.c.id == bindparam("id"))
        self._f_institution_name = Prepared(self._institution_name, fast)

    # -- connections ------------------------------------------------------------
    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Everything this thread asks of the ledger inside the block uses one
        pooled connection, in autocommit: an ACME request (authentication, nonce,
        its object) checked out one instead of three to five, and on PostgreSQL
        sends no BEGIN/COMMIT around its reads and one-statement writes (each is
        atomic on its own). A write of several statements still gets its own
        transaction (``_write(single=False)``); a nonce stays used when the work
        after it is refused."""
        if getattr(self._pin, "conn", None) is not None:
            yield
            return
        with self.reader.connect() as conn:
            self._pin.conn = conn
            try:
                yield
            finally:
                self._pin.conn = None

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        conn = getattr(self._pin, "conn", None)
        if conn is None:
            with self.reader.connect() as conn:
                yield conn
        else:
            yield conn

    @contextlib.contextmanager
    def _write(self, *, single: bool) -> Iterator[Connection]:
        """``single``: the block runs one statement whose effect stands alone (or
        several that need not be atomic together), so the pinned autocommit
        connection serves; otherwise one transaction on its own connection."""
        conn = getattr(self._pin, "conn", None)
        if conn is not None and single:
            yield conn
            return
        with self.engine.begin() as conn:
            yield conn

    # -- nonces and accounts --------------------------------------------------
    def redeem_nonce(self, nonce: str, issued: dt.datetime, purge_before: dt.datetime | None = None) -> bool:
        """Record the nonce as used (the row's created_at is when it was minted):
        True only for the one caller whose INSERT added the row (kakuin.acme.nonces)."""
        with self._write(single=True) as conn:
            won = self._f_nonce_use.first(conn, {"nonce": nonce, "created_at": issued}) is not None
            if purge_before is not None:
                conn.execute(self._nonce_purge, {"older_than": purge_before})
        return won

    def account(self, account_id: int) -> Account | None:
        with self._read() as conn:
            row = self._f_account.first(conn, {"id": account_id})
        return Account(**row) if row is not None else None

    def allowed_domains(self, cred_id: int | None, institution_id: int | None) -> list[str] | None:
        """The names an account may order: the credential's list, else its institution's."""
        if institution_id is None:
            return None
        with self._read() as conn:
            if cred_id is not None:
                row = self._f_cred_domains.first(conn, {"id": cred_id})
                domains = row["domains"] if row is not None else None
                if domains and domains.strip():
                    return str(domains).split()
            return [r["domain"] for r in self._f_inst_domains.all(conn, {"id": institution_id})]

    def credential_kid(self, cred_id: int) -> str | None:
        with self._read() as conn:
            row = self._f_cred_kid.first(conn, {"id": cred_id})
            return row["kid"] if row is not None else None

    def institution_name(self, institution_id: int) -> str | None:
        with self._read() as conn:
            row = self._f_institution_name.first(conn, {"id": institution_id})
            return row["name_en"] if row is not None else None

    # -- rate limits (kakuin.acme.limits) -----------------------------------------
    def _limit_counts(self, conn: Connection, q: LimitQuery) -> list[Count]:
        """Every enabled limit's count in one statement (UNION ALL), each part an
        indexed range: ix_acme_authz_failed, ix_acme_authz_pending,
        ix_acme_orders_account_created, ix_acme_orders_names. A window is
        (now - length, now]: an event exactly as old as the window has left it,
        when Retry-After said it would. The statement is built once per set of
        enabled parts (building it cost ~0.5 ms per newOrder) and bound here."""
        lim = q.limits
        key = (
            bool(lim.new_orders and not q.renewal),
            bool(lim.pending_authorizations),
            bool(lim.duplicate_certificates and q.names_hash is not None),
            bool(lim.failed_validations and q.identifiers),
        )
        if not any(key):
            return []
        stmt = self._limit_statements.get(key)
        if stmt is None:
            stmt = self._limit_statements[key] = self._limit_statement(*key)
        params: dict[str, Any] = {
            "account_id": q.account_id,
            "orders_since": q.orders_since,
            "now": q.now,
            "names_hash": q.names_hash,
            "dup_created_since": q.issued_since - q.order_lifetime,
            "issued_since": q.issued_since,
            "identifiers": list(q.identifiers),
            "failed_since": q.failed_since,
            "failed_min": lim.failed_validations,
        }
        return [Count(r[0], r[1], int(r[2]), r[3]) for r in conn.execute(stmt, params)]

    def _limit_statement(self, orders: bool, pending: bool, duplicate: bool, failed: bool) -> Any:
        o, z, cert = self._o, self._z, self._cert
        parts: list[Any] = []

        def kind(k: str) -> Any:
            return literal_column(f"'{k}'", String)  # a constant in the SQL text, not a parameter

        if orders:
            parts.append(
                select(kind("orders"), null(), func.count(), func.min(o.c.created_at)).where(
                    o.c.account_id == bindparam("account_id"), o.c.created_at > bindparam("orders_since")
                )
            )
        if pending:
            parts.append(
                select(kind("pending"), null(), func.count(), func.min(z.c.expires)).where(
                    z.c.account_id == bindparam("account_id"), z.c.status == "pending", z.c.expires > bindparam("now")
                )
            )
        if duplicate:
            parts.append(
                select(kind("duplicate"), null(), func.count(), func.min(cert.c.issued_at))
                .select_from(o.join(cert, cert.c.serial == o.c.certificate_serial))
                .where(
                    o.c.names_hash == bindparam("names_hash"),
                    o.c.created_at >= bindparam("dup_created_since"),
                    cert.c.issued_at > bindparam("issued_since"),
                )
            )
        if failed:
            parts.append(
                select(kind("failed"), z.c.identifier, func.count(), func.min(z.c.validated_at))
                .where(
                    z.c.account_id == bindparam("account_id"),
                    z.c.identifier.in_(bindparam("identifiers", expanding=True)),
                    z.c.status == "invalid",
                    z.c.validated_at > bindparam("failed_since"),
                )
                .group_by(z.c.identifier)
                .having(func.count() >= bindparam("failed_min"))
            )
        return parts[0] if len(parts) == 1 else union_all(*parts)

    # -- orders, authorizations, challenges -------------------------------------
    def _authzs_of(self, conn: Connection, ids: list[int]) -> list[Authorization]:
        if len(ids) == 1:  # most orders: one name, one statement without an IN list
            row = self._f_authz.first(conn, {"id": ids[0]})
            return [Authorization(**row)] if row is not None else []
        rows = {r.id: Authorization(**r._mapping) for r in conn.execute(self._authzs, {"ids": ids})}
        return [rows[i] for i in ids if i in rows]

    def order(self, order_id: int) -> tuple[Order, list[Authorization]] | None:
        with self._read() as conn:
            row = self._f_order.first(conn, {"id": order_id})
            if row is None:
                return None
            o = Order(**row)
            return o, self._authzs_of(conn, list(o.authz_ids))

    def authz(self, authz_id: int) -> tuple[Authorization, list[Challenge]] | None:
        with self._read() as conn:
            row = self._f_authz.first(conn, {"id": authz_id})
            if row is None:
                return None
            chals = self._f_challenges.all(conn, {"authz_id": authz_id})
            return Authorization(**row), [Challenge(**c) for c in chals]

    def challenges(self, authz_ids: list[int]) -> list[Challenge]:
        with self._read() as conn:
            if len(authz_ids) == 1:
                return [Challenge(**c) for c in self._f_challenges.all(conn, {"authz_id": authz_ids[0]})]
            return [Challenge(**c._mapping) for c in conn.execute(self._challenges_of, {"ids": authz_ids})]

    def challenge(self, challenge_id: int) -> tuple[Challenge, Authorization] | None:
        with self._read() as conn:
            row = self._f_challenge.first(conn, {"id": challenge_id})
            if row is None:
                return None
            a = self._f_authz.first(conn, {"id": row["authz_id"]})
            return (Challenge(**row), Authorization(**a)) if a is not None else None

    def claim_challenge(self, challenge_id: int, authz_id: int) -> bool:
        if self._lock_authz is None:
            with self._write(single=True) as conn:
                return self._f_claim_challenge.rowcount(conn, {"cid": challenge_id, "aid": authz_id}) == 1
        with self._write(single=False) as conn:
            if conn.execute(self._lock_authz, {"id": authz_id}).first() is None:
                return False  # no longer pending
            return self._f_claim_challenge.rowcount(conn, {"cid": challenge_id, "aid": authz_id}) == 1

    def record_validation(
        self, challenge_id: int, authz_id: int, challenge: dict[str, Any], authz: dict[str, Any]
    ) -> bool:
        """The challenge's outcome, and the authorization's if it is still pending
        (RFC 8555 §7.1.6: a deactivated one stays so); False when it was not."""
        with self._write(single=False) as conn:
            self._f_set_challenge(conn, challenge_id, challenge)
            return self._f_settle_authz(conn, authz_id, authz) == 1

    def set_authz(self, authz_id: int, **values: object) -> None:
        with self._write(single=True) as conn:
            self._f_set_authz(conn, authz_id, values)

    def new_order(
        self,
        account_id: int,
        names: list[tuple[str, bool]],
        order: dict[str, Any],
        *,
        challenge_types: Any,
        token: Any,
        now: dt.datetime,
        pending_lifetime: dt.timedelta,
        order_lifetime: dt.timedelta,
        limits: LimitQuery | None = None,
        recheck: Callable[[Connection], None] | None = None,
    ) -> tuple[Order, list[Authorization]]:
        """One transaction: the rate limits (``limits``; a refusal stores
        nothing) and ``recheck(conn)`` (RFC 9773 ``replaces``: that no other order
        replaces the same certificate) under the account's lock, then reuse the
        account's valid authorization per (base name, wildcard) or make a pending
        one with its challenges; then the order. ``challenge_types(wildcard)``
        and ``token()`` come from the service."""
        with self._write(single=False) as conn:
            if limits is not None or recheck is not None:
                if self._sqlite:
                    # SQLite: take the write lock before counting, so that another
                    # connection (thread or process) cannot count the same free
                    # place between this count and this insert (pysqlite would
                    # only BEGIN, deferred, at the first INSERT).
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                if self._f_lock_account is not None:
                    # PostgreSQL: one newOrder per account at a time, so two processes
                    # cannot both pass a per-account limit at its last free place.
                    # NO KEY UPDATE does not block the FK checks of other inserts.
                    self._f_lock_account.first(conn, {"id": account_id})
                if limits is not None:
                    enforce(limits, self._limit_counts(conn, limits))
                if recheck is not None:
                    recheck(conn)
            authzs: list[Authorization] = []
            for base, wildcard in names:
                row = self._f_reusable.first(
                    conn, {"account_id": account_id, "identifier": base, "wildcard": wildcard, "now": now,
                           "validated_after": now - dt.timedelta(days=dcv_reuse_days(now))}
                )
                if row is not None:
                    authzs.append(Authorization(**row))
                    continue
                values = {
                    "account_id": account_id,
                    "identifier": base,
                    "wildcard": wildcard,
                    "status": "pending",
                    "expires": now + pending_lifetime,
                    "validated_at": None,
                    "created_at": now,
                }
                aid = self._f_insert_authz(conn, values)
                tok = token()
                for t in challenge_types(wildcard):
                    self._f_insert_challenge(conn, {"authz_id": aid, "type": t, "token": tok, "status": "pending"})
                authzs.append(Authorization(id=aid, **values))
            values = dict(order, account_id=account_id, authz_ids=[a.id for a in authzs])
            values["expires"] = min([now + order_lifetime] + [as_utc(a.expires) for a in authzs])
            oid = self._f_insert_order(conn, values)
            full = {"status": "pending", "error": None, "certificate_serial": None, "replaces": None}
            full.update(values)
            full.pop("names_hash", None)  # stored, not part of the view
            return Order(id=oid, **full), authzs

    def claim_order(self, order_id: int) -> bool:
        """pending → processing, once: the database decides which request wins."""
        with self._write(single=True) as conn:
            return self._f_claim_order.rowcount(conn, {"_id": order_id}) == 1

    def set_order(self, order_id: int, **values: object) -> None:
        with self._write(single=True) as conn:
            self._f_set_order(conn, order_id, values)

    def certificate(self, serial: str) -> Any:
        """The certificate's row (attributes der, issuer_id, state, …) or None."""
        with self._read() as conn:
            row = self._f_certificate.first(conn, {"serial": serial.lower()})
        return SimpleNamespace(**row) if row is not None else None
