"""Tables of validation evidence (revision ``0005_mpic``; issue #6).

``validation_evidence``: one row per perspective per check — what the primary
network perspective and each remote perspective saw, when, and whether it
corroborated; rows of one corroborated check share a ``check_id``.
``validation_evidence_links``: which checks a certificate was issued on (a
check can serve several certificates: ACME authorizations are reused).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kakuin.store.models import TS, Base

__all__ = ["EvidenceLink", "ValidationEvidence"]


class ValidationEvidence(Base):
    __tablename__ = "validation_evidence"
    __table_args__ = (Index("ix_validation_evidence_domain", "domain", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    check_id: Mapped[str] = mapped_column(String(32), index=True)
    domain: Mapped[str] = mapped_column(String(253))
    method: Mapped[str] = mapped_column(String(16))  # http-01 | dns-01 | tls-alpn-01 | caa
    perspective: Mapped[str] = mapped_column(String(64))  # "primary" or the remote's name
    ok: Mapped[bool] = mapped_column(Boolean)  # this perspective's check passed
    # Remote rows: it agreed with the primary. Primary row: the quorum was met.
    corroborates: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(16))  # passed | failed | timeout | error
    value: Mapped[str | None] = mapped_column(Text)  # validated value / permit | deny
    error: Mapped[str | None] = mapped_column(Text)
    observed: Mapped[dict] = mapped_column(JSON)
    dnssec: Mapped[str | None] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(TS)  # when the CA recorded it
    perspective_at: Mapped[str | None] = mapped_column(String(40))  # the perspective's own clock
    latency_ms: Mapped[int | None] = mapped_column(Integer)


class EvidenceLink(Base):
    __tablename__ = "validation_evidence_links"
    __table_args__ = (UniqueConstraint("check_id", "certificate_serial", name="uq_evidence_link"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    check_id: Mapped[str] = mapped_column(String(32), index=True)
    certificate_serial: Mapped[str] = mapped_column(String(64), index=True)
    order_id: Mapped[int | None] = mapped_column(Integer)  # ACME order
    authz_id: Mapped[int | None] = mapped_column(Integer)  # ACME authorization (DCV checks)
    created_at: Mapped[dt.datetime] = mapped_column(TS)
