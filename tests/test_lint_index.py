"""kakuin.ca.lint.index_validators only skips ``match`` calls that cannot
succeed, and kakuin's cache of decoded values changes no decoding: on good and
on deliberately broken certificates, pkilint's own containers with pkilint's
own decoder and the indexed ones with the cache give the same findings, in the
same order."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pkilint import document, loader
from pkilint.cabf import serverauth, smime
from pkilint.cabf.serverauth import serverauth_constants
from pkilint.cabf.smime import smime_constants as sc
from pkilint.pkix import certificate, extension, name

from kakuin.ca.lint import _install_decode_cache, index_validators

CA_KEY = ec.generate_private_key(ec.SECP256R1())
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def make(variant: str) -> bytes:
    key = rsa.generate_private_key(65537, 1024) if variant == "rsa1024" else ec.generate_private_key(ec.SECP256R1())
    cn = "other.example.jp" if variant == "cn_not_in_san" else "www.example.jp"
    days = 500 if variant == "long" else 90
    b = (
        x509.CertificateBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kakuin Test"),
                                x509.NameAttribute(NameOID.COMMON_NAME, "Kakuin Test CA")]))
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=days) - dt.timedelta(seconds=1))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(CA_KEY.public_key()), False)
        .add_extension(x509.UnrecognizedExtension(x509.oid.ExtensionOID.CERTIFICATE_POLICIES, b"\x04\x01\x00")
                       if variant == "bad_policies_der" else
                       x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"),
                                                                        None)]), False)
        .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
            x509.UniformResourceIdentifier("http://ca.example.jp/ca.der"))]), False)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier("http://ca.example.jp/1.crl")], None, None, None)]), False)
    )
    if variant != "no_san":
        names: list[x509.GeneralName] = [x509.DNSName("www.example.jp")]
        if variant == "ip_san":
            names.append(x509.IPAddress(ipaddress.ip_address("192.0.2.1")))
        b = b.add_extension(x509.SubjectAlternativeName(names), variant == "critical_san")
    eku = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CODE_SIGNING] if variant == "extra_eku" else [])
    b = b.add_extension(x509.ExtendedKeyUsage(eku), variant == "critical_eku")
    if variant != "no_ku":
        b = b.add_extension(x509.KeyUsage(True, variant == "ku_encipher", False, False, False,
                                          variant == "ku_certsign", False, False, False), True)
    if variant == "basic_ca":
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return b.sign(CA_KEY, hashes.SHA256()).public_bytes(Encoding.DER)


VARIANTS = ["good", "cn_not_in_san", "long", "no_san", "ip_san", "critical_san", "extra_eku", "critical_eku",
            "no_ku", "ku_encipher", "ku_certsign", "basic_ca", "rsa1024", "bad_policies_der"]


def findings(container, der: bytes) -> list[tuple[str, str, str, str]]:  # type: ignore[no-untyped-def]
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
    return [
        (type(r.validator).__name__, r.node.path, fd.finding.code, str(fd.message))
        for r in container.validate(doc.root)
        for fd in r.finding_descriptions
    ]


@pytest.mark.parametrize("kind", ["dv", "smime", "pkix"])
def test_indexed_containers_find_the_same(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def build():  # type: ignore[no-untyped-def]
        if kind == "dv":
            ctype = serverauth_constants.CertificateType.DV_FINAL_CERTIFICATE
            return certificate.create_pkix_certificate_validator_container(
                serverauth.create_decoding_validators(), serverauth.create_validators(ctype))
        if kind == "smime":
            return certificate.create_pkix_certificate_validator_container(
                smime.create_decoding_validators(),
                smime.create_subscriber_validators(sc.ValidationLevel.MAILBOX, sc.Generation.STRICT))
        return certificate.create_pkix_certificate_validator_container(
            certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
            [certificate.create_issuer_validator_container([]), certificate.create_validity_validator_container(),
             certificate.create_subject_validator_container([]), certificate.create_extensions_validator_container([]),
             certificate.create_spki_validator_container([])])

    plain, indexed = build(), build()
    index_validators(indexed)
    _install_decode_cache()
    cached = document.decode_der
    total = 0
    for variant in VARIANTS:
        der = make(variant)
        monkeypatch.setattr(document, "decode_der", cached.original)
        want = findings(plain, der)
        monkeypatch.setattr(document, "decode_der", cached)
        assert findings(indexed, der) == want, variant
        assert findings(indexed, der) == want, variant  # and again, from the cached plans
        total += len(want)
    assert total > 0  # the broken variants did produce findings


def test_self_issued_from_the_bytes_is_pkilints() -> None:
    """kakuin.ca.lint._preset_self_issued gives pkilint's own answer, for leaves
    and for a self-issued certificate."""
    from kakuin.ca.lint import _preset_self_issued

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"), x509.NameAttribute(NameOID.COMMON_NAME, "Root")])
    root = (x509.CertificateBuilder().issuer_name(name).subject_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()).public_bytes(Encoding.DER))
    answers = []
    for der in [root, *(make(v) for v in ("good", "basic_ca", "no_san"))]:
        theirs = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
        ours = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "tbs")
        _preset_self_issued(ours, der)
        assert "is_self_issued" in ours.__dict__
        assert ours.is_self_issued == theirs.is_self_issued
        answers.append(ours.is_self_issued)
    assert answers == [True, False, False, False]
