"""A small synchronous ACME client for tests: signs JWS with ES256/ES384/RS256/
EdDSA, builds EAB bindings, and lets a test break any part of a request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _int(n: int) -> str:
    return b64(n.to_bytes((n.bit_length() + 7) // 8 or 1, "big"))


@dataclass
class Key:
    private: Any
    alg: str

    @classmethod
    def es256(cls) -> Key:
        return cls(ec.generate_private_key(ec.SECP256R1()), "ES256")

    @classmethod
    def es384(cls) -> Key:
        return cls(ec.generate_private_key(ec.SECP384R1()), "ES384")

    @classmethod
    def rs256(cls) -> Key:
        return cls(rsa.generate_private_key(65537, 2048), "RS256")

    @classmethod
    def eddsa(cls) -> Key:
        return cls(ed25519.Ed25519PrivateKey.generate(), "EdDSA")

    @property
    def jwk(self) -> dict[str, str]:
        pub = self.private.public_key()
        if isinstance(pub, ec.EllipticCurvePublicKey):
            n = pub.public_numbers()
            size = (pub.curve.key_size + 7) // 8
            return {
                "kty": "EC",
                "crv": {256: "P-256", 384: "P-384"}[pub.curve.key_size],
                "x": b64(n.x.to_bytes(size, "big")),
                "y": b64(n.y.to_bytes(size, "big")),
            }
        if isinstance(pub, rsa.RSAPublicKey):
            n = pub.public_numbers()
            return {"kty": "RSA", "n": _int(n.n), "e": _int(n.e)}
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}

    @property
    def thumbprint(self) -> str:
        j = self.jwk
        keep = {
            "EC": ("crv", "kty", "x", "y"),
            "RSA": ("e", "kty", "n"),
            "OKP": ("crv", "kty", "x"),
        }
        canon = json.dumps({k: j[k] for k in keep[j["kty"]]}, sort_keys=True, separators=(",", ":"))
        return b64(hashlib.sha256(canon.encode()).digest())

    def sign(self, data: bytes) -> bytes:
        k = self.private
        if isinstance(k, ec.EllipticCurvePrivateKey):
            h = hashes.SHA256() if self.alg == "ES256" else hashes.SHA384()
            r, s = decode_dss_signature(k.sign(data, ec.ECDSA(h)))
            size = (k.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if isinstance(k, rsa.RSAPrivateKey):
            return k.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return k.sign(data)


def jws(
    key: Key,
    url: str,
    payload: Any,
    *,
    nonce: str | None,
    kid: str | None = None,
    header: dict[str, Any] | None = None,
) -> dict[str, str]:
    prot: dict[str, Any] = {"alg": key.alg, "url": url}
    if nonce is not None:
        prot["nonce"] = nonce
    if kid:
        prot["kid"] = kid
    else:
        prot["jwk"] = key.jwk
    prot.update(header or {})
    p64 = b64(json.dumps(prot).encode())
    pl64 = (
        ""
        if payload is None
        else b64(json.dumps(payload).encode() if not isinstance(payload, bytes) else payload)
    )
    return {"protected": p64, "payload": pl64, "signature": b64(key.sign(f"{p64}.{pl64}".encode()))}


def eab(kid: str, hmac_key: str, jwk: dict[str, str], url: str) -> dict[str, str]:
    p64 = b64(json.dumps({"alg": "HS256", "kid": kid, "url": url}).encode())
    pl64 = b64(json.dumps(jwk).encode())
    mac = hmac.new(b64d(hmac_key), f"{p64}.{pl64}".encode(), hashlib.sha256).digest()
    return {"protected": p64, "payload": pl64, "signature": b64(mac)}


def csr_der(key: Any, names: list[str]) -> bytes:
    b = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    )
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@dataclass
class Client:
    http: httpx.Client
    directory_url: str
    key: Key = field(default_factory=Key.es256)
    kid: str | None = None
    _dir: dict[str, Any] | None = None

    @property
    def dir(self) -> dict[str, Any]:
        if self._dir is None:
            self._dir = self.http.get(self.directory_url).json()
        return self._dir

    def nonce(self) -> str:
        return self.http.head(self.dir["newNonce"]).headers["Replay-Nonce"]

    def post(
        self,
        url: str,
        payload: Any,
        *,
        key: Key | None = None,
        kid: str | None = "self",
        nonce: str | None = "fresh",
        header: dict[str, Any] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        n = self.nonce() if nonce == "fresh" else nonce
        use_kid = self.kid if kid == "self" else kid
        data = (
            body
            if body is not None
            else jws(key or self.key, url, payload, nonce=n, kid=use_kid, header=header)
        )
        return self.http.post(
            url, content=json.dumps(data), headers={"Content-Type": "application/jose+json"}
        )

    def register(
        self, eab_cred: tuple[str, str] | None = None, contact: list[str] | None = None
    ) -> httpx.Response:
        payload: dict[str, Any] = {
            "termsOfServiceAgreed": True,
            "contact": contact or ["mailto:admin@example.ac.jp"],
        }
        if eab_cred:
            payload["externalAccountBinding"] = eab(*eab_cred, self.key.jwk, self.dir["newAccount"])
        r = self.post(self.dir["newAccount"], payload, kid=None)
        if r.status_code in (200, 201):
            self.kid = r.headers["Location"]
        return r

    def new_order(self, names: list[str], **extra: Any) -> httpx.Response:
        return self.post(
            self.dir["newOrder"],
            {"identifiers": [{"type": "dns", "value": n} for n in names], **extra},
        )

    def get(self, url: str) -> httpx.Response:
        return self.post(url, None)

    def wait(self, url: str, until: tuple[str, ...], timeout: float = 20) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            body = self.get(url).json()
            if body.get("status") in until or time.monotonic() > end:
                return body
            time.sleep(0.05)

    def key_authorization(self, token: str) -> str:
        return f"{token}.{self.key.thumbprint}"
