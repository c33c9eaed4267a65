"""Helpers for tests: keys, CSRs, names, running openssl."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from kakuin.context import Context
from kakuin.store.repos import CARepo


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, bits)


def ov_name(
    cn: str = "www.example.ac.jp",
    o: str = "Example University",
    st: str | None = "Tokyo",
    l: str | None = "Chiyoda-ku",  # noqa: E741  (the DN attribute's name)
) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "JP")]
    if st:
        attrs.append(x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, st))
    if l:
        attrs.append(x509.NameAttribute(NameOID.LOCALITY_NAME, l))
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    return x509.Name(attrs)


def make_csr(key, name: x509.Name, dns: Sequence[str] = (), emails: Sequence[str] = ()) -> bytes:  # type: ignore[no-untyped-def]
    b = x509.CertificateSigningRequestBuilder().subject_name(name)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns] + [x509.RFC822Name(e) for e in emails]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)


def add_institution(
    ctx: Context, name: str = "Example University", domains: Sequence[str] = ("example.ac.jp",)
) -> None:
    from kakuin.store.repos import InstitutionRepo

    with ctx.db.session() as s:
        InstitutionRepo(s).add(name, domains=domains, prefecture="Tokyo", now=ctx.clock.now())


def root_pem(ctx: Context, slug: str) -> bytes:
    with ctx.db.session() as s:
        der = CARepo(s).by_slug(slug).der
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


def all_roots_pem(ctx: Context) -> bytes:
    with ctx.db.session() as s:
        ders = [ca.der for ca in CARepo(s).all() if ca.kind == "root"]
    return b"".join(x509.load_der_x509_certificate(d).public_bytes(Encoding.PEM) for d in ders)


def run(cmd: Sequence[str | Path], **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
