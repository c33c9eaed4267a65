"""lego (Debian) against a real kakuin on loopback: EAB registration, http-01
and tls-alpn-01 issuance, each certificate through pkilint."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.acme_server import DOMAIN, Server, require_tool, start_server
from tests.test_acme_certbot import lint

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(template_dir: Path, tmp_path: Path) -> Iterator[Server]:
    yield from start_server(template_dir, tmp_path)


def lego(server: Server, tmp: Path, name: str, *challenge: str) -> subprocess.CompletedProcess[str]:
    exe = require_tool("lego")
    kid, hmac = server.eab()
    cmd = [exe, "--server", server.directory, "--email", f"admin@{DOMAIN}", "--accept-tos",
           "--eab", "--kid", kid, "--hmac", hmac, "--path", str(tmp / "lego"),
           "--domains", name, *challenge, "run"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def issued(tmp: Path, name: str) -> Path:
    path = tmp / "lego" / "certificates" / f"{name}.crt"
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    sans = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [name]
    return path


def test_lego_http01(server: Server, tmp_path: Path) -> None:
    name = f"h.{DOMAIN}"
    r = lego(server, tmp_path, name, "--http", "--http.port", f"127.0.0.1:{server.http01_port}")
    assert r.returncode == 0, r.stdout + r.stderr
    lint(issued(tmp_path, name))


def test_lego_tlsalpn01(server: Server, tmp_path: Path) -> None:
    name = f"t.{DOMAIN}"
    r = lego(server, tmp_path, name, "--tls", "--tls.port", f"127.0.0.1:{server.tlsalpn01_port}")
    assert r.returncode == 0, r.stdout + r.stderr
    lint(issued(tmp_path, name))


@pytest.fixture
def threaded_server(template_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """The same server with its database work in the thread pool
    (``[database] work = "thread"``, PostgreSQL's default) instead of on the loop."""
    monkeypatch.setenv("KAKUIN_DATABASE_WORK", "thread")
    yield from start_server(template_dir, tmp_path)


def test_lego_http01_with_database_work_in_threads(threaded_server: Server, tmp_path: Path) -> None:
    flow = threaded_server.ctx.acme.flow
    assert not flow.inline_db and not flow.inline_issue
    name = f"w.{DOMAIN}"
    r = lego(threaded_server, tmp_path, name, "--http", "--http.port", f"127.0.0.1:{threaded_server.http01_port}")
    assert r.returncode == 0, r.stdout + r.stderr
    lint(issued(tmp_path, name))
