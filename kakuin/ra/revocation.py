"""Revocation of leaf certificates (RFC 5280 §5.3.1 reasons, BR 4.9.1.1).

A keyCompromise revocation puts the key's SPKI hash on the blocklist so that no
certificate is ever issued for that key again (BR 4.9.1.1, PRODUCT.md §12).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from kakuin.clock import Clock
from kakuin.errors import KakuinError, PolicyError
from kakuin.store.db import Database
from kakuin.store.repos import BlockedKeyRepo, CertificateRepo

UNSPECIFIED = 0
KEY_COMPROMISE = 1
AFFILIATION_CHANGED = 3
SUPERSEDED = 4
CESSATION_OF_OPERATION = 5
PRIVILEGE_WITHDRAWN = 9

# BR 7.2.2: the only reasons a subscriber certificate's CRL entry may carry;
# "unspecified" (0) is written by omitting reasonCode.
ALLOWED_REASONS = {
    UNSPECIFIED: "unspecified",
    KEY_COMPROMISE: "keyCompromise",
    AFFILIATION_CHANGED: "affiliationChanged",
    SUPERSEDED: "superseded",
    CESSATION_OF_OPERATION: "cessationOfOperation",
    PRIVILEGE_WITHDRAWN: "privilegeWithdrawn",
}
REASON_BY_NAME = {v.lower(): k for k, v in ALLOWED_REASONS.items()}


def parse_reason(value: str | int) -> int:
    """A reason code from its number or RFC 5280 name (case-insensitive)."""
    if isinstance(value, int) or str(value).isdigit():
        code = int(value)
    else:
        code = REASON_BY_NAME.get(str(value).replace("_", "").replace("-", "").lower(), -1)
    if code not in ALLOWED_REASONS:
        allowed = ", ".join(f"{k} ({v})" for k, v in ALLOWED_REASONS.items())
        raise PolicyError(f"revocation reason {value!r} is not allowed (allowed: {allowed})",
                          rule="revocation-reason")
    return code


@dataclass(frozen=True, slots=True)
class Revoked:
    serial: str
    reason: int
    revoked_at: dt.datetime
    blocked_key: bool


class RevocationService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def revoke(self, serial: str, reason: int, *, actor: str, comment: str | None = None,
               invalidity_date: dt.datetime | None = None) -> Revoked:
        reason = parse_reason(reason)
        if reason == UNSPECIFIED and not (comment and comment.strip()):
            raise PolicyError("reason 0 (unspecified) needs a comment", rule="revocation-comment")
        now = self.clock.now()
        with self.db.session() as s:
            repo = CertificateRepo(s)
            cert = repo.by_serial(serial)
            if cert.state != "issued":
                raise KakuinError(f"serial {cert.serial} was never issued (state {cert.state})")
            if cert.revoked_at is not None:
                raise KakuinError(f"serial {cert.serial} is already revoked")
            repo.mark(cert.id, revoked_at=now, revocation_reason=reason,
                      revocation_comment=(comment or "").strip() or None,
                      invalidity_date=invalidity_date)
            blocked = False
            if reason == KEY_COMPROMISE:
                BlockedKeyRepo(s).block(cert.spki_sha256, f"keyCompromise via {actor}", cert.serial, now)
                blocked = True
        return Revoked(cert.serial, reason, now, blocked)
