"""BR 6.1.1.3 / 6.1.5 / 6.1.6 key rules (kakuin.policy.keys): moduli whose private
key can be computed (ROCA, factors close enough for Fermat's method), exponents
out of range, and through ACME finalize, a CSR for a Fermat-weak key is badCSR."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kakuin.errors import KeyRuleError
from kakuin.policy.keys import KeyRules, check_key, check_rsa_modulus, fermat_factorable, roca_fingerprint


def _is_probable_prime(n: int) -> bool:
    if n % 2 == 0:
        return n == 2
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(24):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _next_prime(n: int) -> int:
    n += 1 if n % 2 == 0 else 2
    while not _is_probable_prime(n):
        n += 2
    return n


def _fermat_weak_key() -> rsa.RSAPrivateKey:
    """p from a real key, q the next prime after it: n = p·q falls to Fermat at once."""
    while True:
        p = rsa.generate_private_key(65537, 2048).private_numbers().p
        q = _next_prime(p)
        n, phi = p * q, (p - 1) * (q - 1)
        if n.bit_length() == 2048 and phi % 65537:
            d = pow(65537, -1, phi)
            return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                         rsa.RSAPublicNumbers(65537, n)).private_key()


def test_random_keys_pass() -> None:
    for _ in range(3):
        n = rsa.generate_private_key(65537, 2048).public_key().public_numbers().n
        assert not roca_fingerprint(n) and not fermat_factorable(n)
        check_rsa_modulus(n)


def test_roca_fingerprint_is_refused() -> None:
    # Infineon's form: p = k·M + 65537^a mod M (M = the first 126 primes' product);
    # the fingerprint of n = p·q does not depend on p and q being prime.
    primes = [r for r in range(3, 800) if all(r % f for f in range(2, int(r ** 0.5) + 1))][:126]
    m = 1
    for r in primes:
        m *= r
    p, q = (secrets.randbits(300) * m + pow(65537, secrets.randbelow(m), m) for _ in range(2))
    n = p * q
    assert roca_fingerprint(n)
    with pytest.raises(KeyRuleError):
        check_rsa_modulus(n)  # refused: ROCA (or, by chance, an earlier rule)


def test_close_factors_are_refused() -> None:
    key = _fermat_weak_key()
    assert fermat_factorable(key.public_key().public_numbers().n)
    with pytest.raises(KeyRuleError) as e:
        check_key(key.public_key(), KeyRules(), lambda _: False)
    assert e.value.rule == "rsa-weak"
    square = rsa.generate_private_key(65537, 2048).private_numbers().p ** 2
    assert fermat_factorable(square)


def test_exponent_bounds() -> None:
    n = rsa.generate_private_key(65537, 2048).public_key().public_numbers().n
    for e in (3, 2**256 + 1):  # cryptography itself refuses an even exponent
        with pytest.raises(KeyRuleError) as err:
            check_key(rsa.RSAPublicNumbers(e, n).public_key(), KeyRules(), lambda _: False)
        assert err.value.rule == "rsa-exponent"
    check_key(ec.generate_private_key(ec.SECP256R1()).public_key(), KeyRules(), lambda _: False)
