"""Key rules (BR 6.1.5, 6.1.6; S/MIME BR 6.1.5), pure.

The blocklist lookup is a function passed in (as in Boulder's goodkey), so this
module has no storage dependency.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kakuin.errors import BlockedKeyError, KeyRuleError

RSA_MIN_BITS = 2048  # BR 6.1.5: at least 2048 bits, modulus divisible by 8
RSA_MAX_BITS = 8192  # larger keys only cost verifiers; refuse them
ALLOWED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}  # BR 6.1.5; no P-521


@dataclass(frozen=True, slots=True)
class KeyRules:
    allow_rsa: bool = True
    allow_ec: bool = True
    curves: frozenset[str] = frozenset({"secp256r1", "secp384r1"})


def spki_sha256(public_key: object) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: the blocklist's key."""
    der = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def describe_key(public_key: object) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return ALLOWED_CURVES.get(public_key.curve.name, public_key.curve.name)
    return type(public_key).__name__


def check_key(
    public_key: object,
    rules: KeyRules,
    is_blocked: Callable[[str], bool],
) -> str:
    """Refuse keys the CA must not certify; return the SPKI SHA-256 hex.

    Raises KeyRuleError naming the rule, or BlockedKeyError for a key on the
    compromised-key blocklist.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        if not rules.allow_rsa:
            raise KeyRuleError("RSA keys are not allowed for this profile", rule="key-type")
        numbers = public_key.public_numbers()
        bits = public_key.key_size
        if bits < RSA_MIN_BITS:
            raise KeyRuleError(f"RSA key of {bits} bits is below {RSA_MIN_BITS}", rule="rsa-size")
        if bits > RSA_MAX_BITS:
            raise KeyRuleError(f"RSA key of {bits} bits is over {RSA_MAX_BITS}", rule="rsa-size")
        if bits % 8:
            raise KeyRuleError("RSA modulus size must be a multiple of 8", rule="rsa-size")
        # BR 6.1.6: the public exponent is odd and at least 3 (we ask 65537 or more,
        # as Boulder does; smaller exponents are a sign of a broken generator).
        if numbers.e < 65537 or numbers.e % 2 == 0:
            raise KeyRuleError("RSA public exponent must be odd and at least 65537", rule="rsa-exponent")
        if numbers.n % 2 == 0:
            raise KeyRuleError("RSA modulus must be odd", rule="rsa-modulus")
        for p in _SMALL_PRIMES:
            if numbers.n % p == 0:
                raise KeyRuleError("RSA modulus has a small factor", rule="rsa-modulus")
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if not rules.allow_ec:
            raise KeyRuleError("ECDSA keys are not allowed for this profile", rule="key-type")
        name = public_key.curve.name
        if name not in rules.curves:
            allowed = ", ".join(sorted(ALLOWED_CURVES.get(c, c) for c in rules.curves))
            raise KeyRuleError(
                f"curve {ALLOWED_CURVES.get(name, name)} is not allowed (allowed: {allowed})",
                rule="ec-curve",
            )
    else:
        raise KeyRuleError(
            f"{describe_key(public_key)} keys are not allowed; use RSA or ECDSA P-256/P-384",
            rule="key-type",
        )
    digest = spki_sha256(public_key)
    if is_blocked(digest):
        raise BlockedKeyError(
            "this key was reported compromised and is blocked; generate a new key pair "
            "(この鍵は危殆化のため使用できません。新しい鍵ペアを生成してください)",
            rule="blocked-key",
        )
    return digest


# Boulder's goodkey checks divisibility by the primes below 752.
def _primes_below(limit: int) -> tuple[int, ...]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return tuple(i for i in range(3, limit) if sieve[i])


_SMALL_PRIMES = _primes_below(752)
