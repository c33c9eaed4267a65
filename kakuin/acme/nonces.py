"""Replay nonces (RFC 8555 §6.5): minted without the database, redeemed once by it.

As Boulder's nonce service does, a nonce carries its own proof of origin: 8
bytes of issue time (ms since the epoch), 8 random bytes and the first 16
bytes of an HMAC-SHA256 over both, base64url (43 characters). The MAC key is
derived from the installation secret (the one that seals EAB keys:
``$KAKUIN_EAB_SECRET`` or ``secrets/eab-secret``), so every process of one
installation accepts the nonces of every other, and minting one costs no
database write — a HEAD /new-nonce and every response's Replay-Nonce are free.

Single use is decided by the database: redeeming inserts the nonce into
``acme_nonces`` (primary key) with ON CONFLICT DO NOTHING; only the one insert
that adds the row wins, in any process. A nonce older than the lifetime fails
the time check before the table is asked, so rows older than that are purged
from time to time without reopening a replay.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets

__all__ = ["NonceMint"]

_MAC_BYTES = 16


class NonceMint:
    def __init__(self, key: bytes, lifetime: dt.timedelta) -> None:
        if len(key) < 32:
            raise ValueError("the nonce key must be at least 32 bytes")
        self._key = key
        self.lifetime = lifetime

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def mint(self, now: dt.datetime) -> str:
        body = int(now.timestamp() * 1000).to_bytes(8, "big") + secrets.token_bytes(8)
        return base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode()

    def genuine(self, nonce: str, now: dt.datetime) -> bool:
        """Minted by this installation, well-formed and not older than the lifetime
        (nor from the future beyond a minute of clock skew between processes)."""
        if not isinstance(nonce, str) or len(nonce) != 43:
            return False
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (binascii.Error, ValueError):
            return False
        body, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return False
        issued = int.from_bytes(body[:8], "big") / 1000
        age = now.timestamp() - issued
        return -60 <= age <= self.lifetime.total_seconds()
