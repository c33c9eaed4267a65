"""Validation authority: proves control of names and checks CAA.

The VA owns every outbound lookup and connection made on behalf of an order:
http-01 (``http01.py``), tls-alpn-01 (``tlsalpn01.py``), dns-01 (``dns01.py``),
CAA (``caa.py``, whose decision logic is pure and lives in
``kakuin.policy.caa``), and the DNS resolver they share (``resolver.py``).

Every check returns a ``ValidationRecord``: what was seen, whether it passed,
and (when not) a human-readable reason plus the ACME problem type suffix. The
VA never raises for a failed validation; it raises only for programming errors.
Later work adds DNSSEC status (issue #8, ``ValidationRecord.dnssec``) and
multi-perspective corroboration (issue #6) behind this same interface.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kakuin.clock import Clock
from kakuin.config import VAConfig

if TYPE_CHECKING:
    from kakuin.va.resolver import Resolver

__all__ = ["ValidationAuthority", "ValidationRecord"]


@dataclass(frozen=True, slots=True)
class ValidationRecord:
    """The outcome of one validation or CAA check, kept for audit."""

    method: str  # "http-01" | "dns-01" | "tls-alpn-01" | "caa"
    domain: str
    ok: bool
    at: datetime.datetime
    observed: dict  # what was seen, for audit (JSON-serialisable)
    error: str | None  # human-readable reason when not ok
    # ACME problem type suffix when not ok: "connection", "unauthorized", "dns",
    # "caa", "incorrectResponse", "tls"
    problem: str | None
    dnssec: str | None = None  # "secure" | "insecure" | "bogus" | "indeterminate" (issue #8)


class ValidationAuthority:
    """Entry point for the RA and ACME server; one per process."""

    def __init__(self, config: VAConfig, clock: Clock, *,
                 address_override: Callable[[str], list[str]] | None = None) -> None:
        self.config = config
        self.clock = clock
        self.address_override = address_override
        self._resolver: Resolver | None = None

    @property
    def resolver(self) -> Resolver:
        """The DNS resolver shared by dns-01, CAA and address lookups (built lazily)."""
        if self._resolver is None:
            from kakuin.va.resolver import Resolver

            self._resolver = Resolver.from_config(self.config)
        return self._resolver

    def record(self, method: str, domain: str, *, ok: bool, observed: dict,
               error: str | None = None, problem: str | None = None,
               dnssec: str | None = None) -> ValidationRecord:
        """A ValidationRecord stamped with the VA's clock."""
        return ValidationRecord(method=method, domain=domain, ok=ok, at=self.clock.now(),
                                observed=observed, error=error, problem=problem, dnssec=dnssec)

    async def validate_http01(self, domain: str, token: str,
                              key_authorization: str) -> ValidationRecord:
        from kakuin.va.http01 import validate_http01

        return await validate_http01(self, domain, token, key_authorization)

    async def validate_tlsalpn01(self, domain: str, key_authorization: str) -> ValidationRecord:
        from kakuin.va.tlsalpn01 import validate_tlsalpn01

        return await validate_tlsalpn01(self, domain, key_authorization)

    async def validate_dns01(self, domain: str, key_authorization: str) -> ValidationRecord:
        from kakuin.va.dns01 import validate_dns01

        return await validate_dns01(self, domain, key_authorization)

    async def check_caa(self, domain: str, *, account_uri: str | None, method: str | None,
                        wildcard: bool) -> ValidationRecord:
        """RFC 8659 CAA check; ok=False with problem "caa" (error 338) when forbidden
        or when the lookup fails."""
        from kakuin.va.caa import check_caa

        return await check_caa(self, domain, account_uri=account_uri, method=method,
                               wildcard=wildcard)

    async def resolve_addresses(self, domain: str) -> list[str]:
        """A then AAAA addresses of ``domain``; the test override wins when given.

        Returns [] when the name has no A/AAAA records (or does not exist);
        raises ``kakuin.va.resolver.LookupFailed`` (``.reason``) when no address
        was found and a lookup failed (SERVFAIL, REFUSED, timeout): problem "dns".
        """
        if self.address_override is not None:
            return list(self.address_override(domain))
        return await self.resolver.resolve_addresses(domain)
