"""The README contract: `kakuin run` on a fresh data directory starts everything
and prints the certbot commands, and those exact commands (run as printed, with
the virtualenv's certbot) give a certificate on this machine."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography import x509

from tests.bind import free_port

CERTBOT = Path(sys.executable).parent / "certbot"


def test_run_prints_working_certbot_commands(tmp_path: Path) -> None:
    assert CERTBOT.exists(), f"certbot is missing from the virtualenv ({CERTBOT}); run scripts/setup"
    web, portal, dns, http01 = free_port(), free_port(), free_port(), free_port()
    data = tmp_path / "kakuin-data"
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("KAKUIN_CA_PASSPHRASE", None)  # the dev setup makes its own
    proc = subprocess.Popen(
        [sys.executable, "-m", "kakuin", "run", "--data-dir", str(data), "--listen", f"127.0.0.1:{web}",
         "--portal-port", str(portal), "--dns-port", str(dns), "--http01-port", str(http01)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if "certonly" in line:
                break
        text = "\n".join(lines)
        assert f"http://127.0.0.1:{web}/acme/directory" in text, text
        assert "key identifier:" in text and "HMAC key:" in text
        commands = [ln.strip() for ln in lines if ln.strip().startswith("certbot --")]
        assert len(commands) == 2, text
        for _ in range(50):  # wait until the HTTP server answers
            try:
                if httpx.get(f"http://127.0.0.1:{web}/acme/directory", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        for cmd in commands:
            argv = shlex.split(cmd)
            argv[0] = str(CERTBOT)
            res = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=tmp_path)
            assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
        live = data / "certbot" / "live" / "www.demo.example.ac.jp"
        leaf = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == ["www.demo.example.ac.jp"]
        assert (live / "fullchain.pem").read_bytes().count(b"BEGIN CERTIFICATE") == 2
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
