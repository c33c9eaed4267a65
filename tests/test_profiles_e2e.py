"""Every profile, issued through the full pipeline, passes the matching pkilint
command-line linter (a separate process, as an outside judge) with no ERROR or
FATAL finding, and ``openssl verify`` accepts its chain."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kakuin.ca.issuer import IssueRequest
from kakuin.store.repos import CARepo
from tests.helpers import add_institution, all_roots_pem, ec_key, ov_name, rsa_key, run

BIN = Path(shutil.which("lint_cabf_serverauth_cert") or Path(__file__).parents[1] / ".venv/bin/x").parent


def lint(tool: str, pem: Path, *args: str) -> str:
    res = run([BIN / tool, "lint", *args, "-s", "WARNING", pem])
    text = res.stdout + res.stderr
    assert "ERROR" not in text and "FATAL" not in text, text
    return text


def write_chain(tmp: Path, ctx, issued) -> tuple[Path, Path, Path]:  # type: ignore[no-untyped-def]
    leaf = tmp / "leaf.pem"
    leaf.write_bytes(issued.certificate.public_bytes(Encoding.PEM))
    chain = tmp / "chain.pem"
    chain.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in issued.chain))
    roots = tmp / "roots.pem"
    roots.write_bytes(all_roots_pem(ctx))
    return leaf, chain, roots


def verify(leaf: Path, chain: Path, roots: Path, purpose: str | None = None) -> None:
    cmd = ["openssl", "verify", "-CAfile", roots, "-untrusted", chain]
    if purpose:
        cmd += ["-purpose", purpose]
    res = run([*cmd, leaf])
    assert res.returncode == 0 and ": OK" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("key_factory,issuer", [(ec_key, "tls-ecdsa-g1"), (rsa_key, "tls-rsa-g1")])
@pytest.mark.parametrize("profile", ["server-ov", "server-dv"])
def test_server_profiles(ctx, tmp_path, key_factory, issuer, profile) -> None:  # type: ignore[no-untyped-def]
    add_institution(ctx)
    key = key_factory()
    issued = ctx.issuance.issue(
        IssueRequest(
            profile=profile,
            public_key=key.public_key(),
            subject=ov_name(),
            dns_names=("www.example.ac.jp", "mail.example.ac.jp"),
            institution="Example University" if profile == "server-ov" else None,
        )
    )
    assert issued.issuer_slug == issuer
    leaf, chain, roots = write_chain(tmp_path, ctx, issued)
    lint("lint_cabf_serverauth_cert", leaf, "-d")
    verify(leaf, chain, roots, "sslserver")
    if issuer == "tls-ecdsa-g1":
        assert issued.certificate.signature_hash_algorithm.name == "sha384"  # ecdsa-with-SHA384


def test_client_profile(ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    add_institution(ctx)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Tokyo"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example University"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Information Center"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Hanako Yamada"),
        ]
    )
    issued = ctx.issuance.issue(
        IssueRequest(
            profile="client",
            public_key=rsa_key().public_key(),
            subject=name,
            emails=("hanako@example.ac.jp",),
            institution="Example University",
        )
    )
    leaf, chain, roots = write_chain(tmp_path, ctx, issued)
    lint("lint_pkix_cert", leaf)
    verify(leaf, chain, roots, "sslclient")
    days = (issued.certificate.not_valid_after_utc - issued.certificate.not_valid_before_utc).days
    assert 52 * 30 < days < 52 * 31  # UPKI: 52 months


@pytest.mark.parametrize("key_factory", [ec_key, rsa_key])
def test_smime_profile(ctx, tmp_path, key_factory) -> None:  # type: ignore[no-untyped-def]
    issued = ctx.issuance.issue(
        IssueRequest(
            profile="smime",
            public_key=key_factory().public_key(),
            subject=x509.Name([]),
            emails=("taro@example.ac.jp",),
        )
    )
    leaf, chain, roots = write_chain(tmp_path, ctx, issued)
    lint("lint_cabf_smime_cert", leaf, "-d")
    verify(leaf, chain, roots, "smimesign")


def test_code_signing_profile(ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    add_institution(ctx)
    issued = ctx.issuance.issue(
        IssueRequest(
            profile="code-signing",
            public_key=rsa_key(3072).public_key(),
            subject=ov_name(cn="Example University Software"),
            institution="Example University",
        )
    )
    leaf, chain, roots = write_chain(tmp_path, ctx, issued)
    lint("lint_pkix_cert", leaf)
    verify(leaf, chain, roots)  # OpenSSL 3.0 has no code-signing purpose; osslsigncode checks it


def test_tsa_profile_has_critical_timestamping_eku(ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    add_institution(ctx)
    issued = ctx.issuance.issue(
        IssueRequest(
            profile="tsa",
            public_key=rsa_key().public_key(),
            subject=ov_name(cn="Example University TSA"),
            institution="Example University",
        )
    )
    eku = issued.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    leaf, chain, roots = write_chain(tmp_path, ctx, issued)
    lint("lint_pkix_cert", leaf)
    verify(leaf, chain, roots, "timestampsign")


def test_ca_certificates_lint_and_never_carry_ocsp_signing(ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with ctx.db.session() as s:
        cas = list(CARepo(s).all())
    roots = tmp_path / "roots.pem"
    roots.write_bytes(all_roots_pem(ctx))
    for ca in cas:
        cert = x509.load_der_x509_certificate(ca.der)
        pem = tmp_path / f"{ca.slug}.pem"
        pem.write_bytes(cert.public_bytes(Encoding.PEM))
        try:
            eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        except x509.ExtensionNotFound:
            eku = []
        assert ExtendedKeyUsageOID.OCSP_SIGNING not in eku
        if ca.kind == "root" or ca.purpose.startswith("tls"):
            lint("lint_cabf_serverauth_cert", pem, "-d")
        else:
            lint("lint_pkix_cert", pem)
        res = run(["openssl", "verify", "-CAfile", roots, pem])
        assert res.returncode == 0, res.stdout + res.stderr
        if ca.kind == "intermediate":
            assert f"- G{ca.generation}" in ca.name


def test_ecdsa_tls_intermediate_signs_with_sha384(ctx) -> None:  # type: ignore[no-untyped-def]
    with ctx.db.session() as s:
        ca = CARepo(s).by_slug("tls-ecdsa-g1")
    cert = x509.load_der_x509_certificate(ca.der)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp384r1"
