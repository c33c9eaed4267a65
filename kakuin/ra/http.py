"""HTTP routes of the RA: certificate retrieval (GET /retrieve/{token}), and
enrollment in the browser (``kakuin.ra.enroll_http``: /enroll/{token}).

GET shows a page (Japanese and English) with a download button and does not
use the link, so mail scanners that follow links cannot spend it; the button
POSTs and downloads. ``GET …?download=1`` downloads directly (curl, scripts).
PKCS#12 files are protected by the access PIN sent separately."""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from kakuin.context import Context
from kakuin.errors import NotFound
from kakuin.ra.enroll_http import enrollment_routes
from kakuin.ra.retrieval import RetrievalGone, RetrievalService
from kakuin.ra.services import RA

_PAGE = """<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><title>証明書の取得 / Certificate download</title></head>
<body>
<h1>証明書の取得 / Certificate download</h1>
{body}
</body></html>
"""


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(body=body),
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def retrieval_routes(ctx: Context, service: RetrievalService | None = None) -> list[BaseRoute]:
    svc = service or RA(ctx).retrieval

    def refused(exc: NotFound) -> HTMLResponse:
        return _page(f"<p>{html.escape(exc.message)}</p>", 410 if isinstance(exc, RetrievalGone) else 404)

    def download(token: str, request: Request) -> Response:
        try:
            d = svc.fetch(token, client=request.client.host if request.client else None)
        except NotFound as exc:
            return refused(exc)
        return Response(
            d.content,
            media_type=d.media_type,
            headers={"Content-Disposition": f'attachment; filename="{d.filename}"', "Cache-Control": "no-store"},
        )

    async def get(request: Request) -> Response:
        token: str = request.path_params["token"]
        if request.query_params.get("download") == "1":
            return download(token, request)
        try:
            info = svc.peek(token)
        except NotFound as exc:
            return refused(exc)
        what = {
            "pkcs12": "PKCS#12 (アクセスPINで保護 / protected by your access PIN)",
            "zip": "ZIP (PKCS#12 一括 / PKCS#12 in bulk, manifest.tsv)",
        }.get(info.kind, "PEM (証明書と中間CA証明書 / certificate and chain)")
        if info.kind == "zip":
            head = f"証明書 / Certificates: {info.count}<br>"
        else:
            head = (
                f"シリアル番号 / Serial: <code>{html.escape(info.serial)}</code><br>"
                f"主体者 / Subject: {html.escape(info.subject)}<br>"
            )
        body = (
            f"<p>{head}形式 / Format: {what}<br>"
            f"有効期限 / Link valid until: {info.expires_at:%Y-%m-%d %H:%M} UTC</p>"
            "<p>このリンクは一度だけ使用できます。 / This link works once.</p>"
            '<form method="post"><button type="submit">ダウンロード / Download</button></form>'
        )
        return _page(body)

    async def post(request: Request) -> Response:
        return download(request.path_params["token"], request)

    return [
        Route("/retrieve/{token}", get, methods=["GET"]),
        Route("/retrieve/{token}", post, methods=["POST"]),
        *enrollment_routes(RA(ctx).enrollment),
    ]
