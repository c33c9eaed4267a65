"""Pkcs11KeyBackend against a real SoftHSM2 token (one fresh token per module)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pkcs11
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute, ObjectClass
from pkcs11.exceptions import AttributeSensitive

from kakuin.ca.keystore import KeyRef, KeyType, PublicKey, generate_private_key
from kakuin.ca.pkcs11_backend import Pkcs11KeyBackend
from kakuin.errors import ConfigError, KakuinError

try:
    from tests.softhsm import make_token
except ImportError:  # tests/ is no package: pytest put tests/ itself on sys.path
    from softhsm import make_token  # type: ignore[no-redef]

KEY_TYPES = [KeyType.P384, KeyType.P256, KeyType.RSA2048]


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    old_conf = os.environ.get("SOFTHSM2_CONF")
    module, label, pin, _env = make_token(tmp_path_factory.mktemp("softhsm"))
    yield module, label, pin
    pkcs11.unload(module)
    if old_conf is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old_conf


@pytest.fixture(scope="module")
def backend(token: tuple[str, str, str]) -> Iterator[Pkcs11KeyBackend]:
    b = Pkcs11KeyBackend(*token)
    yield b
    b.close()


@pytest.fixture(scope="module")
def refs(backend: Pkcs11KeyBackend) -> dict[KeyType, KeyRef]:
    return {kt: backend.generate(f"ca-{kt.value}", kt) for kt in KEY_TYPES}


@contextmanager
def raw_session(token: tuple[str, str, str], backend: Pkcs11KeyBackend) -> Iterator[Any]:
    """A second session on the token, for looking behind the backend's back.

    No PIN: login is per process and token, so this session shares the
    backend's login (which ``exists`` makes sure of) and sees private objects."""
    backend.exists(KeyRef("pkcs11", "-", KeyType.P256))
    with pkcs11.lib(token[0]).get_token(token_label=token[1]).open() as session:
        yield session


def by_class(session: Any, label: str) -> dict[ObjectClass, Any]:
    objs = list(session.get_objects({Attribute.LABEL: label}))
    classes = {obj[Attribute.CLASS]: obj for obj in objs}
    assert len(classes) == len(objs)
    return classes


def verify(
    public: PublicKey, signature: bytes, data: bytes, hash_alg: hashes.HashAlgorithm
) -> None:
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, data, padding.PKCS1v15(), hash_alg)
    else:
        public.verify(signature, data, ec.ECDSA(hash_alg))


@pytest.mark.parametrize("key_type", KEY_TYPES, ids=str)
def test_sign_verifies_with_public_key(
    backend: Pkcs11KeyBackend, refs: dict[KeyType, KeyRef], key_type: KeyType
) -> None:
    signer = backend.signer(refs[key_type])
    public = signer.public_key()
    assert KeyType.of(public) is key_type
    assert signer.key_type is key_type
    assert signer.private_key is None
    data = b"kakuin " * 1000
    signature = signer.sign(data, key_type.signature_hash)
    verify(public, signature, data, key_type.signature_hash)
    with pytest.raises(InvalidSignature):
        verify(public, signature, data + b"!", key_type.signature_hash)


@pytest.mark.parametrize(
    "hash_alg", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()], ids=lambda h: h.name
)
@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.P384], ids=str)
def test_every_hash(
    backend: Pkcs11KeyBackend,
    refs: dict[KeyType, KeyRef],
    key_type: KeyType,
    hash_alg: hashes.HashAlgorithm,
) -> None:
    signer = backend.signer(refs[key_type])
    verify(signer.public_key(), signer.sign(b"data", hash_alg), b"data", hash_alg)


@pytest.mark.parametrize("key_type", KEY_TYPES, ids=str)
def test_self_signed_certificate_from_tbs(
    backend: Pkcs11KeyBackend, refs: dict[KeyType, KeyRef], key_type: KeyType
) -> None:
    signer = backend.signer(refs[key_type])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"HSM root {key_type}")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    # A throwaway key of the same type yields the TBS and signatureAlgorithm.
    draft = builder.sign(generate_private_key(key_type), key_type.signature_hash)
    tbs = draft.tbs_certificate_bytes
    signature = signer.sign(tbs, key_type.signature_hash)
    cert_asn1 = asn1_x509.Certificate.load(draft.public_bytes(serialization.Encoding.DER))
    cert_asn1["signature_value"] = signature
    cert = x509.load_der_x509_certificate(cert_asn1.dump(force=True))
    assert cert.tbs_certificate_bytes == tbs
    cert.verify_directly_issued_by(cert)


