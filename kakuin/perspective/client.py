"""The CA's side of a perspective: sign a check request, verify the signed answer.

``PerspectiveClient.check`` never raises for the perspective's sake: a timeout,
a refused connection, a problem document or a bad response signature all come
back as a ``RemoteResult`` with ``ok=False`` and the reason, because for the
quorum they all mean the same thing — this perspective did not corroborate.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import httpx

from kakuin.perspective.auth import sign_request, verify_response
from kakuin.perspective.service import CHECK_PATH

__all__ = ["PerspectiveClient", "RemoteResult"]

_POOL: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class RemoteResult:
    """What one remote perspective reported (or why it reported nothing usable)."""

    perspective: str
    ok: bool  # the perspective's check passed
    outcome: str  # "passed" | "failed" | "timeout" | "error"
    value: str | None = None  # validated value / CAA decision ("permit" | "deny")
    error: str | None = None
    problem: str | None = None
    observed: dict[str, Any] = field(default_factory=dict)
    dnssec: str | None = None
    at: str | None = None  # the perspective's own timestamp of the check
    latency: float = 0.0


class PerspectiveClient:
    def __init__(self, name: str, url: str, key: bytes, *, timeout: float = 10.0,
                 http: httpx.AsyncClient | None = None) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self._http = http

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout, trust_env=False)

    def _shared(self) -> httpx.AsyncClient:
        """One pooled client per event loop, shared by every perspective (keep-alive;
        building a client costs an SSL context). Loops die with asyncio.run (TSV path);
        their clients go with them."""
        loop = asyncio.get_running_loop()
        client = _POOL.get(loop)
        if client is None or client.is_closed:
            client = _POOL[loop] = httpx.AsyncClient(timeout=self.timeout, trust_env=False,
                                                     limits=httpx.Limits(max_keepalive_connections=64))
        return client

    async def check(self, request: dict[str, Any]) -> RemoteResult:
        started = time.perf_counter()
        body = json.dumps(request, separators=(",", ":")).encode()
        headers = sign_request(self.key, "POST", CHECK_PATH, body)
        headers["Content-Type"] = "application/json"

        def done(**kw: Any) -> RemoteResult:
            return RemoteResult(self.name, latency=time.perf_counter() - started, **kw)

        try:
            http = self._http or self._shared()
            resp = await http.post(self.url + CHECK_PATH, content=body, headers=headers, timeout=self.timeout)
        except httpx.TimeoutException:
            return done(ok=False, outcome="timeout", problem="connection",
                        error=f"no answer within {self.timeout:g}s")
        except httpx.HTTPError as exc:
            return done(ok=False, outcome="error", problem="connection",
                        error=f"{type(exc).__name__}: {exc}")
        if resp.status_code != 200:
            try:
                detail = resp.json().get("detail", "")
                kind = resp.json().get("type", "")
            except ValueError:
                detail, kind = resp.text[:200], ""
            return done(ok=False, outcome="error", problem="serverInternal",
                        error=f"HTTP {resp.status_code} {kind}: {detail}".strip())
        if not verify_response(self.key, headers["X-MPIC-Nonce"], 200, resp.content,
                               resp.headers.get("x-mpic-response-signature")):
            return done(ok=False, outcome="error", problem="serverInternal",
                        error="the response signature does not verify")
        try:
            data = resp.json()
            passed = data["check_passed"]
            details = data.get("details") or {}
            errors = data.get("errors") or []
        except (ValueError, KeyError, AttributeError):
            return done(ok=False, outcome="error", problem="serverInternal",
                        error="the response is not a perspective check response")
        if data.get("perspective_code") != self.name:
            return done(ok=False, outcome="error", problem="serverInternal",
                        error=f"the response names perspective {data.get('perspective_code')!r}")
        first = errors[0] if errors else {}
        return done(ok=bool(passed), outcome="passed" if passed else "failed",
                    value=details.get("validated_value"),
                    error=None if passed else first.get("error_message", "check failed"),
                    problem=None if passed else first.get("error_type"),
                    observed=details.get("observed") or {}, dnssec=details.get("dnssec"),
                    at=details.get("at"))

    async def health(self) -> tuple[bool, str, float]:
        """(healthy, message, seconds) from ``GET /health``."""
        started = time.perf_counter()
        try:
            async with self._client() as http:
                resp = await http.get(self.url + "/health")
            data = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}", time.perf_counter() - started
        elapsed = time.perf_counter() - started
        if resp.status_code != 200 or data.get("status") != "ok":
            return False, f"HTTP {resp.status_code}: {data}", elapsed
        if data.get("perspective") != self.name:
            return False, f"answers as {data.get('perspective')!r}", elapsed
        return True, str(data.get("version", "ok")), elapsed
