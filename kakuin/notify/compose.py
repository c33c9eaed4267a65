"""Composing mails: RFC 5322 bytes, Japanese first with English alongside, and
digests split so that no mail exceeds the size limit (UPKI: 10 MB)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

SEPARATOR = "\n" + "-" * 60 + "\n"


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content: bytes
    mime: str = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Mail:
    """One mail to queue. ``key`` makes it unique per (recipient, kind): the same
    notice enqueued twice is sent once."""

    recipient: str
    kind: str
    key: str
    subject: str
    body: str
    attachments: tuple[Attachment, ...] = ()
    sensitive: bool = False  # holds a PIN or an HMAC key: body wiped once sent


def bilingual(ja: str, en: str) -> str:
    """The house layout: Japanese, a rule, then English."""
    return ja.rstrip() + "\n" + SEPARATOR + "\n" + en.rstrip() + "\n"


def render(mail: Mail, sender: str, at: dt.datetime) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = mail.recipient
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "kakuin.invalid")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to notices
    msg.set_content(mail.body, charset="utf-8")
    for a in mail.attachments:
        maintype, _, subtype = a.mime.partition("/")
        msg.add_attachment(a.content, maintype=maintype, subtype=subtype or "octet-stream", filename=a.filename)
    return msg.as_bytes()


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One entry of a digest (one certificate): text in both languages, optional files."""

    text_ja: str
    text_en: str
    attachments: tuple[Attachment, ...] = field(default=())


def _digest_mail(
    recipient: str, kind: str, key: str, subject: str, intro: tuple[str, str], items: Sequence[DigestItem]
) -> Mail:
    ja = intro[0] + "\n\n" + "\n".join(i.text_ja for i in items)
    en = intro[1] + "\n\n" + "\n".join(i.text_en for i in items)
    attachments = tuple(a for i in items for a in i.attachments)
    return Mail(recipient, kind, key, subject, bilingual(ja, en), attachments)


def build_digest(
    recipient: str,
    kind: str,
    key: str,
    subject: str,
    intro: tuple[str, str],
    items: Sequence[DigestItem],
    *,
    max_bytes: int,
    sender: str,
    at: dt.datetime,
) -> list[Mail]:
    """One mail for all ``items`` if it fits in ``max_bytes`` (as sent, encoded),
    else as few parts as greedy packing gives, each under the limit; parts are
    keyed ``key/1``, ``key/2`` … and titled "(1/3)". An item too large on its own
    still goes, alone, in its own part."""
    if not items:
        return []

    def size(part: Sequence[DigestItem]) -> int:
        return len(render(_digest_mail(recipient, kind, key, subject + " (99/99)", intro, part), sender, at))

    whole = size(items)
    if whole <= max_bytes:
        return [_digest_mail(recipient, kind, key, subject, intro, items)]
    base = size([])
    cost = [size([i]) - base for i in items]
    parts: list[list[DigestItem]] = [[]]
    used = base
    for item, c in zip(items, cost, strict=True):
        if parts[-1] and used + c > max_bytes:
            parts.append([])
            used = base
        parts[-1].append(item)
        used += c
    n = len(parts)
    return [
        _digest_mail(recipient, kind, f"{key}/{k}", f"{subject} ({k}/{n})", intro, part)
        for k, part in enumerate(parts, start=1)
    ]
