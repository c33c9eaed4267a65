"""dns-01 validation (RFC 8555 §8.4).

"The client constructs the validation domain name by prepending the label
"_acme-challenge" to the domain name being validated, then provisions a TXT
record with the digest value under that name." The digest is
base64url(SHA-256(key authorization)), unpadded. CNAMEs at the validation name
are followed by the resolver (as Boulder does), so a name can delegate its
challenges to another zone. The TXT answer is relied on only when its DNSSEC
status allows it (``kakuin.policy.dnssec``; BR 3.2.2.4, issue #8).
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

from kakuin.policy.dnssec import answer_decision, failure_decision
from kakuin.va.resolver import LookupFailed, Resolver

if TYPE_CHECKING:
    from kakuin.va import ValidationAuthority, ValidationRecord

__all__ = ["CHALLENGE_LABEL", "expected_txt", "validate_dns01", "validation_name"]

CHALLENGE_LABEL = "_acme-challenge"
METHOD = "dns-01"


def expected_txt(key_authorization: str) -> str:
    """RFC 8555 §8.4: the TXT value is base64url(SHA-256(key authorization)),
    encoded without padding (RFC 8555 §6.1 base64url rule)."""
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def validation_name(domain: str) -> str:
    """``_acme-challenge.<domain>``; for a wildcard order the base domain is validated
    (RFC 8555 §7.1.3: the authorization identifier carries no "*." prefix)."""
    base = domain[2:] if domain.startswith("*.") else domain
    return f"{CHALLENGE_LABEL}.{base.rstrip('.')}"


async def validate_dns01(va: ValidationAuthority, domain: str, key_authorization: str, *,
                         resolver: Resolver | None = None) -> ValidationRecord:
    """``resolver`` defaults to the VA's own; a remote perspective (issue #6) passes its own."""
    domain = domain[2:] if domain.startswith("*.") else domain
    name = validation_name(domain)
    expected = expected_txt(key_authorization)
    observed: dict = {"name": name, "expected": expected, "txt": []}
    resolver = resolver or va.resolver
    try:
        result = await resolver.lookup(name, "TXT")
    except LookupFailed as exc:
        rule = failure_decision("dcv", exc.dnssec, outside=exc.outside, retried=exc.retried)
        observed.update(error=exc.reason, dnssec=exc.dnssec_evidence(), decision=rule.reason)
        return va.record(METHOD, domain, ok=False, observed=observed, problem="dns",
                         error=f"DNS problem: TXT lookup for {name} failed: {exc.reason}",
                         dnssec=exc.dnssec)
    observed["dnssec"] = result.dnssec_evidence()
    trust = answer_decision(result.dnssec, require_dnssec=resolver.dnssec)
    if trust.refused:
        return va.record(METHOD, domain, ok=False, observed=observed, problem="dns",
                         error=f"DNS problem: TXT lookup for {name}: DNSSEC "
                               f"{result.dnssec}: {trust.reason}", dnssec=result.dnssec)
    # A TXT record may be split into several character-strings; they form one value.
    values = [b"".join(r.strings).decode("utf-8", "replace") for r in result.records]
    observed.update(txt=values, rcode=result.rcode)
    if result.chain:
        observed["chain"] = result.chain
    if expected in values:
        return va.record(METHOD, domain, ok=True, observed=observed, dnssec=result.dnssec)
    if not values:
        what = "does not exist" if result.rcode == "NXDOMAIN" else "has no TXT record"
        return va.record(METHOD, domain, ok=False, observed=observed, problem="unauthorized",
                         error=f"No TXT record found at {name} ({what})",
                         dnssec=result.dnssec)
    shown = ", ".join(repr(v) for v in values[:5])
    return va.record(METHOD, domain, ok=False, observed=observed, problem="unauthorized",
                     error=f"Incorrect TXT record at {name}: found {shown}, "
                           f"expected {expected!r}", dnssec=result.dnssec)
