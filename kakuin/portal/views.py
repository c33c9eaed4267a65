"""The portal's pages (server-rendered Jinja2, no JavaScript): dashboard with a
server-side SVG chart, TSV upload with a per-row result table, certificate
search and detail (revoke there), EAB credentials, pending revocations.

Each page calls RA services with the signed-in Actor; an officer therefore
sees and acts on their own institution only (the services refuse the rest).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from kakuin.errors import KakuinError, NotFound, PolicyError, Unauthorized
from kakuin.http import offload
from kakuin.portal.app import Portal
from kakuin.portal.auth import Identity
from kakuin.portal.i18n import COOKIE, Translator
from kakuin.ra.revocation import ALLOWED_REASONS
from kakuin.ra.tsv.formats import TSVKind
from kakuin.ra.tsv.parse import TSVRefused

T = TypeVar("T")
MAX_TSV_BYTES = 10 * 1024 * 1024

_env = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _fmt_time(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "—"


def _fmt_left(value: dt.timedelta) -> str:
    secs = int(abs(value.total_seconds()))
    d, rem = divmod(secs, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    text = (f"{d}d " if d else "") + f"{h}h {m:02d}m"
    return ("−" + text) if value.total_seconds() < 0 else text


_env.filters["time"] = _fmt_time
_env.filters["left"] = _fmt_left


def render(template: str, request: Request, context: dict[str, Any], *, lang: str, status: int = 200) -> HTMLResponse:
    t = Translator(lang)
    query_lang = request.query_params.get("lang")
    body = _env.get_template(template).render(t=t, lang=lang, request=request, path=request.url.path, **context)
    response = HTMLResponse(
        body,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Content-Language": lang,
            "Vary": "Accept-Language, Cookie",
        },
    )
    if query_lang == lang:
        response.set_cookie(COOKIE, lang, max_age=365 * 86400, secure=True, httponly=True, samesite="strict")
    return response


def expiry_chart(buckets: list[tuple[dt.date, int]], weeks: int, now: dt.date) -> dict[str, Any]:
    """Bars for the upcoming-expiries chart: one per week for ``weeks`` weeks from
    this week's Monday, zero-filled (pure; the template draws the SVG)."""
    start = now - dt.timedelta(days=now.weekday())
    counts = dict(buckets)
    series = [(start + dt.timedelta(weeks=i), counts.get(start + dt.timedelta(weeks=i), 0)) for i in range(weeks)]
    top = max([c for _, c in series] + [1])
    nice = next(n for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10**9) if n >= top)
    width, height, left, bottom, bar_gap = 640, 220, 40, 40, 6
    plot_w, plot_h = width - left - 10, height - bottom - 10
    bw = plot_w / max(len(series), 1)
    bars = []
    for i, (week, count) in enumerate(series):
        h = plot_h * count / nice
        bars.append(
            {
                "x": round(left + i * bw + bar_gap / 2, 1),
                "y": round(10 + plot_h - h, 1),
                "w": round(bw - bar_gap, 1),
                "h": round(h, 1),
                "count": count,
                "week": week,
                "label": f"{week:%m/%d}",
                "cx": round(left + i * bw + bw / 2, 1),
            }
        )
    marks = sorted({0, nice // 2, nice}) if nice >= 2 else [0, 1]
    ticks = [{"v": v, "y": round(10 + plot_h - plot_h * v / nice, 1)} for v in marks]
    total = sum(c for _, c in series)
    return {
        "bars": bars,
        "ticks": ticks,
        "total": total,
        "width": width,
        "height": height,
        "left": left,
        "base": 10 + plot_h,
    }


def page_routes(portal: Portal) -> list[BaseRoute]:
    ra = portal.ra

    async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await offload(fn, *args, **kwargs)

    def ident(request: Request) -> Identity:
        return request.state.identity  # type: ignore[no-any-return]

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        identity = ident(request)
        return render(
            template,
            request,
            {"identity": identity, "csrf": portal.csrf_token(identity), **context},
            lang=Portal.lang(request),
            status=status,
        )

    def error_page(request: Request, exc: Exception, status: int) -> HTMLResponse:
        message = exc.message if isinstance(exc, KakuinError) else str(exc)
        return page(request, "error.html", status=status, message=message)

    async def form_checked(request: Request) -> Any:
        form = await request.form(max_part_size=MAX_TSV_BYTES)
        if not portal.csrf_ok(ident(request), form.get("csrf")):  # type: ignore[arg-type]
            return None
        return form

    def csrf_refused(request: Request) -> HTMLResponse:
        t = Translator(Portal.lang(request))
        return page(request, "error.html", status=403, message=t("error.csrf"))

    # -- dashboard -------------------------------------------------------------
    async def dashboard(request: Request) -> Response:
        identity = ident(request)
        weeks = 12
        stats = await call(ra.stats.institution_stats, actor=identity.actor, weeks=weeks)
        pending = await call(portal.certs.pending_revocations, actor=identity.actor)
        now = ra.ctx.clock.now()
        buckets: dict[dt.date, int] = {}
        for s in stats:
            for b in s.expiring_by_week:
                buckets[b.week_start] = buckets.get(b.week_start, 0) + b.count
        chart = expiry_chart(sorted(buckets.items()), weeks, now.date())
        return page(
            request,
            "dashboard.html",
            stats=stats,
            chart=chart,
            weeks=weeks,
            pending=pending,
            overdue=sum(1 for p in pending if p.request.overdue),
        )

    # -- TSV -------------------------------------------------------------------
    def institutions_for(identity: Identity) -> list[str]:
        return [i.name_en for i in ra.institutions.list(actor=identity.actor)]

    async def tsv_form(request: Request) -> Response:
        names = await call(institutions_for, ident(request))
        return page(request, "tsv.html", institutions=names, kinds=[k.value for k in TSVKind])

    async def tsv_post(request: Request) -> Response:
        form = await form_checked(request)
        if form is None:
            return csrf_refused(request)
        identity = ident(request)
        names = await call(institutions_for, identity)
        upload = form.get("file")
        data = await upload.read() if isinstance(upload, UploadFile) else b""
        filename = upload.filename if isinstance(upload, UploadFile) else None
        institution = str(form.get("institution") or identity.institution or (names[0] if names else ""))
        kind_text = str(form.get("kind") or "")
        kind = TSVKind(kind_text) if kind_text in {k.value for k in TSVKind} else None
        action = "apply" if form.get("action") == "apply" else "check"
        ctx: dict[str, Any] = {
            "institutions": names,
            "kinds": [k.value for k in TSVKind],
            "chosen": institution,
            "action": action,
            "filename": filename,
        }
        try:
            if action == "check":
                ctx["report"] = await call(ra.tsv.check, data, institution=institution, actor=identity.actor, kind=kind)
            else:
                ctx["applied"] = await call(
                    ra.tsv.apply,
                    data,
                    institution=institution,
                    actor=identity.actor,
                    kind=kind,
                    row_by_row=bool(form.get("row_by_row")),
                    filename=filename,
                )
        except TSVRefused as exc:
            ctx["refused"] = exc.errors
        except (NotFound, Unauthorized) as exc:
            return error_page(request, exc, 403 if isinstance(exc, Unauthorized) else 404)
        except KakuinError as exc:
            ctx["failure"] = exc.message
        status = 422 if ctx.get("refused") or ctx.get("failure") else 200
        return page(request, "tsv.html", status=status, **ctx)

    # -- certificates ----------------------------------------------------------
    async def certificates(request: Request) -> Response:
        q = request.query_params.get("q", "")
        status = request.query_params.get("status") or None
        if status not in (None, "valid", "revoked", "expired"):
            status = None
        rows = await call(portal.certs.search, actor=ident(request).actor, text=q, status=status, limit=100)
        return page(request, "certificates.html", rows=rows, q=q, status_filter=status)

    async def certificate(request: Request, notice: str | None = None, error: str | None = None) -> Response:
        serial = request.path_params["serial"]
        try:
            detail = await call(portal.certs.get, serial, actor=ident(request).actor)
        except NotFound as exc:
            return error_page(request, exc, 404)
        return page(
            request,
            "certificate.html",
            status=422 if error else 200,
            c=detail,
            reasons=ALLOWED_REASONS,
            notice=notice,
            error=error,
        )

    async def certificate_revoke(request: Request) -> Response:
        form = await form_checked(request)
        if form is None:
            return csrf_refused(request)
        identity = ident(request)
        serial = request.path_params["serial"]
        t = Translator(Portal.lang(request))
        try:
            await call(portal.certs.check_revocable, serial, actor=identity.actor)
            done = await call(
                ra.revoke,
                serial,
                str(form.get("reason") or ""),
                actor=identity.actor,
                comment=str(form.get("comment") or "") or None,
            )
        except NotFound as exc:
            return error_page(request, exc, 404)
        except Unauthorized as exc:
            return error_page(request, exc, 403)
        except (PolicyError, KakuinError) as exc:
            return await certificate(request, error=exc.message)
        return await certificate(request, notice=t("certs.revoked_ok", serial=done.serial))

    # -- EAB -------------------------------------------------------------------
    async def eab(request: Request, status: int = 200, **extra: Any) -> Response:
        identity = ident(request)
        creds = await call(portal.certs.eab_list, actor=identity.actor)
        names = await call(institutions_for, identity)
        return page(
            request,
            "eab.html",
            status=status,
            creds=creds,
            institutions=names,
            directory=f"{ra.ctx.config.server.base_url}/acme/directory",
            **extra,
        )

    async def eab_new(request: Request) -> Response:
        form = await form_checked(request)
        if form is None:
            return csrf_refused(request)
        identity = ident(request)
        days_text = str(form.get("days") or "").strip()
        try:
            if days_text and not days_text.isdigit():
                raise PolicyError("days must be a whole number", rule="eab-days")
            new = await call(
                portal.certs.eab_new,
                actor=identity.actor,
                institution=str(form.get("institution") or "") or None,
                domains=tuple(str(form.get("domains") or "").split()),
                days=int(days_text) if days_text else None,
            )
        except Unauthorized as exc:
            return error_page(request, exc, 403)
        except KakuinError as exc:
            return await eab(request, status=422, error=exc.message)
        response = await eab(request, new=new)
        return response

    async def eab_revoke(request: Request) -> Response:
        form = await form_checked(request)
        if form is None:
            return csrf_refused(request)
        kid = request.path_params["kid"]
        try:
            await call(portal.certs.eab_revoke, kid, actor=ident(request).actor)
        except NotFound as exc:
            return error_page(request, exc, 404)
        t = Translator(Portal.lang(request))
        return await eab(request, notice=t("eab.revoked_ok", kid=kid))

    # -- revocation requests ---------------------------------------------------
    async def revocations(request: Request) -> Response:
        pending = await call(portal.certs.pending_revocations, actor=ident(request).actor)
        return page(request, "revocations.html", pending=pending)

    async def root_redirect(request: Request) -> Response:
        return RedirectResponse("/", status_code=303)

    return [
        Route("/", dashboard, methods=["GET"]),
        Route("/dashboard", root_redirect, methods=["GET"]),
        Route("/tsv", tsv_form, methods=["GET"]),
        Route("/tsv", tsv_post, methods=["POST"]),
        Route("/certificates", certificates, methods=["GET"]),
        Route("/certificates/{serial}", certificate, methods=["GET"]),
        Route("/certificates/{serial}/revoke", certificate_revoke, methods=["POST"]),
        Route("/eab", eab, methods=["GET"]),
        Route("/eab", eab_new, methods=["POST"]),
        Route("/eab/{kid}/revoke", eab_revoke, methods=["POST"]),
        Route("/revocations", revocations, methods=["GET"]),
    ]
