"""The CA's MPIC HTTP face: ``GET /metrics`` (Prometheus text).

``mpic_checks_total{perspective,check,result}`` — result is passed/failed for
the primary, corroborated/disagreed/timeout/error for a remote perspective,
met/refused for the quorum; ``mpic_latency_seconds{perspective}`` — per
perspective, and ``perspective="all"`` for a whole corroborated check (what MPIC
adds to an order is all minus primary).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kakuin.perspective.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from kakuin.context import Context


def mpic_routes(ctx: Context) -> list[BaseRoute]:
    async def metrics(_request: Request) -> Response:
        m = getattr(ctx.va, "metrics", None) if ctx.config.mpic.enabled else None
        return Response((m or Metrics("mpic")).render(), media_type=CONTENT_TYPE)

    return [Route("/metrics", metrics, methods=["GET"])]
