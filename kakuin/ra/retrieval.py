"""Single-use retrieval links (取得URL).

Each issued certificate gets a link with an expiry, mailed to the subscriber
(or, for PKCS#12 in bulk, to the officer). The token is 32 random bytes; only
its SHA-256 is stored, so the database alone cannot be used to download.
Server certificates download as PEM (leaf + the intermediates to install);
client and S/MIME as PKCS#12 encrypted under the access PIN, kept only until
downloaded (then the row's payload is cleared: no private key material stays).
A download is recorded and a completion notice goes to the subscriber and the
officer who applied.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kakuin.clock import Clock, as_utc
from kakuin.errors import NotFound
from kakuin.notify.outbox import enqueue
from kakuin.ra import notices
from kakuin.ra.actors import Actor
from kakuin.ra.models import RACertificate, Retrieval
from kakuin.store.db import Database
from kakuin.store.models import Certificate, CertificateAuthority
from kakuin.store.repos import CARepo, CertificateRepo


class RetrievalGone(NotFound):
    """The link was used already or has expired."""

    code = "gone"


@dataclass(frozen=True, slots=True)
class Download:
    serial: str
    filename: str
    media_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class LinkInfo:
    serial: str
    kind: str  # pem | pkcs12
    subject: str
    expires_at: dt.datetime


def _hash(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    return hashlib.sha256(raw).hexdigest()


def officer_email(actor_name: str) -> str | None:
    return actor_name.removeprefix("officer:") if actor_name.startswith("officer:") else None


def chain_pem(s: Session, issuer_id: int) -> bytes:
    """The intermediates to install, issuer first (the root is the client's)."""
    out = b""
    ca: CertificateAuthority | None = CARepo(s).by_id(issuer_id)
    while ca is not None and ca.kind != "root":
        out += x509.load_der_x509_certificate(ca.der).public_bytes(Encoding.PEM)
        ca = CARepo(s).by_id(ca.parent_id) if ca.parent_id else None
    return out


class RetrievalService:
    def __init__(self, db: Database, clock: Clock, *, base_url: str, days: int, sender: str) -> None:
        self.db = db
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.days = days
        self.sender = sender

    def offer(
        self,
        s: Session,
        *,
        serial: str,
        institution_id: int,
        recipient: str,
        subject: str,
        filename: str,
        payload: bytes | None = None,
    ) -> str:
        """Create a link in the caller's transaction and queue its mail; returns the URL."""
        now = self.clock.now()
        token = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        row = Retrieval(
            serial=serial,
            institution_id=institution_id,
            token_sha256=_hash(token),
            kind="pkcs12" if payload is not None else "pem",
            filename=filename,
            payload=payload,
            recipient=recipient,
            created_at=now,
            expires_at=now + dt.timedelta(days=self.days),
        )
        s.add(row)
        s.flush()
        url = f"{self.base_url}/retrieve/{token}"
        mail = notices.retrieval_link(
            recipient,
            serial=serial,
            subject=subject,
            url=url,
            expires_at=row.expires_at,
            pkcs12=payload is not None,
            retrieval_id=row.id,
        )
        enqueue(s, mail, sender=self.sender, now=now)
        return url

    def _open(self, s: Session, token: str) -> Retrieval:
        row = s.scalar(select(Retrieval).where(Retrieval.token_sha256 == _hash(token)))
        if row is None:
            raise NotFound("unknown retrieval link (取得URLが正しくありません)")
        if row.used_at is not None:
            raise RetrievalGone("this link was used already (この取得URLは使用済みです)")
        if as_utc(row.expires_at) <= self.clock.now():
            raise RetrievalGone("this link has expired (この取得URLは有効期限切れです)")
        return row

    def peek(self, token: str) -> LinkInfo:
        """What a link offers, without using it (the page shown before download)."""
        with self.db.session() as s:
            row = self._open(s, token)
            cert = CertificateRepo(s).by_serial(row.serial)
            return LinkInfo(row.serial, row.kind, cert.subject, as_utc(row.expires_at))

    def fetch(self, token: str, *, client: str | None = None) -> Download:
        """Use the link: returns the file once; the next call is refused."""
        now = self.clock.now()
        with self.db.session() as s:
            row = self._open(s, token)
            payload, kind = row.payload, row.kind
            won = s.execute(
                update(Retrieval)
                .where(Retrieval.id == row.id, Retrieval.used_at.is_(None))
                .values(used_at=now, used_from=(client or "")[:64], payload=None)
            ).rowcount
            if not won:
                raise RetrievalGone("this link was used already (この取得URLは使用済みです)")
            cert = CertificateRepo(s).by_serial(row.serial)
            if kind == "pkcs12":
                if payload is None:
                    raise RetrievalGone("the key material is no longer kept; ask for a new certificate")
                content, media = payload, "application/x-pkcs12"
            else:
                assert cert.der is not None
                leaf = x509.load_der_x509_certificate(cert.der).public_bytes(Encoding.PEM)
                content, media = leaf + chain_pem(s, cert.issuer_id), "application/x-pem-file"
            self._tell_downloaded(s, row, cert, now)
            return Download(row.serial, row.filename, media, content)

    def _tell_downloaded(self, s: Session, row: Retrieval, cert: Certificate, now: dt.datetime) -> None:
        recipients = {row.recipient}
        ra = s.get(RACertificate, row.serial)
        if ra is not None and (officer := officer_email(ra.officer)):
            recipients.add(officer)
        for to in sorted(recipients):
            mail = notices.download_complete(to, serial=row.serial, subject=cert.subject, at=now, retrieval_id=row.id)
            enqueue(s, mail, sender=self.sender, now=now)

    def renew_link(self, serial: str, *, actor: Actor) -> str:
        """A new link for a certificate whose link expired or was lost; the old
        link stops working. PKCS#12 only while its payload is still kept."""
        with self.db.session() as s:
            old = s.scalar(
                select(Retrieval).where(Retrieval.serial == serial.lower()).order_by(Retrieval.id.desc()).limit(1)
            )
            if old is None:
                raise NotFound(f"certificate {serial} has no retrieval link")
            actor.require_institution(old.institution_id)
            if old.kind == "pkcs12" and old.payload is None:
                raise RetrievalGone("the PKCS#12 was downloaded or discarded; apply for a new certificate")
            cert = CertificateRepo(s).by_serial(serial)
            payload = old.payload
            old.expires_at, old.payload = min(as_utc(old.expires_at), self.clock.now()), None
            return self.offer(
                s,
                serial=old.serial,
                institution_id=old.institution_id,
                recipient=old.recipient,
                subject=cert.subject,
                filename=old.filename,
                payload=payload,
            )

    def purge_expired(self) -> int:
        """Clear the PKCS#12 of links that expired unused (no key material is kept)."""
        with self.db.session() as s:
            return (
                s.execute(
                    update(Retrieval)
                    .where(Retrieval.payload.is_not(None), Retrieval.expires_at <= self.clock.now())
                    .values(payload=None)
                ).rowcount
                or 0
            )
