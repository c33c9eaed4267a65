"""Key pairs kakuin generates for client and S/MIME subscribers (UPKI delivers
these as PKCS#12 protected by an access PIN), and the PINs themselves.

The PKCS#12 uses PBES2 (PBKDF2-SHA256, AES-256-CBC) with an SHA-256 MAC, which
OpenSSL 3 and current browsers and mail clients read. The private key exists
in the clear only in memory here; what is stored is the encrypted PKCS#12."""

from __future__ import annotations

import re
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

from kakuin.errors import PolicyError

# No 0/O, 1/l/I: the PIN is read from a mail and typed by hand.
_PIN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
PIN_LENGTH = 16
_PIN_RULE = re.compile(r"[A-Za-z0-9]{8,32}")
KDF_ROUNDS = 100_000


def generate_pin() -> str:
    return "".join(secrets.choice(_PIN_ALPHABET) for _ in range(PIN_LENGTH))


def check_pin(pin: str) -> None:
    if not _PIN_RULE.fullmatch(pin):
        raise PolicyError("an access PIN is 8 to 32 ASCII letters and digits", rule="pin-format")


def generate_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_pkcs12(
    key: rsa.RSAPrivateKey, cert: x509.Certificate, chain: tuple[x509.Certificate, ...], pin: str, name: str
) -> bytes:
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(pin.encode())
    )
    return pkcs12.serialize_key_and_certificates(name.encode(), key, cert, list(chain) or None, encryption)
