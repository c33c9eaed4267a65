"""A tiny authoritative DNS server for ``kakuin run`` on one machine.

Development only (like Pebble's challtestsrv): so that the certbot commands
``kakuin run`` prints work on this machine with no DNS set up, it answers

- ``A`` for the demo zone and every name below it with one address (loopback),
- ``NOERROR`` with no records (NODATA) for every other type there, and for the
  zone's ancestors — so the CAA tree climb finds no CAA record (RFC 8659 §3:
  issuance allowed), just as for a public zone without CAA,
- ``REFUSED`` for everything else.

It never validates or signs anything, so the dev config that enables it sets
``va.dnssec = false``. Production uses real, validating resolvers.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 60


class DevDNS:
    def __init__(self, host: str, port: int, zone: str, address: str) -> None:
        self.host, self.port = host, port
        self.zone = dns.name.from_text(zone)
        self.address = address
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - garbage in: drop it, as servers do
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        q = query.question[0]
        if q.name.is_subdomain(self.zone):
            if q.rdtype == dns.rdatatype.A:
                response.answer.append(dns.rrset.from_text(q.name, TTL, dns.rdataclass.IN, "A", self.address))
        elif not self.zone.is_subdomain(q.name):
            response.set_rcode(dns.rcode.REFUSED)
        return response.to_wire()

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.host, self.port))
        self._sock = sock
        self._thread = threading.Thread(target=self._loop, name="kakuin-devdns", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, peer = self._sock.recvfrom(4096)
            except OSError:
                return
            reply = self.answer(data)
            if reply is not None:
                self._sock.sendto(reply, peer)

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
