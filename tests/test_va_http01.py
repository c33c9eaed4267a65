"""http-01 fetch rules (kakuin.va.http01 over kakuin.va.httpfetch, issue #3): Boulder's
redirect rules, Host header and SNI, the body bound, timeouts, and the problem type
each failure is recorded with. Names resolve through ``address_override``; the web
servers are raw asyncio servers on loopback in the test's event loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import ssl
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kakuin.clock import UTC, FixedClock
from kakuin.config import VAConfig
from kakuin.va import ValidationAuthority
from kakuin.va.http01 import MAX_BODY, MAX_REDIRECTS, validate_http01

KA = "tok.thumbprint-0123456789abcdef"
TOKEN = "tok"
CHALLENGE = f"/.well-known/acme-challenge/{TOKEN}"

# A route: the raw request head → the raw response (or None: say nothing, hold on).
Route = Callable[[bytes], bytes | None]


def reply(status: int = 200, body: bytes = KA.encode(), headers: dict[str, str] | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def redirect(location: str, status: int = 302) -> bytes:
    return reply(status, b"", {"Location": location})


class Web:
    """An HTTP (or HTTPS) server answering by the request path; keeps what it saw."""

    def __init__(self, routes: dict[str, Route],
                 tls: ssl.SSLContext | None = None, delay: float = 0.0) -> None:
        self.routes = routes
        self.delay = delay  # seconds before each answer
        self.tls = tls
        self.requests: list[bytes] = []
        self.sni: list[str | None] = []
        self.port = 0

    async def start(self) -> Web:
        if self.tls is not None:
            self.tls.sni_callback = lambda sock, name, ctx: self.sni.append(name) and None
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            path = head.split(b" ")[1].decode()
            answer = self.routes.get(path, lambda h: reply(404, b"no"))(head)
            if answer is None:
                await asyncio.sleep(30)
                return
            await asyncio.sleep(self.delay)
            writer.write(answer)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the host")])
    now = dt.datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    return ctx


def validate(web: Web, *, tls_port: int = 443, timeout: float = 2.0,
             addresses: Callable[[str], list[str]] | None = lambda host: ["127.0.0.1"],
             domain: str = "www.example.ac.jp", web2: Web | None = None,
             allow_private: bool = True, resolver: object = None):
    async def go():
        await web.start()
        if web2 is not None:
            await web2.start()
        config = VAConfig(resolver="127.0.0.1:1", dnssec=False, http01_port=web.port,
                          tlsalpn01_port=web2.port if web2 is not None else tls_port,
                          timeout_seconds=timeout, allow_private_targets=allow_private)
        va = ValidationAuthority(config, FixedClock(dt.datetime.now(UTC)),
                                 address_override=addresses)
        try:
            return await validate_http01(va, domain, TOKEN, KA, resolver=resolver)  # type: ignore[arg-type]
        finally:
            for w in (web, web2):
                if w is not None:
                    w.server.close()

    return asyncio.run(go())


def test_key_authorization_is_fetched_with_host_header() -> None:
    web = Web({CHALLENGE: lambda h: reply(body=KA.encode() + b"\n")})
    record = validate(web)
    assert record.ok, record.error
    head = web.requests[0].decode()
    assert head.startswith(f"GET {CHALLENGE} HTTP/1.1\r\n")
    assert f"host: www.example.ac.jp:{web.port}" in head.lower()
    assert record.observed["hops"] == [{"url": f"http://www.example.ac.jp:{web.port}{CHALLENGE}",
                                        "address": "127.0.0.1", "status": 200}]


def test_redirects_are_followed_on_allowed_ports_and_paths_are_encoded() -> None:
    web = Web({CHALLENGE: lambda h: redirect("/a b/é?q=x y&k=%41"),
               "/a%20b/%C3%A9?q=x%20y&k=%41": lambda h: redirect("/final", 301),
               "/final": lambda h: reply()})
    record = validate(web)
    assert record.ok, record.error
    assert [hop["status"] for hop in record.observed["hops"]] == [302, 301, 200]


def test_https_hop_uses_sni_and_does_not_verify(tmp_path: Path) -> None:
    tls = Web({"/secure": lambda h: reply()}, tls=self_signed(tmp_path))
    web = Web({CHALLENGE: lambda h: redirect(f"https://other.example.ac.jp:{tls.port}/secure")})
    record = validate(web, web2=tls)
    assert record.ok, record.error
    assert tls.sni == ["other.example.ac.jp"]
    assert b"other.example.ac.jp:" in tls.requests[0]


@pytest.mark.parametrize(("location", "error"), [
    ("ftp://www.example.ac.jp/x", "only http and https are allowed"),
    ("http://www.example.ac.jp:8081/x", "port 8081 is not allowed"),
    ("http://127.0.0.1/x", "the host must be a DNS name"),
    ("http://[::1]/x", "the host must be a DNS name"),
])
def test_redirect_refusals(location: str, error: str) -> None:
    record = validate(Web({CHALLENGE: lambda h: redirect(location)}))
    assert not record.ok and record.problem == "connection" and error in record.error


def test_too_many_redirects() -> None:
    web = Web({CHALLENGE: lambda h: redirect(CHALLENGE)})
    record = validate(web)
    assert record.problem == "connection" and "too many redirects" in record.error
    assert len(web.requests) == MAX_REDIRECTS + 1


@pytest.mark.parametrize(("answer", "problem", "error"), [
    (reply(404, b"no"), "unauthorized", "invalid response status 404"),
    (reply(body=b"something else"), "unauthorized", "did not match"),
    (reply(body=b"x" * (MAX_BODY + 1)), "unauthorized", "response body is too large"),
    (reply(body=gzip.compress(b"x" * 10_000_000), headers={"Content-Encoding": "gzip"}),
     "unauthorized", "response body is too large"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "connection", "RemoteProtocolError"),
    (b"garbage\r\n\r\n", "connection", "RemoteProtocolError"),
    (b"", "connection", "RemoteProtocolError"),
])
def test_failures_are_recorded_with_their_problem(answer: bytes, problem: str, error: str) -> None:
    record = validate(Web({CHALLENGE: lambda h: answer}))
    assert not record.ok and record.problem == problem and error in record.error, record.error


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_bodies_are_decoded(encoding: str) -> None:
    if encoding == "gzip":
        body = gzip.compress(KA.encode())
    elif encoding == "deflate":
        body = zlib.compress(KA.encode())
    else:
        squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = squeeze.compress(KA.encode()) + squeeze.flush()
    name = "deflate" if encoding == "raw-deflate" else encoding
    record = validate(Web({CHALLENGE: lambda h: reply(body=body, headers={"Content-Encoding": name})}))
    assert record.ok, record.error


def test_silent_server_is_a_read_timeout() -> None:
    record = validate(Web({CHALLENGE: lambda h: None}), timeout=0.3)
    assert record.problem == "connection" and "ReadTimeout" in record.error


def test_next_address_is_tried_after_a_refused_connection() -> None:
    web = Web({CHALLENGE: lambda h: reply()})
    record = validate(web, addresses=lambda host: ["127.0.0.1", "::1"][::-1])
    # ::1 is tried first (Boulder prefers IPv6); nothing listens there on this port.
    assert record.ok, record.error
    assert record.observed["hops"][0]["address"] == "127.0.0.1"


def test_all_addresses_refused() -> None:
    web = Web({})
    record = validate(web, addresses=lambda host: ["127.0.0.7"], domain="down.example.ac.jp")
    assert not record.ok and record.problem == "connection"
    assert "down.example.ac.jp (127.0.0.7)" in record.error and "ConnectError" in record.error


def test_redirect_to_a_host_that_cannot_be_sent_is_recorded() -> None:
    """A Host header h11 cannot send (not ASCII) is a recorded connection failure;
    with httpx it escaped validate_http01 as an exception."""
    record = validate(Web({CHALLENGE: lambda h: redirect("http://bücher.example.ac.jp/x")}))
    assert not record.ok and record.problem == "connection"
    assert "LocalProtocolError" in record.error


def test_a_dripping_response_is_bounded_as_a_whole() -> None:
    """Headers at once, then the body a byte every 0.2 s: each read is quick, but
    the whole response must be in within the timeout (1 s here), not 1 s per byte."""
    from kakuin.va import httpfetch

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            for _ in range(100):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.2)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def run() -> float:
        server = await asyncio.start_server(drip, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        resp = await httpfetch.get("127.0.0.1", port, "/", [("Host", "a.example")], timeout=1.0)
        try:
            with pytest.raises(httpfetch.ReadTimeout):
                await resp.read_body(8192)
        finally:
            resp.close()
            server.close()
        return loop.time() - t0

    assert asyncio.run(run()) < 2.0


class FakeResolver:
    """Answers every A/AAAA question with the given addresses, DNSSEC settled."""

    dnssec = False

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.asked: list[str] = []

    async def lookup_addresses(self, host: str):  # type: ignore[no-untyped-def]
        from kakuin.va.resolver import AddressLookup, LookupResult

        self.asked.append(host)
        return AddressLookup(list(self.addresses), [LookupResult(host, "A", "NOERROR", dnssec="insecure")], [])


@pytest.mark.parametrize("addresses", [["127.0.0.1"], ["10.0.0.1", "192.168.1.1"], ["169.254.169.254"],
                                       ["::1"], ["100.64.0.1", "fc00::1"]])
def test_non_public_addresses_are_never_connected(addresses: list[str]) -> None:
    """SSRF: a name resolving only to the CA's own network is refused before any connection."""
    web = Web({CHALLENGE: lambda h: reply()})
    record = validate(web, addresses=None, allow_private=False, resolver=FakeResolver(addresses))
    assert not record.ok and record.problem == "dns", record
    assert "non-public" in record.error and web.requests == []


