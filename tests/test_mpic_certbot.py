"""certbot through the whole MPIC path: ``kakuin serve`` with ``[mpic]`` enabled and
five ``kakuin perspective serve`` processes (tests/perspectives.py), each resolving
through its own BIND.

http-01 (standalone): all agree → issued, and ``kakuin show`` prints the evidence;
one perspective sees a hijacked A → issued (4 of 5); two → refused with error 338
naming them; the primary alone wrong → refused; two see a hijacked CAA → refused
at finalize (338); a perspective down counts as a failure. dns-01 through
certbot-dns-rfc2136: the TXT record certbot adds to the primary BIND reaches every
perspective's BIND (secondary zone), and the certificate is issued.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.bind import free_port
from tests.perspectives import NAMES, Fleet, fleet  # noqa: F401
from tests.serve import kakuin_serve, run_certbot

pytestmark = pytest.mark.e2e

VENV_BIN = Path(sys.executable).parent
CERTBOT = VENV_BIN / "certbot"
INSTITUTION = "MPIC Loopback University"
DOMAIN = "loopback.ac.jp"


def kakuin(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kakuin", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"})


@dataclass
class Served:
    data: Path
    base: str
    fleet: Fleet
    cb: Path  # certbot's directories (one account for the module)

    def certbot(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_certbot(f"{self.base}/acme/directory", self.cb, f"admin@{DOMAIN}", *args)

    def http01(self, name: str) -> subprocess.CompletedProcess[str]:
        return self.certbot("certonly", "--standalone", "--http-01-port", str(self.fleet.http01_port),
                            "--http-01-address", "127.0.0.1", "-d", name, "--cert-name", name)

    def serial(self, name: str) -> str:
        pem = (self.cb / "config" / "live" / name / "cert.pem").read_bytes()
        return format(x509.load_pem_x509_certificate(pem).serial_number, "x")


@pytest.fixture(scope="module")
def served(fleet: Fleet, template_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:  # noqa: F811
    if not CERTBOT.exists():
        pytest.fail(f"certbot not found at {CERTBOT}: install the test extras "
                    "(pip install -e '.[test]': certbot, certbot-dns-rfc2136)", pytrace=False)
    tmp = tmp_path_factory.mktemp("mpic-serve")
    data = tmp / "data"
    shutil.copytree(template_dir, data)
    port = free_port()
    cfg = data / "kakuin.toml"
    text = cfg.read_text()
    text = text.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"', 1)
    text = text.replace('base_url = "http://127.0.0.1:8080"', f'base_url = "http://127.0.0.1:{port}"', 1)
    text += (f'\n[va]\nresolver = "{fleet.dns.resolver_for("primary")}"\nhttp01_port = {fleet.http01_port}\n'
             f"tlsalpn01_port = {fleet.tlsalpn01_port}\ntimeout_seconds = 5\ndnssec = false\n"
             "allow_private_targets = true\n")
    cfg.write_text(text + fleet.mpic_toml())
    r = kakuin(data, "institution", "add", INSTITUTION, "--domain", DOMAIN)
    assert r.returncode == 0, r.stdout + r.stderr
    base = f"http://127.0.0.1:{port}"
    with kakuin_serve(data, base, tmp / "serve.log"):
        s = Served(data, base, fleet, tmp / "cb")
        eab = json.loads(kakuin(data, "eab", "new", "--institution", INSTITUTION, "--json").stdout)
        r = s.certbot("register", "--eab-kid", eab["kid"], f"--eab-hmac-key={eab['hmac_key']}")
        assert r.returncode == 0, r.stdout + r.stderr
        yield s


def a_record(fleet: Fleet, name: str, hijacked: list[str]) -> None:  # noqa: F811
    fleet.dns.change("all", "add", name, "A", "127.0.0.1")
    if hijacked:
        fleet.dns.change(hijacked, "replace", name, "A", "127.0.0.2")


def test_all_agree_issued_with_evidence(served: Served) -> None:
    name = f"agree.{DOMAIN}"
    a_record(served.fleet, name, [])
    r = served.http01(name)
    assert r.returncode == 0, r.stdout + r.stderr
    shown = kakuin(served.data, "show", served.serial(name))
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "validation evidence (MPIC)" in out
    assert "http-01" in out and "caa" in out and "quorum met" in out
    for n in NAMES:
        assert n in out
    metrics = httpx.get(served.base + "/metrics").text
    assert 'mpic_checks_total{check="http-01",perspective="p1",result="corroborated"}' in metrics
    assert 'mpic_latency_seconds_count{perspective="all"}' in metrics


def test_one_hijacked_still_issued(served: Served) -> None:
    name = f"one-hijacked.{DOMAIN}"
    a_record(served.fleet, name, ["p4"])
    r = served.http01(name)
    assert r.returncode == 0, r.stdout + r.stderr
    out = kakuin(served.data, "show", served.serial(name)).stdout
    p4 = [line for line in out.splitlines() if " p4 " in line and "http-01" in line]
    assert p4 and " no " in p4[0], out


def test_two_hijacked_refused_with_338(served: Served) -> None:
    name = f"two-hijacked.{DOMAIN}"
    a_record(served.fleet, name, ["p4", "p5"])
    r = served.http01(name)
    assert r.returncode != 0
    text = r.stdout + r.stderr
    assert "error 338" in text and "p4 (" in text and "p5 (" in text, text
    assert not (served.cb / "config" / "live" / name).exists()


def test_primary_alone_wrong_refused(served: Served) -> None:
    name = f"primary-wrong.{DOMAIN}"
    a_record(served.fleet, name, ["primary"])
    r = served.http01(name)
    assert r.returncode != 0
    assert "127.0.0.2" in r.stdout + r.stderr  # the primary's own failure is reported


def test_caa_two_hijacked_refused_at_finalize(served: Served) -> None:
    name = f"caa-hijacked.{DOMAIN}"
    a_record(served.fleet, name, [])
    honest = ["primary", "p1", "p2", "p3"]
    served.fleet.dns.change(honest, "add", name, "CAA", '0 issue "kakuin.example"')
    served.fleet.dns.change(["p4", "p5"], "add", name, "CAA", '0 issue "attacker-ca.example"')
    r = served.http01(name)
    assert r.returncode != 0
    text = r.stdout + r.stderr
    assert "CAA" in text and "error 338" in text and "p4 (" in text and "p5 (" in text, text


def test_perspective_down_counts_as_failure(served: Served) -> None:
    fleet = served.fleet  # noqa: F811
    fleet.stop("p5")
    try:
        name = f"down-ok.{DOMAIN}"
        a_record(fleet, name, [])
        r = served.http01(name)
        assert r.returncode == 0, r.stdout + r.stderr  # 4 of 5 corroborate
        name = f"down-and-hijacked.{DOMAIN}"
        a_record(fleet, name, ["p4"])
        r = served.http01(name)
        assert r.returncode != 0
        text = r.stdout + r.stderr
        assert "error 338" in text and "p4 (" in text and "p5 (error" in text, text
        status = kakuin(served.data, "status")
        assert status.returncode == 0, status.stdout + status.stderr  # 1 down: within the quorum
        assert "p5" in status.stdout and "down" in status.stdout and "ok" in status.stdout
    finally:
        fleet.start("p5")
        fleet.wait("p5")


def test_dns01_rfc2136_through_mpic(served: Served, tmp_path: Path) -> None:
    name = f"www.dyn.{DOMAIN}"
    ini = served.fleet.dns.servers["primary"].write_rfc2136_credentials(tmp_path / "rfc2136.ini")
    r = served.certbot("certonly", "--authenticator", "dns-rfc2136", "--dns-rfc2136-credentials", str(ini),
                       "--dns-rfc2136-propagation-seconds", "2", "-d", name, "--cert-name", name)
    assert r.returncode == 0, r.stdout + r.stderr
    out = kakuin(served.data, "show", served.serial(name)).stdout
    assert "dns-01" in out and "quorum met" in out, out
    dns01 = [line for line in out.splitlines() if "dns-01" in line]
    assert len(dns01) == 6 and all(" no " not in line for line in dns01), out
