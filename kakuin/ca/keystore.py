"""Key stores for CA keys.

Two backends meet one Protocol:

- ``FileKeyBackend``: encrypted PKCS#8 PEM files (AES-256-CBC, PBKDF2, via
  cryptography's ``BestAvailableEncryption``), passphrase from an environment
  variable or a file, never from the command line. Files are written 0600.
- ``Pkcs11KeyBackend`` (``pkcs11_backend``): keys that never leave an HSM.

A ``Signer`` signs bytes; the issuance pipeline assembles certificates from a
TBS and a signature so that both backends share one path.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from kakuin.errors import ConfigError, KakuinError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class KeyType(enum.StrEnum):
    RSA2048 = "rsa2048"
    RSA3072 = "rsa3072"
    RSA4096 = "rsa4096"
    P256 = "ec-p256"
    P384 = "ec-p384"

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa")

    @property
    def rsa_bits(self) -> int:
        return int(self.value[3:])

    @property
    def curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1() if self is KeyType.P256 else ec.SECP384R1()

    @property
    def signature_hash(self) -> hashes.HashAlgorithm:
        """The hash a CA key of this type signs with.

        BR 7.1.3.2: P-256 → ecdsa-with-SHA256, P-384 → ecdsa-with-SHA384;
        RSA → sha256WithRSAEncryption (PKCS#1 v1.5)."""
        if self is KeyType.P384:
            return hashes.SHA384()
        return hashes.SHA256()

    @classmethod
    def of(cls, key: PublicKey | PrivateKey) -> KeyType:
        if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
            try:
                return cls(f"rsa{key.key_size}")
            except ValueError:
                raise KakuinError(f"unsupported RSA size {key.key_size}") from None
        if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
            name = key.curve.name
            if name == "secp256r1":
                return cls.P256
            if name == "secp384r1":
                return cls.P384
            raise KakuinError(f"unsupported curve {name}")
        raise KakuinError(f"unsupported key {type(key).__name__}")


def generate_private_key(key_type: KeyType) -> PrivateKey:
    if key_type.is_rsa:
        return rsa.generate_private_key(public_exponent=65537, key_size=key_type.rsa_bits)
    return ec.generate_private_key(key_type.curve)


def sign_with(key: PrivateKey, data: bytes, hash_alg: hashes.HashAlgorithm) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hash_alg)
    return key.sign(data, ec.ECDSA(hash_alg))


@dataclass(frozen=True, slots=True)
class KeyRef:
    """Where a CA key lives: backend name, a label unique in it, its type."""

    backend: str
    label: str
    key_type: KeyType

    def __str__(self) -> str:
        return f"{self.backend}:{self.label}"


class Signer(Protocol):
    key_type: KeyType

    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes, hash_alg: hashes.HashAlgorithm) -> bytes:
        """A signature over ``data``: DER ECDSA-Sig-Value or RSA PKCS#1 v1.5."""
        ...

    @property
    def private_key(self) -> PrivateKey | None:
        """The in-memory key when the backend has one (fast path), else None."""
        ...


class KeyBackend(Protocol):
    name: str

    def generate(self, label: str, key_type: KeyType) -> KeyRef: ...

    def signer(self, ref: KeyRef) -> Signer: ...

    def destroy(self, ref: KeyRef) -> None:
        """Delete the key for ever (key destruction ceremony)."""
        ...

    def exists(self, ref: KeyRef) -> bool: ...


class InMemorySigner:
    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self.key_type = KeyType.of(key)

    def public_key(self) -> PublicKey:
        return self._key.public_key()

    def sign(self, data: bytes, hash_alg: hashes.HashAlgorithm) -> bytes:
        return sign_with(self._key, data, hash_alg)

    @property
    def private_key(self) -> PrivateKey | None:
        return self._key

    def __repr__(self) -> str:  # never show key material
        return f"<InMemorySigner {self.key_type}>"


def load_passphrase(env_var: str | None, file: Path | None) -> bytes:
    """The CA key passphrase: from an environment variable, else from a file."""
    if env_var and os.environ.get(env_var):
        return os.environ[env_var].encode()
    if file is not None:
        try:
            data = file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"keys.passphrase_file: cannot read {file}: {exc.strerror}") from None
        if not data:
            raise ConfigError(f"keys.passphrase_file: {file} is empty")
        return data
    raise ConfigError(
        f"no CA key passphrase: set ${env_var or 'KAKUIN_CA_PASSPHRASE'} or keys.passphrase_file in kakuin.toml"
    )


class FileKeyBackend:
    """CA keys as encrypted PKCS#8 PEM files in one directory."""

    name = "file"

    def __init__(self, directory: Path, passphrase: bytes) -> None:
        if len(passphrase) < 12:
            raise ConfigError("CA key passphrase must be at least 12 characters")
        self._dir = directory
        self._passphrase = passphrase
        self._cache: dict[str, InMemorySigner] = {}

    def _path(self, label: str) -> Path:
        if not label or "/" in label or label.startswith("."):
            raise ValueError(f"bad key label {label!r}")
        return self._dir / f"{label}.key.pem"

    def generate(self, label: str, key_type: KeyType) -> KeyRef:
        path = self._path(label)
        if path.exists():
            raise KakuinError(f"key {label} already exists")
        key = generate_private_key(key_type)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._passphrase),
        )
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        self._cache[label] = InMemorySigner(key)
        return KeyRef(self.name, label, key_type)

    def signer(self, ref: KeyRef) -> InMemorySigner:
        cached = self._cache.get(ref.label)
        if cached is not None:
            return cached
        try:
            pem = self._path(ref.label).read_bytes()
        except FileNotFoundError:
            raise KakuinError(f"CA key {ref} is missing (destroyed?)") from None
        try:
            key = serialization.load_pem_private_key(pem, password=self._passphrase)
        except (ValueError, TypeError):
            raise ConfigError(f"cannot decrypt CA key {ref}: wrong passphrase?") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise KakuinError(f"CA key {ref} has an unsupported type")
        signer = InMemorySigner(key)
        self._cache[ref.label] = signer
        return signer

    def exists(self, ref: KeyRef) -> bool:
        return self._path(ref.label).exists()

    def destroy(self, ref: KeyRef) -> None:
        path = self._path(ref.label)
        self._cache.pop(ref.label, None)
        if path.exists():
            # Overwrite before unlinking; on journaling/SSD storage this is best
            # effort, which is why production keys belong in an HSM.
            size = path.stat().st_size
            with open(path, "r+b") as fh:
                fh.write(os.urandom(size))
                fh.flush()
                os.fsync(fh.fileno())
            path.unlink()
