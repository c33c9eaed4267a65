"""Tables of incident response (revision 0006_incident).

``incidents``: one per event, with the rule that selects the affected
certificates; ``incident_certificates``: the affected certificates, selected
once when the incident is opened (the rule is not re-run, so the list an
operator reported is the list that is tracked); ``incident_reminders``: which
reminders went out. The CA-side tables of the same revision live beside their
code: ``kakuin.ca.ceremony`` (key_ceremony_log) and ``kakuin.ca.rotation``
(cross_certificates, ca_revocation_schedule).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

import kakuin.ca.ceremony  # noqa: F401  (key_ceremony_log)
import kakuin.ca.rotation  # noqa: F401  (cross_certificates, ca_revocation_schedule)
from kakuin.store.models import TS, Base


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The rule (all inclusive, as the 2020 rule was stated): issued by one of
    # ``issuers`` with notBefore in [issued_from, issued_to] and notAfter ≥ expires_after.
    issuers: Mapped[list[str]] = mapped_column(JSON)
    issued_from: Mapped[dt.datetime | None] = mapped_column(TS)
    issued_to: Mapped[dt.datetime | None] = mapped_column(TS)  # last instant included
    expires_after: Mapped[dt.datetime | None] = mapped_column(TS)  # first instant included
    profile: Mapped[str | None] = mapped_column(String(32))
    key_type: Mapped[str | None] = mapped_column(String(16))
    rule_text: Mapped[str] = mapped_column(Text)  # the rule as the operator gave it
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | executed
    opened_at: Mapped[dt.datetime] = mapped_column(TS)
    opened_by: Mapped[str] = mapped_column(String(128))
    deadline: Mapped[dt.datetime] = mapped_column(TS)
    replacement: Mapped[str | None] = mapped_column(String(64))  # slug of the new intermediate
    explanation_url: Mapped[str | None] = mapped_column(Text)
    summary_ja: Mapped[str] = mapped_column(Text, default="")
    summary_en: Mapped[str] = mapped_column(Text, default="")
    remind_days: Mapped[list[int]] = mapped_column(JSON, default=list)
    notified_at: Mapped[dt.datetime | None] = mapped_column(TS)
    executed_at: Mapped[dt.datetime | None] = mapped_column(TS)
    revoke_reason: Mapped[int | None] = mapped_column(Integer)


class IncidentCertificate(Base):
    __tablename__ = "incident_certificates"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    issuer: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(32))
    key_type: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text)
    names: Mapped[str] = mapped_column(Text, default="")
    institution_id: Mapped[int | None] = mapped_column(Integer, index=True)
    source: Mapped[str] = mapped_column(String(16))  # acme | ra | other
    officer: Mapped[str | None] = mapped_column(String(254))
    subscriber: Mapped[str | None] = mapped_column(String(254))
    not_before: Mapped[dt.datetime] = mapped_column(TS)
    not_after: Mapped[dt.datetime] = mapped_column(TS)
    replaced_by: Mapped[str | None] = mapped_column(String(64))
    replaced_via: Mapped[str | None] = mapped_column(String(16))  # ra-renew | acme-replaces | newer
    replaced_at: Mapped[dt.datetime | None] = mapped_column(TS)
    ari_set_at: Mapped[dt.datetime | None] = mapped_column(TS)


class IncidentReminder(Base):
    __tablename__ = "incident_reminders"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(32), primary_key=True)  # notice | remind-14d | …
    sent_at: Mapped[dt.datetime] = mapped_column(TS)
    mails: Mapped[int] = mapped_column(Integer)


__all__ = ["Incident", "IncidentCertificate", "IncidentReminder"]
