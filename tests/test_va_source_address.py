"""A VA (as each remote perspective runs it) sends its DNS queries and opens its
http-01 and tls-alpn-01 connections from its configured source address."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.message
import dns.rdatatype
import dns.rrset

from kakuin.clock import UTC, FixedClock
from kakuin.config import VAConfig
from kakuin.va import ValidationAuthority

SOURCE = "127.0.0.13"


def test_dns_http01_and_tlsalpn01_leave_from_the_source_address() -> None:
    seen: dict[str, str] = {}

    # DNS: answers every A query with 127.0.0.1 and notes who asked.
    dns_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns_sock.bind(("127.0.0.1", 0))

    def dns_loop() -> None:
        while True:
            try:
                data, peer = dns_sock.recvfrom(4096)
            except OSError:
                return
            q = dns.message.from_wire(data)
            seen.setdefault("dns", peer[0])
            r = dns.message.make_response(q)
            if q.question[0].rdtype == dns.rdatatype.A:
                r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "127.0.0.1"))
            dns_sock.sendto(r.to_wire(), peer)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen["http"] = self.client_address[0]
            body = b"token.thumbprint"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = socket.socket()
    tls.bind(("127.0.0.1", 0))
    tls.listen(1)

    def tls_loop() -> None:
        try:
            conn, peer = tls.accept()
        except OSError:
            return
        seen["tls"] = peer[0]
        conn.close()

    for target in (dns_loop, http.serve_forever, tls_loop):
        threading.Thread(target=target, daemon=True).start()
    try:
        config = VAConfig(resolver=f"127.0.0.1:{dns_sock.getsockname()[1]}", dnssec=False,
                          http01_port=http.server_address[1], tlsalpn01_port=tls.getsockname()[1],
                          timeout_seconds=3, source_address=SOURCE,
                          allow_private_targets=True)
        va = ValidationAuthority(config, FixedClock(dt.datetime.now(UTC)))

        async def go() -> None:
            ok = await va.validate_http01("www.example.ac.jp", "token", "token.thumbprint")
            assert ok.ok, ok.error
            await va.validate_tlsalpn01("www.example.ac.jp", "token.thumbprint")

        asyncio.run(go())
    finally:
        http.shutdown()
        dns_sock.close()
        tls.close()
    assert seen == {"dns": SOURCE, "http": SOURCE, "tls": SOURCE}
