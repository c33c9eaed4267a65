"""Shared HTTP helpers for the transport packages (RFC 7807 problem documents,
request bodies read with a bound)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"


def problem_response(
    status: int, type_: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An RFC 7807 problem document. Never put internals (stack traces, SQL) in ``detail``."""
    body: dict[str, Any] = {"type": type_, "detail": detail, "status": status}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class BodyTooLarge(Exception):
    """The request body is over the route's bound (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (``BodyTooLarge``) as soon as it is known to exceed
    ``limit``: from Content-Length before reading, else while streaming, so a
    hostile client cannot make the server hold more than ``limit`` + one chunk."""
    length = request.headers.get("content-length", "")
    if length and (not length.isdigit() or int(length) > limit):
        raise BodyTooLarge(limit)
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise BodyTooLarge(limit)
    return bytes(buf)
