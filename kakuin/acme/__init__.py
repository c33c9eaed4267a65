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

from dataclasses import dataclass

from kakuin.acme.ari import RenewalInfoService
from kakuin.acme.eab import EABService
from kakuin.acme.orders import OrderFlow
from kakuin.acme.service import ACMEService

__all__ = ["ACME"]


@dataclass(frozen=True, slots=True)
class ACME:
    """The ACME services of one process, built by ``Context.acme``."""

    service: ACMEService
    flow: OrderFlow
    ari: RenewalInfoService
    eab: EABService

    def set_renewal_now(self, serials: list[str], explanation_url: str | None = None) -> int:
        """RFC 9773: tell ACME clients to renew these certificates now (incident tool)."""
        return self.ari.set_renewal_now(serials, explanation_url)
