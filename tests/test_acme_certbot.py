"""certbot against a real kakuin on loopback: register with EAB, certonly
--standalone (http-01), renew --force-renewal, revoke --reason keycompromise,
and a new order with the same key refused. Every certificate passes pkilint."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from kakuin.store.repos import CertificateRepo
from tests.acme_server import DOMAIN, Server, require_tool, start_server

VENV_BIN = Path(sys.executable).parent
CERTBOT = str(VENV_BIN / "certbot")
PKILINT = str(VENV_BIN / "lint_cabf_serverauth_cert")

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(template_dir: Path, tmp_path: Path) -> Iterator[Server]:
    yield from start_server(template_dir, tmp_path)


def certbot(server: Server, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    require_tool(CERTBOT)
    cmd = [CERTBOT, *args, "--server", server.directory, "--config-dir", str(tmp / "cb" / "config"),
           "--work-dir", str(tmp / "cb" / "work"), "--logs-dir", str(tmp / "cb" / "logs"),
           "--non-interactive", "--agree-tos", "-m", f"admin@{DOMAIN}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def certonly_args(server: Server, name: str, *extra: str) -> list[str]:
    return ["certonly", "--standalone", "--http-01-port", str(server.http01_port),
            "--http-01-address", "127.0.0.1", "-d", name, "--cert-name", "www", *extra]


def lint(path: Path) -> None:
    require_tool(PKILINT)
    leaf = path.read_bytes().split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    one = path.parent / (path.name + ".leaf.pem")
    one.write_bytes(leaf)
    r = subprocess.run([PKILINT, "lint", "-d", str(one)], capture_output=True, text=True, timeout=120)
    assert "ERROR" not in r.stdout and "FATAL" not in r.stdout, r.stdout + r.stderr


def serial_of(path: Path) -> str:
    return format(x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number, "x")


def test_certbot_register_certonly_renew_revoke(server: Server, tmp_path: Path) -> None:
    kid, hmac = server.eab()
    r = certbot(server, tmp_path, "register", "--eab-kid", kid, f"--eab-hmac-key={hmac}")
    assert r.returncode == 0, r.stdout + r.stderr

    name = f"www.{DOMAIN}"
    r = certbot(server, tmp_path, *certonly_args(server, name))
    assert r.returncode == 0, r.stdout + r.stderr
    live = tmp_path / "cb" / "config" / "live" / "www"
    first = serial_of(live / "cert.pem")
    lint(live / "cert.pem")
    chain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    assert len(chain) == 2

    r = certbot(server, tmp_path, "renew", "--force-renewal", "--no-random-sleep-on-renew")
    assert r.returncode == 0, r.stdout + r.stderr
    second = serial_of(live / "cert.pem")
    assert second != first
    lint(live / "cert.pem")

    r = certbot(server, tmp_path, "revoke", "--cert-name", "www", "--reason", "keycompromise",
                "--no-delete-after-revoke")
    assert r.returncode == 0, r.stdout + r.stderr
    with server.ctx.db.session() as s:
        row = CertificateRepo(s).by_serial(second)
        assert row.revoked_at is not None and row.revocation_reason == 1

    # The compromised key is blocked: a new order finalized with it is refused.
    r = certbot(server, tmp_path, *certonly_args(server, name, "--reuse-key", "--force-renewal"))
    assert r.returncode != 0
    assert "reported compromised" in r.stderr, r.stdout + r.stderr
    log = (tmp_path / "cb" / "logs" / "letsencrypt.log").read_text()
    assert "urn:ietf:params:acme:error:badCSR" in log
    assert serial_of(live / "cert.pem") == second
