"""Single-use retrieval links (取得URL).

Each issued certificate gets a link with an expiry, mailed to the subscriber
(or, for PKCS#12 in bulk, to the officer). The token is 32 random bytes; only
its SHA-256 is stored, so the database alone cannot be used to download.
Server certificates download as PEM (leaf + the intermediates to install);
client and S/MIME as PKCS#12 encrypted under the access PIN, kept only until
downloaded (then the row's payload is cleared: no private key material stays).
A download is recorded and a completion notice goes to the subscriber and the
officer who applied.

PKCS#12 in bulk (P12一括): the officer gets one link to a ZIP archive per
application (``offer_bundle``): one ``.p12`` per certificate and a
``manifest.tsv`` (file, serial, subject, e-mail, notAfter; no PINs). Each
certificate keeps its own row (``bundle_id`` → the archive's row, a token that
is never mailed), so using the archive records a download for each of them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import secrets
import zipfile
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kakuin.clock import Clock, as_utc
from kakuin.errors import NotFound
from kakuin.notify.outbox import enqueue
from kakuin.ra import notices
from kakuin.ra.actors import Actor
from kakuin.ra.models import Enrollment, RACertificate, Retrieval
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
    serial: str  # "" for a bulk archive
    kind: str  # pem | pkcs12 | zip | browser
    subject: str  # for a bulk archive: how many certificates
    expires_at: dt.datetime
    count: int = 1


@dataclass(frozen=True, slots=True)
class BundleItem:
    """One certificate of a PKCS#12-in-bulk archive."""

    serial: str
    recipient: str  # the subscriber (completion notice, manifest)
    filename: str  # column 12, or <serial>.p12
    payload: bytes  # PKCS#12 under the access PIN


MANIFEST = "manifest.tsv"


def new_token() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    return hashlib.sha256(raw).hexdigest()


L = TypeVar("L", Retrieval, Enrollment)


