"""Repositories: the only code that writes SQL. Services own the transactions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, bindparam, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kakuin.errors import NotFound
from kakuin.store.fast import InsertsReturningId, Prepared
from kakuin.store.models import (
    BlockedKey,
    Certificate,
    CertificateAuthority,
    Institution,
    InstitutionDomain,
)


class CARepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def add(self, ca: CertificateAuthority) -> CertificateAuthority:
        self.s.add(ca)
        self.s.flush()
        return ca

    def all(self) -> Sequence[CertificateAuthority]:
        return self.s.scalars(select(CertificateAuthority).order_by(CertificateAuthority.id)).all()

    def by_slug(self, slug: str) -> CertificateAuthority:
        ca = self.s.scalar(select(CertificateAuthority).where(CertificateAuthority.slug == slug))
        if ca is None:
            raise NotFound(f"no CA named {slug!r}")
        return ca

    def by_id(self, ca_id: int) -> CertificateAuthority:
        ca = self.s.get(CertificateAuthority, ca_id)
        if ca is None:
            raise NotFound(f"no CA with id {ca_id}")
        return ca

    def issuing_for(self, purpose: str, at: dt.datetime) -> CertificateAuthority | None:
        """The generation that issues for ``purpose`` at ``at``: the newest active
        one whose switch-over time has come and that is still valid."""
        return self.s.scalar(
            select(CertificateAuthority)
            .where(
                CertificateAuthority.purpose == purpose,
                CertificateAuthority.kind == "intermediate",
                CertificateAuthority.status == "active",
                CertificateAuthority.active_from <= at,
                CertificateAuthority.not_after > at,
            )
            .order_by(CertificateAuthority.active_from.desc(), CertificateAuthority.generation.desc())
            .limit(1)
        )


@dataclass(frozen=True, slots=True)
class CertificateFilter:
    issuer_id: int | None = None
    profile: str | None = None
    state: str | None = None
    institution_id: int | None = None
    issued_from: dt.datetime | None = None
    issued_to: dt.datetime | None = None
    expires_after: dt.datetime | None = None
    revoked: bool | None = None
    name_contains: str | None = None
    limit: int = 100


class CertificateRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def reserve(self, cert: Certificate) -> bool:
        """Insert the intent. False when the serial already exists (retry with another)."""
        try:
            with self.s.begin_nested():
                self.s.add(cert)
                self.s.flush()
        except IntegrityError:
            return False
        return True

    def by_serial(self, serial: str) -> Certificate:
        """By serial, written any way an operator may paste it: as stored (lower
        case), or with openssl's ``serial=``, ``0x``, colons or leading zeros."""
        for spelling in _serial_spellings(serial):  # as written first, then normalised
            cert = self.s.scalar(select(Certificate).where(Certificate.serial == spelling))
            if cert is not None:
                return cert
        raise NotFound(f"no certificate with serial {serial}")

    def by_serials(self, serials: list[str]) -> Sequence[Certificate]:
        out: list[Certificate] = []
        wanted = sorted({w for sn in serials for w in _serial_spellings(sn)})
        for i in range(0, len(wanted), 500):  # bounded IN lists
            chunk = wanted[i:i + 500]
            out += self.s.scalars(select(Certificate).where(Certificate.serial.in_(chunk))).all()
        return out

    def find(self, f: CertificateFilter) -> Sequence[Certificate]:
        q: Select[tuple[Certificate]] = select(Certificate)
        if f.issuer_id is not None:
            q = q.where(Certificate.issuer_id == f.issuer_id)
        if f.profile:
            q = q.where(Certificate.profile == f.profile)
        if f.state:
            q = q.where(Certificate.state == f.state)
        if f.institution_id is not None:
            q = q.where(Certificate.institution_id == f.institution_id)
        if f.issued_from:
            q = q.where(Certificate.not_before >= f.issued_from)
        if f.issued_to:
            q = q.where(Certificate.not_before <= f.issued_to)
        if f.expires_after:
            q = q.where(Certificate.not_after >= f.expires_after)
        if f.revoked is True:
            q = q.where(Certificate.revoked_at.is_not(None))
        elif f.revoked is False:
            q = q.where(Certificate.revoked_at.is_(None))
        if f.name_contains:
            like = f"%{f.name_contains.lower()}%"
            q = q.where(func.lower(Certificate.subject + " " + Certificate.sans).like(like))
        return self.s.scalars(q.order_by(Certificate.id.desc()).limit(f.limit)).all()

    def mark(self, cert_id: int, **values: object) -> None:
        self.s.execute(update(Certificate).where(Certificate.id == cert_id).values(**values))

    def mark_revoked(self, cert_id: int, **values: object) -> bool:
        """Record a revocation unless one is recorded already: True when this
        call recorded it (the database decides between concurrent revocations)."""
        result = self.s.execute(
            update(Certificate).where(Certificate.id == cert_id, Certificate.revoked_at.is_(None)).values(**values)
        )
        return (result.rowcount or 0) == 1  # type: ignore[attr-defined]

    def upgrade_to_key_compromise(self, cert_id: int) -> bool:
        """A revoked certificate's reason becomes keyCompromise (1), its revocation
        date unchanged; False when it was not revoked or already keyCompromise."""
        result = self.s.execute(
            update(Certificate)
            .where(Certificate.id == cert_id, Certificate.revoked_at.is_not(None),
                   Certificate.revocation_reason.is_distinct_from(1))
            .values(revocation_reason=1)
        )
        return (result.rowcount or 0) == 1  # type: ignore[attr-defined]

    def abandon_stale(self, older_than: dt.datetime, now: dt.datetime) -> int:
        """Intents a crashed process left behind: say so; never reuse their serials.
        A "reserved" row stopped before the lint, so nothing was signed; a "linted"
        one after it, where the CA may have signed (the signature is the next
        step) but nothing was stored or handed out: the record says which."""
        why = {
            "reserved": "the issuing process stopped before the lint (crash or kill); "
                        "serial retired, nothing was signed",
            "linted": "the issuing process stopped after the lint (crash or kill); the CA may have "
                      "signed, but nothing was stored or handed out; serial retired",
        }
        n = 0
        for state, failure in why.items():
            result = self.s.execute(
                update(Certificate)
                .where(Certificate.state == state, Certificate.reserved_at < older_than)
                .values(state="abandoned", failed_at=now, failure=failure)
            )
            n += result.rowcount or 0  # type: ignore[attr-defined]
        return n


