"""Helpers for the RA tests: an institution, TSV rows made by hand, the outbox,
and a real SMTP server (aiosmtpd) on a free loopback port."""

from __future__ import annotations

import base64
import email
import email.policy
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from kakuin.context import Context
from kakuin.ra.actors import Actor
from kakuin.ra.models import OutboxMail
from kakuin.ra.services import RA
from tests.helpers import make_csr, ov_name

OP = Actor.operator("operator:test")
INST = "Example University"


def setup_institution(
    ra: RA, name: str = INST, domains: tuple[str, ...] = ("example.ac.jp",), confirm: bool = True
) -> int:
    info = ra.institutions.register(name, actor=OP, prefecture="Tokyo", city="Chiyoda-ku", domains=domains)
    if confirm:
        ra.institutions.confirm(name, actor=OP)
    return info.id


def csr_field(csr_pem: bytes) -> str:
    """The CSR as a TSV field: one line, PEM markers kept."""
    return csr_pem.decode().replace("\r", "").replace("\n", "")


def server_fields(
    key,  # type: ignore[no-untyped-def]
    *,
    cn: str = "www.example.ac.jp",
    o: str = INST,
    dn: str | None = None,
    profile_id: str = "11",
    replaces: str = "",
    email_addr: str = "taro@example.ac.jp",
    extra: str = "",
    csr_name=None,  # type: ignore[no-untyped-def]
) -> list[str]:
    csr = make_csr(key, csr_name or ov_name(cn=cn, o=o, st="Tokyo", l=None), dns=[cn])
    return [
        dn if dn is not None else f"CN={cn},O={o},ST=Tokyo,C=JP",
        profile_id,
        "",
        replaces,
        "",
        "",
        csr_field(csr),
        "国立 太郎",
        "情報基盤センター",
        email_addr,
        cn,
        "nginx 1.24",
        extra,
    ]


def client_fields(
    *,
    cn: str = "Hanako Yamada",
    profile_id: str = "5",
    method: str = "1",
    pin: str = "",
    email_addr: str = "hanako@example.ac.jp",
) -> list[str]:
    return [
        f"CN={cn},OU=Information Center,O={INST},ST=Tokyo,C=JP",
        profile_id,
        method,
        "",
        "",
        "",
        "",
        "山田 花子",
        "情報基盤センター",
        email_addr,
        "",
        "",
        "",
        "",
        pin,
    ]


def tsv(
    rows: list[list[str]], *, encoding: str = "cp932", newline: str = "\r\n", final: bool = True, bom: bool = False
) -> bytes:
    text = newline.join("\t".join(r) for r in rows) + (newline if final else "")
    data = text.encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def outbox(ctx: Context, kind: str | None = None) -> list[email.message.EmailMessage]:
    with ctx.db.session() as s:
        q = select(OutboxMail).order_by(OutboxMail.id)
        if kind:
            q = q.where(OutboxMail.kind == kind)
        rows = [r.message for r in s.scalars(q) if r.message is not None]
    return [email.message_from_bytes(m, policy=email.policy.default) for m in rows]  # type: ignore[misc]


def body(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return part.get_content()


def token_of(msg: email.message.EmailMessage) -> str:
    m = re.search(r"/retrieve/([A-Za-z0-9_-]+)", body(msg))
    assert m, body(msg)
    return m.group(1)


def pin_of(msg: email.message.EmailMessage) -> str:
    m = re.search(r"アクセスPIN: (\S+)", body(msg))
    assert m
    return m.group(1)


def pem(cert) -> bytes:  # type: ignore[no-untyped-def]
    return cert.public_bytes(Encoding.PEM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SMTPSink:
    host: str
    port: int
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    def messages(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(d, policy=email.policy.default) for _, _, d in self.received]  # type: ignore[misc]


@pytest.fixture
def smtp() -> Iterator[SMTPSink]:
    """A real SMTP server (aiosmtpd) on a free loopback port; what it receives is kept."""
    from aiosmtpd.controller import Controller

    sink = SMTPSink("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
            sink.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            return "250 OK"

    controller = Controller(Handler(), hostname=sink.host, port=sink.port, data_size_limit=64 * 1024 * 1024)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def smtp_ctx(make_ctx, at, sink: SMTPSink):  # type: ignore[no-untyped-def]
    """A context whose [mail] points at the sink."""
    ctx = make_ctx(at)
    cfg = ctx.config.data_dir / "kakuin.toml"
    text = cfg.read_text()
    if "[mail]" not in text:
        cfg.write_text(text + f'\n[mail]\nhost = "{sink.host}"\nport = {sink.port}\nfrom = "ca@kakuin.example"\n')
    from kakuin.clock import FixedClock

    ctx2 = Context.open(ctx.config.data_dir, clock=FixedClock(at))
    return ctx2


_ = base64
