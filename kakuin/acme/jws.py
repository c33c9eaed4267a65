"""JWS for ACME (RFC 8555 §6.2, RFC 7515 flattened JSON serialization).

Pure: parses and verifies; looking up accounts and redeeming nonces is the
service's job. Keys are parsed with josepy (RSA, EC) or, for Ed25519, by the
rules of RFC 8037 (josepy 2 has no OKP keys).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

import josepy
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kakuin.acme.errors import BadNonce, BadPublicKey, BadSignatureAlgorithm, Malformed
from kakuin.errors import KeyRuleError, Unauthorized
from kakuin.policy.keys import check_rsa_exponent, check_rsa_modulus

# RFC 8555 §6.2: servers MUST accept ES256 and SHOULD accept EdDSA; RS256 for
# older clients. No "none", no MAC algorithms on the outer JWS.
ALGORITHMS = ("ES256", "ES384", "RS256", "EdDSA")
EAB_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
RSA_MIN, RSA_MAX = 2048, 4096  # Boulder's goodkey bounds for account keys

AccountKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


# RFC 8555 §6.1 / RFC 7515 §2: base64url without padding, nothing else. josepy's
# decoder (and the standard library's) also take "=", "+", "/" and whitespace.
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64d(value: Any, what: str) -> bytes:
    """Strict base64url (RFC 8555 §6.1: "Encoded values that include trailing '='
    characters MUST be rejected"; no other alphabet, no whitespace)."""
    if not isinstance(value, str):
        raise Malformed(f"{what} is not a base64url string")
    if len(value) % 4 == 1 or not _B64URL.fullmatch(value):
        raise Malformed(f"{what} is not valid base64url (unpadded, the URL-safe alphabet only)")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern leaves none
        raise Malformed(f"{what} is not valid base64url") from None


def b64e(data: bytes) -> str:
    return josepy.b64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True)
class ParsedJWS:
    protected_b64: str
    payload_b64: str
    signature: bytes
    header: dict[str, Any]
    payload: bytes

    @property
    def alg(self) -> str:
        return str(self.header.get("alg"))

    @property
    def signing_input(self) -> bytes:
        return f"{self.protected_b64}.{self.payload_b64}".encode("ascii")

    def json(self) -> dict[str, Any]:
        """The payload as a JSON object; POST-as-GET (empty payload) is refused here."""
        try:
            obj = json.loads(self.payload)
        except (ValueError, UnicodeDecodeError):
            raise Malformed("request payload is not valid JSON") from None
        if not isinstance(obj, dict):
            raise Malformed("request payload must be a JSON object")
        return obj

    @property
    def is_post_as_get(self) -> bool:
        return self.payload_b64 == ""


def parse(body: bytes | str | dict[str, Any]) -> ParsedJWS:
    """Flattened JSON serialization only (RFC 8555 §6.2: no compact, no general)."""
    if isinstance(body, dict):
        obj: Any = body
    else:
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise Malformed("request body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise Malformed("request body is not a JWS object")
    if "signatures" in obj or "header" in obj:
        raise Malformed("JWS must use the flattened serialization with a protected header only")
    prot, payload_b64, sig = obj.get("protected"), obj.get("payload"), obj.get("signature")
    if not isinstance(prot, str) or not isinstance(payload_b64, str) or not isinstance(sig, str):
        raise Malformed("JWS needs protected, payload and signature")
    try:
        header = json.loads(b64d(prot, "protected header"))
    except (ValueError, UnicodeDecodeError):
        raise Malformed("protected header is not valid JSON") from None
    if not isinstance(header, dict):
        raise Malformed("protected header is not a JSON object")
    # RFC 7515 §4.1.11: a "crit" extension the recipient does not understand
    # makes the JWS invalid, and kakuin understands none; RFC 8555 §6.2: the
    # unencoded payload option (RFC 7797, "b64") MUST NOT be used.
    if "crit" in header:
        raise Malformed("JWS critical header parameters (crit) are not supported")
    if "b64" in header:
        raise Malformed("the JWS unencoded payload option (b64) must not be used")
    payload = b64d(payload_b64, "payload") if payload_b64 else b""
    return ParsedJWS(prot, payload_b64, b64d(sig, "signature"), header, payload)


def check_header(jws: ParsedJWS, *, url: str, need_nonce: bool = True) -> None:
    """alg allow-list, kid/jwk exclusivity, url and nonce presence (RFC 8555 §6.2-6.5).

    RFC 8555 §6.4: a url that is not the request URL is "unauthorized" (UrlMismatch)."""
    h = jws.header
    if h.get("alg") not in ALGORITHMS:
        raise BadSignatureAlgorithm(f"JWS algorithm {h.get('alg')!r} is not supported")
    if ("kid" in h) == ("jwk" in h):
        raise Malformed("JWS protected header must contain exactly one of kid and jwk")
    if need_nonce and not isinstance(h.get("nonce"), str):
        raise BadNonce("JWS has no nonce")
    if h.get("url") != url:
        raise UrlMismatch(f"JWS url {h.get('url')!r} does not match the request URL {url}")


class UrlMismatch(Unauthorized):
    code = "acme-url-mismatch"


def key_from_jwk(jwk: Any) -> AccountKey:
    """The public key of a JWK, refused (badPublicKey) unless kakuin accepts it."""
    if not isinstance(jwk, dict):
        raise Malformed("jwk must be a JSON object")
    if "d" in jwk or "p" in jwk:
        raise BadPublicKey("jwk contains private key material")
    kty = jwk.get("kty")
    # One key, one spelling (RFC 7518 §6.2.1, §6.3.1: fixed-length coordinates,
    # minimal integers; RFC 8555 §6.1: unpadded base64url), so that the RFC 7638
    # thumbprint, which names an account, cannot differ for the same key.
    members = {"OKP": ("x",), "EC": ("x", "y"), "RSA": ("n", "e")}.get(str(kty), ())
    raw = {m: b64d(jwk.get(m), f"jwk {m}") for m in members}
    if kty == "RSA" and any(len(v) > 1 and v[0] == 0 for v in raw.values()):
        raise BadPublicKey("jwk n and e must be minimal big-endian integers (RFC 7518 §6.3.1)")
    if kty == "EC":
        size = {"P-256": 32, "P-384": 48}.get(str(jwk.get("crv")))
        if size is not None and any(len(v) != size for v in raw.values()):
            raise BadPublicKey(f"jwk x and y of {jwk.get('crv')} are {size} octets (RFC 7518 §6.2.1)")
    try:
        if kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise BadPublicKey(f"OKP curve {jwk.get('crv')!r} is not supported")
            return ed25519.Ed25519PublicKey.from_public_bytes(raw["x"])
        if kty not in ("RSA", "EC"):
            raise BadPublicKey(f"key type {kty!r} is not supported")
        key = josepy.JWK.from_json(jwk).key
    except (josepy.errors.DeserializationError, ValueError, TypeError, KeyError, AttributeError):
        raise BadPublicKey("jwk is not a valid public key") from None
    key = getattr(key, "_wrapped", key)
    if isinstance(key, rsa.RSAPublicKey):
        if not RSA_MIN <= key.key_size <= RSA_MAX or key.key_size % 8:
            raise BadPublicKey(f"RSA account keys must be {RSA_MIN}-{RSA_MAX} bits")
        # The same rules as for a certificate's key (Boulder's goodkey for both):
        # exponent, small factors, ROCA, Fermat.
        try:
            check_rsa_exponent(key.public_numbers().e)
            check_rsa_modulus(key.public_numbers().n)
        except KeyRuleError as exc:
            raise BadPublicKey(exc.message) from None
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise BadPublicKey(f"curve {key.curve.name} is not supported (P-256, P-384)")
        return key
    raise BadPublicKey("unsupported account key")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the key authorization's suffix."""
    if jwk.get("kty") == "OKP":
        members = {k: jwk[k] for k in ("crv", "kty", "x")}  # RFC 8037 §2
    elif jwk.get("kty") == "EC":
        members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    else:
        members = {k: jwk[k] for k in ("e", "kty", "n")}
    canon = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return b64e(hashlib.sha256(canon).digest())


def public_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    """The required members only (what is stored for an account)."""
    keep = {"OKP": ("kty", "crv", "x"), "EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e")}
    return {k: jwk[k] for k in keep.get(str(jwk.get("kty")), ()) if k in jwk}


