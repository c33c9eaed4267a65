"""Shared HTTP helpers for the transport packages (RFC 7807 problem documents)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"


def problem_response(
    status: int, type_: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An RFC 7807 problem document. Never put internals (stack traces, SQL) in ``detail``."""
    body: dict[str, Any] = {"type": type_, "detail": detail, "status": status}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
