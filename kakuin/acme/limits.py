"""ACME rate limits (RFC 8555 §6.6 ``rateLimited``), as Boulder has them.

A runaway client (a certbot cron loop, a broken script) is stopped at newOrder,
before anything is stored. Four limits, each counted by the database (so every
kakuin process sees the others' requests), in the newOrder transaction:

- failed validations per account per hostname per hour (Boulder: 5);
- new orders per account per 3 hours (Boulder: 300), renewals (RFC 9773
  ``replaces``) exempt, as Boulder's;
- pending, unexpired authorizations per account (Boulder: 1,000);
- certificates for exactly the same set of names per 7 days, whichever
  account ordered them (Boulder: 5), renewals included: a renewal's new
  certificate can itself be replaced, so exempting RFC 9773 ``replaces``
  orders would let a client loop (Let's Encrypt counts them too).

Counts come from ``ACMELedger.limit_counts`` (one statement, indexed);
this module is pure: it compiles the settings and judges the counts.
Refusals carry the seconds until the oldest counted event leaves the window
(Retry-After). Accounts bound to an EAB credential in ``exempt_kids`` are not
limited.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

from kakuin.acme.errors import RateLimited
from kakuin.clock import as_utc
from kakuin.config import ACMELimitsConfig

# Boulder's windows (ratelimits/defaults): FailedAuthorizationsPerDomainPerAccount
# 1h, NewOrdersPerAccount 3h, CertificatesPerFQDNSet 7 days.
FAILED_VALIDATIONS_WINDOW = dt.timedelta(hours=1)
NEW_ORDERS_WINDOW = dt.timedelta(hours=3)
DUPLICATE_WINDOW = dt.timedelta(days=7)


def names_hash(names: Iterable[str]) -> str:
    """The exact set of names, as one value: SHA-256 of the sorted, lowercased,
    distinct names joined by commas (Boulder's fqdnSet hash, in hex)."""
    return hashlib.sha256(",".join(sorted({n.lower() for n in names})).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Limits:
    """The compiled ``[acme.limits]``; 0 = unlimited."""

    failed_validations: int
    new_orders: int
    pending_authorizations: int
    duplicate_certificates: int
    exempt_kids: frozenset[str]

    @classmethod
    def from_config(cls, cfg: ACMELimitsConfig) -> Limits:
        return cls(
            cfg.failed_validations,
            cfg.new_orders,
            cfg.pending_authorizations,
            cfg.duplicate_certificates,
            frozenset(cfg.exempt_kids),
        )

    @property
    def any(self) -> bool:
        return bool(
            self.failed_validations
            or self.new_orders
            or self.pending_authorizations
            or self.duplicate_certificates
        )


@dataclass(frozen=True, slots=True)
class LimitQuery:
    """What to count for one newOrder. ``names_hash`` None: no duplicate check.
    ``renewal``: an RFC 9773 ``replaces`` order, exempt from the new-orders
    limit as Boulder exempts renewals from its per-account order limit; it
    still counts as a duplicate certificate."""

    limits: Limits
    account_id: int
    identifiers: tuple[str, ...]  # authorization identifiers (without "*.")
    names_hash: str | None
    now: dt.datetime
    order_lifetime: dt.timedelta  # an order issued in the window was made at most this earlier
    renewal: bool = False

    @property
    def failed_since(self) -> dt.datetime:
        return self.now - FAILED_VALIDATIONS_WINDOW

    @property
    def orders_since(self) -> dt.datetime:
        return self.now - NEW_ORDERS_WINDOW

    @property
    def issued_since(self) -> dt.datetime:
        return self.now - DUPLICATE_WINDOW


@dataclass(frozen=True, slots=True)
class Count:
    """One row of ``limit_counts``: kind is failed|orders|pending|duplicate;
    name is the identifier for failed; oldest is the event that leaves first
    (for pending: the earliest expiry)."""

    kind: str
    name: str | None
    n: int
    oldest: dt.datetime | None


def _seconds_until(at: dt.datetime | None, now: dt.datetime) -> int:
    if at is None:
        return 1
    return max(1, math.ceil((as_utc(at) - now).total_seconds()))


def enforce(q: LimitQuery, counts: Iterable[Count]) -> None:
    """Raise RateLimited for the first limit the counts reach (the new order
    would be one over it)."""
    lim, now = q.limits, q.now
    for c in sorted(counts, key=lambda c: ("failed", "pending", "orders", "duplicate").index(c.kind)):
        if c.kind == "failed" and lim.failed_validations and c.n >= lim.failed_validations:
            wait = _seconds_until(c.oldest and as_utc(c.oldest) + FAILED_VALIDATIONS_WINDOW, now)
            raise RateLimited(
                f"too many failed validations for {c.name}: {c.n} by this account in the "
                f"last hour (limit: {lim.failed_validations} failed validations per account "
                f"per hostname per hour); retry after {wait} seconds",
                wait,
            )
        if c.kind == "pending" and lim.pending_authorizations and c.n >= lim.pending_authorizations:
            wait = _seconds_until(c.oldest, now)
            raise RateLimited(
                f"too many pending authorizations: this account has {c.n} (limit: "
                f"{lim.pending_authorizations} pending authorizations per account, until "
                f"they are validated, deactivated or expire); retry after {wait} seconds",
                wait,
            )
        if c.kind == "orders" and lim.new_orders and c.n >= lim.new_orders:
            wait = _seconds_until(c.oldest and as_utc(c.oldest) + NEW_ORDERS_WINDOW, now)
            raise RateLimited(
                f"too many new orders: {c.n} by this account in the last 3 hours (limit: "
                f"{lim.new_orders} new orders per account per 3 hours); "
                f"retry after {wait} seconds",
                wait,
            )
        if c.kind == "duplicate" and lim.duplicate_certificates and c.n >= lim.duplicate_certificates:
            wait = _seconds_until(c.oldest and as_utc(c.oldest) + DUPLICATE_WINDOW, now)
            raise RateLimited(
                f"too many certificates for exactly this set of names: {c.n} issued in the "
                f"last 7 days (limit: {lim.duplicate_certificates} duplicate certificates per "
                f"7 days, renewals included); "
                f"retry after {wait} seconds",
                wait,
            )
