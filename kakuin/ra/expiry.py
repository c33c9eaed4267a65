"""Expiry notices (PRODUCT.md §17; UPKI: digests). Once a day, every valid
certificate that has crossed one of ``ra.expiry_notice_days`` (60/30/7) and
was not replaced is announced, once per threshold, in one digest per
recipient per day (the subscriber and the officer who applied; for
certificates the RA did not apply for, the institution's officers). A digest
over ``mail.max_message_bytes`` is split."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select

from kakuin.clock import Clock, as_utc
from kakuin.notify.compose import DigestItem, build_digest
from kakuin.notify.outbox import enqueue
from kakuin.ra import notices
from kakuin.ra.models import ExpiryNotice, Person, RACertificate
from kakuin.ra.recipients import officer_emails
from kakuin.ra.retrieval import officer_email
from kakuin.store.db import Database
from kakuin.store.models import Certificate


@dataclass(frozen=True, slots=True)
class ExpiryRun:
    certificates: int
    mails: int


class ExpiryService:
    def __init__(self, db: Database, clock: Clock, *, thresholds: tuple[int, ...], sender: str, max_bytes: int) -> None:
        self.db = db
        self.clock = clock
        self.thresholds = tuple(sorted(thresholds))
        self.sender = sender
        self.max_bytes = max_bytes

    def _threshold(self, days_left: int) -> int | None:
        return next((t for t in self.thresholds if days_left <= t), None)

    def enqueue_digests(self) -> ExpiryRun:
        now = self.clock.now()
        today = now.date().isoformat()
        horizon = now + dt.timedelta(days=max(self.thresholds) + 1)
        by_recipient: dict[str, list[DigestItem]] = defaultdict(list)
        count = 0
        with self.db.session() as s:
            rows = s.execute(
                select(Certificate, RACertificate)
                .outerjoin(RACertificate, RACertificate.serial == Certificate.serial)
                .where(
                    Certificate.state == "issued",
                    Certificate.revoked_at.is_(None),
                    Certificate.not_after > now,
                    Certificate.not_after <= horizon,
                )
                .order_by(Certificate.not_after)
            ).all()
            officers: dict[int, list[str]] = {}
            for cert, ra in rows:
                if ra is not None and ra.replaced_by:
                    continue  # renewed: nothing to do
                not_after = as_utc(cert.not_after)
                days_left = (not_after - now).days
                threshold = self._threshold(days_left)
                if threshold is None or s.get(ExpiryNotice, (cert.serial, threshold)) is not None:
                    continue
                s.add(ExpiryNotice(serial=cert.serial, threshold=threshold, noticed_at=now))
                count += 1
                item = notices.expiry_item(
                    serial=cert.serial, subject=cert.subject, names=cert.sans, not_after=not_after, days_left=days_left
                )
                for to in self._recipients(s, cert, ra, officers):
                    by_recipient[to].append(item)
            mails = 0
            for to, items in sorted(by_recipient.items()):
                for mail in build_digest(
                    to,
                    "expiry-digest",
                    today,
                    notices.EXPIRY_SUBJECT,
                    notices.EXPIRY_INTRO,
                    items,
                    max_bytes=self.max_bytes,
                    sender=self.sender,
                    at=now,
                ):
                    mails += enqueue(s, mail, sender=self.sender, now=now)
        return ExpiryRun(count, mails)

    @staticmethod
    def _recipients(s, cert: Certificate, ra: RACertificate | None, officers: dict[int, list[str]]) -> set[str]:  # type: ignore[no-untyped-def]
        to: set[str] = set()
        if ra is not None:
            if ra.subscriber_id is not None and (p := s.get(Person, ra.subscriber_id)) is not None:
                to.add(p.email)
            if (o := officer_email(ra.officer)) is not None:
                to.add(o)
            if to:
                return to
        if cert.institution_id is not None:
            to.update(officer_emails(s, cert.institution_id, officers))
        return to
