"""Helpers for the incident tests: a hierarchy built at an early date (the 2020
story needs CAs that existed in 2019), ACME-issued certificates recorded as the
ACME server records them, OCSP and CRL look-ups."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from kakuin.acme.models import ACMEAccount, ACMEOrder
from kakuin.ca.issuer import Issued, IssueRequest
from kakuin.clock import UTC, FixedClock
from kakuin.context import Context, init_data_dir
from kakuin.store.repos import CARepo
from tests.conftest import PASSPHRASE

EARLY = dt.datetime(2019, 1, 1, tzinfo=UTC)


def early_hierarchy(base: Path, *, generation: int = 3, smtp: tuple[str, int] | None = None) -> Path:
    """A data dir whose hierarchy was created on 2019-01-01; the TLS RSA
    intermediate is generation ``generation`` ("… - G3", slug tls-rsa-g3)."""
    os.environ.setdefault("KAKUIN_CA_PASSPHRASE", PASSPHRASE)
    d = base / "early"
    init_data_dir(d)
    cfg = d / "kakuin.toml"
    text = cfg.read_text()
    old = 'slug = "tls-rsa-g1"\nname = "kakuin Development TLS RSA CA - G1"\n'
    assert old in text
    text = text.replace(
        old,
        f'slug = "tls-rsa-g{generation}"\nname = "kakuin Development TLS RSA CA - G{generation}"\n'
        f"generation = {generation}\n",
    )
    if smtp:
        text += f'\n[mail]\nhost = "{smtp[0]}"\nport = {smtp[1]}\nfrom = "ca@kakuin.example"\n'
    cfg.write_text(text)
    ctx = Context.open(d, clock=FixedClock(EARLY))
    ctx.hierarchy().ensure()
    ctx.db.dispose()
    return d


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def acme_issue(ctx: Context, req: IssueRequest, *, account_id: int, replaces: str | None = None) -> Issued:
    """Issue as the ACME server does (requested_by acme:<account>) and record the order."""
    issued = ctx.issuance.issue(
        IssueRequest(**{**{f: getattr(req, f) for f in req.__dataclass_fields__}, "requested_by": f"acme:{account_id}"})
    )
    now = ctx.clock.now()
    with ctx.db.session() as s:
        s.add(
            ACMEOrder(
                account_id=account_id,
                status="valid",
                identifiers=[{"type": "dns", "value": n} for n in req.dns_names],
                authz_ids=[],
                expires=now + dt.timedelta(days=7),
                certificate_serial=issued.serial,
                replaces=replaces,
                created_at=now,
            )
        )
    return issued


def acme_account(ctx: Context, institution_id: int, contact: str) -> int:
    with ctx.db.session() as s:
        a = ACMEAccount(
            thumbprint=os.urandom(16).hex(),
            jwk={},
            contact=[f"mailto:{contact}"],
            institution_id=institution_id,
            created_at=ctx.clock.now(),
        )
        s.add(a)
        s.flush()
        return a.id


def ca_cert(ctx: Context, slug: str) -> x509.Certificate:
    with ctx.db.session() as s:
        return x509.load_der_x509_certificate(CARepo(s).by_slug(slug).der)


def ocsp_status(ctx: Context, cert: x509.Certificate, issuer: x509.Certificate) -> ocsp.OCSPCertStatus:
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(Encoding.DER)
    resp = ocsp.load_der_ocsp_response(ctx.ocsp.respond(req).der)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    return resp.certificate_status


def crl_serials(ctx: Context, slug: str) -> set[int]:
    _n, _t, _u, der = ctx.crls.current(slug)
    return {r.serial_number for r in x509.load_der_x509_crl(der)}
