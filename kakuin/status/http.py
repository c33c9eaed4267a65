"""HTTP faces of certificate status: CRLs and the OCSP responder.

``GET /crl/{slug}.crl`` (full CRL; a root's is its ARL) and
``GET /crl/{slug}/{shard}.crl`` (partition): DER, ``application/pkix-crl``
(RFC 5280 §4.2.1.13), served from the stored CRL; one invalidated by a
revocation is re-signed on the request (and by the background pass within
30 s otherwise), so ``max-age=60`` keeps any cache within a minute or two.

``/ocsp`` (POST, RFC 6960 Appendix A.1) and ``/ocsp/{base64}`` (GET, URL-decoded
base64 of the DER request): a raw ASGI handler that ``kakuin.app`` calls before
Starlette's middleware and router, with no request object or thread hop on the
hot path — an in-memory hit is parsed (a repeated request: a dict lookup),
looked up and written in a few microseconds. Misses (database, signing) run in
a worker thread. The same answers are served by the lean listener on its own
port (``status.ocsp_server``); ``status.ocsp_front`` holds what both share.
RFC 5019 §6 cache headers: Cache-Control max-age/public/no-transform, ETag,
Last-Modified (thisUpdate), Expires (nextUpdate).

Bad input never gives a 500: an unparsable request is an OCSP malformedRequest
(HTTP 200, as RFC 6960 wants), other methods are 405 and oversized bodies 413
(RFC 7807 problem documents).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kakuin.errors import NotFound
from kakuin.http import offload, problem_response
from kakuin.status.crl import FULL
from kakuin.status.ocsp import OCSPService
from kakuin.status.ocsp_front import (
    ALLOWED_METHODS,
    CONTENT_TYPE,
    MAX_OCSP_REQUEST,
    OCSPFront,
    http_date,
    request_from_get,
)

if TYPE_CHECKING:
    from kakuin.context import Context

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CRL_MAX_AGE = 60


class OCSPEndpoint:
    """Raw ASGI app for ``/ocsp`` and ``/ocsp/{base64}``; ``kakuin.app`` calls it
    before the router and middleware."""

    def __init__(self, service: OCSPService, clock: Any) -> None:
        self.front = OCSPFront(service, clock)
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method in ("GET", "HEAD"):
            path: str = scope["path"]
            i = path.find("/ocsp/")
            try:
                body = request_from_get(path[i + 6 :].encode("ascii")) if i >= 0 else b""
            except UnicodeEncodeError:
                body = b""
        elif method == "POST":
            body_or_none = await self._read_body(scope, receive, send)
            if body_or_none is None:
                return
            body = body_or_none
        else:
            await self._problem(
                send, 405, f"method {method} not allowed: use GET or POST", extra=[(b"allow", ALLOWED_METHODS)]
            )
            return
        answer = self.front.fast(body)
        if answer is None:
            answer = await to_thread.run_sync(self.front.slow, body)
        headers = [
            (b"content-type", CONTENT_TYPE),
            (b"content-length", b"%d" % len(answer.der)),
            *self.front.cache_headers(answer, self.clock.now().timestamp()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else answer.der})

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

    async def _problem(
        self, send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        body = json.dumps({"type": "about:blank", "status": status, "detail": detail}).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            *(extra or []),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def status_routes(ctx: Context, endpoint: OCSPEndpoint | None = None) -> list[BaseRoute]:
    """CRL and OCSP routes; ``endpoint`` is the OCSP handler the app also calls
    before routing (``kakuin.app``), so both share one."""
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
            number, this_update, next_update, der = await offload(crls.current, slug, shard)
        except NotFound as exc:
            return problem_response(404, "about:blank", exc.message)
        etag = f'"{slug}-{shard}-{number}"'
        headers = {
            "Cache-Control": f"public, max-age={CRL_MAX_AGE}, no-transform",
            "ETag": etag,
            "Last-Modified": http_date(this_update),
            "Expires": http_date(min(next_update, ctx.clock.now() + dt.timedelta(seconds=CRL_MAX_AGE))),
        }
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        # RFC 5280 §4.2.1.13: DER, application/pkix-crl
        return Response(b"" if request.method == "HEAD" else der, media_type="application/pkix-crl", headers=headers)

    endpoint = endpoint or OCSPEndpoint(ctx.ocsp, ctx.clock)
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


def warm(ctx: Context) -> None:
    """Load what every request will need before taking any: the issuing CAs'
    signers (decrypting a CA key costs 40-300 ms, which would otherwise land on
    the first requests of each worker) and the pre-issuance linter's container."""
    from kakuin.policy.profiles import Purpose

    now = ctx.clock.now()
    for purpose in Purpose:
        try:
            ctx.authorities.issuing_now(ctx.db, purpose, now)
        except Exception:  # no CA for this purpose (or not yet): nothing to load
            continue
    if ctx.config.policy.lint and ctx.config.acme.enabled:
        ctx.linter.preload()


@contextlib.contextmanager
def refresh_turn(data_dir: Path) -> Iterator[bool]:
    """True for the one process of this data directory that takes this pass.

    The workers of one ``kakuin serve`` start together and refresh every 30 s,
    so without this each pass signed every new certificate's OCSP response and
    every due CRL once per worker. A lock file taken without waiting (released
    by the kernel if its holder dies) lets one worker do the pass and the
    others skip it; servers on other hosts sharing one database still each
    run theirs, and the database keeps that correct (CRL numbers, newest CRL)."""
    try:
        fd = os.open(data_dir / ".status-refresh.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # a read-only data directory: every process refreshes, as before
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def start_background(ctx: Context, interval: float = 30.0) -> threading.Event:
    """Load the CAs' signers and the OCSP responders now (before returning, so a
    worker has its keys before it takes requests), then run ``refresh_once``
    at once and every ``interval`` seconds in a daemon thread; set the returned
    event to stop it. Several processes may run it: CRL numbers come from the
    database and a newer CRL is never replaced by an older one."""
    stop = threading.Event()
    try:
        warm(ctx)
        ctx.ocsp.responders.ensure_all()
    except Exception:
        log.exception("loading the CAs and OCSP responders failed; the refresh will retry")

    def loop() -> None:
        while True:
            try:
                with refresh_turn(ctx.config.data_dir) as mine:
                    if mine:
                        refresh_once(ctx)
            except Exception:
                log.exception("status refresh failed; retrying in %.0f s", interval)
            if stop.wait(interval):
                return

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