def test_concurrent_signing(backend: Pkcs11KeyBackend, refs: dict[KeyType, KeyRef]) -> None:
    signer = backend.signer(refs[KeyType.P256])
    items = [f"item {i}".encode() for i in range(64)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        signatures = list(pool.map(lambda d: signer.sign(d, hashes.SHA256()), items))
    for data, signature in zip(items, signatures, strict=True):
        verify(signer.public_key(), signature, data, hashes.SHA256())


def test_duplicate_label_refused(backend: Pkcs11KeyBackend, refs: dict[KeyType, KeyRef]) -> None:
    with pytest.raises(KakuinError, match="already exists"):
        backend.generate(refs[KeyType.P384].label, KeyType.P384)
    with pytest.raises(KakuinError, match="already exists"):
        backend.generate(refs[KeyType.P384].label, KeyType.RSA2048)


def test_key_pair_attributes(
    token: tuple[str, str, str], backend: Pkcs11KeyBackend, refs: dict[KeyType, KeyRef]
) -> None:
    with raw_session(token, backend) as session:
        for key_type, ref in refs.items():
            objs = by_class(session, ref.label)
            assert set(objs) == {ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY}
            key, pub = objs[ObjectClass.PRIVATE_KEY], objs[ObjectClass.PUBLIC_KEY]
            assert len(key.id) == 16 and key.id == pub.id
            assert key[Attribute.TOKEN] and key[Attribute.PRIVATE] and key[Attribute.SIGN]
            assert key[Attribute.SENSITIVE] and key[Attribute.ALWAYS_SENSITIVE]
            assert not key[Attribute.EXTRACTABLE] and key[Attribute.NEVER_EXTRACTABLE]
            assert not key[Attribute.DECRYPT]
            assert pub[Attribute.TOKEN]
            secret = Attribute.PRIVATE_EXPONENT if key_type.is_rsa else Attribute.VALUE
            with pytest.raises(AttributeSensitive):
                key[secret]


def test_destroy(token: tuple[str, str, str], backend: Pkcs11KeyBackend) -> None:
    ref = backend.generate("doomed", KeyType.P256)
    assert backend.exists(ref)
    backend.signer(ref).sign(b"x", hashes.SHA256())
    backend.destroy(ref)
    assert not backend.exists(ref)
    with raw_session(token, backend) as session:
        assert by_class(session, "doomed") == {}
    with pytest.raises(KakuinError, match="missing"):
        backend.signer(ref)
    backend.destroy(ref)  # destroying twice is harmless
    # The label is free again.
    ref2 = backend.generate("doomed", KeyType.RSA2048)
    assert backend.exists(ref2)
    backend.destroy(ref2)


def test_wrong_pin(
    token: tuple[str, str, str], backend: Pkcs11KeyBackend, refs: dict[KeyType, KeyRef]
) -> None:
    module, label, _pin = token
    # Login is shared by the whole process: log the good backend out first, or
    # the token answers "already logged in" without checking the PIN.
    backend.close()
    bad = Pkcs11KeyBackend(module, label, "0000")
    with pytest.raises(ConfigError, match="wrong PIN") as info:
        bad.exists(refs[KeyType.P256])
    assert "0000" not in str(info.value) and "\n" not in str(info.value)
    assert "0000" not in repr(bad)
    # The good backend logs in again on next use.
    assert backend.exists(refs[KeyType.P256])


def test_missing_token(token: tuple[str, str, str]) -> None:
    with pytest.raises(ConfigError, match="no PKCS#11 token 'nope'"):
        Pkcs11KeyBackend(token[0], "nope", token[2]).exists(KeyRef("pkcs11", "x", KeyType.P256))


def test_module_cannot_be_loaded(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="cannot load module"):
        Pkcs11KeyBackend(str(tmp_path / "nope.so"), "t", "1234").exists(
            KeyRef("pkcs11", "x", KeyType.P256)
        )