def _stripped_serial(text: str) -> str:
    """Lower case, without openssl's ``serial=``, a ``0x`` or colons."""
    return text.strip().lower().removeprefix("serial=").removeprefix("0x").replace(":", "")


def canonical_serial(text: str) -> str | None:
    """A serial as kakuin stores it (lowercase hex, no leading zeros: format(n, "x"))
    from how it may be written: openssl's ``serial=06041D…``, ``0x…``, colons,
    upper case, leading zeros. None when it is not hexadecimal."""
    raw = _stripped_serial(text)
    if not raw or not all(ch in "0123456789abcdef" for ch in raw):
        return None
    return format(int(raw, 16), "x")


def _serial_spellings(text: str) -> list[str]:
    """The stored forms ``text`` may stand for: itself in lower case, then its
    canonical form when it is hexadecimal (kakuin's own serials have no leading
    zeros), then its stripped form."""
    spellings = [text.strip().lower()]
    for form in (canonical_serial(text), _stripped_serial(text)):
        if form and form not in spellings:
            spellings.append(form)
    return spellings


class BlockedKeyRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def is_blocked(self, spki_sha256: str) -> bool:
        return self.s.get(BlockedKey, spki_sha256) is not None

    def block(self, spki_sha256: str, reason: str, source_serial: str | None, now: dt.datetime) -> None:
        if self.s.get(BlockedKey, spki_sha256) is None:
            self.s.add(BlockedKey(spki_sha256=spki_sha256, reason=reason, source_serial=source_serial, created_at=now))
            self.s.flush()


class InstitutionRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def add(
        self,
        name_en: str,
        *,
        domains: Sequence[str] = (),
        prefecture: str | None = None,
        city: str | None = None,
        name_ja: str | None = None,
        confirmed_until: dt.datetime | None = None,
        now: dt.datetime,
    ) -> Institution:
        inst = Institution(
            name_en=name_en,
            name_ja=name_ja,
            prefecture=prefecture,
            city=city,
            confirmed_until=confirmed_until,
            created_at=now,
        )
        inst.domains = [InstitutionDomain(domain=d.lower().rstrip("."), approved=True) for d in domains]
        self.s.add(inst)
        self.s.flush()
        return inst

    def by_name(self, name_en: str) -> Institution:
        inst = self.s.scalar(select(Institution).where(Institution.name_en == name_en))
        if inst is None:
            raise NotFound(f"no institution named {name_en!r}")
        return inst

    def by_id(self, inst_id: int) -> Institution:
        inst = self.s.get(Institution, inst_id)
        if inst is None:
            raise NotFound(f"no institution with id {inst_id}")
        return inst

    def all(self) -> Sequence[Institution]:
        return self.s.scalars(select(Institution).order_by(Institution.name_en)).all()


@dataclass(frozen=True, slots=True)
class InstitutionFacts:
    """What issuance needs of an institution: its name, confirmation, approved domains."""

    id: int
    name_en: str
    confirmed_until: dt.datetime | None
    approved_domains: tuple[str, ...]


