"""What an officer may look at and act on beyond TSV files: certificate search
and detail, pending revocation requests, EAB credentials — each limited to the
actor's institution (the operator sees every institution).

Used by the portal and the REST API; every method takes the ``Actor``.
Refusals are ``Unauthorized``; a serial or key identifier of another
institution is reported as ``NotFound``-like ``Unauthorized`` so an officer
learns nothing about other institutions' certificates beyond that.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import false, func, or_, select

from kakuin.clock import Clock, as_utc
from kakuin.errors import KakuinError, NotFound, Unauthorized
from kakuin.ra.actors import Actor
from kakuin.ra.models import Person, RACertificate, Retrieval
from kakuin.ra.revocation import ALLOWED_REASONS, PendingRequest, RevocationService
from kakuin.store.db import Database
from kakuin.store.models import Certificate, Institution
from kakuin.store.repos import CARepo, CertificateRepo, InstitutionRepo

if TYPE_CHECKING:
    from kakuin.acme.eab import CredentialInfo, EABService, NewCredential

SEARCH_LIMIT = 200


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    serial: str
    profile: str
    status: str  # valid | revoked | expired | not-yet-valid | failed | reserved …
    subject: str
    names: tuple[str, ...]
    institution: str | None
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True, slots=True)
class CertificateDetail:
    summary: CertificateSummary
    issuer: str
    issuer_slug: str
    key_type: str
    spki_sha256: str
    requested_by: str
    issued_at: dt.datetime | None
    revoked_at: dt.datetime | None
    revocation_reason: int | None
    revocation_comment: str | None
    subscriber: str | None  # "name <email>"
    officer: str | None
    downloaded: bool | None  # None: no retrieval link
    replaces: str | None
    replaced_by: str | None
    pem: str | None


@dataclass(frozen=True, slots=True)
class PendingRevocation:
    request: PendingRequest
    subject: str
    institution: str | None

    @property
    def reason_name(self) -> str:
        return ALLOWED_REASONS.get(self.request.reason, str(self.request.reason))


def _status(c: Certificate, now: dt.datetime) -> str:
    if c.state != "issued":
        return c.state
    if c.revoked_at is not None:
        return "revoked"
    if now < as_utc(c.not_before):
        return "not-yet-valid"
    if now >= as_utc(c.not_after):
        return "expired"
    return "valid"


def _summary(c: Certificate, inst_names: dict[int, str], now: dt.datetime) -> CertificateSummary:
    return CertificateSummary(
        c.serial,
        c.profile,
        _status(c, now),
        c.subject,
        tuple(c.sans.split()),
        inst_names.get(c.institution_id) if c.institution_id else None,
        as_utc(c.not_before),
        as_utc(c.not_after),
    )


def _norm(serial: str) -> str:
    return serial.strip().lower().removeprefix("0x").replace(":", "")


class CertificateService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        revocation: RevocationService,
        eab: Callable[[], EABService | None] = lambda: None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.revocation = revocation
        self.eab = eab

    def _names(self, s) -> dict[int, str]:  # type: ignore[no-untyped-def]
        return {i.id: i.name_en for i in s.scalars(select(Institution))}

    # -- certificates -------------------------------------------------------
    def search(
        self,
        *,
        actor: Actor,
        text: str | None = None,
        status: str | None = None,
        institution: str | None = None,
        limit: int = 50,
    ) -> list[CertificateSummary]:
        """Newest first. ``text`` matches a serial (prefix) or a substring of the
        subject or names; ``status`` is valid, revoked or expired."""
        limit = max(1, min(limit, SEARCH_LIMIT))
        now = self.clock.now()
        with self.db.session() as s:
            inst_id = actor.institution_id
            if institution:
                inst = InstitutionRepo(s).by_name(institution)
                actor.require_institution(inst.id, institution)
                inst_id = inst.id
            names = self._names(s)
            text = (text or "").strip()
            serial_like = _norm(text) if text else ""
            q = select(Certificate).where(Certificate.state == "issued")
            if inst_id is not None:
                q = q.where(Certificate.institution_id == inst_id)
            if not actor.is_operator:
                q = q.where(Certificate.profile != "ocsp-responder")
            if text:
                like = f"%{text.lower()}%"
                q = q.where(
                    or_(
                        Certificate.serial.like(f"{serial_like}%") if serial_like.isalnum() else false(),
                        func.lower(Certificate.subject + " " + Certificate.sans).like(like),
                    )
                )
            if status == "revoked":
                q = q.where(Certificate.revoked_at.is_not(None))
            elif status == "valid":
                q = q.where(Certificate.revoked_at.is_(None), Certificate.not_after > now)
            elif status == "expired":
                q = q.where(Certificate.revoked_at.is_(None), Certificate.not_after <= now)
            rows = s.scalars(q.order_by(Certificate.id.desc()).limit(limit)).all()
            return [_summary(c, names, now) for c in rows]

    def _own(self, s, serial: str, actor: Actor) -> Certificate:  # type: ignore[no-untyped-def]
        try:
            c = CertificateRepo(s).by_serial(_norm(serial))
        except NotFound:
            raise NotFound(f"no certificate with serial {serial}") from None
        if actor.institution_id is not None and c.institution_id != actor.institution_id:
            # Same words as for an unknown serial: nothing to learn by probing.
            raise NotFound(f"no certificate with serial {serial}")
        return c

    def get(self, serial: str, *, actor: Actor) -> CertificateDetail:
        now = self.clock.now()
        with self.db.session() as s:
            c = self._own(s, serial, actor)
            ca = CARepo(s).by_id(c.issuer_id)
            ra = s.get(RACertificate, c.serial)
            person = s.get(Person, ra.subscriber_id) if ra is not None and ra.subscriber_id else None
            links = s.scalars(select(Retrieval.used_at).where(Retrieval.serial == c.serial)).all()
            pem = x509.load_der_x509_certificate(c.der).public_bytes(Encoding.PEM).decode() if c.der else None
            return CertificateDetail(
                _summary(c, self._names(s), now),
                ca.name,
                ca.slug,
                c.key_type,
                c.spki_sha256,
                c.requested_by,
                as_utc(c.issued_at) if c.issued_at else None,
                as_utc(c.revoked_at) if c.revoked_at else None,
                c.revocation_reason,
                c.revocation_comment,
                f"{person.name} <{person.email}>" if person else None,
                ra.officer if ra else None,
                (any(u is not None for u in links)) if links else None,
                ra.replaces if ra else None,
                ra.replaced_by if ra else None,
                pem,
            )

    def check_revocable(self, serial: str, *, actor: Actor) -> None:
        """Refuse early (NotFound) for a serial the actor may not see."""
        with self.db.session() as s:
            self._own(s, serial, actor)

    # -- revocation requests -------------------------------------------------
    def pending_revocations(self, *, actor: Actor) -> list[PendingRevocation]:
        """Open requests with their BR 4.9.1.1 clocks, soonest deadline first."""
        pending = self.revocation.pending()
        with self.db.session() as s:
            names = self._names(s)
            out = []
            for p in pending:
                c = s.scalar(select(Certificate).where(Certificate.serial == p.serial))
                inst_id = c.institution_id if c is not None else None
                if actor.institution_id is not None and inst_id != actor.institution_id:
                    continue
                out.append(PendingRevocation(p, c.subject if c else "", names.get(inst_id) if inst_id else None))
            return out

    # -- EAB credentials ------------------------------------------------------
    def _eab(self) -> EABService:
        svc = self.eab()
        if svc is None:
            raise KakuinError("EAB credentials need the ACME service, which is not available")
        return svc

    def eab_list(self, *, actor: Actor) -> list[CredentialInfo]:
        creds = self._eab().list()
        if actor.is_operator:
            return creds
        own = self._institution_name(actor)
        return [c for c in creds if c.institution == own]

    def eab_new(
        self,
        *,
        actor: Actor,
        institution: str | None = None,
        domains: tuple[str, ...] = (),
        days: int | None = None,
    ) -> NewCredential:
        """A new credential; the HMAC key in the result is shown once."""
        name = institution or (self._institution_name(actor) if not actor.is_operator else None)
        if name is None:
            raise KakuinError("name the institution the credential is for")
        with self.db.session() as s:
            inst = InstitutionRepo(s).by_name(name)
            actor.require_institution(inst.id, name)
        expires = self.clock.now() + dt.timedelta(days=days) if days else None
        return self._eab().new(name, domains=domains, expires_at=expires, created_by=actor.name)

    def eab_revoke(self, kid: str, *, actor: Actor) -> None:
        own = None if actor.is_operator else self._institution_name(actor)
        if own is not None and not any(c.kid == kid and c.institution == own for c in self._eab().list()):
            raise NotFound(f"no EAB credential {kid!r}")
        self._eab().revoke(kid)

    def _institution_name(self, actor: Actor) -> str:
        if actor.institution_id is None:
            raise Unauthorized("the operator has no institution of their own")
        with self.db.session() as s:
            return InstitutionRepo(s).by_id(actor.institution_id).name_en
