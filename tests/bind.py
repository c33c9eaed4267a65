"""A real BIND 9 on loopback for tests: zones per test, dynamic updates with TSIG.

``BindServer(workdir, zones, port)`` runs one ``named -g`` serving the given
zones authoritatively on 127.0.0.1 and a free port. Several instances can run
side by side with different data (multi-perspective tests, issue #6), and a
zone can carry extra zone-file text or config (signed zones, issue #8).

The ``bind`` fixture (session-scoped) serves ``standard_zones()``: the ``test.``
TLD (so that CAA tree climbing ends at a zone we serve) plus ``servfail.test.``,
a zone whose file does not load, for which BIND answers SERVFAIL. Tests that
change data use names of their own (``bind.add`` / ``bind.delete``).

Missing ``named`` fails the test with a message, it does not skip: CI installs
bind9 (Debian: ``apt-get install bind9 bind9-utils``).

Use it from a test module with ``from tests.bind import bind  # noqa: F401``.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest

from tests.daemon import LoggedDaemon

NAMED = os.environ.get("KAKUIN_TEST_NAMED", "/usr/sbin/named")
START_TIMEOUT = 10.0


def named_binary() -> str:
    """The named executable, or a test failure that says how to get it."""
    path = shutil.which(NAMED) or shutil.which("named")
    if path is None:
        pytest.fail(f"BIND 9 'named' not found (looked for {NAMED} and on PATH); "
                    "install it: apt-get install bind9 bind9-utils", pytrace=False)
    return path


def apparmor_enabled() -> bool:
    try:
        return Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        return False


def unconfined_copy(binary: str, workdir: Path) -> str:
    """Ubuntu/Debian confine /usr/sbin/named with an AppArmor profile that forbids
    zone files under /tmp. The profile attaches by path, so where AppArmor is on we
    run a private copy of the binary from the work directory instead."""
    if not apparmor_enabled():
        return binary
    copy = workdir / "named"
    if not copy.exists():
        shutil.copy2(binary, copy)
    return str(copy)


def free_port(address: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``address`` (DNS needs both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((address, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((address, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for DNS on loopback")


class SilentUDP:
    """A UDP port that receives queries and never answers: a resolver timeout."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.address = address
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SilentUDP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Zone:
    """An authoritative zone. ``records`` are zone-file lines relative to the origin
    (SOA, NS and ``ns`` A are added unless ``raw`` is given). ``broken`` writes a
    file that does not load, so BIND answers SERVFAIL for the zone."""

    name: str
    records: list[str] = field(default_factory=list)
    allow_update: bool = True
    broken: bool = False
    raw: str | None = None  # full zone-file text (e.g. a signed zone), used as is
    extra_config: str = ""  # more statements inside zone "…" { }

    @property
    def origin(self) -> str:
        return self.name.rstrip(".") + "."

    @property
    def file_name(self) -> str:
        return (self.origin.rstrip(".") or "root") + ".zone"

    def text(self) -> str:
        if self.broken:
            return "$ORIGIN " + self.origin + "\nthis is not a zone file\n"
        if self.raw is not None:
            return self.raw
        head = [f"$ORIGIN {self.origin}", "$TTL 60",
                f"@ IN SOA ns.{self.origin} hostmaster.{self.origin} 1 3600 600 86400 60",
                f"@ IN NS ns.{self.origin}", "ns IN A 127.0.0.1"]
        return "\n".join(head + self.records) + "\n"


def standard_zones() -> list[Zone]:
    """The shared test data: see the module docstring."""
    return [
        Zone("test.", [
            "@ IN A 127.0.0.1",
            "www IN A 127.0.0.1",
            "v6only IN AAAA ::1",
            "caa-ok IN A 127.0.0.1",
            'caa-ok IN CAA 0 issue "kakuin.example"',
            "caa-other IN A 127.0.0.1",
            'caa-other IN CAA 0 issue "other-ca.example"',
            "nodata IN TXT \"exists, but no CAA\"",
        ]),
        Zone("servfail.test.", broken=True),
    ]


