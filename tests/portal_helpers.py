"""Helpers for the portal and API tests: officers with real client certificates
(``add_officer``), and an in-process client that presents one of them the way
the TLS listener does (the ASGI TLS extension), so identification runs in
full — issuer, revocation, officer mapping — without a socket."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from starlette.testclient import TestClient

from kakuin.portal.app import create_portal_app
from kakuin.ra.services import RA
from tests.ra_helpers import OP, setup_institution

INST_A = "Example University"
INST_B = "Other University"
PIN = "Officer1234pin"


@dataclass(frozen=True)
class Officer:
    email: str
    institution: str
    serial: str
    pem: str  # the client certificate
    p12: bytes  # PKCS#12 with key and chain, under PIN


def add_officer(ra: RA, institution: str, email: str, name: str = "Taro Kokuritsu") -> Officer:
    e = ra.institutions.add_officer(institution, name=name, email=email, actor=OP, pin=PIN)
    _key, cert, _chain = pkcs12.load_key_and_certificates(e.pkcs12, PIN.encode())
    assert cert is not None
    return Officer(email, institution, e.serial, cert.public_bytes(Encoding.PEM).decode(), e.pkcs12)


def two_institutions(ra: RA) -> tuple[Officer, Officer]:
    setup_institution(ra, INST_A, ("example.ac.jp",))
    setup_institution(ra, INST_B, ("other.ac.jp",))
    return add_officer(ra, INST_A, "officer-a@example.ac.jp"), add_officer(
        ra, INST_B, "officer-b@other.ac.jp", name="Hanako Betsu"
    )


def with_peer(app: Any, pem: str | None) -> Any:
    """The app as the mTLS listener runs it for a connection presenting ``pem``."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = dict(scope)
            scope["extensions"] = {"tls": {"client_cert_chain": [pem] if pem else []}}
        await app(scope, receive, send)

    return wrapped


def client(ra: RA, pem: str | None, app: Any = None) -> TestClient:
    app = app or create_portal_app(ra.ctx)
    return TestClient(with_peer(app, pem), base_url="https://portal.example.ac.jp")


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)
