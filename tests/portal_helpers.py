"""Helpers for the portal and API tests: officers with real client certificates
(``add_officer``), and an in-process client that presents one of them the way
the TLS listener does (the ASGI TLS extension), so identification runs in
full — issuer, revocation, officer mapping — without a socket."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def enable_portal(data_dir: Path, port: int) -> None:
    cfg = data_dir / "kakuin.toml"
    cfg.write_text(cfg.read_text() + f'\n[portal]\nenabled = true\nlisten = "127.0.0.1:{port}"\n')


class PortalServer:
    """``kakuin serve`` in a subprocess with the portal on, both on free loopback ports."""

    def __init__(self, data_dir: Path) -> None:
        self.port, self.portal_port = free_port(), free_port()
        enable_portal(data_dir, self.portal_port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.portal_url = f"https://127.0.0.1:{self.portal_port}"
        env = dict(
            os.environ,
            KAKUIN_DATA_DIR=str(data_dir),
            KAKUIN_LISTEN=f"127.0.0.1:{self.port}",
            KAKUIN_BASE_URL=self.url,
        )
        self.log = data_dir / "serve.log"
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kakuin", "serve"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"kakuin serve exited: {self.log.read_text()}")
            try:
                ok = httpx.get(self.url + "/health", timeout=1).status_code == 200
                with socket.create_connection(("127.0.0.1", self.portal_port), timeout=1):
                    pass
                if ok:
                    return
            except (httpx.HTTPError, OSError):
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"kakuin serve did not come up: {self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def __enter__(self) -> PortalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_identity(officer_p12: bytes, d: Path, name: str) -> tuple[Path, Path]:
    """The PKCS#12 as PEM certificate + key files (for httpx/ssl)."""
    key, cert, _chain = pkcs12.load_key_and_certificates(officer_p12, PIN.encode())
    assert key is not None and cert is not None
    c, k = d / f"{name}.crt", d / f"{name}.key"
    c.write_bytes(cert.public_bytes(Encoding.PEM))
    k.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    k.chmod(0o600)
    return c, k
