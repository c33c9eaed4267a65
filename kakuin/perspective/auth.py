"""Signed requests and responses between the CA and its perspectives.

HMAC-SHA256 with a key shared by the CA and one perspective (docs/mpic.md says
why not mutual TLS). A request carries

    X-MPIC-Timestamp: <unix seconds>
    X-MPIC-Nonce: <at least 16 random bytes, base64url>
    Authorization: MPIC-HMAC-SHA256 <base64url HMAC>

over ``MPIC-HMAC-SHA256\\n<METHOD>\\n<path>\\n<timestamp>\\n<nonce>\\n<hex SHA-256 of body>``.
The perspective refuses a timestamp outside the replay window and a nonce it has
already seen inside it. The response is signed over the request's nonce, the
status and the body (``X-MPIC-Response-Signature``), so the CA knows the answer
came from the perspective and belongs to this request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping

__all__ = [
    "AuthError", "NonceCache", "REPLAY_WINDOW", "SCHEME", "sign_request", "sign_response",
    "verify_request", "verify_response",
]

SCHEME = "MPIC-HMAC-SHA256"
REPLAY_WINDOW = 60  # seconds either side of the perspective's clock
MIN_NONCE_BYTES = 16


class AuthError(Exception):
    """A request the perspective must refuse; ``problem`` is the RFC 7807 type suffix."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _request_string(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"{SCHEME}\n{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{digest}".encode()


def _response_string(nonce: str, status: int, body: bytes) -> bytes:
    return f"MPIC-RESPONSE\n{nonce}\n{status}\n{hashlib.sha256(body).hexdigest()}".encode()


def _mac(key: bytes, data: bytes) -> str:
    return _b64(hmac.new(key, data, hashlib.sha256).digest())


def sign_request(key: bytes, method: str, path: str, body: bytes, *,
                 now: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers that authenticate one request."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or _b64(secrets.token_bytes(MIN_NONCE_BYTES))
    sig = _mac(key, _request_string(method, path, timestamp, nonce, body))
    return {"X-MPIC-Timestamp": timestamp, "X-MPIC-Nonce": nonce, "Authorization": f"{SCHEME} {sig}"}


class NonceCache:
    """Nonces seen inside the replay window (thread-safe; pruned as it goes)."""

    def __init__(self, window: int = REPLAY_WINDOW) -> None:
        self.window = window
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, nonce: str, now: float) -> bool:
        """True the first time ``nonce`` is seen within the window."""
        with self._lock:
            if len(self._seen) > 1024:
                horizon = now - 2 * self.window
                self._seen = {n: t for n, t in self._seen.items() if t > horizon}
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


def verify_request(key: bytes, method: str, path: str, headers: Mapping[str, str], body: bytes,
                   nonces: NonceCache, *, now: float | None = None) -> str:
    """Check the signature, the timestamp and the nonce; return the nonce.
    Raises AuthError (unauthenticated, bad-signature, stale-request, replayed-request)."""
    now = time.time() if now is None else now
    auth = headers.get("authorization", "")
    timestamp = headers.get("x-mpic-timestamp", "")
    nonce = headers.get("x-mpic-nonce", "")
    if not auth:
        raise AuthError("unauthenticated", "the request is not signed (no Authorization header)")
    scheme, _, sig = auth.partition(" ")
    if scheme != SCHEME or not sig.strip():
        raise AuthError("unauthenticated", f"Authorization must use the {SCHEME} scheme")
    if not timestamp.isdigit() or not nonce:
        raise AuthError("unauthenticated", "X-MPIC-Timestamp and X-MPIC-Nonce are required")
    try:
        if len(_b64d(nonce)) < MIN_NONCE_BYTES:
            raise ValueError
    except ValueError:
        raise AuthError("unauthenticated", "X-MPIC-Nonce must be ≥ 16 bytes of base64url") from None
    expected = _mac(key, _request_string(method, path, timestamp, nonce, body))
    if not hmac.compare_digest(expected, sig.strip()):
        raise AuthError("bad-signature", "the request signature does not verify")
    skew = abs(now - int(timestamp))
    if skew > nonces.window:
        raise AuthError("stale-request",
                        f"the request timestamp is {skew:.0f}s away from this perspective's clock "
                        f"(window ±{nonces.window}s)")
    if not nonces.claim(nonce, now):
        raise AuthError("replayed-request", "this request (nonce) was already received")
    return nonce


def sign_response(key: bytes, nonce: str, status: int, body: bytes) -> str:
    return _mac(key, _response_string(nonce, status, body))


def verify_response(key: bytes, nonce: str, status: int, body: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    return hmac.compare_digest(sign_response(key, nonce, status, body), signature)
