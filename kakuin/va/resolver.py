"""The VA's DNS resolver: one place that turns DNS answers into three outcomes.

Every lookup ends as exactly one of
- ``LookupResult(rcode="NOERROR", records=[...])`` — an answer (after CNAME/DNAME
  processing by the resolver; the alias chain is kept for the audit record),
- ``LookupResult(rcode="NOERROR", records=[])`` — the name exists, no such type
  (NODATA), or ``rcode="NXDOMAIN"`` — the name does not exist,
- ``LookupFailed`` — SERVFAIL, REFUSED, timeout or any other error: the VA does
  not know the answer and must not pretend it does.

Answers to A, AAAA and CAA questions are kept in a small per-process cache for
their TTL, capped by ``va.dns_cache_seconds`` (negative answers for the SOA's
negative TTL, RFC 2308 §5), so the CAA climb does not ask for ``ac.jp`` and
``jp`` on every order (BR 3.2.2.8 lets a CA rely on a CAA answer for its TTL).
Only answers whose DNSSEC status is settled (secure or insecure, or any when
``va.dnssec`` is off) are kept; failures never are, and TXT (dns-01) is always
asked afresh, because the client has usually just published it.

Queries carry EDNS0 with the DO bit set. Every answer carries its DNSSEC status
(``LookupResult.dnssec``) and every failure the status of its zone
(``LookupFailed.dnssec``), read from the validating resolver by
``kakuin.va.dnssec`` (issue #8); a failed lookup is retried once, after
``va.dnssec_retry_delay`` seconds, before it is reported. What a status means
is decided by ``kakuin.policy.dnssec``. Names are always absolute: no search
domains are ever applied.

A remote perspective (issue #6) builds its own ``Resolver.from_config`` from its
own ``VAConfig`` (resolver address, ``dnssec``, timeouts) and passes it to
``check_caa`` / ``validate_dns01`` / ``validate_http01`` / ``validate_tlsalpn01``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from kakuin.config import VAConfig
from kakuin.va.dnsquery import EDNS_PAYLOAD, make_query, tcp_query, udp_exchange
from kakuin.va.dnssec import BOGUS_EDE, NoResponse, answer_status, failure_status

__all__ = ["AddressLookup", "LookupFailed", "LookupResult", "Resolver", "parse_resolver"]


class LookupFailed(Exception):
    """The resolver could not give an answer (SERVFAIL, REFUSED, timeout, …)."""

    def __init__(self, name: str, rdtype: str, reason: str, *, dnssec: str | None = None,
                 outside: bool = False, retried: bool = False,
                 evidence: dict | None = None) -> None:
        super().__init__(f"{rdtype} lookup for {name} failed: {reason}")
        self.name = name
        self.rdtype = rdtype
        self.reason = reason
        # DNSSEC status of the zone ("bogus": the failure is a validation failure);
        # whether the failure is outside the CA's infrastructure; whether it was
        # retried; and what was seen (kakuin.va.dnssec.failure_status). None: unknown.
        self.dnssec = dnssec
        self.outside = outside
        self.retried = retried
        self.evidence = evidence or {}

    def dnssec_evidence(self) -> dict:
        return {"name": self.name, "type": self.rdtype, "status": self.dnssec,
                "error": self.reason, "outside": self.outside, "retried": self.retried,
                **self.evidence}


@dataclass(frozen=True, slots=True)
class LookupResult:
    name: str  # the name asked for, absolute, without the trailing dot
    rdtype: str
    rcode: str  # "NOERROR" | "NXDOMAIN"
    records: list = field(default_factory=list)  # dnspython rdata objects
    # Alias chain followed by the resolver: ["a.example -> b.example", ...]
    chain: list[str] = field(default_factory=list)
    canonical_name: str = ""
    authenticated: bool = False  # AD flag of the response
    # "secure" | "insecure" | "indeterminate" (kakuin.va.dnssec.answer_status): what
    # kakuin.policy.dnssec.answer_decision is asked about; evidence: AD, EDE, DS proof.
    dnssec: str = "indeterminate"
    evidence: dict = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.records

    def dnssec_evidence(self) -> dict:
        return {"name": self.name, "type": self.rdtype, "status": self.dnssec, **self.evidence}


@dataclass(frozen=True, slots=True)
class AddressLookup:
    """A and AAAA for one name: the addresses, each answer, each failure."""

    addresses: list[str]
    results: list[LookupResult]
    failures: list[LookupFailed]


def parse_resolver(value: str) -> tuple[str, int] | None:
    """``"host:port"`` (or ``"[v6]:port"``, or a bare host for port 53) → (host, port);
    empty → None, meaning the system resolver."""
    value = value.strip()
    if not value:
        return None
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "53"
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, "53"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"resolver must be host:port, got {value!r}")
    return host, int(port)


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def absolute(domain: str) -> dns.name.Name:
    """An absolute DNS name; ACME identifiers are already A-labels."""
    return dns.name.from_text(domain.rstrip(".") + ".")


CACHED_TYPES = frozenset({"A", "AAAA", "CAA"})


def cache_ttl(msg: dns.message.Message) -> int | None:
    """Seconds an answer may be kept: the smallest TTL of the answer section, or
    for NXDOMAIN/NODATA min(SOA TTL, SOA MINIMUM) (RFC 2308 §5); None without a SOA."""
    if msg.answer and msg.rcode() == dns.rcode.NOERROR:
        return min(rrset.ttl for rrset in msg.answer)
    for rrset in msg.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return min(rrset.ttl, rrset[0].minimum)
    return None


class AnswerCache:
    """(name, type) → (monotonic expiry, LookupResult); bounded, per process."""

    def __init__(self, max_seconds: float, size: int = 10_000) -> None:
        self.max_seconds = max_seconds
        self.size = size
        self._entries: dict[tuple[str, str], tuple[float, LookupResult]] = {}

    def get(self, name: str, rdtype: str) -> LookupResult | None:
        hit = self._entries.get((name, rdtype))
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            self._entries.pop((name, rdtype), None)
            return None
        return hit[1]

    def put(self, result: LookupResult, ttl: int | None) -> None:
        if ttl is None or self.max_seconds <= 0:
            return
        keep = min(float(ttl), self.max_seconds)
        if keep <= 0:
            return
        now = time.monotonic()
        if len(self._entries) >= self.size:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self.size:
                self._entries.clear()
        self._entries[(result.name, result.rdtype)] = (now + keep, result)


class Resolver:
    """Asks one configured resolver (or the system's); ``dnssec``: require proof
    (``va.dnssec``); ``retry_delay``: seconds before the one retry of a failure;
    ``cache_seconds``: the answer cache's cap (0: none)."""

    def __init__(self, inner: dns.asyncresolver.Resolver, *, dnssec: bool = True,
                 retry_delay: float = 1.0, source: str | None = None,
                 cache_seconds: float = 0.0) -> None:
        self._inner = inner  # holds the nameservers, port, timeout and EDNS settings
        self.dnssec = dnssec
        self.retry_delay = retry_delay
        self.source = source or None  # local address queries are sent from
        self.cache = AnswerCache(cache_seconds)

    @classmethod
    def from_config(cls, config: VAConfig) -> Resolver:
        where = parse_resolver(config.resolver)
        if where is None:
            inner = dns.asyncresolver.Resolver(configure=True)
        else:
            inner = dns.asyncresolver.Resolver(configure=False)
            inner.nameservers = [where[0]]
            inner.port = where[1]
        # No search domains, ever: a CA must not validate a name it was not asked about.
        inner.search = []
        inner.use_search_by_default = False
        inner.timeout = config.timeout_seconds
        inner.lifetime = config.timeout_seconds
        inner.use_edns(0, dns.flags.DO, EDNS_PAYLOAD)
        inner.cache = None
        return cls(inner, dnssec=config.dnssec, retry_delay=config.dnssec_retry_delay,
                   source=config.source_address or None, cache_seconds=config.dns_cache_seconds)

    def _servers(self) -> list[tuple[str, int]]:
        out = []
        for ns in self._inner.nameservers:
            if isinstance(ns, str):
                out.append((ns, self._inner.nameserver_ports.get(ns, self._inner.port)))
            else:  # dns.nameserver.Do53Nameserver
                out.append((ns.address, ns.port))
        return out

    async def exchange(self, name: dns.name.Name, rdtype: str, *,
                       cd: bool = False) -> dns.message.Message:
        """One query (RD, EDNS0 with DO; CD when asked) to the configured resolver,
        trying each nameserver in turn within the timeout, each given an equal
        share of the time still left. Raises NoResponse.

        The query is built and sent by ``kakuin.va.dnsquery``, not by dnspython's
        ``make_query`` / ``asyncquery.udp_with_fallback``, which cost ~35% more CPU
        per query (measured there). A datagram that is not the answer (wrong ID or
        question, unparseable) is ignored until the deadline; a truncated answer
        is asked again over TCP."""
        query, wire = make_query(name, rdtype, cd=cd)
        deadline = time.monotonic() + self._inner.lifetime
        last = "no nameserver configured"
        servers = self._servers()
        for i, (host, port) in enumerate(servers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # A silent nameserver gets its share of what is left, not all of it:
            # the next ones (resolv.conf lists several) are still asked in time.
            share = remaining / (len(servers) - i)
            try:
                response = await udp_exchange(query, wire, host, port, share, self.source)
                if response.flags & dns.flags.TC:  # RFC 7766 §5: ask again over TCP
                    response = await tcp_query(query, host, port, deadline - time.monotonic(),
                                               self.source)
                return response
            except (TimeoutError, dns.exception.Timeout):
                last = f"timeout after {self._inner.lifetime:g}s"
            except (OSError, dns.exception.DNSException) as exc:
                last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            last = f"timeout after {self._inner.lifetime:g}s"
        raise NoResponse(last)

    async def _ask(self, name: dns.name.Name,
                   rdtype: str) -> tuple[dns.message.Message | None, str, bool]:
        """The response, the failure reason ("" when answered) and whether it was retried.
        BR 3.2.2.8: a failure counts for the CAA exception only when retried."""
        msg: dns.message.Message | None = None
        reason = ""
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(self.retry_delay)
            try:
                msg = await self.exchange(name, rdtype)
            except NoResponse as exc:
                msg, reason = None, str(exc)
                continue
            if msg.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                return msg, "", attempt > 0
            reason = dns.rcode.to_text(msg.rcode())
            if any(e.code in BOGUS_EDE for e in msg.extended_errors()):
                return msg, reason, attempt > 0  # validation failed: asking again won't help
        return msg, reason, True

    async def lookup(self, domain: str, rdtype: str) -> LookupResult:
        name = absolute(domain)
        cacheable = rdtype in CACHED_TYPES
        if cacheable:
            hit = self.cache.get(_text(name), rdtype)
            if hit is not None:  # the audit record says it was a kept answer
                return replace(hit, evidence={**hit.evidence, "cached": True})
        msg, reason, retried = await self._ask(name, rdtype)
        if msg is None or msg.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            seen = await failure_status(self.exchange, name, rdtype, msg, require=self.dnssec)
            if seen.reason:
                reason = f"{reason} ({seen.reason})"
            raise LookupFailed(_text(name), rdtype, reason, dnssec=seen.status,
                               outside=seen.outside, retried=retried, evidence=seen.evidence)
        try:
            chaining = msg.resolve_chaining()
        except dns.exception.DNSException as exc:
            raise LookupFailed(_text(name), rdtype, f"{type(exc).__name__}: {exc}",
                               dnssec="indeterminate", retried=retried) from exc
        names = [name] + [rr[0].target for rr in chaining.cnames]
        status, evidence = await answer_status(self.exchange, msg, names, require=self.dnssec)
        records = list(chaining.answer) if chaining.answer is not None else []
        result = LookupResult(
            _text(name), rdtype, dns.rcode.to_text(msg.rcode()), records,
            _chain(chaining.cnames), _text(chaining.canonical_name),
            bool(msg.flags & dns.flags.AD), dnssec=status, evidence=evidence)
        if cacheable and (status in ("secure", "insecure") or not self.dnssec):
            self.cache.put(result, cache_ttl(msg))
        return result

    async def lookup_addresses(self, domain: str) -> AddressLookup:
        """A and AAAA, asked at once (the validation waits for one round trip, not
        two); kept in that order: the A addresses first, each answer and failure
        (for their DNSSEC status). Any other error than LookupFailed propagates and
        the other lookup is cancelled."""
        tasks = [asyncio.ensure_future(self._lookup_or_failure(domain, t)) for t in ("A", "AAAA")]
        try:
            outcomes = await asyncio.gather(*tasks)
        finally:
            for task in tasks:  # no-op when done; stops the other one after an error
                task.cancel()
        addresses: list[str] = []
        results: list[LookupResult] = []
        failures: list[LookupFailed] = []
        for outcome in outcomes:
            if isinstance(outcome, LookupFailed):
                failures.append(outcome)
                continue
            results.append(outcome)
            addresses.extend(r.address for r in outcome.records)
        return AddressLookup(addresses, results, failures)

    async def _lookup_or_failure(self, domain: str, rdtype: str) -> LookupResult | LookupFailed:
        try:
            return await self.lookup(domain, rdtype)
        except LookupFailed as exc:
            return exc

    async def resolve_addresses(self, domain: str) -> list[str]:
        """A addresses then AAAA; [] when the name has neither. Raises LookupFailed only when
        no address was found and at least one of the two lookups failed."""
        found = await self.lookup_addresses(domain)
        if not found.addresses and found.failures:
            raise found.failures[0]
        return found.addresses


def _chain(cnames: list) -> list[str]:
    return [f"{_text(rr.name)} -> {_text(rr[0].target)}" for rr in cnames]
