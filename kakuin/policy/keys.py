"""Key rules (BR 6.1.5, 6.1.6; S/MIME BR 6.1.5), pure.

The blocklist lookup is a function passed in (as in Boulder's goodkey), so this
module has no storage dependency.
"""

from __future__ import annotations

import hashlib
import math
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


# ROCA (CVE-2017-15361, Nemec et al. 2017): Infineon's generator made primes
# p = k·M + (65537^a mod M), so n mod r lies in the subgroup that 65537
# generates mod r for every small prime r. Those primes (rocacheck's list,
# which Boulder's goodkey uses); a modulus with the fingerprint for all of them
# is refused. A random modulus passes one test with probability ~1/2 or less,
# all of them with probability < 2^-40.
_ROCA_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83,
                89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167)
_ROCA_GROUPS = tuple(
    (r, frozenset(pow(65537, k, r) for k in range(r))) for r in _ROCA_PRIMES
)
# Fermat's method finds p and q within this many steps when |p - q| is small
# (Boulder's FermatRounds: 100); BR 6.1.1.3 item 5, "easily computed".
FERMAT_ROUNDS = 100


def roca_fingerprint(n: int) -> bool:
    return all(n % r in group for r, group in _ROCA_GROUPS)


def fermat_factorable(n: int, rounds: int = FERMAT_ROUNDS) -> bool:
    """True when n = a² - b² for an a within ``rounds`` of ceil(√n): its two
    factors are close enough for Fermat's method (p = q included)."""
    a = math.isqrt(n)
    if a * a == n:
        return True
    a += 1
    for _ in range(rounds):
        b2 = a * a - n
        b = math.isqrt(b2)
        if b * b == b2:
            return True
        a += 1
    return False


def check_rsa_exponent(e: int) -> None:
    """BR 6.1.6: odd, in 2^16+1 .. 2^256-1 (Boulder's goodkey asks 65537 exactly;
    smaller exponents are a sign of a broken generator)."""
    if e < 65537 or e % 2 == 0 or e > 2**256 - 1:
        raise KeyRuleError("RSA public exponent must be odd, at least 65537 and below 2^256", rule="rsa-exponent")


def check_rsa_modulus(n: int) -> None:
    """BR 6.1.1.3 items 3 and 5 for a modulus: no small factor, not even, no ROCA
    fingerprint, no factors close enough for Fermat's method.

    Debian's weak keys (CVE-2008-0166) are not listed here: the blocklists were
    only ever published for 1024-, 2048- and 4096-bit moduli made with
    exponent 65537 by OpenSSL 0.9.8 on Debian between 2006 and 2008, in the
    retired openssl-blacklist package, which this machine's package sources no
    longer have. An operator who has them can add each to the compromised-key
    blocklist (``kakuin revoke`` with keyCompromise blocks a key the same way)."""
    if n % 2 == 0:
        raise KeyRuleError("RSA modulus must be odd", rule="rsa-modulus")
    for p in _SMALL_PRIMES:
        if n % p == 0:
            raise KeyRuleError("RSA modulus has a small factor", rule="rsa-modulus")
    if roca_fingerprint(n):
        raise KeyRuleError("RSA key has the ROCA fingerprint (CVE-2017-15361): its private key can be "
                           "computed; generate a new key pair", rule="rsa-weak")
    if fermat_factorable(n):
        raise KeyRuleError("RSA key's two prime factors are too close: its private key can be computed "
                           "(Fermat's method); generate a new key pair", rule="rsa-weak")


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
        check_rsa_exponent(numbers.e)
        check_rsa_modulus(numbers.n)
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
