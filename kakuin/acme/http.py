"""ACME over HTTP (RFC 8555): thin routes. Each one authenticates the JWS,
calls one service method and renders the object; errors become problem
documents through ``kakuin.acme.problems`` only. Every response to a POST
carries a fresh Replay-Nonce (§6.5) and a Link to the directory (§7.1).

The database work of a request (authentication, nonce, the service call) runs
as one step (``authed``): on the event loop with SQLite, in one thread-pool hop
with PostgreSQL (``kakuin.http.run_database_work``, ``DatabaseConfig.work``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import Receive, Scope, Send

from kakuin.acme import objects
from kakuin.acme.chains import certificate_chains
from kakuin.acme.errors import Malformed, UnsupportedMediaType
from kakuin.acme.problems import problem_for
from kakuin.acme.service import Authenticated
from kakuin.errors import KakuinError, NotFound
from kakuin.http import BodyTooLarge, problem_response, read_body, run_database_work

if TYPE_CHECKING:
    from kakuin.context import Context

log = logging.getLogger(__name__)
JOSE = "application/jose+json"
# A JWS body: a finalize with a 16k-bit RSA CSR and 100 names is well under this.
MAX_JWS_BYTES = 256 * 1024
Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")
# The nonce for this request's response, issued in the authentication transaction.
_NEXT_NONCE: ContextVar[str | None] = ContextVar("acme_next_nonce", default=None)


def acme_routes(ctx: Context) -> list[BaseRoute]:
    if not ctx.config.acme.enabled:
        return []
    acme, flow, ari = ctx.acme.service, ctx.acme.flow, ctx.acme.ari
    inline = flow.inline_db  # database work on the loop or in a thread (DatabaseConfig.work)
    urls = acme.urls
    index_link = f'<{urls.directory}>;rel="index"'

    async def nonce_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
        nonce = _NEXT_NONCE.get()
        if nonce is not None:
            _NEXT_NONCE.set(None)  # issued with the request's redemption; use it once
        else:
            nonce = acme.new_nonce()  # minted, not stored: no database work
        h = {"Replay-Nonce": nonce, "Link": index_link, "Cache-Control": "no-store"}
        if headers:
            h.update(headers)
        return h

    def guarded(fn: Handler) -> Handler:
        async def wrapper(request: Request) -> Response:
            try:
                return await fn(request)
            except Exception as exc:
                p = problem_for(exc)
                if p.status >= 500:
                    log.exception("ACME %s %s failed", request.method, request.url.path)
                elif not isinstance(exc, KakuinError):  # pragma: no cover
                    log.warning("ACME refusal %s", type(exc).__name__)
                headers = await nonce_headers(p.headers)
                return problem_response(p.status, p.type, p.detail, headers=headers, **p.extra)

        return wrapper

    async def authed(
        request: Request, work: Callable[[Authenticated], T], use: str = "kid"
    ) -> tuple[Authenticated, T]:
        """Authenticate the POST and run ``work`` on it, in one database-work step
        (``run_database_work``: on the event loop or in one thread-pool hop).
        The response's nonce, issued with the redemption, is kept for the
        response even when ``work`` refuses."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != JOSE:
            raise UnsupportedMediaType(f"Content-Type must be {JOSE}")
        try:
            body = await read_body(request, MAX_JWS_BYTES)
        except BodyTooLarge as exc:
            raise Malformed(str(exc)) from None
        query = request.scope.get("query_string", b"")
        url = urls.base + request.scope["path"] + (f"?{query.decode('latin-1')}" if query else "")
        issued: list[str | None] = []

        def job() -> tuple[Authenticated, T]:
            with acme.ledger.pinned():  # one pooled connection for the whole request
                req = acme.authenticate(body, url, use=use)
                issued.append(req.next_nonce)
                return req, work(req)

        try:
            return await run_database_work(inline, job)
        finally:
            if issued:
                _NEXT_NONCE.set(issued[0])

    async def json_response(body: Any, status: int = 200, **headers: str) -> Response:
        return JSONResponse(body, status_code=status, headers=await nonce_headers(headers))

    # -- directory and nonces --------------------------------------------------
    cfg = ctx.config.acme
    meta: dict[str, Any] = {
        "externalAccountRequired": cfg.external_account_required,
        "caaIdentities": list(ctx.config.va.caa_identities),
    }
    if cfg.terms_of_service:
        meta["termsOfService"] = cfg.terms_of_service
    if cfg.website:
        meta["website"] = cfg.website
    # The directory is the same for every request: rendered once.
    directory_body = json.dumps(
        {
            "newNonce": urls.new_nonce,
            "newAccount": urls.new_account,
            "newOrder": urls.new_order,
            "revokeCert": urls.revoke_cert,
            "keyChange": urls.key_change,
            "renewalInfo": urls.renewal_info,
            "meta": meta,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()

    def post_as_get(req: Authenticated) -> None:
        if not req.jws.is_post_as_get:
            raise Malformed('a POST-as-GET has the empty payload ""')

    async def directory(request: Request) -> Response:
        if request.method == "POST":  # RFC 8555 §6.3: POST-as-GET is allowed too
            await authed(request, post_as_get)
            return Response(directory_body, media_type="application/json", headers=await nonce_headers())
        return Response(directory_body, media_type="application/json")

    async def new_nonce(request: Request) -> Response:
        # RFC 8555 §7.2: HEAD → 200, GET → 204; §6.3: POST-as-GET is allowed too
        # (200, as Boulder): its nonce is the one issued with the redemption.
        if request.method == "POST":
            await authed(request, post_as_get)
        status = 204 if request.method == "GET" else 200
        return Response(status_code=status, headers=await nonce_headers())

    # -- accounts --------------------------------------------------------------
    async def new_account(request: Request) -> Response:
        req, (account, created) = await authed(request, acme.new_account, use="jwk")
        headers = {"Location": urls.account(account.id)}
        body = objects.account(urls, account)
        if created and account.eab_credential_id is not None:
            # RFC 8555 §7.3.4: the account object returned MUST include the
            # verified binding as it was sent (a MAC, never the key).
            body["externalAccountBinding"] = req.payload()["externalAccountBinding"]
        return await json_response(body, 201 if created else 200, **headers)

    async def account(request: Request) -> Response:
        aid = request.path_params["id"]
        _, a = await authed(request, lambda req: acme.update_account(req, aid))
        return await json_response(objects.account(urls, a))

    async def account_orders(request: Request) -> Response:
        cursor = request.query_params.get("cursor")
        before = int(cursor) if cursor and cursor.isdigit() else None
        aid = request.path_params["id"]
        _, (ids, nxt) = await authed(request, lambda req: acme.orders(req, aid, before))
        extra = {}
        if nxt is not None:
            extra["Link"] = f'<{urls.orders(request.path_params["id"])}?cursor={nxt}>;rel="next"'
        resp = await json_response({"orders": [urls.order(i) for i in ids]})
        if extra:
            resp.headers.append("Link", extra["Link"])
        return resp

    async def key_change(request: Request) -> Response:
        _, a = await authed(request, acme.key_change)
        return await json_response(objects.account(urls, a))

    # -- orders, authorizations, challenges ---------------------------------------
    def retry_after(status: str) -> dict[str, str]:
        return {"Retry-After": "1"} if status in ("pending", "processing") else {}

    async def new_order(request: Request) -> Response:
        _, v = await authed(request, acme.new_order)
        return await json_response(objects.order(urls, v), 201, Location=urls.order(v.order.id))

    async def order(request: Request) -> Response:
        oid = request.path_params["id"]
        _, v = await authed(request, lambda req: acme.order(req.acct.id, oid))
        return await json_response(objects.order(urls, v), **retry_after(v.status))

    async def finalize(request: Request) -> Response:
        oid = request.path_params["id"]
        req, (view, key, cns) = await authed(request, lambda req: flow.check_finalize(req, oid))
        v = await flow.complete_finalize(req.acct, view, key, cns)
        return await json_response(
            objects.order(urls, v), Location=urls.order(v.order.id), **retry_after(v.status)
        )

    async def authz(request: Request) -> Response:
        aid = request.path_params["id"]

        def work(req: Authenticated) -> Any:
            if not req.jws.is_post_as_get:
                acme.deactivate_authz(req, aid)
            return acme.authz(req.acct.id, aid)

        _, (a, chals) = await authed(request, work)
        body = objects.authorization(urls, a, chals, ctx.clock.now())
        busy = any(c.status == "processing" for c in chals)
        return await json_response(body, **retry_after("processing" if busy else body["status"]))

    async def challenge(request: Request) -> Response:
        cid = request.path_params["id"]

        def work(req: Authenticated) -> Any:
            if not req.jws.is_post_as_get:
                # RFC 8555 §7.5.1: the response is a JSON object ({} for the three
                # challenge types here); fields it does not define MUST be ignored.
                req.payload()
            return flow.respond(req, cid)

        req, (started, c, a) = await authed(request, work)
        if started:
            # Validate now and, if that is quick, answer with the outcome (as step-ca
            # does): the client's first poll then finds the authorization decided
            # instead of sleeping on "processing". The validation runs in its own
            # task, so a slow one still finishes after this answer ("processing").
            task = flow.start_validation(req.acct, c, a)
            done, _ = await asyncio.wait({task}, timeout=cfg.validation_wait_seconds)
            if done and not task.exception():
                c = task.result()
        resp = await json_response(objects.challenge(urls, c), **retry_after(c.status))
        resp.headers.append("Link", f'<{urls.authz(a.id)}>;rel="up"')
        return resp

    # -- certificates ---------------------------------------------------------------
    # Chains by issuing CA, kept a minute: CA certificates never change, and an
    # alternate chain added later (a cross-sign) is served within the minute.
    chain_cache: dict[int, tuple[float, list[tuple[bytes, str]]]] = {}

    def chains_pem(cert: Any) -> list[tuple[bytes, str]]:
        now = time.monotonic()
        hit = chain_cache.get(cert.issuer_id)
        if hit is not None and now - hit[0] < 60:
            return hit[1]
        with ctx.db.session() as s:
            chains = [
                (b"".join(c.public_bytes(Encoding.PEM) for c in ch.certificates), ch.issuer_slug)
                for ch in certificate_chains(s, cert)
            ]
        chain_cache[cert.issuer_id] = (now, chains)
        return chains

    async def certificate(request: Request) -> Response:
        serial: str = request.path_params["serial"].lower()
        n: int = request.path_params.get("n", 0)

        def load(_req: Authenticated | None = None) -> tuple[bytes, list[str], str]:
            row = flow.certificate(serial)
            chains = chains_pem(row)
            if n >= len(chains):
                raise NotFound("no such chain")
            leaf = x509.load_der_x509_certificate(row.der)
            pem = leaf.public_bytes(Encoding.PEM) + chains[n][0]
            alts = [urls.certificate(serial, i) for i in range(len(chains)) if i != n]
            return pem, alts, urls.ca_certificate(chains[n][1])

        def load_as_get(req: Authenticated) -> tuple[bytes, list[str], str]:
            post_as_get(req)
            return load(req)

        _, (pem, alts, up) = await authed(request, load_as_get)
        resp = Response(pem, media_type="application/pem-certificate-chain", headers=await nonce_headers())
        resp.headers.append("Link", f'<{up}>;rel="up"')
        for alt in alts:
            resp.headers.append("Link", f'<{alt}>;rel="alternate"')
        return resp

    async def revoke(request: Request) -> Response:
        await authed(request, flow.revoke, use="any")
        return Response(status_code=200, headers=await nonce_headers())

    async def renewal_info(request: Request) -> Response:
        info = await run_database_work(inline, ari.renewal_info, request.path_params["cert_id"])
        return JSONResponse(info.json(), headers={"Retry-After": str(info.retry_after)})

    async def wrong_method(request: Request, allowed: list[str]) -> Response:
        # RFC 8555 §6.3: a GET of any other resource than the directory and
        # newNonce gets 405 with type malformed (read it with POST-as-GET).
        p = problem_for(Malformed(f"{request.method} is not allowed here; use {' or '.join(allowed)}"))
        headers = await nonce_headers({"Allow": ", ".join(allowed)})
        return problem_response(405, p.type, p.detail, headers=headers)

    def methods_only(fn: Handler, allowed: list[str]) -> Handler:
        async def endpoint(request: Request) -> Response:
            if request.method not in allowed:
                return await wrong_method(request, allowed)
            return await fn(request)

        return endpoint

    r = "/acme"
    table: list[tuple[str, Handler, list[str]]] = [
        (f"{r}/directory", directory, ["GET", "HEAD", "POST"]),
        (f"{r}/new-nonce", new_nonce, ["GET", "HEAD", "POST"]),
        (f"{r}/new-account", new_account, ["POST"]),
        (f"{r}/acct/{{id:int}}", account, ["POST"]),
        (f"{r}/acct/{{id:int}}/orders", account_orders, ["POST"]),
        (f"{r}/key-change", key_change, ["POST"]),
        (f"{r}/new-order", new_order, ["POST"]),
        (f"{r}/order/{{id:int}}", order, ["POST"]),
        (f"{r}/order/{{id:int}}/finalize", finalize, ["POST"]),
        (f"{r}/authz/{{id:int}}", authz, ["POST"]),
        (f"{r}/chall/{{id:int}}", challenge, ["POST"]),
        (f"{r}/cert/{{serial:str}}", certificate, ["POST"]),
        (f"{r}/cert/{{serial:str}}/{{n:int}}", certificate, ["POST"]),
        (f"{r}/revoke-cert", revoke, ["POST"]),
        (f"{r}/renewal-info/{{cert_id:str}}", renewal_info, ["GET", "HEAD"]),  # RFC 9773 §4.1
    ]

    async def no_such_resource(request: Request) -> Response:
        raise NotFound("no such ACME resource")  # guarded: a problem document with a nonce

    # Last: any other path under /acme gets the same problem document and nonce (§6.5).
    table.append((f"{r}/{{rest:path}}", no_such_resource, ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]))
    # Every method reaches the endpoint, so that a wrong one gets a problem
    # document (Starlette's own 405 is plain text).
    return [Route(path, _AnyMethod(methods_only(guarded(fn), methods))) for path, fn, methods in table]


class _AnyMethod:
    """An endpoint that Starlette's Route lets every method reach: a function
    endpoint without ``methods`` would get GET and HEAD only, an ASGI app all."""

    def __init__(self, fn: Handler) -> None:
        self.app = request_response(fn)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
