"""Revocation of leaf certificates (RFC 5280 §5.3.1 reasons, BR 4.9.1.1).

A keyCompromise revocation puts the key's SPKI hash on the blocklist so that no
certificate is ever issued for that key again (BR 4.9.1.1, PRODUCT.md §12), and
names the other certificates with that key so they can be revoked too.

Every report starts a clock (BR 4.9.1.1): ``report`` opens a revocation request
with its deadline, ``pending`` lists open ones with the time left, ``revoke``
closes them (or opens and closes one in the same transaction). Listeners
(CRL invalidation, OCSP re-signing) are told after commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kakuin.clock import Clock, as_utc
from kakuin.errors import AlreadyRevokedError, KakuinError, PolicyError, Unauthorized
from kakuin.status.models import RevocationRequest
from kakuin.status.repos import RevocationRequestRepo, unrevoked_with_key
from kakuin.store.db import Database
from kakuin.store.models import Certificate
from kakuin.store.repos import BlockedKeyRepo, CertificateRepo

log = logging.getLogger(__name__)

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
        raise PolicyError(f"revocation reason {value!r} is not allowed (allowed: {allowed})", rule="revocation-reason")
    return code


@dataclass(frozen=True, slots=True)
class Revoked:
    serial: str
    reason: int
    revoked_at: dt.datetime
    blocked_key: bool
    # keyCompromise: the other unrevoked certificates with the same key, offered
    # for revocation too (CLI asks, or --all-with-key).
    same_key: tuple[str, ...] = ()
    request_id: int | None = None


@dataclass(frozen=True, slots=True)
class RevocationEvent:
    """Told to listeners (CRL invalidation, OCSP re-signing) after commit."""

    serial: str
    issuer_id: int
    crl_shard: int
    reason: int


@dataclass(frozen=True, slots=True)
class PendingRequest:
    id: int
    serial: str
    reason: int
    reported_at: dt.datetime
    reported_by: str
    deadline: dt.datetime
    time_left: dt.timedelta
    comment: str | None

    @property
    def overdue(self) -> bool:
        return self.time_left <= dt.timedelta(0)


# BR 4.9.1.1: revoke within 24 hours for key compromise (and a subscriber's own
# written request without a reason, or a request that was never authorised);
# within 5 days for the other reasons.
DEADLINE_24H = dt.timedelta(hours=24)
DEADLINE_5D = dt.timedelta(days=5)


def revocation_deadline(reason: int, reported_at: dt.datetime, *, by_subscriber: bool = False) -> dt.datetime:
    """When a reported problem must have been acted on (pure)."""
    urgent = reason == KEY_COMPROMISE or (by_subscriber and reason in (UNSPECIFIED, PRIVILEGE_WITHDRAWN))
    return reported_at + (DEADLINE_24H if urgent else DEADLINE_5D)


Listener = Callable[[list[RevocationEvent]], None]


class RevocationService:
    """Revocation requests and revocations.

    Actors: a subscriber (``actor="acme:…"`` or ``"subscriber:…"``), a registration
    officer of one institution (pass ``actor_institution_id``: certificates of
    other institutions are refused), or the operator (``"operator:…"``, ``"cli"``).
    """

    def __init__(self, db: Database, clock: Clock, listeners: Sequence[Listener] = ()) -> None:
        self.db = db
        self.clock = clock
        self.listeners = list(listeners)

    @staticmethod
    def _check_reason(reason: int | str, comment: str | None) -> int:
        code = parse_reason(reason)
        if code == UNSPECIFIED and not (comment and comment.strip()):
            raise PolicyError("reason 0 (unspecified) needs a comment", rule="revocation-comment")
        return code

    @staticmethod
    def _check_institution(cert: Certificate, actor_institution_id: int | None) -> None:
        if actor_institution_id is not None and cert.institution_id != actor_institution_id:
            raise Unauthorized(f"certificate {cert.serial} does not belong to your institution")

    def report(
        self,
        serial: str,
        reason: int | str,
        *,
        reported_by: str,
        comment: str | None = None,
        actor_institution_id: int | None = None,
        by_subscriber: bool = False,
    ) -> PendingRequest:
        """Record a report of a problem (starts the BR 4.9.1.1 clock) without revoking."""
        code = self._check_reason(reason, comment)
        now = self.clock.now()
        serial = _norm(serial)
        with self.db.session() as s:
            cert = CertificateRepo(s).by_serial(serial)
            self._check_institution(cert, actor_institution_id)
            if cert.revoked_at is not None:
                raise AlreadyRevokedError(f"serial {cert.serial} is already revoked")
            req = RevocationRequestRepo(s).add(
                RevocationRequest(
                    serial=cert.serial,
                    reason=code,
                    reported_at=now,
                    reported_by=reported_by,
                    comment=(comment or "").strip() or None,
                    deadline=revocation_deadline(code, now, by_subscriber=by_subscriber),
                    status="open",
                )
            )
            return _pending(req, now)

    def pending(self) -> list[PendingRequest]:
        """Open requests, soonest deadline first; ``overdue`` when it has passed."""
        now = self.clock.now()
        with self.db.session() as s:
            return [_pending(r, now) for r in RevocationRequestRepo(s).pending()]

    def reject(self, request_id: int, *, actor: str, comment: str) -> None:
        if not comment.strip():
            raise PolicyError("rejecting a revocation request needs a comment", rule="revocation-comment")
        with self.db.session() as s:
            req = RevocationRequestRepo(s).by_id(request_id)
            if req.status != "open":
                raise KakuinError(f"revocation request {request_id} is already {req.status}")
            req.status, req.done_at, req.done_by = "rejected", self.clock.now(), actor
            req.comment = ((req.comment or "") + f"\nrejected: {comment.strip()}").strip()

    def revoke(
        self,
        serial: str,
        reason: int,
        *,
        actor: str,
        comment: str | None = None,
        invalidity_date: dt.datetime | None = None,
        actor_institution_id: int | None = None,
        request_id: int | None = None,
    ) -> Revoked:
        """Revoke one certificate now. Opens and closes a revocation request in the
        same transaction (or closes ``request_id`` and any other open one)."""
        reason = self._check_reason(reason, comment)
        now = self.clock.now()
        if invalidity_date is not None and invalidity_date > now:
            raise PolicyError("the invalidity date cannot be in the future", rule="invalidity-date")
        with self.db.session() as s:
            repo = CertificateRepo(s)
            cert = repo.by_serial(_norm(serial))
            self._check_institution(cert, actor_institution_id)
            if cert.state != "issued":
                raise KakuinError(f"serial {cert.serial} was never issued (state {cert.state})")
            if cert.revoked_at is not None:
                raise AlreadyRevokedError(f"serial {cert.serial} is already revoked")
            if not repo.mark_revoked(
                cert.id,
                revoked_at=now,
                revocation_reason=reason,
                revocation_comment=(comment or "").strip() or None,
                invalidity_date=invalidity_date,
            ):  # another process revoked it since it was read: its revocation stands
                raise AlreadyRevokedError(f"serial {cert.serial} is already revoked")
            requests = RevocationRequestRepo(s)
            if request_id is not None:
                req = requests.by_id(request_id)
                if req.serial != cert.serial or req.status != "open":
                    raise KakuinError(f"revocation request {request_id} is not open for {cert.serial}")
            else:
                req = requests.add(
                    RevocationRequest(
                        serial=cert.serial,
                        reason=reason,
                        reported_at=now,
                        reported_by=actor,
                        comment=(comment or "").strip() or None,
                        deadline=revocation_deadline(reason, now),
                        status="open",
                    )
                )
            for r in [req, *[o for o in requests.open_for(cert.serial) if o.id != req.id]]:
                r.status, r.done_at, r.done_by = "done", now, actor
            blocked = False
            same_key: tuple[str, ...] = ()
            if reason == KEY_COMPROMISE:
                BlockedKeyRepo(s).block(cert.spki_sha256, f"keyCompromise via {actor}", cert.serial, now)
                blocked = True
                same_key = tuple(unrevoked_with_key(s, cert.spki_sha256, cert.serial))
            event = RevocationEvent(cert.serial, cert.issuer_id, cert.crl_shard, reason)
            result = Revoked(cert.serial, reason, now, blocked, same_key, req.id)
        self._tell([event])
        return result

    def key_compromise_proven(self, serial: str, *, actor: str) -> Revoked:
        """The key of an already revoked certificate is shown to be compromised
        (a revocation request signed with it): block the key, and make the
        revocation reason keyCompromise if it was another one (the revocation
        date stays; BR 4.9.1.1 #3, as Boulder's updateRevocationForKeyCompromise).
        ``Revoked.reason`` is 1; ``request_id`` None; raises AlreadyRevokedError
        when the reason was keyCompromise already (the key is blocked either way)."""
        now = self.clock.now()
        with self.db.session() as s:
            repo = CertificateRepo(s)
            cert = repo.by_serial(_norm(serial))
            if cert.revoked_at is None:
                raise KakuinError(f"serial {cert.serial} is not revoked")
            BlockedKeyRepo(s).block(cert.spki_sha256, f"keyCompromise via {actor}", cert.serial, now)
            changed = repo.upgrade_to_key_compromise(cert.id)
            same_key = tuple(unrevoked_with_key(s, cert.spki_sha256, cert.serial))
            event = RevocationEvent(cert.serial, cert.issuer_id, cert.crl_shard, KEY_COMPROMISE)
            result = Revoked(cert.serial, KEY_COMPROMISE, as_utc(cert.revoked_at), True, same_key, None)
        if not changed:
            raise AlreadyRevokedError(f"serial {cert.serial} is already revoked for keyCompromise")
        self._tell([event])
        return result

    def revoke_same_key(self, first: Revoked, *, actor: str) -> list[str]:
        """After a keyCompromise: revoke every other unrevoked certificate with the
        same key now (BR 4.9.1.1 #3 gives 24 hours; Boulder's bad-key-revoker does
        the same). Returns the serials revoked; one revoked meanwhile is skipped."""
        done = []
        for other in first.same_key:
            try:
                self.revoke(other, KEY_COMPROMISE, actor=actor, comment=f"same key as {first.serial} (keyCompromise)")
            except AlreadyRevokedError:
                continue
            done.append(other)
        return done

    def _tell(self, events: list[RevocationEvent]) -> None:
        # After commit: the revocation stands even if a listener fails; the
        # background refresh (CRLs daily, OCSP by status mismatch) catches up.
        for listener in self.listeners:
            try:
                listener(events)
            except Exception:  # noqa: BLE001
                log.exception("revocation listener %r failed", listener)


def _norm(serial: str) -> str:
    return serial.strip().lower().removeprefix("0x").replace(":", "")


def _pending(r: RevocationRequest, now: dt.datetime) -> PendingRequest:
    deadline = as_utc(r.deadline)
    return PendingRequest(
        r.id, r.serial, r.reason, as_utc(r.reported_at), r.reported_by, deadline, deadline - now, r.comment
    )
