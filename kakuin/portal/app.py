"""The portal's ASGI app and its HTTPS server.

Every request passes ``PortalAuth`` first: the client certificate from the
ASGI TLS extension is turned into an ``Identity`` (``kakuin.portal.auth``) or
the request is refused with 403 — an HTML page in Japanese and English for
pages, an RFC 7807 document for ``/api/``. Pages and API routes then read
``request.state.identity`` and call RA services with its Actor.

CSRF: client certificates are ambient credentials (a browser sends them to a
cross-site form POST just as it sends cookies), so every POST is checked.
Pages carry a token bound to the signed-in certificate,
HMAC-SHA256(secret, SPKI hash), in a hidden field; the secret lives in
``secrets/portal-csrf`` (0600), shared by every process of the data dir. The
API accepts only JSON or TSV bodies (``application/json``,
``text/tab-separated-values``), which a cross-site page cannot send without a
CORS preflight that the API never answers; ``Sec-Fetch-Site: cross-site`` is
refused everywhere.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from kakuin.context import Context
from kakuin.http import problem_response
from kakuin.portal.auth import Authenticator, Identity, Refused
from kakuin.portal.i18n import COOKIE, Translator, negotiate
from kakuin.ra.services import RA
from kakuin.secretfile import installation_secret


def _csrf_secret(ctx: Context) -> bytes:
    return installation_secret(ctx.config.data_dir / "secrets" / "portal-csrf")


class Portal:
    """What the pages and API routes share: services, authentication, CSRF, language."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ra = RA(ctx)
        self.auth = Authenticator(ctx, self.ra)
        self._csrf_key = _csrf_secret(ctx)
        from kakuin.ra.certificates import CertificateService

        self.certs = CertificateService(ctx.db, ctx.clock, ctx.revocation, eab=self.ra._eab)

    def csrf_token(self, identity: Identity) -> str:
        mac = hmac.new(self._csrf_key, b"kakuin portal csrf v1:" + identity.spki_sha256.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")

    def csrf_ok(self, identity: Identity, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(identity), str(token))

    @staticmethod
    def lang(request: Request) -> str:
        return negotiate(
            request.query_params.get("lang"), request.cookies.get(COOKIE), request.headers.get("accept-language")
        )


class PortalAuth:
    """Pure ASGI middleware: no identity, no page."""

    def __init__(self, app: Any, portal: Portal) -> None:
        self.app = app
        self.portal = portal

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        api = scope["path"].startswith("/api/")
        if request.headers.get("sec-fetch-site") == "cross-site" and request.method not in ("GET", "HEAD"):
            response: Response = (
                problem_response(403, "urn:kakuin:problem:csrf", "cross-site requests are refused")
                if api
                else HTMLResponse("cross-site request refused", status_code=403)
            )
            await response(scope, receive, send)
            return
        try:
            identity = await asyncio.to_thread(self.portal.auth.identify, scope)
        except Refused as exc:
            await self.refuse(request, exc.reason, api)(scope, receive, send)
            return
        scope.setdefault("state", {})["identity"] = identity
        await self.app(scope, receive, send)

    def refuse(self, request: Request, reason: str, api: bool) -> Response:
        ja, en = Translator("ja"), Translator("en")
        if api:
            return problem_response(
                403,
                "urn:kakuin:problem:client-certificate",
                f"{en('refused.' + reason)} ({ja('refused.' + reason)})",
                title="client certificate refused",
                reason=reason,
            )
        from kakuin.portal.views import render

        lang = Portal.lang(request)
        return render(
            "refused.html",
            request,
            {"reason": reason, "t_ja": ja, "t_en": en},
            lang=lang,
            status=403,
        )


def create_portal_app(ctx: Context) -> Starlette:
    from kakuin.portal.api import api_routes
    from kakuin.portal.views import page_routes

    portal = Portal(ctx)
    routes: list[BaseRoute] = [*api_routes(portal), *page_routes(portal)]
    app = Starlette(routes=routes)
    app.state.portal = portal
    return PortalAuth(app, portal)  # type: ignore[return-value]


class _PortalServer(uvicorn.Server):
    """The second server in the process: the main one owns the signals."""

    def capture_signals(self):  # type: ignore[no-untyped-def,override]
        import contextlib

        return contextlib.nullcontext()


def portal_config(ctx: Context, app: Any | None = None) -> uvicorn.Config:
    from kakuin.portal.tls import ssl_options

    host, _, port = ctx.config.portal.listen.rpartition(":")
    return uvicorn.Config(
        app or create_portal_app(ctx),
        host=host.strip("[]"),
        port=int(port),
        log_level="warning",
        **ssl_options(ctx),
    )


def portal_url(ctx: Context) -> str:
    _host, _, port = ctx.config.portal.listen.rpartition(":")
    return f"https://{ctx.config.portal.server_name}:{port}/"


async def serve_with_portal(main: uvicorn.Config, portal: uvicorn.Config) -> None:
    """Run the main server and the portal in one event loop until the main one stops."""
    main_server, portal_server = uvicorn.Server(main), _PortalServer(portal)
    task = asyncio.create_task(portal_server.serve())
    try:
        await main_server.serve()
    finally:
        portal_server.should_exit = True
        await task
