"""certbot dns-01 end to end: certbot's dns-rfc2136 plugin publishes the TXT record
in BIND with a TSIG-signed update, ``kakuin serve`` (its VA resolving through the
same BIND) validates it and checks CAA, and certbot gets the certificate.

Everything runs on loopback: BIND (tests/bind.py) serves the ``jp.`` zone, so the
CAA climb from www.loopback.ac.jp up to jp ends at a zone it serves; the name is
under ac.jp because pkilint refuses internal names such as .test.
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

import pytest
from cryptography import x509

from tests.bind import BindServer, Zone, free_port
from tests.serve import kakuin_serve, run_certbot

pytestmark = pytest.mark.e2e

VENV_BIN = Path(sys.executable).parent
CERTBOT = VENV_BIN / "certbot"
INSTITUTION = "Loopback DNS University"
DOMAIN = "loopback.ac.jp"


def kakuin(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kakuin", *args, "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


@dataclass
class Served:
    data: Path
    directory: str
    bind: BindServer


@pytest.fixture
def served(template_dir: Path, tmp_path: Path) -> Iterator[Served]:
    if not CERTBOT.exists():
        pytest.fail(f"certbot not found at {CERTBOT}: install the test extras "
                    "(pip install -e '.[test]': certbot, certbot-dns-rfc2136)", pytrace=False)
    zones = [Zone("jp.", [
        "ns IN A 127.0.0.1",
        # RFC 8657 §4: only dns-01 may be used for this name (and only by kakuin).
        'www.loopback.ac IN CAA 0 issue "kakuin.example; validationmethods=dns-01"',
        'forbidden.loopback.ac IN CAA 0 issue "other-ca.example"',
    ])]
    with BindServer(tmp_path / "bind", zones) as bind:
        data = tmp_path / "data"
        shutil.copytree(template_dir, data)
        port = free_port()
        cfg = data / "kakuin.toml"
        text = cfg.read_text()
        text = text.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"', 1)
        text = text.replace('base_url = "http://127.0.0.1:8080"',
                            f'base_url = "http://127.0.0.1:{port}"', 1)
        # BIND is authoritative-only, not a validating resolver: no DNSSEC here (the
        # signed variant is tests/test_dnssec_certbot.py).
        cfg.write_text(text + f'\n[va]\nresolver = "{bind.resolver}"\ntimeout_seconds = 5\n'
                       'dnssec = false\n')
        r = kakuin(data, "institution", "add", INSTITUTION, "--domain", DOMAIN)
        assert r.returncode == 0, r.stdout + r.stderr

        directory = f"http://127.0.0.1:{port}/acme/directory"
        with kakuin_serve(data, f"http://127.0.0.1:{port}", tmp_path / "serve.log"):
            yield Served(data, directory, bind)


def certbot(served: Served, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_certbot(served.directory, tmp / "cb", f"admin@{DOMAIN}", *args)


def certonly_dns(served: Served, tmp: Path, name: str, cert_name: str,
                 ) -> subprocess.CompletedProcess[str]:
    ini = served.bind.write_rfc2136_credentials(tmp / "rfc2136.ini")
    return certbot(served, tmp, "certonly", "--authenticator", "dns-rfc2136",
                   "--dns-rfc2136-credentials", str(ini),
                   "--dns-rfc2136-propagation-seconds", "1", "-d", name, "--cert-name", cert_name)


def test_certbot_dns01_rfc2136(served: Served, tmp_path: Path) -> None:
    r = kakuin(served.data, "eab", "new", "--institution", INSTITUTION, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    eab = json.loads(r.stdout)
    r = certbot(served, tmp_path, "register", "--eab-kid", eab["kid"],
                f"--eab-hmac-key={eab['hmac_key']}")
    assert r.returncode == 0, r.stdout + r.stderr

    name = f"www.{DOMAIN}"
    r = certonly_dns(served, tmp_path, name, "www")
    assert r.returncode == 0, r.stdout + r.stderr
    live = tmp_path / "cb" / "config" / "live" / "www"
    chain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    assert len(chain) == 2
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name]
    # The plugin cleaned up after itself.
    assert not served.bind.query(f"_acme-challenge.{name}", "TXT").answer

    # CAA names another CA: the VA refuses (error 338) and certbot gets no certificate.
    r = certonly_dns(served, tmp_path, f"forbidden.{DOMAIN}", "forbidden")
    assert r.returncode != 0
    assert "CAA" in r.stdout + r.stderr and "error 338" in r.stdout + r.stderr, r.stderr
    assert not (tmp_path / "cb" / "config" / "live" / "forbidden").exists()
