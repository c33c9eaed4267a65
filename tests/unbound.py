"""A validating Unbound on loopback for the DNSSEC tests (issue #8).

``UnboundServer(workdir, stubs, trust_anchor)`` runs ``unbound -d`` on 127.0.0.1
and a free port, resolving every zone in ``stubs`` ("zone." → "addr@port") from
the BIND instance(s) of the test and validating from ``trust_anchor`` (a DS or
DNSKEY record line, normally the test root's). Extended DNS Errors (RFC 8914)
are on (``ede: yes``), so bogus answers say why.

Caches are kept short so that records changed during a test (certbot's dynamic
updates) are seen at once. Missing ``unbound`` fails the test with a message, it
does not skip: CI installs it (Debian: ``apt-get install unbound``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import pytest

from tests.bind import free_port, unconfined_copy
from tests.daemon import LoggedDaemon

UNBOUND = os.environ.get("KAKUIN_TEST_UNBOUND", "/usr/sbin/unbound")
START_TIMEOUT = 10.0


def unbound_binary() -> str:
    path = shutil.which(UNBOUND) or shutil.which("unbound")
    if path is None:
        pytest.fail(f"Unbound not found (looked for {UNBOUND} and on PATH); the DNSSEC "
                    "tests need a validating resolver: apt-get install unbound", pytrace=False)
    return path


class UnboundServer(LoggedDaemon):
    def __init__(self, workdir: Path, stubs: dict[str, str], trust_anchor: str | None, *,
                 port: int | None = None, ede: bool = True, validate: bool = True,
                 options: str = "") -> None:
        self.workdir = Path(workdir)
        self.stubs = stubs
        self.trust_anchor = trust_anchor
        self.port = port or free_port()
        self.ede = ede
        self.validate = validate
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def resolver(self) -> str:
        """The value for ``VAConfig.resolver``."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "unbound.log"

    def config_text(self) -> str:
        stubs = "\n".join(f'stub-zone:\n    name: "{zone}"\n    stub-addr: {addr}\n'
                          for zone, addr in self.stubs.items())
        # RFC 6761 names (test., invalid., …) are local zones in Unbound by default.
        unblock = "".join(f'    local-zone: "{zone}" nodefault\n'
                          for zone in self.stubs if zone != ".")
        anchor = f'    trust-anchor: "{self.trust_anchor}"\n' if self.trust_anchor else ""
        modules = "validator iterator" if self.validate else "iterator"
        return f"""server:
    interface: 127.0.0.1
    port: {self.port}
    do-ip6: no
    do-ip4: yes
    do-udp: yes
    do-tcp: yes
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    username: ""
    chroot: ""
    directory: "{self.workdir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    log-time-ascii: yes
    verbosity: 1
    val-log-level: 2
    num-threads: 1
    so-reuseport: no
    qname-minimisation: no
    module-config: "{modules}"
{anchor}{unblock}    ede: {'yes' if self.ede else 'no'}
    # Short caches: the tests change records (dynamic updates) between lookups.
    cache-max-ttl: 1
    cache-max-negative-ttl: 1
    val-bogus-ttl: 1
    infra-host-ttl: 2
    # A silent authority is given up quickly, so Unbound answers SERVFAIL
    # before the VA's own timeout.
    infra-cache-max-rtt: 500
    target-fetch-policy: "0 0 0 0 0"
    harden-referral-path: no
    {self.options}
remote-control:
    control-enable: no
{stubs}"""

    def start(self) -> UnboundServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = unconfined_copy(unbound_binary(), self.workdir)
        conf = self.workdir / "unbound.conf"
        conf.write_text(self.config_text(), encoding="utf-8")
        checkconf = shutil.which("unbound-checkconf")
        if checkconf:
            r = subprocess.run([checkconf, str(conf)], capture_output=True, text=True,
                               timeout=30)
            if r.returncode != 0:
                raise RuntimeError(f"unbound-checkconf {conf}:\n{r.stdout}{r.stderr}")
        self._launch([binary, "-d", "-c", str(conf)])
        return self

    def __enter__(self) -> UnboundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def query(self, name: str, rtype: str, *, cd: bool = False,
              timeout: float = 5.0) -> dns.message.Message:
        q = dns.message.make_query(name.rstrip(".") + ".", rtype, want_dnssec=True)
        if cd:
            q.flags |= dns.flags.CD
        return dns.query.udp(q, "127.0.0.1", port=self.port, timeout=timeout)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"unbound exited during start-up:\n{self.log_tail()}")
            try:
                # Any answer means it listens; "." SOA is served by the root stub.
                self.query(".", "SOA", timeout=0.3)
                return
            except (OSError, dns.exception.Timeout):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"unbound not ready after {START_TIMEOUT}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
