"""Generations of issuing intermediates: rotate, cross-sign, revoke on a date,
destroy keys. Every act goes into the key ceremony log (``ceremony``).

- ``rotate`` makes generation n+1 of a purpose (same root or a new one), named
  "… - G{n+1}", and lets the operator choose when it starts issuing
  (``active_from``); ``CARepo.issuing_for`` does the switch-over.
- ``cross_sign`` issues a certificate for a new root's key signed by an old
  root, so clients that trust only the old root still build a path; the ACME
  server offers it as an alternate chain (``kakuin.acme.chains``).
- ``schedule_revocation`` records that an intermediate is to be revoked at a
  time; ``apply_due`` (run by the status background pass, ``kakuin ca due``
  and ``kakuin incident execute``) revokes it when the time has come, which
  puts it on its root's ARL (the ARL is re-signed at once).
- ``destroy_key`` signs the CA's last CRLs, deletes the key (file overwritten
  and unlinked, or PKCS#11 objects destroyed) and records the destruction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import ForeignKey, Integer, LargeBinary, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from kakuin.ca.authority import urls
from kakuin.ca.ceremony import CeremonyLog
from kakuin.ca.hierarchy import sign_certificate
from kakuin.ca.issuer import random_serial
from kakuin.ca.keystore import KeyRef, KeyType
from kakuin.clock import as_utc
from kakuin.config import IntermediateSpec, RootSpec
from kakuin.errors import KakuinError, NotFound
from kakuin.policy.profiles import IssuerInfo, Purpose, extensions_for, sub_ca_profile
from kakuin.policy.validity import SECOND, _add_months
from kakuin.store.models import TS, Base, CertificateAuthority
from kakuin.store.repos import CARepo

if TYPE_CHECKING:
    from kakuin.context import Context

# RFC 5280 §5.3.1 reasons that make sense for a CA certificate on an ARL.
CA_REASONS = {
    "unspecified": 0,
    "keycompromise": 1,
    "cacompromise": 2,
    "affiliationchanged": 3,
    "superseded": 4,
    "cessationofoperation": 5,
}


def parse_ca_reason(value: str | int) -> int:
    if isinstance(value, int) or str(value).isdigit():
        code = int(value)
        if code in CA_REASONS.values():
            return code
    else:
        code = CA_REASONS.get(str(value).replace("-", "").replace("_", "").lower(), -1)
        if code >= 0:
            return code
    raise KakuinError(f"CA revocation reason {value!r} is not one of {', '.join(CA_REASONS)}")


class CrossCertificate(Base):
    """A certificate for ``subject_ca``'s key (a root) issued by ``issuer_ca``."""

    __tablename__ = "cross_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"), index=True)
    issuer_ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[dt.datetime] = mapped_column(TS)
    not_after: Mapped[dt.datetime] = mapped_column(TS)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(TS)
    created_at: Mapped[dt.datetime] = mapped_column(TS)


class ScheduledCARevocation(Base):
    __tablename__ = "ca_revocation_schedule"

    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(TS)
    reason: Mapped[int] = mapped_column(Integer)
    scheduled_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    applied_at: Mapped[dt.datetime | None] = mapped_column(TS)


@dataclass(frozen=True, slots=True)
class Rotated:
    slug: str
    name: str
    purpose: str
    generation: int
    parent: str
    active_from: dt.datetime
    previous: str | None


@dataclass(frozen=True, slots=True)
class ScheduledRevocation:
    slug: str
    at: dt.datetime
    reason: int
    applied: bool


def next_name(name: str, generation: int) -> str:
    return re.sub(r"\s*-\s*G\d+$", "", name) + f" - G{generation}"


def next_slug(slug: str, generation: int) -> str:
    return re.sub(r"-g\d+$", "", slug) + f"-g{generation}"


def cross_certificates_for(s: Session, root_id: int, at: dt.datetime | None = None) -> list[x509.Certificate]:
    """Unrevoked cross-certificates of the root ``root_id`` (valid at ``at`` when given)."""
    q = select(CrossCertificate).where(CrossCertificate.subject_ca_id == root_id, CrossCertificate.revoked_at.is_(None))
    if at is not None:
        q = q.where(CrossCertificate.not_after > at, CrossCertificate.not_before <= at)
    rows = s.scalars(q.order_by(CrossCertificate.id))
    return [x509.load_der_x509_certificate(r.der) for r in rows]


