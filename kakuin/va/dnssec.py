"""DNSSEC status of the VA's lookups (issue #8): read it from the validating resolver.

kakuin does not validate signatures itself. The operator's validating resolver
(Unbound is the reference) does, and this module reads its verdict and checks
the one thing a resolver does not say outright — that a zone is *provably*
unsigned:

- an answer with AD=1 is ``secure`` (RFC 4035 §3.2.3; the resolver must be on a
  trusted path, RFC 4035 §4.9.3 / RFC 6840 §5.7: loopback or a protected link);
- an answer with AD=0 is ``insecure`` only when the *DS proof* succeeds, else
  ``indeterminate``: walking down from the TLD, the resolver returns
  authenticated (AD=1) DS records at each delegation until, at one delegation
  point, an authenticated denial (NODATA, AD=1) whose NSEC/NSEC3 type bitmap has
  NS and no SOA shows a delegation without DS (RFC 4035 §5.2). A resolver that
  does not validate never sets AD=1, so through it nothing is ever ``insecure``;
- a SERVFAIL is ``bogus`` when the resolver says so with an Extended DNS Error
  (RFC 8914: 6 DNSSEC Bogus, 7 Signature Expired, 8 Signature Not Yet Valid,
  9 DNSKEY Missing, 10 RRSIGs Missing, 11 No Zone Key Bit Set, 12 NSEC Missing),
  or — for resolvers without EDE — when the same query with CD=1 (checking
  disabled) gets an answer: the data exists but does not validate. Any other
  failure gets the status of its zone from the DS proof.

Where a failure comes from matters for the BR 3.2.2.8 CAA exception: a SERVFAIL
*from our resolver* is a failure upstream (outside the CA); REFUSED from our
resolver, or no answer from it while it also fails to answer the DS proof, is
inside the CA's infrastructure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from kakuin.policy.dnssec import answer_decision, worst
from kakuin.va.targets import non_public_reason

if TYPE_CHECKING:
    from kakuin.va import ValidationAuthority
    from kakuin.va.resolver import Resolver

__all__ = [
    "BOGUS_EDE", "AddressRefused", "CheckedAddresses", "Exchange", "NoResponse", "ZoneProof",
    "answer_status", "checked_addresses", "delegation_in_denial", "extended_errors",
    "failure_status", "prove_zone",
]

# RFC 8914 §4: the DNSSEC validation errors. 5 (DNSSEC Indeterminate) is its own status.
BOGUS_EDE = frozenset({6, 7, 8, 9, 10, 11, 12})
INDETERMINATE_EDE = frozenset({5})


class NoResponse(Exception):
    """The resolver itself did not answer (timeout, connection refused)."""


class Exchange(Protocol):
    """One query to the configured resolver, DO=1; raises NoResponse."""

    async def __call__(self, name: dns.name.Name, rdtype: str, *,
                       cd: bool = False) -> dns.message.Message: ...


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True) or "."


def extended_errors(msg: dns.message.Message | None) -> list[dict]:
    """RFC 8914 Extended DNS Errors of a response, JSON-ready."""
    if msg is None:
        return []
    return [{"code": int(e.code), "text": e.text or ""} for e in msg.extended_errors()]


def _bitmap_types(windows: Iterable[tuple[int, bytes]]) -> set[int]:
    """RFC 4034 §4.1.2 type bitmap → rdtype numbers."""
    types = set()
    for window, bitmap in windows:
        for i, octet in enumerate(bitmap):
            for bit in range(8):
                if octet & (0x80 >> bit):
                    types.add(window * 256 + i * 8 + bit)
    return types


def delegation_in_denial(msg: dns.message.Message, name: dns.name.Name) -> bool | None:
    """From an authenticated DS NODATA response: is ``name`` a delegation point?

    True when the NSEC (or matching NSEC3) record for ``name`` lists NS and not
    SOA (RFC 4035 §5.2, RFC 5155 §8.6); False when it exists and does not;
    None when no record names ``name`` exactly (e.g. an NSEC3 opt-out span).
    """
    for rrset in msg.authority:
        if rrset.rdtype == dns.rdatatype.NSEC and rrset.name == name:
            types = _bitmap_types(rrset[0].windows)
        elif rrset.rdtype == dns.rdatatype.NSEC3:
            rd = rrset[0]
            try:
                hashed = dns.dnssec.nsec3_hash(name, rd.salt, rd.iterations, rd.algorithm)
            except (ValueError, TypeError):
                continue
            if rrset.name.labels[0].decode("ascii").lower() != hashed.lower():
                continue
            types = _bitmap_types(rd.windows)
        else:
            continue
        return dns.rdatatype.NS in types and dns.rdatatype.SOA not in types
    return None


@dataclass(frozen=True, slots=True)
class ZoneProof:
    """The DS walk for one name: the zone's status and every query it took."""

    status: str  # "secure" | "insecure" | "bogus" | "indeterminate"
    reason: str
    steps: list[dict] = field(default_factory=list)
    resolver_answered: bool = False  # our resolver answered at least one query

    def evidence(self) -> dict:
        return {"status": self.status, "reason": self.reason, "steps": self.steps}


