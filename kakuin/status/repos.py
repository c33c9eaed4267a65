"""Repositories of the status tables: the only SQL of this capability."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, and_, delete, or_, select, type_coerce, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kakuin.errors import NotFound
from kakuin.status.models import CRLNumber, OCSPResponder, OCSPResponse, PublishedCRL, RevocationRequest
from kakuin.store.models import Certificate, CertificateAuthority

# A revoked entry as read for a CRL: (serial hex, revocationDate, reason, invalidityDate).
# Dates come back raw (an ISO string on SQLite, a datetime on PostgreSQL) so that a
# million rows are not parsed into datetimes only to be formatted again.
RawEntry = tuple[str, Any, int | None, Any]


class RevocationRequestRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def add(self, req: RevocationRequest) -> RevocationRequest:
        self.s.add(req)
        self.s.flush()
        return req

    def by_id(self, req_id: int) -> RevocationRequest:
        req = self.s.get(RevocationRequest, req_id)
        if req is None:
            raise NotFound(f"no revocation request {req_id}")
        return req

    def open_for(self, serial: str) -> Sequence[RevocationRequest]:
        return self.s.scalars(
            select(RevocationRequest).where(RevocationRequest.serial == serial,
                                            RevocationRequest.status == "open")
        ).all()

    def pending(self) -> Sequence[RevocationRequest]:
        return self.s.scalars(
            select(RevocationRequest).where(RevocationRequest.status == "open")
            .order_by(RevocationRequest.deadline, RevocationRequest.id)
        ).all()


class CRLRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def next_number(self, issuer_id: int) -> int:
        """The next CRL number of ``issuer_id``. One UPDATE … RETURNING: the row lock
        serialises concurrent publishers (RFC 5280 §5.2.3: monotonically increasing)."""
        stmt = (update(CRLNumber).where(CRLNumber.issuer_id == issuer_id)
                .values(last=CRLNumber.last + 1).returning(CRLNumber.last))
        n = self.s.execute(stmt).scalar()
        if n is not None:
            return int(n)
        try:
            with self.s.begin_nested():
                self.s.add(CRLNumber(issuer_id=issuer_id, last=1))
                self.s.flush()
            return 1
        except IntegrityError:  # another process created the row first
            return int(self.s.execute(stmt).scalar_one())

    def get(self, issuer_id: int, shard: int) -> PublishedCRL | None:
        return self.s.scalar(select(PublishedCRL).where(PublishedCRL.issuer_id == issuer_id,
                                                        PublishedCRL.shard == shard))

    def all(self) -> Sequence[PublishedCRL]:
        return self.s.scalars(select(PublishedCRL).order_by(PublishedCRL.issuer_id, PublishedCRL.shard)).all()

    def publish(self, issuer_id: int, shard: int, number: int, this_update: dt.datetime,
                next_update: dt.datetime, entries: int, der: bytes) -> bool:
        """Store a CRL unless a higher-numbered one of the same scope is already
        stored (a slower concurrent publisher never replaces a newer CRL)."""
        values = dict(number=number, this_update=this_update, next_update=next_update,
                      entries=entries, der=der, stale=False)
        where = and_(PublishedCRL.issuer_id == issuer_id, PublishedCRL.shard == shard)
        res = self.s.execute(update(PublishedCRL).where(where, PublishedCRL.number < number).values(**values))
        if res.rowcount:
            return True
        if self.get(issuer_id, shard) is not None:
            return False
        try:
            with self.s.begin_nested():
                self.s.add(PublishedCRL(issuer_id=issuer_id, shard=shard, **values))
                self.s.flush()
            return True
        except IntegrityError:
            res = self.s.execute(update(PublishedCRL).where(where, PublishedCRL.number < number).values(**values))
            return bool(res.rowcount)

    def mark_stale(self, issuer_id: int, shards: Sequence[int]) -> None:
        self.s.execute(update(PublishedCRL).where(PublishedCRL.issuer_id == issuer_id,
                                                  PublishedCRL.shard.in_(shards)).values(stale=True))

    def due(self, refresh_before: dt.datetime) -> Sequence[tuple[int, int]]:
        """(issuer_id, shard) of stored CRLs that are stale or older than ``refresh_before``."""
        rows = self.s.execute(select(PublishedCRL.issuer_id, PublishedCRL.shard).where(
            or_(PublishedCRL.stale.is_(True), PublishedCRL.this_update < refresh_before)))
        return [(int(a), int(b)) for a, b in rows]

    def revoked_leaves(self, issuer_id: int, shard: int | None, now: dt.datetime) -> list[RawEntry]:
        """Revoked, unexpired certificates of one issuer (of one shard when given).
        BR 4.9.7 / RFC 5280 §3.3: an entry stays until the certificate expires."""
        q = select(Certificate.serial, type_coerce(Certificate.revoked_at, String),
                   Certificate.revocation_reason, type_coerce(Certificate.invalidity_date, String)).where(
            Certificate.issuer_id == issuer_id, Certificate.revoked_at.is_not(None),
            Certificate.not_after > now)
        if shard is not None:
            q = q.where(Certificate.crl_shard == shard)
        return [tuple(r) for r in self.s.execute(q)]  # type: ignore[misc]

    def revoked_cas(self, parent_id: int) -> list[RawEntry]:
        q = select(CertificateAuthority.serial, type_coerce(CertificateAuthority.revoked_at, String),
                   CertificateAuthority.revocation_reason).where(
            CertificateAuthority.parent_id == parent_id, CertificateAuthority.revoked_at.is_not(None))
        return [(a, b, c, None) for a, b, c in self.s.execute(q)]


class OCSPRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    # -- responders --------------------------------------------------------
    def current_responder(self, issuer_id: int) -> OCSPResponder | None:
        return self.s.scalar(select(OCSPResponder).where(OCSPResponder.issuer_id == issuer_id)
                             .order_by(OCSPResponder.generation.desc()).limit(1))

    def add_responder(self, row: OCSPResponder) -> OCSPResponder:
        self.s.add(row)
        self.s.flush()
        return row

    def responders(self) -> Sequence[OCSPResponder]:
        return self.s.scalars(select(OCSPResponder).order_by(OCSPResponder.issuer_id,
                                                             OCSPResponder.generation)).all()

    # -- pre-signed responses ----------------------------------------------
    def response(self, serial: str, hash_alg: str) -> OCSPResponse | None:
        return self.s.get(OCSPResponse, (serial, hash_alg))

    def store(self, row: OCSPResponse) -> None:
        self.s.merge(row)

    def store_many(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace many responses in one statement (executemany): the
        refresh stores a pass's responses together instead of a merge (SELECT,
        then INSERT or UPDATE) and a commit per certificate."""
        if not rows:
            return
        t = OCSPResponse.__table__
        upsert = pg_insert if self.s.get_bind().dialect.name == "postgresql" else sqlite_insert
        stmt = upsert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.serial, t.c.hash_alg],
            set_={c: stmt.excluded[c] for c in ("issuer_id", "status", "this_update", "next_update", "der")},
        )
        self.s.execute(stmt, rows)

    def forget(self, serial: str) -> None:
        self.s.execute(delete(OCSPResponse).where(OCSPResponse.serial == serial))

    def certificates_due(self, now: dt.datetime, refresh_before: dt.datetime,
                         limit: int) -> Sequence[Certificate]:
        """Issued, unexpired certificates whose SHA-1 response is missing, due, or
        still says good after a revocation."""
        resp = OCSPResponse
        q = (select(Certificate).outerjoin(
                resp, and_(resp.serial == Certificate.serial, resp.hash_alg == "sha1"))
             # ocsp-nocheck (RFC 6960 §4.2.2.2.1): nobody asks about responder certificates
             .where(Certificate.state == "issued", Certificate.not_after > now,
                    Certificate.profile != "ocsp-responder",
                    or_(resp.serial.is_(None), resp.this_update < refresh_before,
                        and_(Certificate.revoked_at.is_not(None), resp.status != "revoked")))
             .limit(limit))
        return self.s.scalars(q).all()

    def other_hashes_due(self, refresh_before: dt.datetime, limit: int) -> Sequence[OCSPResponse]:
        return self.s.scalars(select(OCSPResponse).where(
            OCSPResponse.hash_alg != "sha1", OCSPResponse.this_update < refresh_before).limit(limit)).all()


def unrevoked_with_key(s: Session, spki_sha256: str, exclude_serial: str) -> list[str]:
    """Serials of issued, unrevoked certificates for one key (SPKI SHA-256)."""
    q = select(Certificate.serial).where(
        Certificate.spki_sha256 == spki_sha256, Certificate.state == "issued",
        Certificate.revoked_at.is_(None), Certificate.serial != exclude_serial).order_by(Certificate.id)
    return list(s.scalars(q))
