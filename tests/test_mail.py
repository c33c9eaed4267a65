"""Notifications through a real SMTP server (aiosmtpd on a free loopback port):
expiry digests (one per recipient per day), splitting over the size limit,
and an outbox that retries and never sends twice."""

from __future__ import annotations

import datetime as dt
import os

from cryptography.hazmat.primitives.asymmetric import ec

from kakuin.clock import UTC
from kakuin.notify.compose import Attachment, DigestItem, Mail, build_digest, render
from kakuin.notify.mailer import SMTPMailer
from kakuin.ra.services import RA
from kakuin.ra.settings import MailConfig
from kakuin.store.repos import CertificateRepo
from tests.helpers import ec_key
from tests.ra_helpers import INST, OP, body, free_port, server_fields, setup_institution, smtp, smtp_ctx, tsv

AT = dt.datetime(2025, 6, 2, tzinfo=UTC)
_ = smtp  # the fixture


def _digest_ra(make_ctx, sink) -> tuple[RA, list[str]]:  # type: ignore[no-untyped-def]
    ra = RA(smtp_ctx(make_ctx, AT, sink))
    setup_institution(ra)
    rows = [server_fields(ec_key(ec.SECP384R1()), cn=f"h{i}.example.ac.jp") for i in range(3)]
    report = ra.tsv.apply(tsv(rows), institution=INST, actor=OP)
    serials = [r.serial for r in report.results if r.serial]
    assert len(serials) == 3
    ra.outbox.flush(ra.mailer())  # the retrieval links
    sink.received.clear()
    return ra, serials


def test_three_expiring_certificates_make_one_digest(make_ctx, smtp) -> None:  # type: ignore[no-untyped-def]
    ra, serials = _digest_ra(make_ctx, smtp)
    with ra.ctx.db.session() as s:
        not_after = min(CertificateRepo(s).by_serial(x).not_after for x in serials)
    ra.ctx.clock.set(not_after.replace(tzinfo=UTC) - dt.timedelta(days=50))  # type: ignore[attr-defined]
    run = ra.expiry.enqueue_digests()
    assert (run.certificates, run.mails) == (3, 1)
    assert ra.outbox.flush(ra.mailer()).sent == 1
    [msg] = smtp.messages()
    [(_, rcpt, _)] = smtp.received
    assert rcpt == ["taro@example.ac.jp"]
    text = body(msg)
    assert all(x in text for x in serials)
    assert "有効期限が近づいています" in text and "expire soon" in text
    assert "証明書有効期限のお知らせ" in msg["Subject"] and "Certificates expiring soon" in msg["Subject"]
    # Same day again: nothing new. At 30 days: the next threshold, one more digest.
    assert ra.expiry.enqueue_digests().mails == 0
    ra.ctx.clock.advance(dt.timedelta(days=21))  # type: ignore[attr-defined]
    assert ra.expiry.enqueue_digests().mails == 1


def test_renewed_certificates_are_not_announced(make_ctx, smtp) -> None:  # type: ignore[no-untyped-def]
    ra, serials = _digest_ra(make_ctx, smtp)
    rows = [server_fields(ec_key(ec.SECP384R1()), cn=f"h{i}.example.ac.jp", replaces=serials[i]) for i in range(2)]
    assert ra.tsv.apply(tsv(rows), institution=INST, actor=OP).status == "applied"
    with ra.ctx.db.session() as s:
        not_after = CertificateRepo(s).by_serial(serials[2]).not_after
    ra.ctx.clock.set(not_after.replace(tzinfo=UTC) - dt.timedelta(days=50))  # type: ignore[attr-defined]
    ra.expiry.enqueue_digests()
    from sqlalchemy import select

    from kakuin.ra.models import ExpiryNotice

    with ra.ctx.db.session() as s:
        announced = set(s.scalars(select(ExpiryNotice.serial)))
    assert serials[2] in announced and not announced & set(serials[:2])  # replaced: not announced


def _items(n: int, size: int = 0) -> list[DigestItem]:
    return [
        DigestItem(f"- 証明書 {i}", f"- certificate {i}", (Attachment(f"c{i}.bin", os.urandom(size)),) if size else ())
        for i in range(n)
    ]


