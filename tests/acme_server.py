"""A real kakuin ACME server on loopback for end-to-end tests: a copy of the
template data dir with its own kakuin.toml (base_url, VA ports), uvicorn in a
background thread, the system clock. Until the BIND fixture resolves the test
names, the VA's address lookups are answered by an override (127.0.0.1)."""

from __future__ import annotations

import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from kakuin.app import create_app
from kakuin.context import Context
from tests.helpers import add_institution

INSTITUTION = "Loopback University"
DOMAIN = "loopback.ac.jp"  # a public suffix: pkilint refuses internal names (.test)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    ctx: Context
    url: str  # base URL
    http01_port: int
    tlsalpn01_port: int
    data_dir: Path

    @property
    def directory(self) -> str:
        return f"{self.url}/acme/directory"

    def eab(self, **kw: object) -> tuple[str, str]:
        c = self.ctx.acme.eab.new(INSTITUTION, **kw)  # type: ignore[arg-type]
        return c.kid, c.hmac_key


def write_config(data_dir: Path, *, base_url: str, listen: str, http01: int, tlsalpn01: int,
                 extra: str = "") -> None:
    cfg = data_dir / "kakuin.toml"
    text = cfg.read_text()
    text = text.replace('listen = "127.0.0.1:8080"', f'listen = "{listen}"', 1)
    text = text.replace('base_url = "http://127.0.0.1:8080"', f'base_url = "{base_url}"', 1)
    # These tests resolve through the system resolver (names are overridden to
    # loopback), which does not validate DNSSEC; tests/test_dnssec_*.py cover that.
    text += (f"\n[va]\nhttp01_port = {http01}\ntlsalpn01_port = {tlsalpn01}\ntimeout_seconds = 5\n"
             "dnssec = false\nallow_private_targets = true\n")
    cfg.write_text(text + extra)


def start_server(template_dir: Path, tmp: Path, *, tls: tuple[Path, Path] | None = None,
                 extra_config: str = "", port: int | None = None, base_url: str | None = None) -> Iterator[Server]:
    """``port``: where kakuin listens (default: a free port); ``base_url``: where
    clients reach it (default: that port, over https with ``tls``), another
    address when a proxy stands in front."""
    data_dir = tmp / "server-data"
    shutil.copytree(template_dir, data_dir)
    port = port or free_port()
    http01, tlsalpn01 = free_port(), free_port()
    scheme = "https" if tls else "http"
    base = base_url or f"{scheme}://127.0.0.1:{port}"
    write_config(data_dir, base_url=base, listen=f"127.0.0.1:{port}", http01=http01,
                 tlsalpn01=tlsalpn01, extra=extra_config)
    ctx = Context.open(data_dir)
    add_institution(ctx, INSTITUTION, (DOMAIN,))
    ctx.va.address_override = lambda _name: ["127.0.0.1"]
    kw: dict[str, object] = {}
    if tls:
        kw = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])}
    config = uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", **kw)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the kakuin test server did not start")
        time.sleep(0.05)
    try:
        yield Server(ctx, base, http01, tlsalpn01, data_dir)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        ctx.db.dispose()


def require_tool(path: str) -> str:
    """Fail (not skip) with a clear message when an external tool is missing."""
    found = shutil.which(path)
    if not found:
        raise AssertionError(f"{path} is not installed: the ACME end-to-end tests need it "
                             "(certbot from the test extras, lego from Debian)")
    return found


__all__ = ["Server", "free_port", "require_tool", "start_server", "ssl"]
