"""certbot end to end against a DNSSEC-signed zone (issue #8).

``kakuin serve`` resolves through a validating Unbound (tests/unbound.py) whose
trust anchor is a signed test root; the root delegates ``jp.`` (with DS) to a BIND
that signs it itself (``dnssec-policy default``), so the TXT records certbot's
dns-rfc2136 plugin adds by dynamic update are signed at once. Both dns-01 and
http-01 (certbot --standalone, the A record in the signed zone) get certificates,
and the VA's stored records say ``dnssec: secure``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.rdatatype
import pytest
from cryptography import x509

from tests.bind import BindServer, Zone, free_port
from tests.dnssec_zones import keygen, sign_zone, zone_text
from tests.serve import kakuin_serve, run_certbot
from tests.test_acme_dns01_certbot import CERTBOT, DOMAIN, INSTITUTION, kakuin
from tests.unbound import UnboundServer

pytestmark = pytest.mark.e2e


@dataclass
class Signed:
    data: Path
    directory: str
    jp: BindServer
    unbound: UnboundServer
    http01_port: int


def _ksk_ds(bind: BindServer, origin: str) -> str:
    """Wait until BIND has signed ``origin`` (dnssec-policy) and return its DS line."""
    deadline = time.monotonic() + 20
    while True:
        answer = bind.query(origin, "DNSKEY").answer
        keys = [rr for rrset in answer if rrset.rdtype == dns.rdatatype.DNSKEY for rr in rrset]
        ksks = [k for k in keys if k.flags & 0x0001]  # RFC 4034 §2.1.1: SEP bit
        if ksks:
            ds = dns.dnssec.make_ds(origin, ksks[0], "SHA256")
            return f"{origin} IN DS {ds}"
        assert time.monotonic() < deadline, f"BIND did not sign {origin}:\n{bind._log_tail()}"
        time.sleep(0.1)


@pytest.fixture
def signed(template_dir: Path, tmp_path: Path) -> Iterator[Signed]:
    if not CERTBOT.exists():
        pytest.fail(f"certbot not found at {CERTBOT}: install the test extras "
                    "(pip install -e '.[test]': certbot, certbot-dns-rfc2136)", pytrace=False)
    jp_zone = Zone("jp.", [
        'www.loopback.ac IN CAA 0 issue "kakuin.example; validationmethods=dns-01"',
        "web.loopback.ac IN A 127.0.0.1",
        'web.loopback.ac IN CAA 0 issue "kakuin.example"',
    ], extra_config="dnssec-policy default;")
    with BindServer(tmp_path / "bind-jp", [jp_zone]) as jp:
        root_key = keygen(tmp_path / "keys", ".")
        root = sign_zone(tmp_path / "zones", ".", zone_text(".", [
            "jp. IN NS ns.jp.", "ns.jp. IN A 127.0.0.1", _ksk_ds(jp, "jp.")], root_ns="ns.jp."),
            root_key)
        with BindServer(tmp_path / "bind-root", [root]) as root_bind, UnboundServer(
                tmp_path / "unbound", {".": f"127.0.0.1@{root_bind.port}",
                                       "jp.": f"127.0.0.1@{jp.port}"},
                root_key.ds()) as unbound:
            probe = unbound.query("web.loopback.ac.jp", "A")
            assert probe.flags & dns.flags.AD, f"the jp. chain does not validate:\n{probe}"
            data = tmp_path / "data"
            shutil.copytree(template_dir, data)
            port, http01 = free_port(), free_port()
            cfg = data / "kakuin.toml"
            text = cfg.read_text()
            text = text.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"', 1)
            text = text.replace('base_url = "http://127.0.0.1:8080"',
                                f'base_url = "http://127.0.0.1:{port}"', 1)
            # va.dnssec is left at its default (true): the resolver must validate.
            cfg.write_text(text + f'\n[va]\nresolver = "{unbound.resolver}"\n'
                                  f"timeout_seconds = 5\nhttp01_port = {http01}\nallow_private_targets = true\n")
            r = kakuin(data, "institution", "add", INSTITUTION, "--domain", DOMAIN)
            assert r.returncode == 0, r.stdout + r.stderr
            directory = f"http://127.0.0.1:{port}/acme/directory"
            with kakuin_serve(data, f"http://127.0.0.1:{port}", tmp_path / "serve.log"):
                yield Signed(data, directory, jp, unbound, http01)


def certbot(s: Signed, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_certbot(s.directory, tmp / "cb", f"admin@{DOMAIN}", *args)


def stored_records(data: Path) -> list[dict]:
    with sqlite3.connect(data / "kakuin.db") as db:
        rows = db.execute("SELECT record FROM acme_challenges WHERE record IS NOT NULL").fetchall()
    return [json.loads(r[0]) for r in rows]


def san(live: Path) -> list[str]:
    chain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    assert len(chain) == 2
    return chain[0].extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


def test_certbot_dns01_and_http01_in_signed_zone(signed: Signed, tmp_path: Path) -> None:
    r = kakuin(signed.data, "eab", "new", "--institution", INSTITUTION, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    eab = json.loads(r.stdout)
    r = certbot(signed, tmp_path, "register", "--eab-kid", eab["kid"],
                f"--eab-hmac-key={eab['hmac_key']}")
    assert r.returncode == 0, r.stdout + r.stderr

    # dns-01: the plugin updates BIND, which signs the TXT record; Unbound validates it.
    name = f"www.{DOMAIN}"
    ini = signed.jp.write_rfc2136_credentials(tmp_path / "rfc2136.ini")
    r = certbot(signed, tmp_path, "certonly", "--authenticator", "dns-rfc2136",
                "--dns-rfc2136-credentials", str(ini),
                "--dns-rfc2136-propagation-seconds", "1", "-d", name, "--cert-name", "www")
    assert r.returncode == 0, r.stdout + r.stderr
    assert san(tmp_path / "cb" / "config" / "live" / "www") == [name]

    # http-01: certbot --standalone answers on the VA's http-01 port; the A record of
    # the name is in the signed zone.
    web = f"web.{DOMAIN}"
    r = certbot(signed, tmp_path, "certonly", "--standalone", "--http-01-port",
                str(signed.http01_port), "--http-01-address", "127.0.0.1", "-d", web,
                "--cert-name", "web")
    assert r.returncode == 0, r.stdout + r.stderr
    assert san(tmp_path / "cb" / "config" / "live" / "web") == [web]

    records = {(rec["method"], rec["domain"]): rec for rec in stored_records(signed.data)}
    dns01 = records[("dns-01", name)]
    assert dns01["ok"] and dns01["dnssec"] == "secure"
    assert dns01["observed"]["dnssec"]["ad"] is True
    http01 = records[("http-01", web)]
    assert http01["ok"] and http01["dnssec"] == "secure"
