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
the time check before the table is asked. A row holds the nonce's own mint
time, and rows are purged only once that is older than the lifetime plus twice
the tolerated clock skew, so no process whose clock is within the skew can
take a purged nonce for a fresh one.
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
# Clock difference tolerated between the processes of one installation.
MAX_SKEW = dt.timedelta(seconds=60)


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
        return self.issued(nonce, now) is not None

    def issued(self, nonce: str, now: dt.datetime) -> dt.datetime | None:
        """When the nonce was minted, if it was minted by this installation, is
        well-formed and is not older than the lifetime (nor from the future beyond
        ``MAX_SKEW`` of clock difference between processes); else None.

        Only the canonical spelling is accepted (the decoder would also take
        "+"/"/" and stray low bits in the last character): one nonce, one string,
        one row in acme_nonces."""
        if not isinstance(nonce, str) or len(nonce) != 43:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (binascii.Error, ValueError):
            return None
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != nonce:
            return None
        body, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        issued = int.from_bytes(body[:8], "big") / 1000
        age = now.timestamp() - issued
        if not -MAX_SKEW.total_seconds() <= age <= self.lifetime.total_seconds():
            return None
        return dt.datetime.fromtimestamp(issued, dt.UTC)
