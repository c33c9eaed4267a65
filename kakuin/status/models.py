"""Tables of the status capability (revocation requests, CRLs, OCSP).

Migration: ``kakuin/store/migrations/versions/0003_revocation.py``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kakuin.store.models import TS, Base, Certificate

# The CRL query: a partial index of revoked certificates only, covering every
# column a CRL entry needs, so a million-entry CRL is one index scan.
_REVOKED = Certificate.revoked_at.is_not(None)
Index("ix_certificates_revoked", Certificate.issuer_id, Certificate.crl_shard, Certificate.not_after,
      Certificate.serial, Certificate.revoked_at, Certificate.revocation_reason, Certificate.invalidity_date,
      sqlite_where=_REVOKED, postgresql_where=_REVOKED)


class RevocationRequest(Base):
    """A report of a problem with a certificate: starts the BR 4.9.1.1 clock."""

    __tablename__ = "revocation_requests"
    __table_args__ = (Index("ix_revocation_requests_status", "status", "deadline"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[int] = mapped_column(Integer)
    reported_at: Mapped[dt.datetime] = mapped_column(TS)
    reported_by: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str | None] = mapped_column(Text)
    deadline: Mapped[dt.datetime] = mapped_column(TS)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | done | rejected
    done_at: Mapped[dt.datetime | None] = mapped_column(TS)
    done_by: Mapped[str | None] = mapped_column(String(128))


class CRLNumber(Base):
    """One counter per issuer: every CRL it signs (full, shard, ARL) takes the
    next number, so numbers increase strictly within every scope (RFC 5280 §5.2.3)."""

    __tablename__ = "crl_numbers"

    issuer_id: Mapped[int] = mapped_column(ForeignKey("cas.id"), primary_key=True)
    last: Mapped[int] = mapped_column(BigInteger, default=0)


class PublishedCRL(Base):
    """The newest signed CRL of one scope: shard -1 is the full CRL (or ARL)."""

    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("issuer_id", "shard", name="uq_crl_scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    shard: Mapped[int] = mapped_column(Integer)
    number: Mapped[int] = mapped_column(BigInteger)
    this_update: Mapped[dt.datetime] = mapped_column(TS)
    next_update: Mapped[dt.datetime] = mapped_column(TS)
    entries: Mapped[int] = mapped_column(Integer)
    stale: Mapped[bool] = mapped_column(default=False)
    der: Mapped[bytes] = mapped_column(LargeBinary)


class OCSPResponder(Base):
    """A delegated OCSP responder certificate (id-kp-OCSPSigning + ocsp-nocheck)."""

    __tablename__ = "ocsp_responders"
    __table_args__ = (UniqueConstraint("issuer_id", "generation", name="uq_ocsp_responder_gen"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    generation: Mapped[int] = mapped_column(Integer)
    key_backend: Mapped[str] = mapped_column(String(16))
    key_label: Mapped[str] = mapped_column(String(128))
    key_type: Mapped[str] = mapped_column(String(16))
    serial: Mapped[str] = mapped_column(String(64))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[dt.datetime] = mapped_column(TS)
    not_after: Mapped[dt.datetime] = mapped_column(TS)
    created_at: Mapped[dt.datetime] = mapped_column(TS)


class OCSPResponse(Base):
    """A pre-signed OCSP response for one certificate and CertID hash."""

    __tablename__ = "ocsp_responses"
    __table_args__ = (Index("ix_ocsp_responses_next_update", "next_update"),)

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    hash_alg: Mapped[str] = mapped_column(String(8), primary_key=True)  # sha1 | sha256
    issuer_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    status: Mapped[str] = mapped_column(String(8))  # good | revoked
    this_update: Mapped[dt.datetime] = mapped_column(TS)
    next_update: Mapped[dt.datetime] = mapped_column(TS)
    der: Mapped[bytes] = mapped_column(LargeBinary)