class BindServer(LoggedDaemon):
    """One named process serving ``zones`` on ``address``:``port``."""

    tsig_algorithm = "hmac-sha256"

    def __init__(self, workdir: Path, zones: Iterable[Zone] = (), port: int | None = None, *,
                 address: str = "127.0.0.1", options: str = "",
                 tsig_name: str = "kakuin-test-key.") -> None:
        self.workdir = Path(workdir)
        self.zones: dict[str, Zone] = {z.origin: z for z in zones}
        self.address = address
        self.port = port or free_port(address)
        self.options = options  # more statements inside options { }
        self.tsig_name = tsig_name
        self.tsig_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.keyring = dns.tsigkeyring.from_text(
            {tsig_name: (self.tsig_algorithm, self.tsig_secret)})
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------
    @property
    def resolver(self) -> str:
        """The value for ``VAConfig.resolver``."""
        return f"{self.address}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "named.log"

    def start(self) -> BindServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = unconfined_copy(named_binary(), self.workdir)
        for zone in self.zones.values():
            self._write_zone(zone)
        conf = self._write_conf()
        # -g: foreground, log to stderr, no setuid (runs as the invoking user,
        # which may be root in CI containers); -4: IPv4 only.
        self._launch([binary, "-g", "-4", "-c", str(conf)])
        return self

    def __enter__(self) -> BindServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_zone(self, zone: Zone) -> None:
        """Add (or replace) a zone on the running server: rewrite the config, SIGHUP."""
        self.zones[zone.origin] = zone
        self._write_zone(zone)
        self._write_conf()
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)
            self._wait_ready(zone.origin, broken=zone.broken)

    # -- data ----------------------------------------------------------------
    def add(self, name: str, rtype: str, value: str, ttl: int = 60) -> None:
        """Add one record with a TSIG-signed dynamic update (RFC 2136)."""
        zone, update = self._update(name)
        update.add(name.rstrip(".") + ".", ttl, rtype, value)
        self._send(update, zone)

    def replace(self, name: str, rtype: str, value: str, ttl: int = 60) -> None:
        zone, update = self._update(name)
        update.replace(name.rstrip(".") + ".", ttl, rtype, value)
        self._send(update, zone)

    def delete(self, name: str, rtype: str | None = None) -> None:
        """Delete the RRset ``rtype`` at ``name`` (every type when None)."""
        zone, update = self._update(name)
        if rtype is None:
            update.delete(name.rstrip(".") + ".")
        else:
            update.delete(name.rstrip(".") + ".", rtype)
        self._send(update, zone)

    def write_rfc2136_credentials(self, path: Path) -> Path:
        """An ini file for certbot's dns-rfc2136 plugin pointing at this server (0600)."""
        path.write_text(
            f"dns_rfc2136_server = {self.address}\n"
            f"dns_rfc2136_port = {self.port}\n"
            f"dns_rfc2136_name = {self.tsig_name}\n"
            f"dns_rfc2136_secret = {self.tsig_secret}\n"
            f"dns_rfc2136_algorithm = {self.tsig_algorithm.upper()}\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    def query(self, name: str, rtype: str, timeout: float = 2.0) -> dns.message.Message:
        q = dns.message.make_query(name.rstrip(".") + ".", rtype)
        return dns.query.udp(q, self.address, port=self.port, timeout=timeout)

    # -- internals -----------------------------------------------------------
    def zone_for(self, name: str) -> Zone:
        fqdn = dns.name.from_text(name.rstrip(".") + ".")
        best: Zone | None = None
        for origin, zone in self.zones.items():
            if fqdn.is_subdomain(dns.name.from_text(origin)) and (
                    best is None or len(origin) > len(best.origin)):
                best = zone
        if best is None:
            raise ValueError(f"{name} is in no zone of this server ({', '.join(self.zones)})")
        return best

    def _update(self, name: str) -> tuple[Zone, dns.update.UpdateMessage]:
        zone = self.zone_for(name)
        return zone, dns.update.UpdateMessage(zone.origin, keyring=self.keyring,
                                              keyname=self.tsig_name,
                                              keyalgorithm=self.tsig_algorithm)

    def _send(self, update: dns.update.UpdateMessage, zone: Zone) -> None:
        response = dns.query.tcp(update, self.address, port=self.port, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"dynamic update of {zone.origin} refused: "
                               f"{dns.rcode.to_text(response.rcode())}")

    def _write_zone(self, zone: Zone) -> None:
        path = self.workdir / zone.file_name
        path.write_text(zone.text(), encoding="utf-8")
        for stale in (path.with_name(path.name + ".jnl"),):
            stale.unlink(missing_ok=True)

    def _write_conf(self) -> Path:
        key = self.tsig_name.rstrip(".") + "."
        zones = []
        for zone in self.zones.values():
            update = f'allow-update {{ key "{key}"; }};' if zone.allow_update else ""
            zones.append(f'zone "{zone.origin}" {{ type primary; file "{zone.file_name}"; '
                         f"{update} {zone.extra_config} }};")
        conf = f"""
key "{key}" {{ algorithm {self.tsig_algorithm}; secret "{self.tsig_secret}"; }};
controls {{ }};
options {{
    directory "{self.workdir}";
    pid-file "{self.workdir}/named.pid";
    session-keyfile "{self.workdir}/session.key";
    managed-keys-directory "{self.workdir}";
    listen-on port {self.port} {{ {self.address}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    notify no;
    {self.options}
}};
logging {{ category default {{ default_stderr; }}; category lame-servers {{ null; }}; }};
{chr(10).join(zones)}
"""
        path = self.workdir / "named.conf"
        path.write_text(conf, encoding="utf-8")
        return path

    def _wait_ready(self, origin: str | None = None, *, broken: bool = False) -> None:
        """Until the zone answers SOA (SERVFAIL for a broken zone). After a SIGHUP the
        old configuration answers REFUSED for the new zone until the reload is done."""
        loaded = [z.origin for z in self.zones.values() if not z.broken]
        targets = [origin] if origin else loaded[:1]
        want = dns.rcode.SERVFAIL if broken else dns.rcode.NOERROR
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"named exited during start-up:\n{self._log_tail()}")
            try:
                if all(self.query(t, "SOA", 0.2).rcode() == want for t in targets):
                    return
            except (OSError, dns.exception.Timeout):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"named not ready after {START_TIMEOUT}s:\n{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindServer]:
    """A running BindServer with ``standard_zones()``, shared by the session."""
    server = BindServer(tmp_path_factory.mktemp("bind"), standard_zones())
    server.start()
    try:
        yield server
    finally:
        server.stop()