# alg → (curve, coordinate size, signature algorithm): made once, not per request.
_ECDSA = {
    "ES256": ("secp256r1", 32, ec.ECDSA(hashes.SHA256())),
    "ES384": ("secp384r1", 48, ec.ECDSA(hashes.SHA384())),
}


def verify(jws: ParsedJWS, key: AccountKey) -> None:
    """Check the signature with ``key`` and that alg fits the key (RFC 7518 §3)."""
    alg, data, sig = jws.alg, jws.signing_input, jws.signature
    try:
        if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        elif alg in ("ES256", "ES384") and isinstance(key, ec.EllipticCurvePublicKey):
            want_curve, size, ecdsa = _ECDSA[alg]
            if key.curve.name != want_curve:
                raise BadSignatureAlgorithm(f"{alg} does not match a {key.curve.name} key")
            if len(sig) != 2 * size:
                raise Malformed("JWS signature has the wrong length")
            r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
            key.verify(encode_dss_signature(r, s), data, ecdsa)
        elif alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        else:
            raise BadSignatureAlgorithm(f"JWS algorithm {alg} does not match the key type")
    except InvalidSignature:
        raise Malformed("JWS signature is invalid") from None


def verify_eab(eab: Any, *, url: str, outer_jwk: dict[str, Any], hmac_key_for: Any) -> str:
    """RFC 8555 §7.3.4: the inner JWS is MACed with the credential's key, names the
    kid and the newAccount URL, carries no nonce, and its payload is the account key.

    ``hmac_key_for(kid)`` returns the raw HMAC key or raises. Returns the kid."""
    inner = parse(eab)
    h = inner.header
    if h.get("alg") not in EAB_ALGORITHMS:
        raise BadSignatureAlgorithm(f"EAB algorithm {h.get('alg')!r} is not supported (HS256)")
    if "nonce" in h or "jwk" in h:
        raise Malformed("the EAB JWS must not carry a nonce or a jwk")
    if h.get("url") != url:
        raise Malformed("the EAB JWS url must be the newAccount URL")
    kid = h.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Malformed("the EAB JWS needs a kid")
    try:
        inner_jwk = json.loads(inner.payload)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("the EAB payload is not a JWK") from None
    if not isinstance(inner_jwk, dict) or public_jwk(inner_jwk) != public_jwk(outer_jwk):
        raise Malformed("the EAB payload must be the account key of the outer JWS")
    key = hmac_key_for(kid)
    mac = hmac.new(key, inner.signing_input, EAB_ALGORITHMS[h["alg"]]).digest()
    if not hmac.compare_digest(mac, inner.signature):
        # As Pebble: a binding that does not verify is "unauthorized".
        raise Unauthorized("the external account binding's MAC does not verify")
    return kid
