"""Shared HTTP helpers for the transport packages (RFC 7807 problem documents,
request bodies read with a bound)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

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


_T = TypeVar("_T")
_EXECUTOR: tuple[int, ThreadPoolExecutor] | None = None
OFFLOAD_THREADS = 40  # anyio's default token count, which run_in_threadpool used


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    pid = os.getpid()
    if _EXECUTOR is None or _EXECUTOR[0] != pid:  # one per process (workers are spawned or forked)
        _EXECUTOR = (pid, ThreadPoolExecutor(OFFLOAD_THREADS, thread_name_prefix="kakuin-db"))
    return _EXECUTOR[1]


async def offload(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Run blocking work (database, signing) in a worker thread, with the
    caller's context variables. Starlette's ``run_in_threadpool`` does the same
    through anyio (capacity limiter, cancel scope, backend lookup), which a
    profile of the ACME load showed at ~0.2 ms of CPU per call; the event loop's
    own executor hand-off is a few microseconds. As with anyio, a cancelled
    caller does not stop the thread; the work runs to its end."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(_executor(), call)


def database_work_inline(config: Any) -> bool:
    """Whether request-scoped database work runs on the event loop (see
    ``DatabaseConfig.work``): "auto" means inline on SQLite only."""
    mode = config.database.work
    if mode == "auto":
        return bool(config.database_url.startswith("sqlite"))
    return bool(mode == "inline")


async def run_database_work(inline: bool, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` on the event loop when ``inline``, else in a worker thread
    (``offload``). Inline is for work that is short and CPU-bound, as SQLite's
    is: measured under the ACME load benchmark, the hand-off to a thread and the
    GIL hand-backs around each SQLite call cost more than the statements."""
    if inline:
        return fn(*args)
    return await offload(fn, *args)