def _top_down(name: dns.name.Name) -> list[dns.name.Name]:
    out = []
    while name != dns.name.root:
        out.append(name)
        name = name.parent()
    return out[::-1]


async def prove_zone(exchange: Exchange, name: dns.name.Name) -> ZoneProof:
    """Walk DS from the TLD down to ``name`` (see the module docstring)."""
    steps: list[dict] = []
    answered = False
    last_signed = "the trust anchor"
    for n in _top_down(name):
        try:
            msg = await exchange(n, "DS")
        except NoResponse as exc:
            steps.append({"name": _text(n), "type": "DS", "error": str(exc)})
            return ZoneProof("indeterminate", f"DS query for {_text(n)}: {exc}", steps, answered)
        answered = True
        rcode = dns.rcode.to_text(msg.rcode())
        ad = bool(msg.flags & dns.flags.AD)
        step: dict = {"name": _text(n), "type": "DS", "rcode": rcode, "ad": ad}
        ede = extended_errors(msg)
        if ede:
            step["ede"] = ede
        steps.append(step)
        if msg.rcode() == dns.rcode.SERVFAIL and any(e["code"] in BOGUS_EDE for e in ede):
            return ZoneProof("bogus", f"DS for {_text(n)} is bogus: {_ede_text(ede)}",
                             steps, answered)
        if msg.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return ZoneProof("indeterminate", f"DS query for {_text(n)} failed: {rcode} "
                             f"(closest signed delegation: {last_signed})", steps, answered)
        if not ad:
            return ZoneProof("indeterminate", f"the DS answer for {_text(n)} is not "
                             "authenticated (AD=0): the resolver does not validate, or no "
                             "trust anchor covers it", steps, answered)
        if msg.rcode() == dns.rcode.NXDOMAIN:
            return ZoneProof("indeterminate", f"{_text(n)} does not exist (authenticated)",
                             steps, answered)
        ds = msg.get_rrset(msg.answer, n, dns.rdataclass.IN, dns.rdatatype.DS)
        if ds:
            step["ds"] = len(ds)
            last_signed = _text(n)
            continue
        cut = delegation_in_denial(msg, n)
        if cut is None:
            cut = await _is_apex(exchange, n, steps)
        if cut is None:
            return ZoneProof("indeterminate", f"cannot tell whether {_text(n)} is a "
                             "delegation point", steps, answered)
        step["delegation"] = cut
        if cut:
            return ZoneProof("insecure", f"{_text(n)} is delegated without DS (authenticated "
                             f"denial from {_text(n.parent())})", steps, answered)
    return ZoneProof("secure", f"signed delegations down to {_text(name)} "
                     f"(closest: {last_signed})", steps, answered)


async def _is_apex(exchange: Exchange, n: dns.name.Name, steps: list[dict]) -> bool | None:
    """Fallback when the denial names no NSEC for ``n``: does ``n`` own a SOA?"""
    try:
        msg = await exchange(n, "SOA")
    except NoResponse as exc:
        steps.append({"name": _text(n), "type": "SOA", "error": str(exc)})
        return None
    ad = bool(msg.flags & dns.flags.AD)
    steps.append({"name": _text(n), "type": "SOA", "rcode": dns.rcode.to_text(msg.rcode()),
                  "ad": ad})
    if msg.get_rrset(msg.answer, n, dns.rdataclass.IN, dns.rdatatype.SOA):
        return True
    if ad and msg.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return False
    return None


def _ede_text(ede: list[dict]) -> str:
    return "; ".join(f"EDE {e['code']}" + (f" {e['text']}" if e["text"] else "") for e in ede)


async def answer_status(exchange: Exchange, msg: dns.message.Message,
                        names: list[dns.name.Name], *, require: bool) -> tuple[str, dict]:
    """Status of an answer (NOERROR or NXDOMAIN). ``names``: the name asked and the
    alias targets followed; the answer is insecure when one of them is proven so."""
    evidence: dict = {"ad": bool(msg.flags & dns.flags.AD)}
    ede = extended_errors(msg)
    if ede:
        evidence["ede"] = ede
    if msg.flags & dns.flags.AD:
        return "secure", evidence
    if not require:
        evidence["proof"] = "not attempted (va.dnssec = false)"
        return "indeterminate", evidence
    proofs = []
    for name in reversed(names):
        proof = await prove_zone(exchange, name)
        proofs.append(proof.evidence())
        if proof.status == "insecure":
            evidence["proof"] = proofs
            return "insecure", evidence
    evidence["proof"] = proofs
    return "indeterminate", evidence


