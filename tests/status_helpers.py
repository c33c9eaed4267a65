"""Helpers for the revocation, CRL and OCSP tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kakuin.ca.issuer import Issued, IssueRequest
from kakuin.context import Context
from tests.helpers import ec_key, ov_name

VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A required external tool: fail (not skip) when it is missing."""
    found = shutil.which(name) or (str(VENV_BIN / name) if (VENV_BIN / name).exists() else None)
    assert found, f"{name} is required for this test and is not installed"
    return found


def issue_dv(ctx: Context, name: str = "www.example.ac.jp", key=None) -> Issued:  # type: ignore[no-untyped-def]
    key = key or ec_key()
    return ctx.issuance.issue(
        IssueRequest(profile="server-dv", public_key=key.public_key(), subject=ov_name(cn=name), dns_names=(name,))
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kakuin_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["KAKUIN_DATA_DIR"] = str(data_dir)
    env["COLUMNS"] = "250"  # rich tables at full width
    env.update(extra)
    return env


def kakuin(data_dir: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("kakuin"), *args], capture_output=True, text=True, env=kakuin_env(data_dir, **extra), timeout=120
    )


class Server:
    """``kakuin serve [args]`` in a subprocess on a free loopback port."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [tool("kakuin"), "serve", *args],
            env=kakuin_env(data_dir, KAKUIN_LISTEN=f"127.0.0.1:{self.port}"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"kakuin serve exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("kakuin serve did not come up")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
