"""The VA's DNS resolver: one place that turns DNS answers into three outcomes.

Every lookup ends as exactly one of
- ``LookupResult(rcode="NOERROR", records=[...])`` — an answer (after CNAME/DNAME
  processing by the resolver; the alias chain is kept for the audit record),
- ``LookupResult(rcode="NOERROR", records=[])`` — the name exists, no such type
  (NODATA), or ``rcode="NXDOMAIN"`` — the name does not exist,
- ``LookupFailed`` — SERVFAIL, REFUSED, timeout or any other error: the VA does
  not know the answer and must not pretend it does.

Queries carry EDNS0 with the DO bit set, so that DNSSEC status can be read from
the responses later (issue #8; the AD flag is already recorded). Names are
always absolute: no search domains are ever applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from kakuin.config import VAConfig

__all__ = ["LookupFailed", "LookupResult", "Resolver", "parse_resolver"]

# RFC 6891 §6.2.5 / DNS Flag Day 2020: 1232 octets avoids IP fragmentation.
EDNS_PAYLOAD = 1232


class LookupFailed(Exception):
    """The resolver could not give an answer (SERVFAIL, REFUSED, timeout, …)."""

    def __init__(self, name: str, rdtype: str, reason: str) -> None:
        super().__init__(f"{rdtype} lookup for {name} failed: {reason}")
        self.name = name
        self.rdtype = rdtype
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LookupResult:
    name: str  # the name asked for, absolute, without the trailing dot
    rdtype: str
    rcode: str  # "NOERROR" | "NXDOMAIN"
    records: list = field(default_factory=list)  # dnspython rdata objects
    # Alias chain followed by the resolver: ["a.example -> b.example", ...]
    chain: list[str] = field(default_factory=list)
    canonical_name: str = ""
    authenticated: bool = False  # AD flag of the response (meaningful with issue #8)

    @property
    def empty(self) -> bool:
        return not self.records


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


class Resolver:
    def __init__(self, inner: dns.asyncresolver.Resolver) -> None:
        self._inner = inner

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
        return cls(inner)

    async def lookup(self, domain: str, rdtype: str) -> LookupResult:
        name = absolute(domain)
        try:
            answer = await self._inner.resolve(name, rdtype, search=False,
                                               raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            chain = []
            for resp in exc.responses().values():
                chain = _chain(resp.resolve_chaining().cnames)
            return LookupResult(_text(name), rdtype, "NXDOMAIN", [], chain)
        except dns.resolver.LifetimeTimeout as exc:
            raise LookupFailed(_text(name), rdtype, f"timeout after {self._inner.lifetime:g}s"
                               ) from exc
        except dns.resolver.NoNameservers as exc:
            raise LookupFailed(_text(name), rdtype, _no_nameservers_reason(exc)) from exc
        except dns.exception.DNSException as exc:
            raise LookupFailed(_text(name), rdtype, f"{type(exc).__name__}: {exc}") from exc
        records = list(answer.rrset) if answer.rrset is not None else []
        return LookupResult(
            _text(name), rdtype, "NOERROR", records,
            _chain(answer.chaining_result.cnames), _text(answer.canonical_name),
            bool(answer.response.flags & dns.flags.AD))

    async def resolve_addresses(self, domain: str) -> list[str]:
        """A then AAAA; [] when the name has neither. Raises LookupFailed only when
        no address was found and at least one of the two lookups failed."""
        addresses: list[str] = []
        failure: LookupFailed | None = None
        for rdtype in ("A", "AAAA"):
            try:
                result = await self.lookup(domain, rdtype)
            except LookupFailed as exc:
                failure = failure or exc
                continue
            addresses.extend(r.address for r in result.records)
        if not addresses and failure is not None:
            raise failure
        return addresses


def _chain(cnames: list) -> list[str]:
    return [f"{_text(rr.name)} -> {_text(rr[0].target)}" for rr in cnames]


def _no_nameservers_reason(exc: dns.resolver.NoNameservers) -> str:
    # dnspython keeps (server, tcp, port, error, response) per attempt.
    errors = exc.kwargs.get("errors") or []
    reasons = []
    for err in errors:
        response = err[4] if len(err) > 4 else None
        if response is not None and hasattr(response, "rcode"):
            reasons.append(dns.rcode.to_text(response.rcode()))
        else:
            reasons.append(str(err[3]))
    return ", ".join(dict.fromkeys(reasons)) or "no nameserver answered"