def test_digest_split_with_a_lowered_limit() -> None:
    items = _items(80)
    kw = dict(max_bytes=1500, sender="ca@kakuin.example", at=AT)
    parts = build_digest("a@example.ac.jp", "expiry-digest", "2025-06-02", "S", ("序", "intro"), items, **kw)
    assert len(parts) > 1
    assert [p.key for p in parts] == [f"2025-06-02/{k}" for k in range(1, len(parts) + 1)]
    assert all(len(render(p, "ca@kakuin.example", AT)) <= 1500 for p in parts)
    joined = "".join(p.body for p in parts)
    assert all(f"certificate {i}\n" in joined for i in range(80))
    assert parts[0].subject == f"S (1/{len(parts)})"
    one = build_digest(
        "a@example.ac.jp", "k", "d", "S", ("序", "intro"), items[:3], max_bytes=10**6, sender="ca@kakuin.example", at=AT
    )
    assert len(one) == 1 and one[0].key == "d"


def test_a_digest_over_10_mb_is_split_and_delivered(make_ctx, smtp) -> None:  # type: ignore[no-untyped-def]
    ra = RA(smtp_ctx(make_ctx, AT, smtp))
    limit = ra.ctx.config.mail.max_message_bytes
    assert limit == 10 * 1024 * 1024
    items = _items(4, size=3 * 1024 * 1024)  # ~16 MB once base64-encoded
    parts = build_digest(
        "big@example.ac.jp",
        "expiry-digest",
        "2025-06-02",
        "S",
        ("序", "intro"),
        items,
        max_bytes=limit,
        sender=ra.sender,
        at=AT,
    )
    assert len(parts) == 2
    for p in parts:
        ra.outbox.enqueue(p)
    assert ra.outbox.flush(ra.mailer()).sent == 2
    sizes = [len(d) for _, _, d in smtp.received]
    assert len(sizes) == 2 and all(s <= limit for s in sizes) and sum(sizes) > limit
    names = sorted(a.get_filename() for m in smtp.messages() for a in m.iter_attachments())
    assert names == ["c0.bin", "c1.bin", "c2.bin", "c3.bin"]


def test_outbox_is_idempotent_and_retries(make_ctx, smtp) -> None:  # type: ignore[no-untyped-def]
    ra = RA(smtp_ctx(make_ctx, AT, smtp))
    mail = Mail("x@example.ac.jp", "test", "k1", "件名 / subject", "本文\n\nbody")
    assert ra.outbox.enqueue(mail) is True
    assert ra.outbox.enqueue(mail) is False  # same (recipient, kind, key)
    down = SMTPMailer(MailConfig(host="127.0.0.1", port=free_port(), timeout_seconds=2))
    r = ra.outbox.flush(down)
    assert (r.sent, r.failed, r.pending) == (0, 1, 1)
    [queued] = ra.outbox.pending()
    assert queued.attempts == 1 and "cannot reach the mail relay" in (queued.last_error or "")
    r = ra.outbox.flush(ra.mailer())
    assert (r.sent, r.failed, r.pending) == (1, 0, 0)
    assert ra.outbox.flush(ra.mailer()).sent == 0
    assert len(smtp.received) == 1


def test_sensitive_mail_is_wiped_once_sent(make_ctx, smtp) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from kakuin.ra.models import OutboxMail

    ra = RA(smtp_ctx(make_ctx, AT, smtp))
    ra.outbox.enqueue(Mail("x@example.ac.jp", "access-pin", "s1", "PIN", "PIN: secret123", sensitive=True))
    ra.outbox.flush(ra.mailer())
    with ra.ctx.db.session() as s:
        assert s.scalars(select(OutboxMail.message)).all() == [None]
    assert b"secret123" in smtp.received[0][2]


def test_sensitive_mail_is_wiped_when_given_up(make_ctx, smtp, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    import kakuin.notify.outbox as outbox
    from kakuin.ra.models import OutboxMail

    monkeypatch.setattr(outbox, "MAX_ATTEMPTS", 2)
    ra = RA(smtp_ctx(make_ctx, AT, smtp))
    ra.outbox.enqueue(Mail("x@example.ac.jp", "eab", "s2", "EAB", "HMAC: secret-hmac", sensitive=True))
    down = SMTPMailer(MailConfig(host="127.0.0.1", port=free_port(), timeout_seconds=2))
    ra.outbox.flush(down)
    with ra.ctx.db.session() as s:
        assert s.scalars(select(OutboxMail.message)).all() != [None]  # kept for the retry
    ra.outbox.flush(down)
    with ra.ctx.db.session() as s:
        row = s.scalars(select(OutboxMail)).one()
        assert row.message is None and "wiped" in (row.last_error or "")
    assert ra.outbox.flush(ra.mailer()).sent == 0 and smtp.received == []
