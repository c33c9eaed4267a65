"""CAA lookup (RFC 8659 §3): find the Relevant RRset, then ask kakuin.policy.caa.

The climb is sequential, from the FQDN towards the TLD, and stops at the first
level that answers with CAA records or fails. What each outcome means is
decided by ``kakuin.policy.caa.on_lookup``; what a failure means by
``lookup_failure_decision``; what the records mean by ``decide_caa``; whether
an answer's DNSSEC status lets us rely on it by ``kakuin.policy.dnssec`` (an
answer we may not rely on ends the climb like a failure). This module only asks
DNS and records what it saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dns.name

from kakuin.errors import CAAError
from kakuin.policy.caa import (
    CAADecision,
    CAARecord,
    decide_caa,
    lookup_failure_decision,
    on_lookup,
)
from kakuin.policy.dnssec import answer_decision, failure_decision, worst
from kakuin.va.resolver import LookupFailed, Resolver

if TYPE_CHECKING:
    from kakuin.va import ValidationAuthority, ValidationRecord

__all__ = ["RelevantRRset", "check_caa", "find_relevant_rrset", "tree"]


@dataclass(frozen=True, slots=True)
class RelevantRRset:
    """What the climb found: the records (empty: none anywhere), where, and the trail."""

    records: list[CAARecord]
    found_at: str | None  # the name whose query answered with CAA records
    # One entry per query: {"name", "rcode", "records", "chain"} or {"name", "error"}.
    trail: list[dict] = field(default_factory=list)
    failed: LookupFailed | None = None
    dnssec: list[dict] = field(default_factory=list)  # one entry per query (issue #8)

    @property
    def dnssec_status(self) -> str | None:
        return worst(d.get("status") for d in self.dnssec)


def tree(domain: str) -> list[str]:
    """RFC 8659 §3: the FQDN, then each parent "up to but not including the root".

    ``tree("a.b.example")`` → ``["a.b.example", "b.example", "example"]``.
    """
    name = dns.name.from_text(domain.rstrip(".") + ".")
    out = []
    while name != dns.name.root:
        out.append(name.to_text(omit_final_dot=True).lower())
        name = name.parent()
    return out


async def find_relevant_rrset(resolver: Resolver, domain: str) -> RelevantRRset:
    """Climb from ``domain`` towards the TLD until a CAA RRset is found or a lookup fails.

    RFC 8659 §3: aliases are processed by the resolver, so a CNAME at a level
    yields the CAA RRset of its target (the chain is kept in the trail) — the
    climb does not restart from the alias target.
    """
    trail: list[dict] = []
    dnssec: list[dict] = []
    for name in tree(domain):
        try:
            result = await resolver.lookup(name, "CAA")
        except LookupFailed as exc:
            trail.append({"name": name, "error": exc.reason})
            dnssec.append(exc.dnssec_evidence())
            return RelevantRRset([], None, trail, exc, dnssec)
        dnssec.append(result.dnssec_evidence())
        trust = answer_decision(result.dnssec, require_dnssec=resolver.dnssec)
        if trust.refused:  # BR 3.2.2.8.1: an answer we cannot rely on is no answer
            exc = LookupFailed(name, "CAA", f"DNSSEC {result.dnssec}: {trust.reason}")
            trail.append({"name": name, "error": exc.reason})
            return RelevantRRset([], None, trail, exc, dnssec)
        records = [CAARecord(r.flags, _text(r.tag), _text(r.value)) for r in result.records]
        entry: dict = {"name": name, "rcode": result.rcode, "records": [str(r) for r in records]}
        if result.chain:
            entry["chain"] = result.chain
        trail.append(entry)
        step = on_lookup(result.rcode, bool(records))
        if step == "decide":
            return RelevantRRset(records, name, trail, None, dnssec)
        if step == "fail":  # an rcode the resolver passed through but policy refuses
            exc = LookupFailed(name, "CAA", f"rcode {result.rcode}")
            return RelevantRRset([], None, trail, exc, dnssec)
    return RelevantRRset([], None, trail, None, dnssec)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def check_caa(va: ValidationAuthority, domain: str, *, account_uri: str | None,
                    method: str | None, wildcard: bool,
                    resolver: Resolver | None = None) -> ValidationRecord:
    """The VA's CAA check. ``domain`` is the base name (``*.`` is stripped if given).
    ``resolver`` defaults to the VA's own; a remote perspective (issue #6) passes its own."""
    if domain.startswith("*."):
        domain, wildcard = domain[2:], True
    relevant = await find_relevant_rrset(resolver or va.resolver, domain)
    failed = relevant.failed
    if failed is not None:
        decision: CAADecision = lookup_failure_decision(
            failed.name, failed.reason, dnssec=failed.dnssec or "indeterminate",
            outside=failed.outside, retried=failed.retried)
    else:
        decision = decide_caa(relevant.records, identities=set(va.config.caa_identities),
                              wildcard=wildcard, account_uri=account_uri, method=method)
    observed = {
        "found_at": relevant.found_at,
        "records": [str(r) for r in relevant.records],
        "trail": relevant.trail,
        "wildcard": wildcard,
        "account_uri": account_uri,
        "method": method,
        "decision": decision.reason,
        "applied_tag": decision.applied_tag,
        "matched": str(decision.matched) if decision.matched else None,
        "iodef": list(decision.iodef),
        "dnssec": {"status": relevant.dnssec_status, "lookups": relevant.dnssec},
    }
    status = relevant.dnssec_status
    if decision.allowed:
        return va.record("caa", domain, ok=True, observed=observed, dnssec=status)
    if failed is not None:
        error = (f"CAA lookup failed for {domain} (error {CAAError.error_code}): "
                 f"{failed.reason} at {failed.name}")
        if failed.dnssec is not None:
            rule = failure_decision("caa", failed.dnssec, outside=failed.outside,
                                    retried=failed.retried)
            error += f" (DNSSEC: {failed.dnssec}; {rule.reason})"
    else:
        error = (f"CAA record for {relevant.found_at} prevents issuance for {domain} "
                 f"(error {CAAError.error_code}): {decision.reason}")
    return va.record("caa", domain, ok=False, observed=observed, error=error, problem="caa",
                     dnssec=status)
