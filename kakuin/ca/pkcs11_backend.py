"""CA keys on a PKCS#11 token (HSM, SoftHSM2 in tests) via python-pkcs11.

Private keys are generated on the token as sensitive and non-extractable, so
their value never leaves it; ``Pkcs11Signer.private_key`` is therefore None and
the issuance pipeline takes the TBS + signature path.

One logged-in R/W session is kept for the life of the process. PKCS#11
sessions must not be used from two threads at once, so every use of it goes
through one lock. The PIN is kept only to log in and is never logged or
put in an error message.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

import pkcs11
from asn1crypto.core import OctetString
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import KeyType as P11KeyType
from pkcs11.exceptions import (
    MultipleTokensReturned,
    NoSuchKey,
    NoSuchToken,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    PKCS11Error,
    UserAlreadyLoggedIn,
)
from pkcs11.util.ec import encode_named_curve_parameters

from kakuin.ca.keystore import KeyRef, KeyType, PublicKey
from kakuin.errors import ConfigError, KakuinError

_RSA_MECHANISMS: dict[str, Mechanism] = {
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}
_CURVE_NAMES: dict[KeyType, str] = {KeyType.P256: "secp256r1", KeyType.P384: "secp384r1"}
# The DER encodings of the curve OIDs, as the token reports them in EC_PARAMS.
_CURVES_BY_PARAMS: dict[bytes, KeyType] = {
    encode_named_curve_parameters(name): kt for kt, name in _CURVE_NAMES.items()
}


def _ec_point(value: bytes, curve: ec.EllipticCurve) -> bytes:
    """The uncompressed point from CKA_EC_POINT.

    The standard says DER OCTET STRING; some tokens return the bare point. Both
    start with 0x04, so tell them apart by the bare point's exact length."""
    bare_len = 1 + 2 * ((curve.key_size + 7) // 8)
    if len(value) == bare_len and value[0] == 0x04:
        return value
    point: bytes = OctetString.load(value).native
    return point


class Pkcs11Signer:
    """Signs with a private key that stays on the token."""

    def __init__(
        self, backend: Pkcs11KeyBackend, ref: KeyRef, key: Any, public_key: PublicKey
    ) -> None:
        self._backend = backend
        self._key = key
        self._public_key = public_key
        self.ref = ref
        self.key_type = ref.key_type

    def public_key(self) -> PublicKey:
        return self._public_key

    def sign(self, data: bytes, hash_alg: hashes.HashAlgorithm) -> bytes:
        """DER ECDSA-Sig-Value or RSA PKCS#1 v1.5, ready for an X.509 signatureValue."""
        if self.key_type.is_rsa:
            mechanism = _RSA_MECHANISMS.get(hash_alg.name)
            if mechanism is None:
                raise KakuinError(f"unsupported hash {hash_alg.name} for RSA key {self.ref}")
            with self._backend._lock:
                return bytes(self._key.sign(data, mechanism=mechanism))
        # Hash here rather than with CKM_ECDSA_SHA384 and friends: plain CKM_ECDSA
        # is the mechanism every token implements, and hashing needs no HSM.
        digester = hashes.Hash(hash_alg)
        digester.update(data)
        digest = digester.finalize()
        with self._backend._lock:
            raw = bytes(self._key.sign(digest, mechanism=Mechanism.ECDSA))
        # PKCS#11 gives r || s, each padded to the field size; X.509 wants DER.
        half = len(raw) // 2
        r = int.from_bytes(raw[:half], "big")
        s = int.from_bytes(raw[half:], "big")
        return encode_dss_signature(r, s)

    @property
    def private_key(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<Pkcs11Signer {self.ref} {self.key_type}>"


class Pkcs11KeyBackend:
    """CA keys on one PKCS#11 token, addressed by CKA_LABEL."""

    name = "pkcs11"

    def __init__(self, module_path: str, token_label: str, pin: str) -> None:
        self._module_path = module_path
        self._token_label = token_label
        self._pin = pin
        # RLock: public methods take it and then call helpers that take it too.
        self._lock = threading.RLock()
        self._session: Any = None
        self._signers: dict[str, Pkcs11Signer] = {}

    def __repr__(self) -> str:  # never show the PIN
        return f"<Pkcs11KeyBackend {self._module_path} token={self._token_label!r}>"

    # -- session ---------------------------------------------------------------

    def _open(self) -> Any:
        """The shared session, opened and logged in on first use."""
        with self._lock:
            if self._session is not None:
                return self._session
            where = f"PKCS#11 token {self._token_label!r} in {self._module_path}"
            try:
                lib = pkcs11.lib(self._module_path)
            except PKCS11Error as exc:
                detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ConfigError(
                    f"keys.pkcs11: cannot load module {self._module_path}: {detail}"
                ) from None
            try:
                token = lib.get_token(token_label=self._token_label)
            except NoSuchToken:
                raise ConfigError(f"keys.pkcs11: no {where}") from None
            except MultipleTokensReturned:
                raise ConfigError(f"keys.pkcs11: more than one {where}") from None
            except PKCS11Error as exc:
                raise ConfigError(
                    f"keys.pkcs11: cannot list tokens: {type(exc).__name__}"
                ) from None
            try:
                session = token.open(rw=True, user_pin=self._pin)
            except UserAlreadyLoggedIn:
                # Login state is per process and token, not per session: another
                # backend here has already logged in, and this session shares it.
                session = token.open(rw=True)
            except (PinIncorrect, PinInvalid, PinLenRange):
                raise ConfigError(f"keys.pkcs11: wrong PIN for {where}") from None
            except PinLocked:
                raise ConfigError(f"keys.pkcs11: PIN locked for {where}") from None
            except PKCS11Error as exc:
                raise ConfigError(
                    f"keys.pkcs11: cannot log in to {where}: {type(exc).__name__}"
                ) from None
            self._session = session
            return session

    def close(self) -> None:
        """Close the session; the next use opens a new one.

        Signers handed out before are bound to the old session: get new ones."""
        with self._lock:
            self._signers.clear()
            if self._session is not None:
                try:
                    self._session.close()
                finally:
                    self._session = None

    # -- lookup ----------------------------------------------------------------

    def _objects(self, label: str, object_class: ObjectClass) -> list[Any]:
        if not label:
            raise ValueError("empty key label")
        with self._lock:
            session = self._open()
            return list(
                session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: label})
            )

    def _private(self, ref: KeyRef) -> Any:
        found = self._objects(ref.label, ObjectClass.PRIVATE_KEY)
        if not found:
            raise KakuinError(f"CA key {ref} is missing (destroyed?)")
        if len(found) > 1:
            raise KakuinError(f"CA key label {ref.label!r} is ambiguous on the token")
        return found[0]

    def _public(self, ref: KeyRef, private: Any) -> PublicKey:
        """The public half as a cryptography key, read from the token's public object."""
        with self._lock:
            session = self._open()
            # Match on CKA_ID too: the label alone could name a stray public key.
            try:
                pub = session.get_key(
                    object_class=ObjectClass.PUBLIC_KEY, label=ref.label, id=private.id
                )
            except NoSuchKey:
                raise KakuinError(f"public key for CA key {ref} is missing") from None
            if ref.key_type.is_rsa:
                if pub.key_type != P11KeyType.RSA:
                    raise KakuinError(f"CA key {ref} on the token is not RSA")
                n = int.from_bytes(pub[Attribute.MODULUS], "big")
                e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
                public: PublicKey = rsa.RSAPublicNumbers(e, n).public_key()
            else:
                if pub.key_type != P11KeyType.EC:
                    raise KakuinError(f"CA key {ref} on the token is not EC")
                curve = _CURVES_BY_PARAMS.get(bytes(pub[Attribute.EC_PARAMS]))
                if curve is None:
                    raise KakuinError(f"CA key {ref} on the token has an unsupported curve")
                point = _ec_point(bytes(pub[Attribute.EC_POINT]), curve.curve)
                public = ec.EllipticCurvePublicKey.from_encoded_point(curve.curve, point)
        if KeyType.of(public) is not ref.key_type:
            raise KakuinError(
                f"CA key {ref} on the token is {KeyType.of(public)}, not {ref.key_type}"
            )
        return public

    # -- KeyBackend --------------------------------------------------------------

    def generate(self, label: str, key_type: KeyType) -> KeyRef:
        ref = KeyRef(self.name, label, key_type)
        key_id = secrets.token_bytes(16)
        private_template = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
        }
        public_template: dict[Attribute, Any] = {Attribute.TOKEN: True, Attribute.VERIFY: True}
        with self._lock:
            session = self._open()
            # Check and create under one lock so two threads cannot both create `label`.
            if self._objects(label, ObjectClass.PRIVATE_KEY) or self._objects(
                label, ObjectClass.PUBLIC_KEY
            ):
                raise KakuinError(f"key {label} already exists")
            if key_type.is_rsa:
                p11_type, length = P11KeyType.RSA, key_type.rsa_bits
                # python-pkcs11 sets the exponent too; spelled out because it is policy.
                public_template[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
            else:
                p11_type, length = P11KeyType.EC, None
                public_template[Attribute.EC_PARAMS] = encode_named_curve_parameters(
                    _CURVE_NAMES[key_type]
                )
            session.generate_keypair(
                p11_type,
                length,
                id=key_id,
                label=label,
                store=True,
                # Signing only: no decrypt/unwrap/derive on a CA key.
                capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                public_template=public_template,
                private_template=private_template,
            )
        return ref

    def signer(self, ref: KeyRef) -> Pkcs11Signer:
        with self._lock:
            cached = self._signers.get(ref.label)
            if cached is not None and cached.ref == ref:
                return cached
            private = self._private(ref)
            signer = Pkcs11Signer(self, ref, private, self._public(ref, private))
            self._signers[ref.label] = signer
            return signer

    def exists(self, ref: KeyRef) -> bool:
        return bool(self._objects(ref.label, ObjectClass.PRIVATE_KEY))

    def destroy(self, ref: KeyRef) -> None:
        with self._lock:
            self._signers.pop(ref.label, None)
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in self._objects(ref.label, object_class):
                    obj.destroy()
