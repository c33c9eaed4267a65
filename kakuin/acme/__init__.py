"""ACME server (RFC 8555) with External Account Binding and Renewal Information
(RFC 9773), on the foundation's issuance pipeline.

Owns: JWS verification (``jws``), the protocol error mapping (``problems``), the
ACME tables (``models``, revision ``0002_acme``) and their repositories, the
order state machine (``service``, ``orders``), EAB credentials (``eab``), ARI
(``ari``), the Starlette routes (``http``) and the ``eab``/``ari`` CLI (``cli``).
It calls ``kakuin.va`` to validate and check CAA, ``kakuin.ca.issuer`` to issue
and ``kakuin.ra.revocation`` to revoke; it never signs anything itself.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kakuin.acme.ari import RenewalInfoService
    from kakuin.acme.eab import EABService
    from kakuin.acme.orders import OrderFlow
    from kakuin.acme.service import ACMEService
    from kakuin.context import Context

__all__ = ["ACME"]


class ACME:
    """The ACME services of one process (``Context.acme``), built on first use, so
    that ``kakuin eab …`` does not unlock CA keys."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    @cached_property
    def eab(self) -> EABService:
        from kakuin.acme.eab import EABKeyring, EABService

        ctx = self._ctx
        return EABService(ctx.db, ctx.clock, EABKeyring.for_data_dir(ctx.config.data_dir))

    @cached_property
    def service(self) -> ACMEService:
        from kakuin.acme.service import ACMEService

        ctx = self._ctx
        service = ACMEService(ctx.config, ctx.db, ctx.clock, self.eab)
        # ctx.issuance (and its CA keys) only when an order asks for a notAfter.
        service.check_not_after = lambda not_after, now: ctx.issuance.check_not_after(
            ctx.config.acme.profile, not_after, now
        )
        return service

    @cached_property
    def flow(self) -> OrderFlow:
        from kakuin.acme.orders import OrderFlow

        ctx = self._ctx
        return OrderFlow(self.service, ctx.va, ctx.issuance, ctx.revocation)

    @cached_property
    def ari(self) -> RenewalInfoService:
        from kakuin.acme.ari import RenewalInfoService

        return RenewalInfoService(self._ctx.db, self._ctx.clock)

    def set_renewal_now(self, serials: list[str], explanation_url: str | None = None) -> int:
        """RFC 9773: tell ACME clients to renew these certificates now (incident tool)."""
        return self.ari.set_renewal_now(serials, explanation_url)
