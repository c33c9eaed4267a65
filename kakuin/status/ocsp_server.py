"""The lean OCSP listener: OCSP alone on its own port (``[server] ocsp_port``).

Issue #4 wants the responder at ten times ``openssl ocsp``'s rate on the same
two cores. Under uvicorn each request costs a task, an ASGI scope, two
``send`` messages and two socket writes; here an asyncio Protocol feeds
httptools and answers an in-memory hit inside ``data_received`` with one
write of bytes built once per answer and second. Answers come from the same
``OCSPService`` as the main app's ``/ocsp`` (``status.ocsp_front``), so
revocations show here exactly as promptly: at once in the revoking process,
within ``cache_ttl`` (10 s) in the others.

HTTP is the RFC 6960 Appendix A.1 subset: ``POST /ocsp`` (or ``/ocsp/...``)
with the DER request, ``GET``/``HEAD /ocsp/{url-encoded base64}``; persistent
connections and pipelining, answers in request order (a miss, signed in a
worker thread, holds the ones after it). Everything else is a problem
document: 404 (other paths), 405 (other methods), 413 (a body over 4 KB), 414
(a URL over 8 KB), 400 and close (not HTTP). Idle connections close after 5 s,
a request not complete after 30 s closes too.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
from collections import deque
from urllib.parse import unquote_to_bytes

import httptools

from kakuin.status.ocsp import Answer
from kakuin.status.ocsp_front import (
    ALLOWED_METHODS,
    CONTENT_TYPE,
    MAX_OCSP_REQUEST,
    OCSPFront,
    request_from_get,
)

MAX_URL = 8192
IDLE_TIMEOUT = 5.0  # as uvicorn's keep-alive timeout
REQUEST_TIMEOUT = 30.0
MAX_PENDING = 32  # answers queued on one connection before it stops reading
RENDERED_MAX = 4096  # responses kept built within one second (the hot ones; ~1.7 KB each)

_REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Content Too Large",
    414: b"URI Too Long",
}


class OCSPServer:
    """The listener: its connections, the rendered answers, the idle sweep."""

    def __init__(self, front: OCSPFront) -> None:
        self.front = front
        self.connections: set[OCSPProtocol] = set()
        self._rendered: dict[str, bytes] = {}  # by ETag, for the second in _rendered_at
        self._rendered_at = 0
        self._date = (0, b"")
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self._server = await loop.create_server(lambda: OCSPProtocol(self), sock=sock, backlog=2048)
        self._sweeper = loop.create_task(self._sweep())

    async def close(self) -> None:
        """Stop listening; close idle connections now, busy ones after their answers."""
        server, self._server = self._server, None
        if self._sweeper is not None:
            self._sweeper.cancel()
        if server is not None:
            server.close()
        for conn in list(self.connections):
            conn.close_when_done()
        if server is not None:
            await server.wait_closed()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self.loop.time()
            for conn in list(self.connections):
                if conn.pending:
                    continue
                if now - conn.last > IDLE_TIMEOUT or (conn.begun and now - conn.begun > REQUEST_TIMEOUT):
                    conn.abort()

    def render(self, answer: Answer, head: bool, connection: bytes = b"") -> bytes:
        """The whole HTTP response; built once per answer and second (Date and
        max-age move with the clock). ``connection``: the Connection header, if any."""
        now = self.front.clock.now().timestamp()
        second = int(now)
        reuse = answer.cacheable and not head and not connection
        if reuse:
            if self._rendered_at != second:
                self._rendered.clear()
                self._rendered_at = second
            hit = self._rendered.get(answer.etag)
            if hit is not None:
                return hit
        lines = [b"HTTP/1.1 200 OK", b"content-type: " + CONTENT_TYPE, b"content-length: %d" % len(answer.der)]
        lines += [name + b": " + value for name, value in self.front.cache_headers(answer, now)]
        lines.append(b"date: " + self._http_date(second))
        if connection:
            lines.append(b"connection: " + connection)
        data = b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head else answer.der)
        if reuse and len(self._rendered) < RENDERED_MAX:
            self._rendered[answer.etag] = data
        return data

    def _http_date(self, second: int) -> bytes:
        if self._date[0] != second:
            self._date = (second, email.utils.formatdate(second, usegmt=True).encode())
        return self._date[1]

    def problem(self, status: int, detail: str, connection: bytes = b"close", extra: bytes = b"") -> bytes:
        body = json.dumps({"type": "about:blank", "status": status, "detail": detail}).encode()
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\ncontent-length: %d\r\n%s" % (
            status,
            _REASONS[status],
            len(body),
            extra,
        )
        if connection:
            head += b"connection: " + connection + b"\r\n"
        return head + b"date: " + self._http_date(int(self.front.clock.now().timestamp())) + b"\r\n\r\n" + body


class OCSPProtocol(asyncio.Protocol):
    """One connection. httptools calls the ``on_*`` methods from ``feed_data``."""

    def __init__(self, server: OCSPServer) -> None:
        self.server = server
        self.front = server.front
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body = b""
        self.too_big = False
        self.closing = False
        self.queue: deque[list[bytes | bool | None]] = deque()  # [response or None (signing), close]
        self.last = 0.0
        self.begun = 0.0
        self.paused = False

    @property
    def pending(self) -> bool:
        return bool(self.queue)

    # -- asyncio -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.last = self.server.loop.time()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        self.last = self.server.loop.time()
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reply(self.server.problem(400, "no protocol upgrade here"), True)
        except httptools.HttpParserError:
            self._reply(self.server.problem(400, "not a valid HTTP/1.1 request"), True)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.paused:
            self.transport.resume_reading()

    # -- httptools ---------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = b""
        self.too_big = False
        self.begun = self.last

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL and not self.closing:
            self._reply(self.server.problem(414, f"a URL is at most {MAX_URL} bytes"), True)

    def on_body(self, body: bytes) -> None:
        if self.closing:
            return
        if len(self.body) + len(body) > MAX_OCSP_REQUEST:
            # answer now and close: the rest of an oversized body is never read
            self._reply(self.server.problem(413, f"an OCSP request is at most {MAX_OCSP_REQUEST} bytes"), True)
            return
        self.body += body

    def on_message_complete(self) -> None:
        self.begun = 0.0
        if self.closing:
            return
        close = not self.parser.should_keep_alive()
        # an HTTP/1.0 client keeps the connection only when told so
        connection = b"close" if close else b"keep-alive" if self.parser.get_http_version() == "1.0" else b""
        method = self.parser.get_method()
        path = self.url.partition(b"?")[0]
        if not (path.startswith(b"/ocsp") and (len(path) == 5 or path[5] == 0x2F)):
            self._reply(self.server.problem(404, "only OCSP is served here: /ocsp", connection), close)
            return
        if method == b"POST":
            body = self.body
        elif method == b"GET" or method == b"HEAD":
            encoded = path[6:]
            body = request_from_get(unquote_to_bytes(encoded) if b"%" in encoded else encoded)
        else:
            problem = self.server.problem(
                405,
                f"method {method.decode('latin-1')} not allowed: use GET or POST",
                connection,
                b"allow: " + ALLOWED_METHODS + b"\r\n",
            )
            self._reply(problem, close)
            return
        head = method == b"HEAD"
        answer = self.front.fast(body)
        if answer is not None:
            self._reply(self.server.render(answer, head, connection), close)
            return
        slot: list[bytes | bool | None] = [None, close]
        self.queue.append(slot)
        if close:
            self.closing = True
        if len(self.queue) >= MAX_PENDING and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        future = self.server.loop.run_in_executor(None, self.front.slow, body)
        future.add_done_callback(lambda f: self._signed(slot, f, head, connection))

    # -- responses ---------------------------------------------------------
    def _signed(
        self, slot: list[bytes | bool | None], future: asyncio.Future[Answer], head: bool, connection: bytes
    ) -> None:
        if self.transport is None:
            return
        slot[0] = self.server.render(future.result(), head, connection)
        self._flush()

    def _reply(self, data: bytes, close: bool) -> None:
        if close:
            self.closing = True
        if self.queue:
            self.queue.append([data, close])
            return
        if self.transport is not None:
            self.transport.write(data)
            if close:
                self.transport.close()

    def _flush(self) -> None:
        queue = self.queue
        while queue and queue[0][0] is not None and self.transport is not None:
            data, close = queue.popleft()
            self.transport.write(data)  # type: ignore[arg-type]
            if close:
                self.transport.close()
                return
        if self.paused and len(queue) < MAX_PENDING // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def close_when_done(self) -> None:
        """Shutting down: close now when idle, else after the answers in flight."""
        self.closing = True
        if not self.queue and self.transport is not None:
            self.transport.close()
        elif self.queue:
            self.queue[-1][1] = True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()