class IssuanceLedger:
    """The pipeline's hot path in SQLAlchemy Core.

    Issuance writes each certificate twice (intent, then result); through the
    ORM that costs more than signing it. These statements are built once and
    reused, so SQLAlchemy's compiled cache serves them, and each step is one
    short transaction. Semantics are those of ``CertificateRepo``.
    """

    def __init__(self, engine: Engine, autocommit: Engine) -> None:
        self.engine = engine
        # Autocommit: reads without a transaction (no BEGIN/ROLLBACK round trips on
        # PostgreSQL) and writes of one statement. ``autocommit``:
        # Database.autocommit (on SQLite a pool of its own, see there).
        self.reader = autocommit
        table = Certificate.__table__
        self._insert_returning = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        self._blocked = select(BlockedKey.spki_sha256).where(BlockedKey.spki_sha256 == bindparam("h"))
        self._blocked_any = select(BlockedKey.spki_sha256).where(
            BlockedKey.spki_sha256.in_(bindparam("hs", expanding=True))
        )
        self._update = update(table).where(table.c.id == bindparam("_id"))
        self._linted = self._update.values(state="linted", linted_at=bindparam("at"))
        self._issued = self._update.values(state="issued", der=bindparam("der"), issued_at=bindparam("at"))
        inst, dom = Institution.__table__, InstitutionDomain.__table__
        self._institution = select(inst.c.id, inst.c.name_en, inst.c.confirmed_until).where(
            inst.c.name_en == bindparam("name")
        )
        self._approved = select(dom.c.domain).where(
            dom.c.institution_id == bindparam("id"), dom.c.approved.is_(True)
        ).order_by(dom.c.id)
        # One per certificate: on the driver's cursor (kakuin.store.fast).
        d = engine.dialect
        self._f_institution = Prepared(self._institution, d)
        self._f_approved = Prepared(self._approved, d)
        self._f_blocked = Prepared(self._blocked, d)
        self._f_insert = InsertsReturningId(table, d)
        self._f_linted = Prepared(self._linted, d)
        self._f_issued = Prepared(self._issued, d)

    def institution(self, name_en: str) -> InstitutionFacts:
        """As ``InstitutionRepo.by_name`` (NotFound when unknown), without the ORM."""
        with self.reader.connect() as conn:
            row = self._f_institution.first(conn, {"name": name_en})
            if row is None:
                raise NotFound(f"no institution named {name_en!r}")
            domains = tuple(r["domain"] for r in self._f_approved.all(conn, {"id": row["id"]}))
        return InstitutionFacts(row["id"], row["name_en"], row["confirmed_until"], domains)

    def is_blocked(self, spki_sha256: str) -> bool:
        with self.reader.connect() as conn:
            return self._f_blocked.first(conn, {"h": spki_sha256}) is not None

    def reserve_many(self, rows: list[dict[str, object]]) -> list[int | None] | None:
        """Record intents in one transaction. A row whose key is on the blocklist
        is not recorded (its id is None): checked inside the same transaction.
        None when a serial already exists (draw again)."""
        hashes = list({str(r["spki_sha256"]) for r in rows})
        try:
            with self.engine.begin() as conn:
                if len(hashes) == 1:  # one key (every ACME order): no IN list
                    blocked = {hashes[0]} if self._f_blocked.first(conn, {"h": hashes[0]}) else set()
                else:
                    blocked = set(conn.execute(self._blocked_any, {"hs": hashes}).scalars()) if hashes else set()
                allowed = [r for r in rows if r["spki_sha256"] not in blocked]
                if len(allowed) == 1:
                    new_ids = [self._f_insert(conn, allowed[0])]
                elif allowed:
                    # One multi-row INSERT … RETURNING (SQLAlchemy "insertmanyvalues"),
                    # ids in the order of the rows.
                    new_ids = [int(i) for i in conn.execute(self._insert_returning, allowed).scalars()]
                else:
                    new_ids = []
                it = iter(new_ids)
                return [None if r["spki_sha256"] in blocked else next(it) for r in rows]
        except IntegrityError:
            return None

    # One statement each, atomic on its own: an autocommit connection, no BEGIN.
    def mark_linted(self, cert_id: int, at: dt.datetime) -> None:
        with self.reader.connect() as conn:
            self._f_linted.rowcount(conn, {"_id": cert_id, "at": at})

    def mark_issued(self, cert_id: int, der: bytes, at: dt.datetime) -> None:
        with self.reader.connect() as conn:
            self._f_issued.rowcount(conn, {"_id": cert_id, "der": der, "at": at})

    def mark_issued_many(self, done: list[tuple[int, bytes]], at: dt.datetime) -> None:
        if not done:
            return
        with self.engine.begin() as conn:
            conn.execute(self._issued, [{"_id": i, "der": d, "at": at} for i, d in done])

    def mark_failed(self, cert_id: int, failure: str, at: dt.datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(self._update.values(state="failed", failure=failure[:2000], failed_at=at), {"_id": cert_id})
