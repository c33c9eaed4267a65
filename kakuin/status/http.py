"""HTTP faces of certificate status: CRLs and the OCSP responder.

``GET /crl/{slug}.crl`` (full CRL; a root's is its ARL) and
``GET /crl/{slug}/{shard}.crl`` (partition): DER, ``application/pkix-crl``
(RFC 5280 §4.2.1.13), served from the stored CRL; one invalidated by a
revocation is re-signed on the request (and by the background pass within
30 s otherwise), so ``max-age=60`` keeps any cache within a minute or two.

``/ocsp`` (POST, RFC 6960 Appendix A.1) and ``/ocsp/{base64}`` (GET, URL-decoded
base64 of the DER request): a raw ASGI handler, no Starlette request object,
middleware or thread hop on the hot path — an in-memory hit is parsed, looked up
and written in a few microseconds. Misses (database, signing) run in a worker
thread. RFC 5019 §6 cache headers: Cache-Control max-age/public/no-transform,
ETag, Last-Modified (thisUpdate), Expires (nextUpdate).

Bad input never gives a 500: an unparsable request is an OCSP malformedRequest
(HTTP 200, as RFC 6960 wants), other methods are 405 and oversized bodies 413
(RFC 7807 problem documents).
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.utils
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kakuin.errors import NotFound
from kakuin.http import problem_response
from kakuin.status.crl import FULL
from kakuin.status.ocsp import INTERNAL_ERROR, MALFORMED_REQUEST, Answer, OCSPService

if TYPE_CHECKING:
    from kakuin.context import Context

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_OCSP_REQUEST = 4096  # a single-CertID request with a nonce is ~100 bytes
OCSP_MAX_AGE = 3600  # caches re-ask hourly; revocations also re-sign at once
CRL_MAX_AGE = 60


def _http_date(t: dt.datetime) -> str:
    return email.utils.format_datetime(t.astimezone(dt.UTC), usegmt=True)


class OCSPEndpoint:
    """Raw ASGI app for ``/ocsp`` and ``/ocsp/{base64}``."""

    def __init__(self, service: OCSPService, clock: Any) -> None:
        self.service = service
        self.clock = clock
        self._headers: dict[str, tuple[list[tuple[bytes, bytes]], float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method in ("GET", "HEAD"):
            path: str = scope["path"]
            encoded = path[path.find("/ocsp") + 6:] if "/ocsp/" in path else ""
            try:
                # RFC 6960 A.1: url-encoding of base64 encoding of the DER request
                body = binascii.a2b_base64(encoded.encode("ascii") + b"==")
            except (binascii.Error, UnicodeEncodeError):
                body = b""
        elif method == "POST":
            body_or_none = await self._read_body(scope, receive, send)
            if body_or_none is None:
                return
            body = body_or_none
        else:
            await self._problem(send, 405, f"method {method} not allowed: use GET or POST",
                                extra=[(b"allow", b"GET, HEAD, POST")])
            return
        if not body:
            await self._send(send, Answer(MALFORMED_REQUEST), method == "HEAD")
            return
        service = self.service
        parsed = service.parse(body)
        if isinstance(parsed, Answer):
            await self._send(send, parsed, method == "HEAD")
            return
        key, nonce = parsed
        answer = service.cached(key) if nonce is None else None
        if answer is None:
            try:
                answer = await to_thread.run_sync(service.respond, body)
            except Exception:
                log.exception("OCSP response failed")
                answer = Answer(INTERNAL_ERROR)
        await self._send(send, answer, method == "HEAD")

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > MAX_OCSP_REQUEST
                except ValueError:
                    too_big = False
                if too_big:
                    await self._problem(send, 413, f"an OCSP request is at most {MAX_OCSP_REQUEST} bytes")
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_OCSP_REQUEST:
                await self._problem(send, 413, f"an OCSP request is at most {MAX_OCSP_REQUEST} bytes")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _cache_headers(self, answer: Answer) -> list[tuple[bytes, bytes]]:
        if not answer.cacheable or answer.next_update is None or answer.this_update is None:
            return [(b"cache-control", b"no-store")]
        now = self.clock.now()
        hit = self._headers.get(answer.etag)
        if hit is None:
            if len(self._headers) > 100_000:
                self._headers.clear()
            fixed = [(b"etag", answer.etag.encode()),
                     (b"last-modified", _http_date(answer.this_update).encode()),
                     (b"expires", _http_date(answer.next_update).encode())]
            hit = self._headers[answer.etag] = (fixed, answer.next_update.timestamp())
        fixed, expires = hit
        max_age = max(0, min(OCSP_MAX_AGE, int(expires - now.timestamp())))
        cc = f"max-age={max_age}, public, no-transform, must-revalidate".encode()
        return [(b"cache-control", cc), *fixed]

    async def _send(self, send: Send, answer: Answer, head: bool) -> None:
        headers = [(b"content-type", b"application/ocsp-response"),
                   (b"content-length", str(len(answer.der)).encode()), *self._cache_headers(answer)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else answer.der})

    async def _problem(self, send: Send, status: int, detail: str,
                       extra: list[tuple[bytes, bytes]] | None = None) -> None:
        body = json.dumps({"type": "about:blank", "status": status, "detail": detail}).encode()
        headers = [(b"content-type", b"application/problem+json"),
                   (b"content-length", str(len(body)).encode()), *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def status_routes(ctx: Context) -> list[BaseRoute]:
    crls = ctx.crls

    async def crl(request: Request) -> Response:
        name: str = request.path_params["name"]
        slug, shard = name, FULL
        if "/" in name:
            slug, _, part = name.partition("/")
            if not part.endswith(".crl") or not part[:-4].isdigit():
                return problem_response(404, "about:blank", f"no CRL at /crl/{name}")
            shard = int(part[:-4])
        elif name.endswith(".crl"):
            slug = name[:-4]
        else:
            return problem_response(404, "about:blank", f"no CRL at /crl/{name}")
        try:
            number, this_update, next_update, der = await run_in_threadpool(crls.current, slug, shard)
        except NotFound as exc:
            return problem_response(404, "about:blank", exc.message)
        etag = f'"{slug}-{shard}-{number}"'
        headers = {
            "Cache-Control": f"public, max-age={CRL_MAX_AGE}, no-transform",
            "ETag": etag,
            "Last-Modified": _http_date(this_update),
            "Expires": _http_date(min(next_update, ctx.clock.now() + dt.timedelta(seconds=CRL_MAX_AGE))),
        }
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        # RFC 5280 §4.2.1.13: DER, application/pkix-crl
        return Response(b"" if request.method == "HEAD" else der, media_type="application/pkix-crl",
                        headers=headers)

    endpoint = OCSPEndpoint(ctx.ocsp, ctx.clock)
    return [
        Route("/crl/{name:path}", crl, methods=["GET", "HEAD"]),
        Route("/ocsp", endpoint),
        Route("/ocsp/{request:path}", endpoint),
    ]


def refresh_once(ctx: Context) -> None:
    """One background pass: responders renewed, CRLs re-signed when due or
    invalidated, OCSP responses pre-signed or refreshed."""
    from kakuin.ca.rotation import RotationService

    RotationService(ctx).apply_due()  # scheduled CA revocations reach their root's ARL (issue #7)
    ctx.ocsp.responders.ensure_all()
    ctx.crls.refresh_due()
    while ctx.ocsp.refresh_due(limit=500) == 500:
        pass


def start_background(ctx: Context, interval: float = 30.0) -> threading.Event:
    """Run ``refresh_once`` now and every ``interval`` seconds in a daemon thread;
    set the returned event to stop it. Several processes may run it: CRL numbers
    come from the database and a newer CRL is never replaced by an older one."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                refresh_once(ctx)
            except Exception:
                log.exception("status refresh failed; retrying in %.0f s", interval)
            stop.wait(interval)

    threading.Thread(target=loop, name="kakuin-status-refresh", daemon=True).start()
    return stop


def app_factory() -> Any:
    """``uvicorn --factory kakuin.status.http:app_factory`` (several workers):
    the app of the data dir in $KAKUIN_DATA_DIR, with the background refresh."""
    from kakuin.app import create_app
    from kakuin.context import Context

    ctx = Context.open(Path(os.environ.get("KAKUIN_DATA_DIR", "kakuin-data")).resolve())
    if os.environ.get("KAKUIN_STATUS_REFRESH", "1") != "0":
        start_background(ctx)
    return create_app(ctx)
