"""REST API (``/api/v1``) on the portal listener: JSON in and out, RFC 7807
problem documents for every error, the same identity and authorization as
the pages. The OpenAPI document (``kakuin.portal.openapi``) describes exactly
these routes.

Errors are mapped once here: NotFound → 404, Unauthorized → 403,
PolicyError → 422 (with ``rule`` and ``field``), TSVRefused → 422 (with the
row errors), other refusals → 409, bad input → 400, anything else → 500
without internals.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kakuin.errors import KakuinError, NotFound, PolicyError, Unauthorized
from kakuin.http import BodyTooLarge, offload, problem_response, read_body
from kakuin.portal.app import Portal
from kakuin.portal.auth import Identity
from kakuin.ra.revocation import ALLOWED_REASONS
from kakuin.ra.tsv.formats import TSVKind
from kakuin.ra.tsv.parse import RowError, TSVRefused

log = logging.getLogger(__name__)

P = "urn:kakuin:problem:"
MAX_TSV_BYTES = 10 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024  # the API's JSON bodies are a few hundred bytes
JSON_TYPES = ("application/json",)
TSV_TYPES = ("text/tab-separated-values", "application/octet-stream")


class BadRequest(Exception):
    pass


def _iso(v: dt.datetime | None) -> str | None:
    return v.isoformat().replace("+00:00", "Z") if v else None


def _row_error(e: RowError) -> dict[str, Any]:
    return {"row": e.row, "column": e.column, "rule": e.rule, "message_ja": e.message_ja, "message_en": e.message_en}


def _cert_summary(c: Any) -> dict[str, Any]:
    return {
        "serial": c.serial,
        "profile": c.profile,
        "status": c.status,
        "subject": c.subject,
        "names": list(c.names),
        "institution": c.institution,
        "not_before": _iso(c.not_before),
        "not_after": _iso(c.not_after),
    }


def _cert_detail(d: Any) -> dict[str, Any]:
    return {
        **_cert_summary(d.summary),
        "issuer": d.issuer,
        "issuer_slug": d.issuer_slug,
        "key_type": d.key_type,
        "spki_sha256": d.spki_sha256,
        "issued_at": _iso(d.issued_at),
        "revoked_at": _iso(d.revoked_at),
        "revocation_reason": d.revocation_reason,
        "revocation_comment": d.revocation_comment,
        "subscriber": d.subscriber,
        "officer": d.officer,
        "downloaded": d.downloaded,
        "replaces": d.replaces,
        "replaced_by": d.replaced_by,
        "pem": d.pem,
    }


def _credential(c: Any) -> dict[str, Any]:
    return {
        "kid": c.kid,
        "institution": c.institution,
        "domains": list(c.domains),
        "created_at": _iso(c.created_at),
        "expires_at": _iso(c.expires_at),
        "revoked_at": _iso(c.revoked_at),
        "state": c.state,
    }


def _institution(i: Any, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": i.id,
        "name_en": i.name_en,
        "name_ja": i.name_ja,
        "prefecture": i.prefecture,
        "city": i.city,
        "confirmed_until": _iso(i.confirmed_until),
        "confirmed": i.confirmed_at(now),
        "domains": [{"domain": d.domain, "approved": d.approved} for d in i.domains],
        "officers": [{"name": p.name, "email": p.email} for p in i.people if p.role == "officer"],
    }


def problem_for(exc: Exception) -> Response:
    if isinstance(exc, BadRequest):
        return problem_response(400, P + "bad-request", str(exc), title="bad request")
    if isinstance(exc, TSVRefused):
        return problem_response(
            422,
            P + "tsv-refused",
            "the TSV file was refused; errors name the row, the column and the rule",
            title="TSV refused",
            errors=[_row_error(e) for e in exc.errors],
        )
    if isinstance(exc, NotFound):
        return problem_response(404, P + "not-found", exc.message, title="not found")
    if isinstance(exc, Unauthorized):
        return problem_response(403, P + "unauthorized", exc.message, title="forbidden")
    if isinstance(exc, PolicyError):
        return problem_response(
            422, P + "policy", exc.message, title="refused by policy", rule=exc.rule, field=exc.field
        )
    if isinstance(exc, KakuinError):
        return problem_response(409, P + exc.code, exc.message, title="refused")
    log.exception("portal API: unexpected error")
    return problem_response(500, P + "internal", "internal error", title="internal error")


Handler = Callable[[Request, Identity], Awaitable[Any]]


def api_routes(portal: Portal) -> list[BaseRoute]:
    ra = portal.ra
    certs = portal.certs

    def endpoint(fn: Handler, status: int = 200) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                result = await fn(request, request.state.identity)
            except Exception as exc:  # noqa: BLE001 - mapped once, internals never leak
                return problem_for(exc)
            if isinstance(result, Response):
                return result
            return JSONResponse(result, status_code=status, headers={"Cache-Control": "no-store"})

        return wrapped

    async def call(fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        return await offload(fn, *a, **kw)

    def content_type(request: Request) -> str:
        return request.headers.get("content-type", "").split(";")[0].strip().lower()

    async def json_body(request: Request) -> dict[str, Any]:
        # CSRF: only a body typed application/json, which no cross-site form can send.
        if content_type(request) not in JSON_TYPES:
            raise BadRequest("send the body as application/json")
        try:
            body = json.loads(await read_body(request, MAX_JSON_BYTES) or b"{}")
        except BodyTooLarge as exc:
            raise BadRequest(str(exc)) from None
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        if not raw.isdigit() or not (lo <= int(raw) <= hi):
            raise BadRequest(f"{name} must be an integer from {lo} to {hi}")
        return int(raw)

    # -- identity and institutions ----------------------------------------------
    async def me(request: Request, who: Identity) -> Any:
        return {
            "name": who.display_name,
            "actor": who.actor.name,
            "role": "operator" if who.actor.is_operator else "officer",
            "institution": who.institution,
        }

    async def institutions(request: Request, who: Identity) -> Any:
        now = ra.ctx.clock.now()
        return [_institution(i, now) for i in await call(ra.institutions.list, actor=who.actor)]

    async def institution(request: Request, who: Identity) -> Any:
        name = request.path_params["name"]
        info = await call(ra.institutions.get, name, actor=who.actor)
        return _institution(info, ra.ctx.clock.now())

    # -- certificates ----------------------------------------------------------
    async def search(request: Request, who: Identity) -> Any:
        status = request.query_params.get("status") or None
        if status not in (None, "valid", "revoked", "expired"):
            raise BadRequest("status must be valid, revoked or expired")
        rows = await call(
            certs.search,
            actor=who.actor,
            text=request.query_params.get("q"),
            status=status,
            institution=request.query_params.get("institution") or None,
            limit=int_param(request, "limit", 50, 1, 200),
        )
        return [_cert_summary(c) for c in rows]

    async def get_cert(request: Request, who: Identity) -> Any:
        return _cert_detail(await call(certs.get, request.path_params["serial"], actor=who.actor))

    async def revoke(request: Request, who: Identity) -> Any:
        body = await json_body(request)
        reason = body.get("reason")
        comment = body.get("comment")
        if not isinstance(reason, int | str) or isinstance(reason, bool):
            raise BadRequest("reason is an RFC 5280 reason code (number) or name")
        if comment is not None and not isinstance(comment, str):
            raise BadRequest("comment must be a string")
        serial = request.path_params["serial"]
        await call(certs.check_revocable, serial, actor=who.actor)
        done = await call(ra.revoke, serial, reason, actor=who.actor, comment=comment)
        return {
            "serial": done.serial,
            "reason": done.reason,
            "reason_name": ALLOWED_REASONS[done.reason],
            "revoked_at": _iso(done.revoked_at),
            "blocked_key": done.blocked_key,
            "same_key": list(done.same_key),
        }

    # -- TSV -------------------------------------------------------------------
    async def tsv_args(request: Request, who: Identity) -> tuple[bytes, str, TSVKind | None]:
        if content_type(request) not in TSV_TYPES:
            raise BadRequest("send the TSV file as text/tab-separated-values")
        try:
            data = await read_body(request, MAX_TSV_BYTES)
        except BodyTooLarge:
            raise BadRequest("the TSV file is over 10 MB") from None
        institution = request.query_params.get("institution") or who.institution
        if not institution:
            raise BadRequest("name the institution (?institution=)")
        kind_text = request.query_params.get("kind")
        if kind_text and kind_text not in {k.value for k in TSVKind}:
            raise BadRequest(f"kind must be one of {', '.join(k.value for k in TSVKind)}")
        return data, institution, TSVKind(kind_text) if kind_text else None

    async def tsv_check(request: Request, who: Identity) -> Any:
        data, institution, kind = await tsv_args(request, who)
        report = await call(ra.tsv.check, data, institution=institution, actor=who.actor, kind=kind)
        return {
            "ok": report.ok,
            "kind": report.kind.value,
            "encoding": report.encoding,
            "rows": report.rows,
            "errors": [_row_error(e) for e in report.errors],
        }

    async def tsv_apply(request: Request, who: Identity) -> Any:
        data, institution, kind = await tsv_args(request, who)
        row_by_row = request.query_params.get("row_by_row") in ("1", "true")
        report = await call(
            ra.tsv.apply, data, institution=institution, actor=who.actor, kind=kind, row_by_row=row_by_row
        )
        return {
            "application_id": report.application_id,
            "kind": report.kind.value,
            "status": report.status,
            "results": [
                {
                    "row": r.row,
                    "ok": r.ok,
                    "serial": r.serial,
                    "kid": r.kid,
                    "enrollment": r.enrollment,
                    "errors": [_row_error(e) for e in r.errors],
                }
                for r in report.results
            ],
        }

    # -- EAB -------------------------------------------------------------------
    async def eab_list(request: Request, who: Identity) -> Any:
        return [_credential(c) for c in await call(certs.eab_list, actor=who.actor)]

    async def eab_new(request: Request, who: Identity) -> Any:
        body = await json_body(request)
        domains = body.get("domains", [])
        days = body.get("days")
        inst = body.get("institution")
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise BadRequest("domains is a list of DNS names")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650):
            raise BadRequest("days is an integer from 1 to 3650")
        if inst is not None and not isinstance(inst, str):
            raise BadRequest("institution is a string")
        new = await call(certs.eab_new, actor=who.actor, institution=inst, domains=tuple(domains), days=days)
        return {
            "kid": new.kid,
            "hmac_key": new.hmac_key,
            "institution": new.institution,
            "domains": list(new.domains),
            "expires_at": _iso(new.expires_at),
        }

    async def eab_revoke(request: Request, who: Identity) -> Any:
        await call(certs.eab_revoke, request.path_params["kid"], actor=who.actor)
        return Response(status_code=204)

    # -- statistics and revocation requests ------------------------------------
    async def stats(request: Request, who: Identity) -> Any:
        rows = await call(
            ra.stats.institution_stats,
            actor=who.actor,
            institution=request.query_params.get("institution") or None,
            weeks=int_param(request, "weeks", 12, 1, 104),
        )
        return [s.as_dict() for s in rows]

    async def pending(request: Request, who: Identity) -> Any:
        rows = await call(certs.pending_revocations, actor=who.actor)
        return [
            {
                "id": p.request.id,
                "serial": p.request.serial,
                "subject": p.subject,
                "institution": p.institution,
                "reason": p.request.reason,
                "reason_name": p.reason_name,
                "reported_at": _iso(p.request.reported_at),
                "reported_by": p.request.reported_by,
                "deadline": _iso(p.request.deadline),
                "seconds_left": int(p.request.time_left.total_seconds()),
                "overdue": p.request.overdue,
                "comment": p.request.comment,
            }
            for p in rows
        ]

    async def openapi(request: Request, who: Identity) -> Any:
        from kakuin.portal.openapi import document

        return document(ra.ctx.config.portal)

    v1 = "/api/v1"
    return [
        Route(f"{v1}/openapi.json", endpoint(openapi), methods=["GET"]),
        Route(f"{v1}/me", endpoint(me), methods=["GET"]),
        Route(f"{v1}/institutions", endpoint(institutions), methods=["GET"]),
        Route(f"{v1}/institutions/{{name}}", endpoint(institution), methods=["GET"]),
        Route(f"{v1}/certificates", endpoint(search), methods=["GET"]),
        Route(f"{v1}/certificates/{{serial}}", endpoint(get_cert), methods=["GET"]),
        Route(f"{v1}/certificates/{{serial}}/revoke", endpoint(revoke), methods=["POST"]),
        Route(f"{v1}/tsv/check", endpoint(tsv_check), methods=["POST"]),
        Route(f"{v1}/tsv/apply", endpoint(tsv_apply), methods=["POST"]),
        Route(f"{v1}/eab", endpoint(eab_list), methods=["GET"]),
        Route(f"{v1}/eab", endpoint(eab_new, status=201), methods=["POST"]),
        Route(f"{v1}/eab/{{kid}}", endpoint(eab_revoke), methods=["DELETE"]),
        Route(f"{v1}/stats", endpoint(stats), methods=["GET"]),
        Route(f"{v1}/revocation-requests", endpoint(pending), methods=["GET"]),
    ]


_ = dataclasses
