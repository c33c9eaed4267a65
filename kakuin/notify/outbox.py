"""The outbox: mails are recorded in the same transaction as the decision that
caused them, and sent later (``flush``), so a failed relay loses nothing and a
retry sends nothing twice.

Idempotence: (recipient, kind, key) is unique in the database; enqueuing the
same notice again is a no-op. Several processes may flush at once: a row is
claimed by an UPDATE that only one of them wins.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kakuin.clock import Clock
from kakuin.notify.compose import Mail, render
from kakuin.notify.mailer import Mailer, MailError
from kakuin.ra.models import OutboxMail
from kakuin.store.db import Database

log = logging.getLogger(__name__)

CLAIM_TIMEOUT = dt.timedelta(minutes=10)
MAX_ATTEMPTS = 20


def enqueue(s: Session, mail: Mail, *, sender: str, now: dt.datetime) -> bool:
    """Record ``mail`` in the caller's transaction; False if it was already queued."""
    exists = s.scalar(
        select(OutboxMail.id).where(
            OutboxMail.recipient == mail.recipient, OutboxMail.kind == mail.kind, OutboxMail.key == mail.key
        )
    )
    if exists is not None:
        return False
    row = OutboxMail(
        recipient=mail.recipient,
        kind=mail.kind,
        key=mail.key[:200],
        subject=mail.subject[:255],
        message=render(mail, sender, now),
        sensitive=mail.sensitive,
        created_at=now,
        attempts=0,
    )
    try:
        with s.begin_nested():
            s.add(row)
            s.flush()
    except IntegrityError:  # another process queued it a moment ago
        return False
    return True


@dataclass(frozen=True, slots=True)
class FlushResult:
    sent: int
    failed: int
    pending: int


@dataclass(frozen=True, slots=True)
class QueuedMail:
    id: int
    recipient: str
    kind: str
    key: str
    subject: str
    created_at: dt.datetime
    sent_at: dt.datetime | None
    attempts: int
    last_error: str | None


class OutboxService:
    def __init__(self, db: Database, clock: Clock, sender: str) -> None:
        self.db = db
        self.clock = clock
        self.sender = sender

    def enqueue(self, mail: Mail) -> bool:
        with self.db.session() as s:
            return enqueue(s, mail, sender=self.sender, now=self.clock.now())

    def pending(self, limit: int = 1000) -> list[QueuedMail]:
        with self.db.session() as s:
            rows = s.scalars(
                select(OutboxMail).where(OutboxMail.sent_at.is_(None)).order_by(OutboxMail.id).limit(limit)
            ).all()
            return [_queued(r) for r in rows]

    def flush(self, mailer: Mailer, limit: int = 1000) -> FlushResult:
        """Send what is queued, oldest first. A failure is recorded on the row and
        retried on the next flush (up to MAX_ATTEMPTS); nothing is sent twice."""
        now = self.clock.now()
        with self.db.session() as s:
            ids = s.scalars(
                select(OutboxMail.id)
                .where(
                    OutboxMail.sent_at.is_(None),
                    OutboxMail.attempts < MAX_ATTEMPTS,
                    or_(OutboxMail.claimed_at.is_(None), OutboxMail.claimed_at < now - CLAIM_TIMEOUT),
                )
                .order_by(OutboxMail.id)
                .limit(limit)
            ).all()
        sent = failed = 0
        try:
            for mail_id in ids:
                with self.db.session() as s:
                    won = s.execute(
                        update(OutboxMail)
                        .where(
                            OutboxMail.id == mail_id,
                            OutboxMail.sent_at.is_(None),
                            or_(OutboxMail.claimed_at.is_(None), OutboxMail.claimed_at < now - CLAIM_TIMEOUT),
                        )
                        .values(claimed_at=self.clock.now())
                    ).rowcount
                    row = s.get(OutboxMail, mail_id) if won else None
                    recipient, message = (row.recipient, row.message) if row else ("", None)
                if row is None or message is None:
                    continue
                try:
                    mailer.send(self.sender, recipient, message)
                except MailError as exc:
                    failed += 1
                    with self.db.session() as s:
                        r = s.get(OutboxMail, mail_id)
                        assert r is not None
                        r.attempts += 1
                        r.last_error = exc.message[:2000]
                        r.claimed_at = None
                        if r.sensitive and r.attempts >= MAX_ATTEMPTS:
                            # Given up: a PIN or HMAC key does not stay in the database
                            # either way; the officer issues a new one.
                            r.message = None
                            r.last_error = (r.last_error + "; given up, the secret it carried was wiped")[:2000]
                    log.warning("mail %s to %s not sent: %s", mail_id, recipient, exc.message)
                    continue
                sent += 1
                with self.db.session() as s:
                    r = s.get(OutboxMail, mail_id)
                    assert r is not None
                    r.sent_at, r.attempts, r.last_error = self.clock.now(), r.attempts + 1, None
                    if r.sensitive:
                        r.message = None  # a PIN or HMAC key does not stay in the database
        finally:
            close = getattr(mailer, "close", None)
            if close is not None:
                close()
        with self.db.session() as s:
            left = len(s.scalars(select(OutboxMail.id).where(OutboxMail.sent_at.is_(None))).all())
        return FlushResult(sent, failed, left)


def _queued(r: OutboxMail) -> QueuedMail:
    return QueuedMail(r.id, r.recipient, r.kind, r.key, r.subject, r.created_at, r.sent_at, r.attempts, r.last_error)
