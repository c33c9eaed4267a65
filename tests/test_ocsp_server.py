"""The lean OCSP listener (``kakuin.status.ocsp_server``) over real loopback
sockets: the same answers and cache headers as the app's ``/ocsp``, revocations
(same process at once, another process within the cache TTL), malformed HTTP
and OCSP input, keep-alive and pipelining in order."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography import x509
from cryptography.x509 import ocsp

from kakuin.app import create_app
from kakuin.context import Context
from kakuin.ra.revocation import KEY_COMPROMISE
from kakuin.status.ocsp_front import MAX_OCSP_REQUEST, OCSPFront
from kakuin.status.ocsp_server import OCSPServer
from tests.status_helpers import issue_dv
from tests.test_ocsp import request, two_certids

MALFORMED = ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def lean(ctx: Context) -> AsyncIterator[int]:
    """The listener on a free loopback port of this event loop; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = OCSPServer(OCSPFront(ctx.ocsp, ctx.clock))
    await server.start(sock)
    yield sock.getsockname()[1]
    await server.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict((k.lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line))
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


async def exchange(port: int, raw: bytes, n: int = 1) -> tuple[list[tuple[int, dict[str, str], bytes]], bool]:
    """Send ``raw`` in one write, read ``n`` responses; and whether the server
    then closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    out = [await asyncio.wait_for(read_response(reader), 10) for _ in range(n)]
    try:
        closed = await asyncio.wait_for(reader.read(1), 0.3) == b""
    except TimeoutError:
        closed = False
    writer.close()
    return out, closed


def post(body: bytes, *, extra: bytes = b"") -> bytes:
    return (
        b"POST /ocsp HTTP/1.1\r\nHost: t\r\nContent-Type: application/ocsp-request\r\n"
        b"Content-Length: %d\r\n%s\r\n" % (len(body), extra)
    ) + body


def get(path: str, version: bytes = b"1.1") -> bytes:
    return b"GET %s HTTP/%s\r\nHost: t\r\n\r\n" % (path.encode(), version)


def b64url(der: bytes) -> str:
    return base64.b64encode(der).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")


def status_of(body: bytes) -> ocsp.OCSPCertStatus:
    return ocsp.load_der_ocsp_response(body).certificate_status


@pytest.mark.anyio
async def test_same_answers_as_the_app_and_revocation_at_once(ctx, lean) -> None:  # type: ignore[no-untyped-def]
    issued = issue_dv(ctx)
    req = request(issued.certificate, issued.chain[0])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://t") as c:
        app = await c.post("/ocsp", content=req)
    [(status, headers, body)], closed = await exchange(lean, post(req))
    assert status == 200 and not closed and body == app.content
    assert status_of(body) == ocsp.OCSPCertStatus.GOOD
    for name in ("content-type", "cache-control", "etag", "last-modified", "expires"):
        assert headers[name] == app.headers[name], name
    assert headers["date"]
    # GET (URL-encoded and plain base64) and HEAD, pipelined on one connection
    head = b"HEAD /ocsp/%s HTTP/1.1\r\nHost: t\r\n\r\n" % b64url(req).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", lean)
    writer.write(get("/ocsp/" + b64url(req)) + get("/ocsp/" + base64.b64encode(req).decode()) + head)
    assert (await read_response(reader))[2] == body
    assert (await read_response(reader))[2] == body
    head_response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert b" 200 " in head_response and b"content-length: %d" % len(body) in head_response
    writer.close()
    # revoked in this process: shown at once
    ctx.revocation.revoke(issued.serial, KEY_COMPROMISE, actor="t")
    [(_, _, body)], _ = await exchange(lean, post(req))
    resp = ocsp.load_der_ocsp_response(body)
    assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason == x509.ReasonFlags.key_compromise


@pytest.mark.anyio
async def test_revocation_by_another_process_within_the_cache_ttl(ctx, lean) -> None:  # type: ignore[no-untyped-def]
    issued = issue_dv(ctx)
    req = request(issued.certificate, issued.chain[0])
    ctx.ocsp.cache_ttl = 0.5
    [(_, _, body)], _ = await exchange(lean, post(req))
    assert status_of(body) == ocsp.OCSPCertStatus.GOOD
    other = Context.open(ctx.config.data_dir, clock=ctx.clock)  # another process on the same database
    try:
        other.revocation.revoke(issued.serial, KEY_COMPROMISE, actor="t")
    finally:
        other.db.dispose()
    await asyncio.sleep(0.6)
    [(_, _, body)], _ = await exchange(lean, post(req))
    assert status_of(body) == ocsp.OCSPCertStatus.REVOKED


@pytest.mark.anyio
async def test_malformed_ocsp_requests(ctx, lean) -> None:  # type: ignore[no-untyped-def]
    issued = issue_dv(ctx)
    good = request(issued.certificate, issued.chain[0])
    bodies = [
        b"garbage",
        good[: len(good) // 2],
        b"",
        b"\x30\x00",
        b"\x30\x82\xff\xff",
        good + b"trailing",
        request(issued.certificate, issued.chain[0], nonce=b"\x42" * 33),  # RFC 8954 §2.1
        two_certids(good),
    ]
    raw = b"".join(post(b) for b in bodies)
    paths = ["/ocsp/%%%", "/ocsp/not-base64!", "/ocsp/" + base64.b64encode(b"garbage").decode(), "/ocsp", "/ocsp/"]
    raw += b"".join(get(p) for p in paths)
    responses, closed = await exchange(lean, raw, len(bodies) + len(paths))
    assert not closed
    for status, headers, body in responses:
        assert status == 200 and headers["cache-control"] == "no-store"
        assert ocsp.load_der_ocsp_response(body).response_status == MALFORMED


@pytest.mark.anyio
async def test_malformed_http(ctx, lean) -> None:  # type: ignore[no-untyped-def]
    issued = issue_dv(ctx)
    good = request(issued.certificate, issued.chain[0])
    [(status, headers, _)], closed = await exchange(lean, b"PUT /ocsp HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    assert status == 405 and headers["allow"] == "GET, HEAD, POST" and not closed
    assert headers["content-type"] == "application/problem+json"
    [(status, _, _)], closed = await exchange(lean, get("/crl/x.crl"))
    assert status == 404 and not closed
    [(status, _, _)], closed = await exchange(lean, post(b"\x30" * (MAX_OCSP_REQUEST + 1)))
    assert status == 413 and closed
    chunked = (
        b"POST /ocsp HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + b"3e8\r\n" + b"\0" * 1000 + b"\r\n"
    )
    [(status, _, _)], closed = await exchange(lean, chunked + (b"3e8\r\n" + b"\0" * 1000 + b"\r\n") * 9)
    assert status == 413 and closed
    [(status, _, _)], closed = await exchange(lean, get("/ocsp/" + "A" * 9000))
    assert status == 414 and closed
    [(status, _, _)], closed = await exchange(lean, b"garbage\r\n\r\n")
    assert status == 400 and closed
    # HTTP/1.0 without keep-alive, and Connection: close: answered, then closed
    [(status, headers, _)], closed = await exchange(lean, get("/ocsp/" + b64url(good), b"1.0"))
    assert status == 200 and headers["connection"] == "close" and closed
    [(status, _, _)], closed = await exchange(lean, post(good, extra=b"Connection: close\r\n") + post(good))
    assert status == 200 and closed
    # HTTP/1.0 with keep-alive: told so, and kept
    keep = b"GET /ocsp/%s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % b64url(good).encode()
    responses, closed = await exchange(lean, keep * 2, 2)
    assert [r[1]["connection"] for r in responses] == ["keep-alive"] * 2 and not closed


@pytest.mark.anyio
async def test_pipelined_answers_keep_their_order(ctx, lean) -> None:  # type: ignore[no-untyped-def]
    """A nonce request is signed in a worker thread; the cached answers after
    it on the same connection wait for it."""
    issued = issue_dv(ctx)
    plain = request(issued.certificate, issued.chain[0])
    nonce = b"\x07" * 16
    with_nonce = request(issued.certificate, issued.chain[0], nonce=nonce)
    await exchange(lean, post(plain))  # warm: the nonce-less answer is in memory
    responses, closed = await exchange(lean, post(with_nonce) + post(plain) + get("/nowhere") + post(plain), 4)
    assert not closed
    first = ocsp.load_der_ocsp_response(responses[0][2])
    assert first.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert responses[0][1]["cache-control"] == "no-store"
    assert responses[1][2] == responses[3][2] and status_of(responses[1][2]) == ocsp.OCSPCertStatus.GOOD
    assert responses[2][0] == 404