def test_redirect_to_a_special_use_name_is_refused_unresolved() -> None:
    asked: list[str] = []

    def addresses(host: str) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    for target in ("http://localhost/x", "http://metadata.internal/x", "http://intranet/x"):
        web = Web({CHALLENGE: lambda h, t=target: redirect(t)})
        record = validate(web, addresses=addresses, allow_private=False)
        assert not record.ok and record.problem == "connection", record
        assert "special-use" in record.error or "single-label" in record.error
    assert set(asked) == {"www.example.ac.jp"}


def test_303_is_not_followed() -> None:
    web = Web({CHALLENGE: lambda h: redirect("/final", 303), "/final": lambda h: reply()})
    record = validate(web)
    assert not record.ok and record.problem == "unauthorized"
    assert "invalid response status 303" in record.error


@pytest.mark.parametrize("location", ["http://www.example.ac.jp:99999/", "http://www.example.ac.jp:abc/",
                                      "http://[www.example/x", "http://www.example.ac.jp:0/"])
def test_malformed_redirects_are_refused(location: str) -> None:
    web = Web({CHALLENGE: lambda h: redirect(location)})
    record = validate(web)
    assert not record.ok and record.problem == "connection", record


def test_only_trailing_whitespace_is_ignored() -> None:
    assert validate(Web({CHALLENGE: lambda h: reply(body=KA.encode() + b" \r\n\t")})).ok
    leading = validate(Web({CHALLENGE: lambda h: reply(body=b" " + KA.encode())}))
    assert not leading.ok and leading.problem == "unauthorized"


def test_no_fallback_after_a_protocol_error() -> None:
    """Boulder falls back to the next address only when it cannot connect."""
    web = Web({CHALLENGE: lambda h: b"this is not HTTP\r\n\r\n"})
    record = validate(web, addresses=lambda h: ["127.0.0.1", "127.0.0.2"])
    assert not record.ok and record.problem == "connection"
    assert len(web.requests) == 1


def test_the_whole_validation_has_one_deadline() -> None:
    hops = 6
    routes: dict[str, Route] = {CHALLENGE: lambda h: redirect("/h1")}
    for i in range(1, hops + 1):
        routes[f"/h{i}"] = (lambda h, n=i + 1: redirect(f"/h{n}")) if i < hops else (lambda h: reply())
    # Each hop answers well inside the 0.4 s timeout; together they take longer than 3 × 0.4 s.
    record = validate(Web(routes, delay=0.25), timeout=0.4)
    assert not record.ok and record.problem == "connection"
    assert "longer than 1.2 s" in record.error, record.error
