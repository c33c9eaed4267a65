"""The VA's own DNS query and UDP exchange (kakuin.va.dnsquery, issue #3): the query
is dnspython's octet for octet, and the exchange takes only a response to its own
question from the resolver's address, ignoring everything else until the deadline.

The resolver here is a scripted fake on loopback: a thread that answers each query
with the datagrams its script returns (and, for TC, a TCP listener on the same port).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import dns.asyncresolver
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from kakuin.va.dnsquery import EDNS_PAYLOAD, make_query
from kakuin.va.dnssec import NoResponse
from kakuin.va.resolver import Resolver

NAME = dns.name.from_text("www.example.ac.jp.")

# One script step: (query, the server's socket) → datagrams to send back to the asker
# from the server's socket; or (data, socket) to send from another address, or
# (data, socket, peer) to send to an earlier asker.
Script = Callable[[dns.message.Message, socket.socket], list]


def answer(query: dns.message.Message, address: str = "192.0.2.1", *,
           id_delta: int = 0, name: str | None = None, tc: bool = False) -> bytes:
    """A response to ``query`` (A ``address``, or AAAA 2001:db8::1 for an AAAA query)."""
    r = dns.message.make_response(query)
    r.id = (query.id + id_delta) % 65536
    if name is not None:  # a response to another question
        r.question = [dns.rrset.RRset(dns.name.from_text(name), 1, query.question[0].rdtype)]
    if tc:
        r.flags |= dns.flags.TC
    else:
        aaaa = r.question[0].rdtype == dns.rdatatype.AAAA
        r.answer.append(dns.rrset.from_text(r.question[0].name, 60, "IN", "AAAA" if aaaa else "A",
                                            "2001:db8::1" if aaaa else address))
    return r.to_wire()


class FakeResolver:
    """UDP (and TCP) on 127.0.0.1 (or ::1): answers by ``script``; ``queries`` are kept."""

    def __init__(self, script: Script, address: str = "127.0.0.1", *, tcp_address: str = "192.0.2.53") -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        for _ in range(50):  # UDP and TCP on one port number: another process may hold its TCP side
            self.udp = socket.socket(family, socket.SOCK_DGRAM)
            self.udp.bind((address, 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                self.tcp.bind((address, self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        else:
            raise OSError(f"no port free for both UDP and TCP on {address}")
        self.tcp.listen(4)
        self.address = address
        self.script = script
        self.tcp_address = tcp_address
        self.queries: list[tuple[dns.message.Message, tuple]] = []
        self.tcp_queries: list[dns.message.Message] = []
        for target in (self._udp_loop, self._tcp_loop):
            threading.Thread(target=target, daemon=True).start()

    def _udp_loop(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(4096)
            except OSError:
                return
            q = dns.message.from_wire(data)
            self.queries.append((q, peer))
            for out in self.script(q, self.udp):
                wire, sock, to = (out + (peer,))[:3] if isinstance(out, tuple) else (out, self.udp, peer)
                sock.sendto(wire, to)

    def _tcp_loop(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                (size,) = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))
                q = dns.message.from_wire(conn.recv(size, socket.MSG_WAITALL))
                self.tcp_queries.append(q)
                wire = answer(q, self.tcp_address)
                conn.sendall(struct.pack("!H", len(wire)) + wire)

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeResolver]]:
    made: list[FakeResolver] = []

    def make(script: Script, address: str = "127.0.0.1") -> FakeResolver:
        made.append(FakeResolver(script, address))
        return made[-1]

    yield make
    for f in made:
        f.close()


def resolver_for(*servers: tuple[str, int], timeout: float = 2.0) -> Resolver:
    inner = dns.asyncresolver.Resolver(configure=False)
    inner.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in servers]
    inner.lifetime = inner.timeout = timeout
    return Resolver(inner, dnssec=False, retry_delay=0.0)


def ask(resolver: Resolver, rdtype: str = "A") -> dns.message.Message:
    return asyncio.run(resolver.exchange(NAME, rdtype))


def addresses(msg: dns.message.Message) -> list[str]:
    return [rr.address for rrset in msg.answer for rr in rrset]


# -- the query ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["www.example.ac.jp.", "ac.jp.", "jp.", ".", "xn--r8jz45g.jp."])
@pytest.mark.parametrize("rdtype", ["A", "AAAA", "CAA", "TXT", "DS", "SOA"])
@pytest.mark.parametrize("cd", [False, True])
def test_query_is_dnspythons_octet_for_octet(name: str, rdtype: str, cd: bool) -> None:
    query, wire = make_query(dns.name.from_text(name), rdtype, cd=cd)
    reference = dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=True,
                                       payload=EDNS_PAYLOAD, id=query.id,
                                       flags=dns.flags.RD | (dns.flags.CD if cd else 0))
    assert wire == reference.to_wire()
    assert dns.message.from_wire(wire) == reference


def test_query_ids_are_random() -> None:
    ids = {make_query(NAME, "A")[0].id for _ in range(200)}
    assert len(ids) > 190


# -- the exchange ------------------------------------------------------------------

def test_answer_is_taken(fake: Callable[..., FakeResolver]) -> None:
    server = fake(lambda q, s: [answer(q)])
    msg = ask(resolver_for(("127.0.0.1", server.port)))
    assert addresses(msg) == ["192.0.2.1"]
    (query, peer), = server.queries
    assert query.flags & dns.flags.RD and query.ednsflags & dns.flags.DO
    assert query.payload == EDNS_PAYLOAD and peer[1] not in (0, server.port)


def test_wrong_id_wrong_question_and_garbage_are_ignored(fake: Callable[..., FakeResolver]) -> None:
    server = fake(lambda q, s: [
        answer(q, "203.0.113.1", id_delta=1),  # another query's ID
        answer(q, "203.0.113.2", name="other.example.ac.jp."),  # another question
        answer(q, id_delta=1, tc=True),  # a TC for another ID must not send us to TCP
        b"\x00garbage",
        answer(q)[:-3],  # cut short: does not parse
        answer(q),
    ])
    msg = ask(resolver_for(("127.0.0.1", server.port)))
    assert addresses(msg) == ["192.0.2.1"]
    assert server.tcp_queries == []


def test_datagram_from_another_address_is_ignored(fake: Callable[..., FakeResolver]) -> None:
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    try:
        server = fake(lambda q, s: [(answer(q, "203.0.113.9"), other), answer(q)])
        msg = ask(resolver_for(("127.0.0.1", server.port)))
    finally:
        other.close()
    assert addresses(msg) == ["192.0.2.1"]


def test_only_stray_datagrams_is_a_timeout(fake: Callable[..., FakeResolver]) -> None:
    server = fake(lambda q, s: [answer(q, id_delta=7), b"junk"])
    start = time.monotonic()
    with pytest.raises(NoResponse, match=r"^timeout after 0\.5s$"):
        ask(resolver_for(("127.0.0.1", server.port), timeout=0.5))
    assert 0.45 < time.monotonic() - start < 2


def test_silence_is_a_timeout(fake: Callable[..., FakeResolver]) -> None:
    server = fake(lambda q, s: [])
    with pytest.raises(NoResponse, match=r"^timeout after 0\.3s$"):
        ask(resolver_for(("127.0.0.1", server.port), timeout=0.3))


def test_truncated_answer_is_asked_again_over_tcp(fake: Callable[..., FakeResolver]) -> None:
    server = fake(lambda q, s: [answer(q, tc=True)])
    msg = ask(resolver_for(("127.0.0.1", server.port)))
    assert addresses(msg) == [server.tcp_address] and not msg.flags & dns.flags.TC
    (udp_query, _), = server.queries
    (tcp_query,) = server.tcp_queries
    assert tcp_query.to_wire() == udp_query.to_wire()  # the same query, the same ID


def test_refused_port_moves_on_to_the_next_nameserver(fake: Callable[..., FakeResolver]) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there: ICMP port unreachable
    server = fake(lambda q, s: [answer(q)])
    msg = ask(resolver_for(("127.0.0.1", dead_port), ("127.0.0.1", server.port)))
    assert addresses(msg) == ["192.0.2.1"]
    with pytest.raises(NoResponse, match="ConnectionRefusedError"):
        ask(resolver_for(("127.0.0.1", dead_port)))


def test_silent_nameserver_leaves_time_for_the_next(fake: Callable[..., FakeResolver]) -> None:
    """resolv.conf lists two nameservers and the first never answers: it gets
    half of the lifetime, and the second answers within the other half."""
    silent = fake(lambda q, s: [])
    server = fake(lambda q, s: [answer(q)])
    start = time.monotonic()
    msg = ask(resolver_for(("127.0.0.1", silent.port), ("127.0.0.1", server.port), timeout=1.0))
    took = time.monotonic() - start
    assert addresses(msg) == ["192.0.2.1"]
    assert len(silent.queries) == 1 and len(server.queries) == 1
    assert took > 0.45, took  # the first one had its half (the answer at all shows the second had time)
    # Both silent: the whole lifetime, then a timeout.
    other = fake(lambda q, s: [])
    start = time.monotonic()
    with pytest.raises(NoResponse, match="timeout after 1s"):
        ask(resolver_for(("127.0.0.1", silent.port), ("127.0.0.1", other.port), timeout=1.0))
    assert 0.95 < time.monotonic() - start < 1.5


def test_ipv6_resolver(fake: Callable[..., FakeResolver]) -> None:
    try:
        server = fake(lambda q, s: [answer(q)], "::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    msg = ask(resolver_for(("::1", server.port)))
    assert addresses(msg) == ["192.0.2.1"]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_sockets_are_closed_on_timeout_and_cancellation(fake: Callable[..., FakeResolver]) -> None:
    server = fake(lambda q, s: [])
    resolver = resolver_for(("127.0.0.1", server.port), timeout=0.2)

    async def go() -> None:
        before = open_fds()
        for _ in range(5):
            with pytest.raises(NoResponse):
                await resolver.exchange(NAME, "A")
            task = asyncio.create_task(resolver.exchange(NAME, "A"))
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert open_fds() == before

    asyncio.run(go())


def test_servfail_is_returned_not_retried_here(fake: Callable[..., FakeResolver]) -> None:
    def servfail(q: dns.message.Message, s: socket.socket) -> list:
        r = dns.message.make_response(q)
        r.set_rcode(dns.rcode.SERVFAIL)
        return [r.to_wire()]

    server = fake(servfail)
    assert ask(resolver_for(("127.0.0.1", server.port))).rcode() == dns.rcode.SERVFAIL
    assert len(server.queries) == 1


# -- lookup_addresses: A and AAAA at once, kept in that order ----------------------

def test_a_and_aaaa_are_asked_at_once_and_kept_in_order(fake: Callable[..., FakeResolver]) -> None:
    """The A answer is only sent once the AAAA query has arrived (and after the AAAA
    answer): asked one after the other, the A lookup would time out."""
    def script(q: dns.message.Message, s: socket.socket) -> list:
        if q.question[0].rdtype != dns.rdatatype.AAAA:
            return []  # held back until the AAAA query comes
        wires = [answer(q)]
        for held, peer in server.queries:
            if held.question[0].rdtype == dns.rdatatype.A:
                wires.append((answer(held), s, peer))
        return wires

    server = fake(script)
    found = asyncio.run(resolver_for(("127.0.0.1", server.port), timeout=1.0)
                        .lookup_addresses("www.example.ac.jp"))
    assert found.failures == []
    assert found.addresses == ["192.0.2.1", "2001:db8::1"]
    assert [r.rdtype for r in found.results] == ["A", "AAAA"]


@pytest.mark.parametrize("failing", ["A", "AAAA"])
def test_one_failed_lookup_is_kept_beside_the_other_answer(
        fake: Callable[..., FakeResolver], failing: str) -> None:
    def script(q: dns.message.Message, s: socket.socket) -> list:
        if dns.rdatatype.to_text(q.question[0].rdtype) == failing:
            r = dns.message.make_response(q)
            r.set_rcode(dns.rcode.SERVFAIL)
            return [r.to_wire()]
        return [answer(q)]

    server = fake(script)
    resolver = resolver_for(("127.0.0.1", server.port))
    found = asyncio.run(resolver.lookup_addresses("www.example.ac.jp"))
    assert [f.rdtype for f in found.failures] == [failing]
    assert found.addresses == (["2001:db8::1"] if failing == "A" else ["192.0.2.1"])
    assert asyncio.run(resolver.resolve_addresses("www.example.ac.jp")) == found.addresses