class RotationService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.log = CeremonyLog(ctx.db, ctx.keys, ctx.clock)

    # -- generations -------------------------------------------------------
    def rotate(
        self,
        purpose: str,
        *,
        under: str | None = None,
        at: dt.datetime | None = None,
        key_type: KeyType | None = None,
        months: int | None = None,
        actor: str = "operator",
    ) -> Rotated:
        """Create the next generation of the ``purpose`` intermediate. It issues
        from ``at`` (default: now); until then the current one goes on."""
        now = self.ctx.clock.now()
        p = Purpose(purpose)
        with self.ctx.db.session() as s:
            repo = CARepo(s)
            same = [c for c in repo.all() if c.kind == "intermediate" and c.purpose == p.value]
            if not same:
                raise NotFound(f"no {p.value} intermediate to rotate (create the hierarchy first)")
            current = repo.issuing_for(p.value, now) or max(same, key=lambda c: (c.generation, c.id))
            parent = repo.by_slug(under) if under else repo.by_id(current.parent_id or 0)
            if parent.kind != "root":
                raise KakuinError(f"{parent.slug} is not a root")
            if parent.status != "active":
                raise KakuinError(f"root {parent.slug} is {parent.status}")
            gen = max(c.generation for c in same) + 1
            taken = {c.slug for c in repo.all()}
        slug = next_slug(current.slug, gen)
        if slug in taken:
            raise KakuinError(f"a CA named {slug} exists already")
        kt = key_type or KeyType(current.key_type)
        spec = IntermediateSpec(
            slug=slug,
            name=next_name(current.name, gen),
            purpose=p,
            parent=parent.slug,
            key_type=kt,
            months=months or 120,
            generation=gen,
            path_length=0,
        )
        active_from = (at or now).replace(microsecond=0)
        row = self.ctx.hierarchy().create_intermediate(spec, active_from=active_from)
        self.ctx.authorities.forget()
        self.log.append(
            "rotate",
            actor=actor,
            ca_slug=slug,
            details={
                "purpose": p.value,
                "generation": gen,
                "parent": parent.slug,
                "previous": current.slug,
                "active_from": active_from.isoformat(),
                "serial": row.serial,
                "key": f"{row.key_backend}:{row.key_label}",
                "not_after": as_utc(row.not_after).isoformat(),
            },
        )
        return Rotated(slug, spec.name, p.value, gen, parent.slug, active_from, current.slug)

    def new_root(
        self, slug: str, name: str, key_type: KeyType, *, months: int = 300, actor: str = "operator"
    ) -> CertificateAuthority:
        with self.ctx.db.session() as s:
            if slug in {c.slug for c in CARepo(s).all()}:
                raise KakuinError(f"a CA named {slug} exists already")
        row = self.ctx.hierarchy().create_root(RootSpec(slug=slug, name=name, key_type=key_type, months=months))
        self.log.append(
            "new-root",
            actor=actor,
            ca_slug=slug,
            details={
                "name": name,
                "serial": row.serial,
                "key": f"{row.key_backend}:{row.key_label}",
                "not_after": as_utc(row.not_after).isoformat(),
            },
        )
        return row

    def cross_sign(
        self, new_root: str, *, by: str, months: int | None = None, actor: str = "operator"
    ) -> x509.Certificate:
        """A certificate for ``new_root``'s key and name, issued by the root ``by``
        (BR 7.1.2.2, cross-certified subordinate CA, TLS only)."""
        now = self.ctx.clock.now().replace(microsecond=0)
        with self.ctx.db.session() as s:
            repo = CARepo(s)
            subject, issuer = repo.by_slug(new_root), repo.by_slug(by)
        if subject.kind != "root" or issuer.kind != "root" or subject.id == issuer.id:
            raise KakuinError("cross-sign one root with another")
        subject_cert = x509.load_der_x509_certificate(subject.der)
        issuer_cert = x509.load_der_x509_certificate(issuer.der)
        signer = self.ctx.keys.signer(KeyRef(issuer.key_backend, issuer.key_label, KeyType(issuer.key_type)))
        not_after = min(as_utc(subject.not_after), as_utc(issuer.not_after))
        if months:
            not_after = min(not_after, _add_months(now, months) - SECOND)
        # BR 7.1.2.2.6: restricted to TLS (id-kp-serverAuth): the cross path
        # is for TLS clients that trust only the old root (ACME alternate chains).
        profile = dataclasses.replace(
            sub_ca_profile(Purpose.TLS_RSA, months=months or 120, path_length=None), name="cross-certificate"
        )
        ca_issuers, _ocsp, arl = urls(self.ctx.config.server.pki_url, issuer.slug)
        info = IssuerInfo(issuer_cert.subject, issuer_cert.public_key(), ca_issuers, None, arl)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject_cert.subject)
            .issuer_name(issuer_cert.subject)
            .public_key(subject_cert.public_key())
            .serial_number(random_serial())
            .not_valid_before(now)
            .not_valid_after(not_after)
        )
        for ext, critical in extensions_for(profile, subject_public_key=subject_cert.public_key(), issuer=info):
            builder = builder.add_extension(ext, critical=critical)
        lint = self.ctx.linter if self.ctx.config.policy.lint else None
        cert = sign_certificate(builder, signer, lint, profile)
        with self.ctx.db.session() as s:
            s.add(
                CrossCertificate(
                    subject_ca_id=subject.id,
                    issuer_ca_id=issuer.id,
                    serial=format(cert.serial_number, "x"),
                    der=cert.public_bytes(Encoding.DER),
                    not_before=cert.not_valid_before_utc,
                    not_after=cert.not_valid_after_utc,
                    created_at=self.ctx.clock.now(),
                )
            )
            self.log.append(
                "cross-sign",
                actor=actor,
                ca_slug=new_root,
                session=s,
                details={
                    "issuer": by,
                    "serial": format(cert.serial_number, "x"),
                    "not_after": cert.not_valid_after_utc.isoformat(),
                },
            )
        return cert

    # -- revocation of a CA ------------------------------------------------
    def schedule_revocation(
        self, slug: str, *, at: dt.datetime, reason: int | str = "superseded", actor: str = "operator"
    ) -> ScheduledRevocation:
        code = parse_ca_reason(reason)
        with self.ctx.db.session() as s:
            ca = CARepo(s).by_slug(slug)
            if ca.kind == "root":
                raise KakuinError("a root is not revoked on an ARL; retire it from trust stores instead")
            if ca.status == "revoked":
                raise KakuinError(f"{slug} is already revoked")
            row = s.get(ScheduledCARevocation, ca.id)
            if row is None:
                row = ScheduledCARevocation(
                    ca_id=ca.id, at=at, reason=code, scheduled_by=actor, created_at=self.ctx.clock.now()
                )
                s.add(row)
            else:
                row.at, row.reason, row.scheduled_by = at, code, actor
            self.log.append(
                "revocation-scheduled",
                actor=actor,
                ca_slug=slug,
                session=s,
                details={"at": at.isoformat(), "reason": code},
            )
        applied = self.apply_due()
        return ScheduledRevocation(slug, at, code, slug in applied)

    def scheduled(self) -> list[ScheduledRevocation]:
        with self.ctx.db.session() as s:
            rows = s.execute(
                select(ScheduledCARevocation, CertificateAuthority.slug).join(
                    CertificateAuthority, CertificateAuthority.id == ScheduledCARevocation.ca_id
                )
            ).all()
            return [ScheduledRevocation(slug, as_utc(r.at), r.reason, r.applied_at is not None) for r, slug in rows]

    def apply_due(self, actor: str = "scheduler") -> list[str]:
        """Revoke every CA whose scheduled time has come; their roots' ARLs are
        invalidated (re-signed on the next request or background pass)."""
        now = self.ctx.clock.now()
        done: list[tuple[str, int | None]] = []
        with self.ctx.db.session() as s:
            rows = s.scalars(
                select(ScheduledCARevocation).where(
                    ScheduledCARevocation.applied_at.is_(None), ScheduledCARevocation.at <= now
                )
            ).all()
            for r in rows:
                ca = CARepo(s).by_id(r.ca_id)
                if ca.status != "revoked":
                    ca.status, ca.revoked_at, ca.revocation_reason = "revoked", as_utc(r.at), r.reason
                    self.log.append(
                        "revoked",
                        actor=actor,
                        ca_slug=ca.slug,
                        session=s,
                        details={"revoked_at": as_utc(r.at).isoformat(), "reason": r.reason, "serial": ca.serial},
                    )
                r.applied_at = now
                done.append((ca.slug, ca.parent_id))
        for _slug, parent in done:
            if parent is not None:
                self.ctx.crls.invalidate(parent, None)
        if done:
            self.ctx.authorities.forget()
        return [slug for slug, _ in done]

    # -- key destruction ---------------------------------------------------
    def destroy_key(
        self, slug: str, *, actor: str = "operator", witnesses: tuple[str, ...] = (), force: bool = False
    ) -> dict[str, object]:
        """Destroy a CA's private key for ever. Refused while the CA may still
        sign (not revoked and not expired) unless ``force``. Its CRLs are signed
        one last time first, so relying parties keep a final answer."""
        now = self.ctx.clock.now()
        with self.ctx.db.session() as s:
            ca = CARepo(s).by_slug(slug)
        if ca.key_destroyed_at is not None:
            raise KakuinError(f"the key of {slug} was destroyed on {as_utc(ca.key_destroyed_at):%Y-%m-%d}")
        if not force and ca.status != "revoked" and as_utc(ca.not_after) > now:
            raise KakuinError(
                f"{slug} is {ca.status} and valid until {as_utc(ca.not_after):%Y-%m-%d}: "
                "revoke it first (kakuin ca revoke) or pass --force"
            )
        ref = KeyRef(ca.key_backend, ca.key_label, KeyType(ca.key_type))
        final_crls = 0
        if self.ctx.keys.exists(ref):
            scopes = [(c, k) for c, k in self.ctx.crls.scopes() if c.id == ca.id]
            for c, k in scopes:
                self.ctx.crls.generate(c, k)
                final_crls += 1
        self.ctx.keys.destroy(ref)
        gone = not self.ctx.keys.exists(ref)
        if not gone:
            raise KakuinError(f"key {ref} still exists after destruction")
        self.ctx.authorities.forget(ca.id)
        details: dict[str, object] = {
            "key": str(ref),
            "key_type": ca.key_type,
            "final_crls": final_crls,
            "witnesses": list(witnesses),
            "verified_absent": gone,
        }
        with self.ctx.db.session() as s:
            row = CARepo(s).by_id(ca.id)
            row.key_destroyed_at = now
            h = self.log.append("key-destroyed", actor=actor, ca_slug=slug, session=s, details=details)
        return {**details, "entry_hash": h}
