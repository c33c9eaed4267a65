"""ASGI composition: one Starlette app with every HTTP face of kakuin.

Transport only: routes parse, call a service, render. Each package exposes
``routes(ctx)``; this module puts them together and maps errors once.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import Receive, Scope, Send

from kakuin.acme.http import acme_routes
from kakuin.context import Context, default_data_dir
from kakuin.errors import NotFound
from kakuin.http import problem_response
from kakuin.perspective.routes import mpic_routes
from kakuin.ra.http import retrieval_routes
from kakuin.status.http import OCSPEndpoint, status_routes
from kakuin.store.repos import CARepo


def _ca_routes(ctx: Context) -> list[BaseRoute]:
    async def ca_certificate(request: Request) -> Response:
        name: str = request.path_params["name"]
        slug, _, ext = name.rpartition(".")
        if ext not in ("der", "crt", "pem") or not slug:
            return problem_response(404, "about:blank", "no such CA certificate")
        try:
            with ctx.db.session() as s:
                der = CARepo(s).by_slug(slug).der
        except NotFound:
            return problem_response(404, "about:blank", f"no CA named {slug!r}")
        if ext == "pem":
            from cryptography import x509
            from cryptography.hazmat.primitives.serialization import Encoding

            pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
            return Response(pem, media_type="application/x-pem-file")
        # RFC 5280 §4.2.2.1: caIssuers over HTTP serves a DER certificate.
        return Response(der, media_type="application/pkix-cert", headers={"Cache-Control": "public, max-age=86400"})

    async def health(_request: Request) -> Response:
        with ctx.db.session() as s:
            n = len(CARepo(s).all())
        return JSONResponse({"status": "ok", "cas": n})

    return [
        Route("/ca/{name}", ca_certificate, methods=["GET", "HEAD"]),
        Route("/health", health, methods=["GET"]),
    ]


class KakuinApp(Starlette):
    """The Starlette app, with ``/ocsp`` and ``/ocsp/...`` handed to the raw OCSP
    handler before middleware and routing (issue #4: OCSP is the hot path, and
    the handler catches its own errors), and ``/acme/...`` to a router holding
    only the ACME routes (issue #3: the ACME routes turn every exception into a
    problem document themselves, so the app's middleware has nothing to do for
    them, and the ACME table is matched without scanning every portal route).
    An unknown path or method under ``/acme/`` gets the same plain 404/405 as
    from the app."""

    def __init__(self, routes: list[BaseRoute], ocsp: OCSPEndpoint, acme: list[BaseRoute] | None = None) -> None:
        super().__init__(routes=routes)
        self.ocsp = ocsp
        self.acme = Router(routes=acme) if acme else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/ocsp") and (len(path) == 5 or path[5] == "/"):
                await self.ocsp(scope, receive, send)
                return
            if self.acme is not None and path.startswith("/acme/"):
                await self.acme(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(ctx: Context) -> KakuinApp:
    ocsp = OCSPEndpoint(ctx.ocsp, ctx.clock)
    routes: list[BaseRoute] = []
    routes += _ca_routes(ctx)
    acme = acme_routes(ctx)
    routes += acme  # also in the app's table, for a root_path mount
    routes += status_routes(ctx, ocsp)  # also the OCSP routes, for a root_path mount
    routes += retrieval_routes(ctx)
    routes += mpic_routes(ctx)  # GET /metrics (issue #6)
    return KakuinApp(routes, ocsp, acme)


def factory() -> KakuinApp:
    """``uvicorn --factory kakuin.app:factory``: the app of the data directory in
    $KAKUIN_DATA_DIR, already migrated, without the background refresh (CRLs,
    OCSP), which one other process runs (as ``kakuin serve`` does for its
    ``--workers``, ``kakuin.workers``)."""
    data_dir = Path(os.environ["KAKUIN_DATA_DIR"]) if "KAKUIN_DATA_DIR" in os.environ else default_data_dir()
    return create_app(Context.open(data_dir.resolve(), migrate=False))
