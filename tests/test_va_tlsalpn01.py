"""tls-alpn-01 certificate checks (RFC 8737 §3, kakuin.va.tlsalpn01.check_certificate):
exactly one dNSName, a critical acmeIdentifier holding SHA-256 of the key
authorization, and no certificate that would make the VA raise."""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from kakuin.clock import UTC
from kakuin.va.tlsalpn01 import ID_PE_ACME_IDENTIFIER, check_certificate

KA = "token.thumbprint"
DOMAIN = "www.example.ac.jp"
OTHER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.32")  # same length as acmeIdentifier's


def cert(*, names: tuple[str, ...] = (DOMAIN,), critical: bool = True, digest: bytes | None = None,
         extra: bool = False) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(UTC)
    value = b"\x04\x20" + (digest or hashlib.sha256(KA.encode()).digest())
    b = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
         .public_key(key.public_key()).serial_number(1)
         .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), True)
         .add_extension(x509.UnrecognizedExtension(ID_PE_ACME_IDENTIFIER, value), critical))
    if extra:
        b = b.add_extension(x509.UnrecognizedExtension(OTHER_OID, value), True)
    return b.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_a_proper_certificate_passes() -> None:
    assert check_certificate(cert(), DOMAIN, KA) is None


def test_refusals() -> None:
    assert "critical" in (check_certificate(cert(critical=False), DOMAIN, KA) or "")
    assert "exactly" in (check_certificate(cert(names=(DOMAIN, "x.example.ac.jp")), DOMAIN, KA) or "")
    assert "exactly" in (check_certificate(cert(names=("x.example.ac.jp",)), DOMAIN, KA) or "")
    assert "does not match" in (check_certificate(cert(digest=bytes(32)), DOMAIN, KA) or "")


def test_a_repeated_extension_is_a_refusal_not_a_crash() -> None:
    """RFC 5280 §4.2: an extension appears at most once. Two acmeIdentifier
    extensions (the second's OID patched in; the signature is not checked here)."""
    der = cert(extra=True)
    other = OTHER_OID.dotted_string
    patched = der.replace(bytes.fromhex("06082b06010505070120"), bytes.fromhex("06082b0601050507011f"))
    assert patched != der, other
    reason = check_certificate(patched, DOMAIN, KA)
    assert reason is not None and "repeats an extension" in reason
