"""HTTP routes of enrollment in the browser (TSV download method 3).

``GET /enroll/{token}`` shows the page (Japanese and English) and does not use
the link. The page's script (``GET /static/ra/enroll.js``, served from this
package; no external resources) makes an ECDSA P-256 key pair with WebCrypto,
builds and signs a PKCS#10 CSR and ``POST``s only the CSR as JSON
(``{"csr": base64 DER}``) to ``/enroll/{token}``. The answer is the
certificate and the chain (base64 DER) — or an RFC 7807 problem document naming
what was refused — and the script builds the PKCS#12 under the password the
subscriber typed. Error mapping lives here and nowhere else."""

from __future__ import annotations

import base64
import binascii
import html
import json
import logging
from importlib import resources

from cryptography.hazmat.primitives.serialization import Encoding
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from kakuin.errors import BadCSR, BlockedKeyError, KakuinError, KeyRuleError, NotFound, PolicyError
from kakuin.http import BodyTooLarge, offload, problem_response, read_body
from kakuin.ra.enrollment import EnrollmentService
from kakuin.ra.retrieval import RetrievalGone
from kakuin.ra.tsv.messages import POLICY_JA

log = logging.getLogger(__name__)

P = "urn:kakuin:problem:enroll:"
MAX_BODY = 64 * 1024  # a CSR is a few hundred bytes
# The page loads only its own script and talks only to its own origin.
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "Content-Security-Policy": CSP}

_PAGE = """<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><title>証明書の取得(ブラウザ) / Get your certificate</title>
<script src="/static/ra/enroll.js" defer></script></head>
<body>
<h1>証明書の取得(ブラウザ) / Get your certificate</h1>
{body}
</body></html>
"""


def _page(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(body=body), status_code=status, headers=HEADERS)


def _problem(exc: Exception) -> Response:
    """One mapping from the service's errors to problem documents (Japanese in ``detail_ja``)."""
    if isinstance(exc, RetrievalGone):
        return problem_response(410, P + "gone", exc.message, title="link used or expired")
    if isinstance(exc, NotFound):
        return problem_response(404, P + "not-found", exc.message, title="unknown link")
    if isinstance(exc, BadCSR):
        return problem_response(
            400, P + "bad-csr", exc.message, title="bad CSR", detail_ja="CSRを読み取れないか署名が不正です"
        )
    if isinstance(exc, BlockedKeyError):
        return problem_response(
            422,
            P + "blocked-key",
            exc.message,
            title="key refused",
            rule=exc.rule,
            detail_ja="この鍵は危殆化した鍵として登録されているため使用できません",
        )
    if isinstance(exc, KeyRuleError):
        ja = POLICY_JA.get(exc.rule, "この鍵は使用できません")
        return problem_response(422, P + "bad-key", exc.message, title="key refused", rule=exc.rule, detail_ja=ja)
    if isinstance(exc, PolicyError):
        ja = POLICY_JA.get(exc.rule, "ポリシーにより発行できません")
        return problem_response(422, P + "policy", exc.message, title="refused by policy", rule=exc.rule, detail_ja=ja)
    if isinstance(exc, KakuinError):
        return problem_response(409, P + exc.code, exc.message, title="refused", detail_ja="発行できませんでした")
    log.exception("enrollment: unexpected error")
    return problem_response(500, P + "internal", "internal error", title="internal error", detail_ja="内部エラー")


def _bad_request(detail: str) -> Response:
    return problem_response(400, P + "bad-request", detail, title="bad request", detail_ja="リクエストが不正です")


def enrollment_routes(service: EnrollmentService) -> list[BaseRoute]:
    script = resources.files("kakuin.ra").joinpath("static/enroll.js").read_bytes()

    async def page(request: Request) -> Response:
        try:
            info = await offload(service.peek, request.path_params["token"])
        except NotFound as exc:
            return _page(
                f'<p id="refused">{html.escape(exc.message)}</p>', 410 if isinstance(exc, RetrievalGone) else 404
            )
        if info.pin_required:
            secret = (
                '<p><label for="pw">アクセスPIN / Access PIN</label><br>'
                '<input id="pw" type="password" autocomplete="off" minlength="8" required></p>'
                "<p>登録担当者から通知されたアクセスPINでPKCS#12ファイルを保護します。PINはサーバに送信されません。<br>"
                "The PKCS#12 file is protected by the access PIN your officer gave you; it is not sent anywhere.</p>"
            )
        else:
            secret = (
                '<p><label for="pw">パスワード / Password</label><br>'
                '<input id="pw" type="password" autocomplete="new-password" minlength="8" required></p>'
                '<p><label for="pw2">パスワード(確認) / Password again</label><br>'
                '<input id="pw2" type="password" autocomplete="new-password" minlength="8" required></p>'
                "<p>PKCS#12ファイルを保護するパスワード(8文字以上)を決めてください。パスワードはサーバに送信されません。<br>"
                "Choose a password (8 characters or more) to protect the PKCS#12 file; it is not sent anywhere.</p>"
            )
        body = (
            f'<main id="enroll" data-filename="{html.escape(info.filename)}" '
            f'data-friendly-name="{html.escape(info.email)}" data-pin="{int(info.pin_required)}">'
            f"<p>主体者 / Subject: {html.escape(info.subject)}<br>"
            f"E-mail: {html.escape(info.email)}<br>"
            f"有効期限 / Link valid until: {info.expires_at:%Y-%m-%d %H:%M} UTC</p>"
            "<p>鍵ペアはこのブラウザ内で生成され、秘密鍵は送信されません。このリンクは一度だけ使用できます。<br>"
            "The key pair is made in this browser and the private key is never sent. This link works once.</p>"
            f'<form id="enroll-form">{secret}'
            '<button type="submit" id="go">鍵を生成して証明書を取得 / Make the key and get the certificate</button>'
            "</form>"
            '<p id="status" role="status" aria-live="polite"></p>'
            '<p id="result" hidden><a id="save" href="#">PKCS#12 を保存 / Save the PKCS#12</a></p>'
            "<noscript><p>このページにはJavaScriptが必要です。 / This page needs JavaScript.</p></noscript>"
            "</main>"
        )
        return _page(body)

    async def post(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _bad_request('send {"csr": "<base64 DER>"} as application/json')
        try:  # refused before it is held
            raw = await read_body(request, MAX_BODY)
        except BodyTooLarge:
            return _bad_request("request too large")
        try:
            data = json.loads(raw)
            csr = base64.b64decode(data["csr"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            return _bad_request('send {"csr": "<base64 DER>"}')
        try:
            # Issuance (lint, signature, several transactions) off the event loop.
            done = await offload(
                service.enroll,
                request.path_params["token"],
                csr,
                client=request.client.host if request.client else None,
            )
        except Exception as exc:  # noqa: BLE001 - mapped once; internals never leak
            return _problem(exc)

        def b64(cert: object) -> str:
            return base64.b64encode(cert.public_bytes(Encoding.DER)).decode()  # type: ignore[attr-defined]

        payload = {
            "serial": done.serial,
            "certificate": b64(done.certificate),
            "chain": [b64(c) for c in done.chain],
            "filename": done.filename,
            "friendly_name": done.friendly_name,
        }
        return Response(json.dumps(payload), media_type="application/json", headers={"Cache-Control": "no-store"})

    async def js(_request: Request) -> Response:
        return Response(
            script,
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    return [
        Route("/enroll/{token}", page, methods=["GET"]),
        Route("/enroll/{token}", post, methods=["POST"]),
        Route("/static/ra/enroll.js", js, methods=["GET"]),
    ]
