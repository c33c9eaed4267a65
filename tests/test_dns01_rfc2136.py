"""certbot's dns-rfc2136 plugin → BIND (TSIG dynamic update) → kakuin's dns-01 check.

This is the DNS half of the certbot dns-01 run, without the ACME server: the
plugin's own client publishes the TXT record exactly as ``certbot certonly
--authenticator dns-rfc2136`` would, and the VA reads it back through the same
BIND. The full certbot run is in test_acme_dns01_certbot.py.
"""

from __future__ import annotations

import asyncio
import configparser
from pathlib import Path

import dns.tsig
import pytest

from kakuin.clock import SystemClock
from kakuin.config import VAConfig
from kakuin.va import ValidationAuthority
from kakuin.va.dns01 import expected_txt
from tests.bind import BindServer, bind  # noqa: F401

rfc2136 = pytest.importorskip("certbot_dns_rfc2136._internal.dns_rfc2136",
                              reason="certbot-dns-rfc2136 is a test dependency")

KEY_AUTHZ = "token-from-the-ca.thumbprint-of-the-account-key"


def test_plugin_publishes_and_va_validates(bind: BindServer, tmp_path: Path) -> None:  # noqa: F811
    ini = bind.write_rfc2136_credentials(tmp_path / "rfc2136.ini")
    conf = configparser.ConfigParser()
    conf.read_string("[c]\n" + ini.read_text())
    assert conf["c"]["dns_rfc2136_algorithm"] in rfc2136.Authenticator.ALGORITHMS
    client = rfc2136._RFC2136Client(
        conf["c"]["dns_rfc2136_server"], int(conf["c"]["dns_rfc2136_port"]),
        conf["c"]["dns_rfc2136_name"], conf["c"]["dns_rfc2136_secret"],
        rfc2136.Authenticator.ALGORITHMS[conf["c"]["dns_rfc2136_algorithm"]], False)
    assert rfc2136.Authenticator.ALGORITHMS["HMAC-SHA256"] == dns.tsig.HMAC_SHA256

    va = ValidationAuthority(VAConfig(resolver=bind.resolver, timeout_seconds=3, dnssec=False), SystemClock())
    name = "_acme-challenge.certbot-plugin.test"
    assert not asyncio.run(va.validate_dns01("certbot-plugin.test", KEY_AUTHZ)).ok

    client.add_txt_record(name, expected_txt(KEY_AUTHZ), 60)
    record = asyncio.run(va.validate_dns01("certbot-plugin.test", KEY_AUTHZ))
    assert record.ok, record.error

    client.del_txt_record(name, expected_txt(KEY_AUTHZ))
    assert not asyncio.run(va.validate_dns01("certbot-plugin.test", KEY_AUTHZ)).ok
