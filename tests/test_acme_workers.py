"""``kakuin serve --workers 2``: two processes on one port answer ACME as one
server — a nonce issued by either is good at either, once; orders made through
fresh connections (spread over both workers) all succeed."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from kakuin.context import Context
from tests.acme_client import Client
from tests.acme_server import DOMAIN, INSTITUTION, free_port, write_config
from tests.helpers import add_institution


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid and b"multiprocessing" in (d / "cmdline").read_bytes():
                out.append(int(d.name))
    return out


def test_two_workers_share_nonces_and_orders(template_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(template_dir, data)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    write_config(data, base_url=base, listen=f"127.0.0.1:{port}", http01=free_port(), tlsalpn01=free_port())
    ctx = Context.open(data)
    add_institution(ctx, INSTITUTION, (DOMAIN,))
    cred = ctx.acme.eab.new(INSTITUTION)
    ctx.db.dispose()
    proc = subprocess.Popen([sys.executable, "-m", "kakuin", "serve", "--workers", "2", "--data-dir", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "kakuin serve --workers 2 did not start"
            time.sleep(0.1)
        assert len(_children(proc.pid)) >= 2
        # No keep-alive: every request is a new connection, which the kernel
        # hands to either worker (SO_REUSEPORT).
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=30) as http:
            c = Client(http, f"{base}/acme/directory")
            assert c.register((cred.kid, cred.hmac_key)).status_code == 201
            nonce = c.nonce()
            first = c.post(c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": f"a.{DOMAIN}"}]},
                           nonce=nonce)
            assert first.status_code == 201, first.text
            for _ in range(4):  # the same nonce again, whichever worker answers
                again = c.post(c.dir["newOrder"], {"identifiers": [{"type": "dns", "value": f"b.{DOMAIN}"}]},
                               nonce=nonce)
                assert again.status_code == 400 and "badNonce" in again.text
            for i in range(16):
                r = c.new_order([f"w{i}.{DOMAIN}"])
                assert r.status_code == 201, r.text
    finally:
        proc.terminate()
        proc.wait(timeout=40)
    assert proc.returncode == 0