@dataclass(frozen=True, slots=True)
class FailureStatus:
    status: str  # the zone's: "secure" | "insecure" | "bogus" | "indeterminate"
    outside: bool  # the failure is outside the CA's infrastructure
    reason: str  # appended to the lookup failure's reason when it says more
    evidence: dict


async def failure_status(exchange: Exchange, name: dns.name.Name, rdtype: str,
                         msg: dns.message.Message | None, *, require: bool) -> FailureStatus:
    """Status of a failed lookup. ``msg`` is the last response (None: no response)."""
    ede = extended_errors(msg)
    evidence: dict = {"rcode": dns.rcode.to_text(msg.rcode()) if msg is not None else None}
    if ede:
        evidence["ede"] = ede
    servfail = msg is not None and msg.rcode() == dns.rcode.SERVFAIL
    if servfail and any(e["code"] in BOGUS_EDE for e in ede):
        return FailureStatus("bogus", True, f"DNSSEC bogus: {_ede_text(ede)}", evidence)
    if not require:
        evidence["proof"] = "not attempted (va.dnssec = false)"
        status = "indeterminate"
        return FailureStatus(status, servfail, _ede_text(ede), evidence)
    if servfail and not any(e["code"] in INDETERMINATE_EDE for e in ede):
        # Without EDE a bogus answer is a bare SERVFAIL too: ask again with checking
        # disabled (RFC 4035 §3.2.2). Data that comes back then failed validation.
        try:
            cd = await exchange(name, rdtype, cd=True)
        except NoResponse as exc:
            evidence["cd_query"] = {"error": str(exc)}
        else:
            evidence["cd_query"] = {"rcode": dns.rcode.to_text(cd.rcode())}
            if cd.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                return FailureStatus("bogus", True, "DNSSEC bogus: validation failed (the "
                                     "answer is only available with checking disabled)",
                                     evidence)
    proof = await prove_zone(exchange, name)
    evidence["proof"] = [proof.evidence()]
    if servfail:
        outside = True  # our resolver answered: the failure is upstream
    elif msg is None:
        # Our resolver did not answer this query; if it answered the DS proof, it is
        # alive and the time went upstream.
        outside = proof.resolver_answered
    else:
        outside = False  # REFUSED (or worse) from our own resolver
    evidence["outside"] = outside
    status = proof.status
    if any(e["code"] in INDETERMINATE_EDE for e in ede):
        status = "indeterminate"
    return FailureStatus(status, outside, _ede_text(ede), evidence)


# -- the address lookups of http-01 and tls-alpn-01 -------------------------------------

@dataclass(frozen=True, slots=True)
class CheckedAddresses:
    addresses: list[str]
    dnssec: str | None  # worst status of the answers relied on; None: test override
    evidence: list[dict]


class AddressRefused(Exception):
    """The address lookup cannot be relied on (problem "dns")."""

    def __init__(self, reason: str, dnssec: str | None, evidence: list[dict]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.dnssec = dnssec
        self.evidence = evidence


async def checked_addresses(va: ValidationAuthority, host: str,
                            resolver: Resolver | None = None) -> CheckedAddresses:
    """A/AAAA of ``host`` for domain validation (BR 3.2.2.4): a bogus answer in either
    family refuses; every answer used must be relied on per kakuin.policy.dnssec; a
    failed family is tolerated when the other gave addresses (as before)."""
    if va.address_override is not None:
        return CheckedAddresses(list(va.address_override(host)), None, [])
    resolver = resolver or va.resolver
    found = await resolver.lookup_addresses(host)
    evidence = [r.dnssec_evidence() for r in found.results]
    evidence += [f.dnssec_evidence() for f in found.failures]
    status = worst([r.dnssec for r in found.results] + [f.dnssec for f in found.failures
                                                          if f.dnssec == "bogus"])
    for failure in found.failures:
        if failure.dnssec == "bogus":
            raise AddressRefused(f"{failure.rdtype} lookup for {host} failed: "
                                 f"{failure.reason}", "bogus", evidence)
    for result in found.results:
        trust = answer_decision(result.dnssec, require_dnssec=resolver.dnssec)
        if trust.refused:
            raise AddressRefused(f"{result.rdtype} lookup for {host}: DNSSEC "
                                 f"{result.dnssec}: {trust.reason}", result.dnssec, evidence)
    if not found.addresses and found.failures:
        first = found.failures[0]
        raise AddressRefused(first.reason, worst([first.dnssec]), evidence)
    addresses = found.addresses
    if not va.config.allow_private_targets:
        # Never connect to the CA's own network (kakuin.va.targets), as Boulder.
        addresses = [a for a in found.addresses if non_public_reason(a) is None]
        if found.addresses and not addresses:
            raise AddressRefused(f"{host} resolves only to non-public addresses "
                                 f"({', '.join(found.addresses)})", status, evidence)
    return CheckedAddresses(addresses, status, evidence)
