"""Tables. Repositories (``repos``) are the only code that queries them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

TS = DateTime(timezone=True)


class Base(DeclarativeBase):
    pass


class Institution(Base):
    __tablename__ = "institutions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The registered English name: a certificate's O must equal it.
    name_en: Mapped[str] = mapped_column(String(128), unique=True)
    name_ja: Mapped[str | None] = mapped_column(String(128))
    prefecture: Mapped[str | None] = mapped_column(String(32))
    city: Mapped[str | None] = mapped_column(String(128))
    confirmed_until: Mapped[dt.datetime | None] = mapped_column(TS)
    created_at: Mapped[dt.datetime] = mapped_column(TS)

    domains: Mapped[list[InstitutionDomain]] = relationship(
        back_populates="institution", cascade="all, delete-orphan", lazy="selectin"
    )


class InstitutionDomain(Base):
    __tablename__ = "institution_domains"
    __table_args__ = (UniqueConstraint("domain", name="uq_institution_domain"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id", ondelete="CASCADE"))
    domain: Mapped[str] = mapped_column(String(253))
    approved: Mapped[bool] = mapped_column(Boolean, default=True)

    institution: Mapped[Institution] = relationship(back_populates="domains")


class CertificateAuthority(Base):
    """A root or intermediate, one generation of one purpose."""

    __tablename__ = "cas"
    __table_args__ = (UniqueConstraint("purpose", "generation", "parent_id", name="uq_ca_generation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)  # used in URLs
    name: Mapped[str] = mapped_column(String(128))  # subject CN
    kind: Mapped[str] = mapped_column(String(16))  # root | intermediate | cross
    purpose: Mapped[str] = mapped_column(String(32))  # root-rsa, tls-ecdsa, …
    generation: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cas.id"))
    key_backend: Mapped[str] = mapped_column(String(16))
    key_label: Mapped[str] = mapped_column(String(128))
    key_type: Mapped[str] = mapped_column(String(16))
    serial: Mapped[str] = mapped_column(String(64))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[dt.datetime] = mapped_column(TS)
    not_after: Mapped[dt.datetime] = mapped_column(TS)
    # From when this generation issues; the newest active one whose time has
    # come issues for its purpose.
    active_from: Mapped[dt.datetime] = mapped_column(TS)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|retired|revoked
    revoked_at: Mapped[dt.datetime | None] = mapped_column(TS)
    revocation_reason: Mapped[int | None] = mapped_column(Integer)
    key_destroyed_at: Mapped[dt.datetime | None] = mapped_column(TS)
    created_at: Mapped[dt.datetime] = mapped_column(TS)


class Certificate(Base):
    """One leaf certificate, from the recorded intent to the signed DER.

    ``state`` says how far the pipeline got: reserved → linted → issued, or
    failed (with ``failure``) or abandoned (a crash left it; the serial is
    never used again)."""

    __tablename__ = "certificates"
    __table_args__ = (
        Index("ix_certificates_issuer_state", "issuer_id", "state"),
        Index("ix_certificates_not_after", "not_after"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)  # lowercase hex
    issuer_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    profile: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text)  # RFC 4514
    sans: Mapped[str] = mapped_column(Text, default="")  # space separated
    spki_sha256: Mapped[str] = mapped_column(String(64), index=True)
    key_type: Mapped[str] = mapped_column(String(16))
    not_before: Mapped[dt.datetime] = mapped_column(TS)
    not_after: Mapped[dt.datetime] = mapped_column(TS)
    crl_shard: Mapped[int] = mapped_column(Integer, default=0)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    requested_by: Mapped[str] = mapped_column(String(128), default="")
    note: Mapped[str | None] = mapped_column(Text)
    der: Mapped[bytes | None] = mapped_column(LargeBinary)
    reserved_at: Mapped[dt.datetime] = mapped_column(TS)
    linted_at: Mapped[dt.datetime | None] = mapped_column(TS)
    issued_at: Mapped[dt.datetime | None] = mapped_column(TS)
    failed_at: Mapped[dt.datetime | None] = mapped_column(TS)
    failure: Mapped[str | None] = mapped_column(Text)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(TS)
    revocation_reason: Mapped[int | None] = mapped_column(Integer)
    invalidity_date: Mapped[dt.datetime | None] = mapped_column(TS)
    revocation_comment: Mapped[str | None] = mapped_column(Text)


class BlockedKey(Base):
    """Compromised keys by SPKI SHA-256; every issuance consults this."""

    __tablename__ = "blocked_keys"

    spki_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    source_serial: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(TS)