def open_link(s: Session, model: type[L], token: str, now: dt.datetime, *, what_en: str, what_ja: str) -> L:
    """The row behind a single-use link (retrieval or enrollment), found by the
    token's SHA-256; unknown → NotFound, used or expired → RetrievalGone."""
    row = s.scalar(select(model).where(model.token_sha256 == token_hash(token)))
    if row is None:
        raise NotFound(f"unknown {what_en} link ({what_ja}が正しくありません)")
    if row.used_at is not None:
        raise RetrievalGone(f"this link was used already (この{what_ja}は使用済みです)")
    if as_utc(row.expires_at) <= now:
        raise RetrievalGone(f"this link has expired (この{what_ja}は有効期限切れです)")
    return row


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
        token = new_token()
        row = Retrieval(
            serial=serial,
            institution_id=institution_id,
            token_sha256=token_hash(token),
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

    def offer_bundle(
        self,
        s: Session,
        *,
        institution_id: int,
        recipient: str,
        application_id: int,
        items: list[BundleItem],
        filename: str | None = None,
    ) -> str:
        """PKCS#12 in bulk: one archive link for the officer (``recipient``), in
        the caller's transaction; returns the URL."""
        names = [i.filename.casefold() for i in items]
        if len(set(names)) != len(names) or MANIFEST in names:
            raise ValueError("file names in one archive must be unique")  # the TSV check refuses these first
        now = self.clock.now()
        token = new_token()
        expires = now + dt.timedelta(days=self.days)
        archive = Retrieval(
            serial="",
            institution_id=institution_id,
            token_sha256=token_hash(token),
            kind="zip",
            filename=filename or f"kakuin-p12-{application_id}.zip",
            recipient=recipient,
            created_at=now,
            expires_at=expires,
        )
        s.add(archive)
        s.flush()
        for item in items:
            s.add(
                Retrieval(
                    serial=item.serial,
                    institution_id=institution_id,
                    token_sha256=token_hash(new_token()),  # never mailed: the archive's link stands for it
                    kind="pkcs12",
                    filename=item.filename,
                    payload=item.payload,
                    recipient=item.recipient,
                    created_at=now,
                    expires_at=expires,
                    bundle_id=archive.id,
                )
            )
        url = f"{self.base_url}/retrieve/{token}"
        mail = notices.bulk_link(
            recipient,
            application_id=application_id,
            count=len(items),
            url=url,
            expires_at=expires,
            retrieval_id=archive.id,
        )
        enqueue(s, mail, sender=self.sender, now=now)
        return url

    def _members(self, s: Session, archive_id: int) -> list[Retrieval]:
        return list(s.scalars(select(Retrieval).where(Retrieval.bundle_id == archive_id).order_by(Retrieval.id)))

    def _open(self, s: Session, token: str) -> Retrieval:
        return open_link(s, Retrieval, token, self.clock.now(), what_en="retrieval", what_ja="取得URL")

    def peek(self, token: str) -> LinkInfo:
        """What a link offers, without using it (the page shown before download)."""
        with self.db.session() as s:
            row = self._open(s, token)
            if row.kind == "zip":
                n = len(self._members(s, row.id))
                return LinkInfo("", "zip", f"{n}件の証明書 / {n} certificates", as_utc(row.expires_at), n)
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
            if kind == "zip":
                return self._fetch_bundle(s, row, now, client)
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

    def _fetch_bundle(self, s: Session, archive: Retrieval, now: dt.datetime, client: str | None) -> Download:
        """The ZIP of a bulk link; every certificate in it counts as downloaded."""
        members = self._members(s, archive.id)
        if not members or any(m.payload is None or m.used_at is not None for m in members):
            raise RetrievalGone("the key material is no longer kept; ask for a new certificate")
        buf = io.BytesIO()
        stamp = now.timetuple()[:6]
        manifest = ["file\tserial\tsubject\temail\tnot_after"]
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for m in members:
                cert = CertificateRepo(s).by_serial(m.serial)
                assert m.payload is not None
                z.writestr(zipfile.ZipInfo(m.filename, stamp), m.payload)
                not_after = f"{as_utc(cert.not_after):%Y-%m-%dT%H:%M:%SZ}"
                manifest.append("\t".join((m.filename, m.serial, cert.subject, m.recipient, not_after)))
            z.writestr(zipfile.ZipInfo(MANIFEST, stamp), ("\n".join(manifest) + "\n").encode())
        s.execute(
            update(Retrieval)
            .where(Retrieval.bundle_id == archive.id)
            .values(used_at=now, used_from=(client or "")[:64], payload=None)
        )
        # Each subscriber hears of their own certificate; the officer gets one
        # notice for the archive (not one per certificate in it).
        serials = []
        for m in members:
            cert = CertificateRepo(s).by_serial(m.serial)
            self._tell_downloaded(s, m, cert, now, officer=False)
            serials.append((m.serial, cert.subject))
        enqueue(
            s,
            notices.bulk_download_complete(archive.recipient, items=serials, at=now, retrieval_id=archive.id),
            sender=self.sender,
            now=now,
        )
        return Download("", archive.filename, "application/zip", buf.getvalue())

    def record_download(
        self, s: Session, *, serial: str, institution_id: int, recipient: str, filename: str, client: str | None
    ) -> None:
        """A certificate delivered by another way (enrollment in the browser):
        recorded as a used link, so statistics count it, with the usual notices."""
        now = self.clock.now()
        row = Retrieval(
            serial=serial,
            institution_id=institution_id,
            token_sha256=token_hash(new_token()),  # never mailed
            kind="browser",
            filename=filename,
            recipient=recipient,
            created_at=now,
            expires_at=now,
            used_at=now,
            used_from=(client or "")[:64],
        )
        s.add(row)
        s.flush()
        self._tell_downloaded(s, row, CertificateRepo(s).by_serial(serial), now)

    def _tell_downloaded(
        self, s: Session, row: Retrieval, cert: Certificate, now: dt.datetime, *, officer: bool = True
    ) -> None:
        recipients = {row.recipient}
        ra = s.get(RACertificate, row.serial)
        if officer and ra is not None and (address := officer_email(ra.officer)):
            recipients.add(address)
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
            if old.bundle_id is not None:
                return self._renew_bundle(s, old.bundle_id)
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

    def _renew_bundle(self, s: Session, archive_id: int) -> str:
        """A new archive link for the certificates of a bulk archive (any of its
        serials names it) that are still kept; the old link stops working."""
        archive = s.get(Retrieval, archive_id)
        members = [m for m in self._members(s, archive_id) if m.payload is not None and m.used_at is None]
        if archive is None or not members:
            raise RetrievalGone("the PKCS#12 archive was downloaded or discarded; apply for new certificates")
        app_ids = {ra.application_id for m in members if (ra := s.get(RACertificate, m.serial)) is not None}
        items = [BundleItem(m.serial, m.recipient, m.filename, m.payload) for m in members if m.payload]
        now = self.clock.now()
        for row in (archive, *members):
            row.expires_at, row.payload = min(as_utc(row.expires_at), now), None
        s.flush()
        return self.offer_bundle(
            s,
            institution_id=archive.institution_id,
            recipient=archive.recipient,
            application_id=min((a for a in app_ids if a is not None), default=0),
            items=items,
            filename=archive.filename,
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
