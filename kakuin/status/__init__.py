"""Certificate status: revocation requests, CRLs and the OCSP responder.

``crl`` builds (partitioned) CRLs fast, ``responder`` keeps a delegated OCSP
responder certificate per issuer, ``ocsp`` pre-signs and serves responses,
``http`` exposes both over plain HTTP, ``ocsp_server`` is the lean OCSP-only
listener (``[server] ocsp_port``), ``ocsp_front`` what both OCSP faces share,
``models``/``repos`` hold their tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kakuin.context import Context
    from kakuin.ra.revocation import RevocationEvent


def status_listener(ctx: Context) -> Callable[[list[RevocationEvent]], None]:
    """What a revocation sets off: its CRLs are invalidated (re-signed on the next
    request or background pass, within a minute) and its OCSP responses re-signed
    at once."""

    def on_revoked(events: list[RevocationEvent]) -> None:
        for e in events:
            ctx.crls.invalidate(e.issuer_id, e.crl_shard)
        ctx.ocsp.on_revoked([e.serial for e in events])

    return on_revoked
