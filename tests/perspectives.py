"""Five remote network perspectives on one machine, for the MPIC tests (issue #6).

- Six BIND instances (tests/bind.py) on 127.0.0.1: one for the primary VA and one
  per perspective ``pN``, each with its own copy of the ``jp.`` zone, so a test can
  make some perspectives see a hijacked A, TXT or CAA record
  (``fleet.dns.change(["p4", "p5"], "replace", …)``). (BIND listens only on
  addresses configured on an interface, so views keyed by 127.0.0.1N cannot be
  used without changing the machine's network setup.)
- The zone ``dyn.loopback.ac.jp.`` is a primary zone of the primary BIND and a
  secondary zone of every perspective BIND (NOTIFY + zone transfer): what
  certbot's dns-rfc2136 plugin adds there, every perspective sees within ~0.1 s.
- Five real ``kakuin perspective serve`` processes on 127.0.0.11–15, each
  resolving through its own BIND, each with its own HMAC key file.

``fleet`` is a session fixture; a test changes data only under names of its own.
Missing ``named`` fails (tests/bind.py), it does not skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.bind import BindServer, Zone, free_port

NAMES = [f"p{i}" for i in range(1, 6)]
ADDRESSES = {f"p{i}": f"127.0.0.{10 + i}" for i in range(1, 6)}
VIEWS = ["primary", *NAMES]
SHARED_ZONE = "dyn.loopback.ac.jp."
BASE_RECORDS = ["ns IN A 127.0.0.1", "www.loopback.ac IN A 127.0.0.1"]


class SecondaryBind(BindServer):
    """A BindServer that is also a secondary for SHARED_ZONE of ``primary_port``."""

    def __init__(self, workdir: Path, zones: list[Zone], port: int, primary_port: int) -> None:
        super().__init__(workdir, zones, port)
        self.primary_port = primary_port

    def _write_conf(self) -> Path:
        path = super()._write_conf()
        path.write_text(path.read_text() + f'zone "{SHARED_ZONE}" {{ type secondary; '
                        f'primaries {{ 127.0.0.1 port {self.primary_port}; }}; file "shared.db"; }};\n')
        return path


@dataclass
class Views:
    """The six BIND servers by view name ("primary", "p1" … "p5")."""

    servers: dict[str, BindServer]

    def resolver_for(self, view: str) -> str:
        return self.servers[view].resolver

    def change(self, views: list[str] | str, op: str, name: str, rtype: str, value: str = "") -> None:
        """``op``: add | replace | delete, in each of ``views`` ("all": every view)."""
        targets = VIEWS if views == "all" else ([views] if isinstance(views, str) else views)
        for view in targets:
            server = self.servers[view]
            if op == "delete":
                server.delete(name, rtype)
            else:
                getattr(server, op)(name, rtype, value)

    def ask(self, view: str, name: str, rtype: str) -> list[str]:
        r = self.servers[view].query(name, rtype)
        return [rd.to_text() for rrset in r.answer for rd in rrset]


@dataclass
class Fleet:
    dns: Views
    http01_port: int
    tlsalpn01_port: int
    keys: dict[str, Path]
    urls: dict[str, str]
    workdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str) -> None:
        addr = ADDRESSES[name]
        port = int(self.urls[name].rsplit(":", 1)[1])
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the process holds it
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "kakuin", "perspective", "serve", "--name", name,
             "--listen", f"{addr}:{port}", "--resolver", self.dns.resolver_for(name),
             "--key-file", str(self.keys[name]), "--http01-port", str(self.http01_port),
             "--tlsalpn01-port", str(self.tlsalpn01_port), "--timeout", "3", "--no-dnssec",
             "--allow-private-targets"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"perspective {name} exited:\n"
                                   f"{(self.workdir / f'{name}.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.urls[name] + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"perspective {name} did not start")
            time.sleep(0.1)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def mpic_toml(self, *, urls: dict[str, str] | None = None, timeout: float = 5) -> str:
        urls = urls or self.urls
        out = f"\n[mpic]\nenabled = true\ntimeout_seconds = {timeout}\n"
        for name in NAMES:
            out += (f'\n[[mpic.perspectives]]\nname = "{name}"\nurl = "{urls[name]}"\n'
                    f'key_file = "{self.keys[name]}"\n')
        return out


def start_fleet(workdir: Path) -> Iterator[Fleet]:
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {v: free_port() for v in VIEWS}
    notify = "; ".join(f"127.0.0.1 port {ports[n]}" for n in NAMES)
    shared = Zone(SHARED_ZONE, [], extra_config=f"notify explicit; also-notify {{ {notify}; }}; "
                                                f"allow-transfer {{ any; }};")
    servers: dict[str, BindServer] = {
        "primary": BindServer(workdir / "bind-primary", [Zone("jp.", BASE_RECORDS), shared], ports["primary"])}
    for n in NAMES:
        servers[n] = SecondaryBind(workdir / f"bind-{n}", [Zone("jp.", BASE_RECORDS)], ports[n], ports["primary"])
    keys = {}
    for name in NAMES:
        keys[name] = workdir / f"{name}.key"
        keys[name].write_text(os.urandom(32).hex() + "\n")
        keys[name].chmod(0o600)
    urls = {n: f"http://{ADDRESSES[n]}:{free_port(ADDRESSES[n])}" for n in NAMES}
    fleet = Fleet(Views(servers), free_port(), free_port(), keys, urls, workdir)
    started: list[BindServer] = []
    try:
        for server in servers.values():
            server.start()
            started.append(server)
        for name in NAMES:
            fleet.start(name)
        for name in NAMES:
            fleet.wait(name)
        yield fleet
    finally:
        for name in list(fleet.procs):
            fleet.stop(name)
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    yield from start_fleet(tmp_path_factory.mktemp("mpic"))
