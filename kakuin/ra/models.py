"""Tables of the registration authority (revisions ``0004_ra``, ``0007_ra_bulk``,
``0008_ra_enroll``).

``people``: who acts for an institution (responsible person, officers,
subscribers); ``ra_certificates``: what the RA knows about a certificate it
asked for (subscriber, application, replacement); ``ra_retrievals``: single-use
download links (token stored as SHA-256; PKCS#12 kept only until downloaded;
PKCS#12 in bulk: one ``zip`` row per application, whose link the officer gets,
and one row per certificate pointing at it with ``bundle_id``);
``ra_enrollments``: client/S/MIME rows to be delivered in the browser, waiting
for the subscriber's CSR (checked subject DN and profile; token as SHA-256; no
key and no PIN is ever stored); ``ra_applications``: every TSV file applied, with its outcome;
``ra_expiry_notices``: which expiry thresholds were announced; ``mail_outbox``:
mails to send, unique per (recipient, kind, key) so enqueuing is idempotent.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from kakuin.store.models import TS, Base

ROLES = ("responsible", "officer", "subscriber")


class Person(Base):
    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("institution_id", "email", "role", name="uq_people_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # responsible | officer | subscriber
    name: Mapped[str] = mapped_column(String(128))
    email: Mapped[str] = mapped_column(String(254), index=True)
    affiliation: Mapped[str | None] = mapped_column(String(128))
    # Officers: the client certificate they sign in to the portal with (mutual TLS).
    cert_serial: Mapped[str | None] = mapped_column(String(64))
    cert_spki_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(TS)


class RACertificate(Base):
    __tablename__ = "ra_certificates"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    officer: Mapped[str] = mapped_column(String(128))  # actor that applied
    application_id: Mapped[int | None] = mapped_column(ForeignKey("ra_applications.id"))
    kind: Mapped[str] = mapped_column(String(16))  # server | client | smime | officer
    server_software: Mapped[str | None] = mapped_column(String(128))
    download_method: Mapped[str | None] = mapped_column(String(16))
    replaces: Mapped[str | None] = mapped_column(String(64))
    replaced_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(TS)


class Retrieval(Base):
    __tablename__ = "ra_retrievals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), index=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # pem | pkcs12 | zip (the bulk archive; serial "") | browser (enrolled in the browser: used at once)
    kind: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(128))
    # PKCS#12 (encrypted under the access PIN) until downloaded, then NULL.
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    recipient: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    expires_at: Mapped[dt.datetime] = mapped_column(TS)
    used_at: Mapped[dt.datetime | None] = mapped_column(TS)
    used_from: Mapped[str | None] = mapped_column(String(64))
    # PKCS#12 in bulk: the archive row this certificate is delivered in (its own
    # token is never mailed; the archive's link uses and records it).
    bundle_id: Mapped[int | None] = mapped_column(Integer, index=True)


class Enrollment(Base):
    __tablename__ = "ra_enrollments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    application_id: Mapped[int | None] = mapped_column(ForeignKey("ra_applications.id"), index=True)
    row: Mapped[int] = mapped_column(Integer)  # TSV row it came from
    officer: Mapped[str] = mapped_column(String(128))  # actor that applied
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"))
    subscriber_email: Mapped[str] = mapped_column(String(254))
    profile: Mapped[str] = mapped_column(String(32))  # kakuin profile (client | smime)
    profile_id: Mapped[str] = mapped_column(String(4))  # UPKI profile ID (5 | 7)
    subject_dn: Mapped[str] = mapped_column(Text)  # column 1 as checked; parsed again with parse_dn
    p12_name: Mapped[str | None] = mapped_column(String(128))
    pin_required: Mapped[bool] = mapped_column(Boolean, default=False)  # column 15 given: the page asks for it
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    expires_at: Mapped[dt.datetime] = mapped_column(TS)
    used_at: Mapped[dt.datetime | None] = mapped_column(TS)
    used_from: Mapped[str | None] = mapped_column(String(64))
    serial: Mapped[str | None] = mapped_column(String(64))  # issued


class Application(Base):
    __tablename__ = "ra_applications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    filename: Mapped[str | None] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    accepted: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # applied | partial | refused
    errors: Mapped[str | None] = mapped_column(Text)  # JSON list of row errors
    created_at: Mapped[dt.datetime] = mapped_column(TS)


class ExpiryNotice(Base):
    __tablename__ = "ra_expiry_notices"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    threshold: Mapped[int] = mapped_column(Integer, primary_key=True)
    noticed_at: Mapped[dt.datetime] = mapped_column(TS)


class OutboxMail(Base):
    __tablename__ = "mail_outbox"
    __table_args__ = (
        UniqueConstraint("recipient", "kind", "key", name="uq_mail_outbox_key"),
        Index("ix_mail_outbox_pending", "sent_at", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient: Mapped[str] = mapped_column(String(254))
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200))  # subject key / day (+ part)
    subject: Mapped[str] = mapped_column(String(255))
    message: Mapped[bytes | None] = mapped_column(LargeBinary)  # RFC 5322 bytes
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)  # body wiped once sent
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(TS)
    sent_at: Mapped[dt.datetime | None] = mapped_column(TS)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
