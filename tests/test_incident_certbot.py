"""Real certbot and ARI (RFC 9773) during an incident, at the real current date.

certbot gets a certificate; a plain ``certbot renew`` leaves it alone (not due);
the operator rotates the intermediate and opens an incident, whose notice sets
ARI "renew now"; when certbot next asks (after the Retry-After it stored on the
first run), a plain ``certbot renew`` (no --force-renewal) renews
at once, the new certificate chains through the new generation, and the
incident counts the old one as replaced."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509

from kakuin.ca.rotation import RotationService
from kakuin.incident.campaign import Campaign
from kakuin.incident.report import IncidentService, make_rule
from kakuin.store.repos import CertificateRepo
from tests.acme_server import DOMAIN, Server, start_server
from tests.test_acme_certbot import certbot, certonly_args, serial_of

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(template_dir: Path, tmp_path: Path) -> Iterator[Server]:
    yield from start_server(template_dir, tmp_path)


def test_certbot_renews_early_because_of_ari(server: Server, tmp_path: Path) -> None:
    kid, hmac = server.eab()
    r = certbot(server, tmp_path, "register", "--eab-kid", kid, f"--eab-hmac-key={hmac}")
    assert r.returncode == 0, r.stdout + r.stderr
    r = certbot(server, tmp_path, *certonly_args(server, f"www.{DOMAIN}"))
    assert r.returncode == 0, r.stdout + r.stderr
    live = tmp_path / "cb" / "config" / "live" / "www"
    first = serial_of(live / "cert.pem")
    with server.ctx.db.session() as s:
        old = CertificateRepo(s).by_serial(first)
        from kakuin.store.repos import CARepo

        g1 = CARepo(s).by_id(old.issuer_id)
    renew = (
        "renew",
        "--no-random-sleep-on-renew",
        "--http-01-port",
        str(server.http01_port),
        "--http-01-address",
        "127.0.0.1",
    )

    r = certbot(server, tmp_path, *renew)
    assert r.returncode == 0, r.stdout + r.stderr
    assert serial_of(live / "cert.pem") == first, "not due yet: certbot must not renew"
    assert "not yet due" in r.stdout + r.stderr
    # certbot asked renewalInfo and keeps its Retry-After (RFC 9773 §4.3: six hours from kakuin)
    conf = tmp_path / "cb" / "config" / "renewal" / "www.conf"
    text = conf.read_text()
    assert "ari_retry_after" in text
    # Six hours later, when certbot would ask again: move the stored Retry-After into the past.
    conf.write_text(re.sub(r"ari_retry_after = \S+", "ari_retry_after = 2000-01-01T00:00:00", text))

    rotated = RotationService(server.ctx).rotate(g1.purpose)
    now = server.ctx.clock.now()
    IncidentService(server.ctx).open(
        "ari", make_rule([g1.slug]), deadline=now + timedelta(days=14), replacement=rotated.slug
    )
    run = Campaign(server.ctx).notify("ari")
    assert (run.certificates, run.ari) == (1, 1)

    r = certbot(server, tmp_path, *renew)
    assert r.returncode == 0, r.stdout + r.stderr
    second = serial_of(live / "cert.pem")
    assert second != first, "ARI said renew now: certbot must renew without --force-renewal\n" + r.stdout + r.stderr
    chain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    assert chain[1].subject.rfc4514_string().startswith(f"CN={rotated.name}")
    report = IncidentService(server.ctx).report("ari")
    [c] = report.certificates
    assert c.state == "replaced" and c.replaced_by == second, c
    assert c.replaced_via in ("acme-replaces", "newer")
