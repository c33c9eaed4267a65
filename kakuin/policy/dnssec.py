"""DNSSEC decisions for the lookups the VA relies on (issue #8): pure, no DNS.

The VA (``kakuin.va.dnssec``, ``kakuin.va.resolver``) finds out the DNSSEC
status of every lookup; this module says what that status means. Two tables:

- ``ANSWER_TABLE``: a lookup that produced an answer (records, NODATA or
  NXDOMAIN), by (status, DNSSEC required): rely on it, or refuse;
- ``FAILURE_TABLE``: a lookup that failed (SERVFAIL, REFUSED, timeout, bogus),
  by (purpose, status, failure outside the CA, retried): permit (CAA only),
  or refuse.

Statuses (RFC 4033 §5, RFC 4035 §4.3):
- ``secure``: validated from the trust anchor (AD=1 from the validating resolver);
- ``insecure``: the zone is provably unsigned — an authenticated denial of a DS
  record at its delegation point (the DS proof in ``kakuin.va.dnssec``);
- ``bogus``: validation failed (expired signatures, a DS without a signed child,
  a broken chain); for a failed lookup, the resolver said so (EDE, RFC 8914) or
  the data is there when checking is disabled (CD=1);
- ``indeterminate``: none of the above could be established (AD=0 without a DS
  proof — e.g. a resolver that does not validate; or the proof failed).

For a failed lookup the status is that of the zone the name is in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ANSWER_TABLE", "FAILURE_TABLE", "STATUSES", "DNSSECDecision", "Purpose", "Status",
    "Verdict", "answer_decision", "failure_decision", "worst",
]

Status = Literal["secure", "insecure", "bogus", "indeterminate"]
Purpose = Literal["caa", "dcv"]  # dcv: dns-01, and the address lookups of http-01/tls-alpn-01
Verdict = Literal["rely", "permit", "refuse"]

# Best first: the status of several lookups together is the worst of them.
STATUSES: tuple[Status, ...] = ("secure", "insecure", "indeterminate", "bogus")


@dataclass(frozen=True, slots=True)
class DNSSECDecision:
    verdict: Verdict  # rely on the answer / treat the failure as permission / refuse
    reason: str

    @property
    def refused(self) -> bool:
        return self.verdict == "refuse"


# BR 3.2.2.4 and 3.2.2.8.1 (effective 2026-03-15): DNSSEC validation back to the
# IANA root trust anchor MUST be performed on the DNS queries of domain validation
# and CAA (Primary Network Perspective); DNSSEC-validation errors (e.g. SERVFAIL)
# MUST NOT be treated as permission to issue.
_VALIDATED = "validated from the trust anchor (AD=1)"
_UNSIGNED = "the zone is provably unsigned (authenticated denial of its DS)"
_NOT_REQUIRED = "DNSSEC not required (va.dnssec = false): relied on without proof"
_UNPROVEN = ("BR 3.2.2.4/3.2.2.8.1: DNSSEC validation could not be established "
             "(not authenticated, and the zone is not provably unsigned)")
_BOGUS = "BR 3.2.2.4/3.2.2.8.1: DNSSEC validation failed (bogus): never permission to issue"

# (status, DNSSEC required) → (verdict, why). Bogus answers never reach an
# answer (a validating resolver turns them into SERVFAIL); the rows are here so
# that a bogus status, however it was found, refuses.
ANSWER_TABLE: dict[tuple[Status, bool], tuple[Verdict, str]] = {
    ("secure", True): ("rely", _VALIDATED),
    ("secure", False): ("rely", _VALIDATED),
    ("insecure", True): ("rely", _UNSIGNED),
    ("insecure", False): ("rely", _UNSIGNED),
    ("indeterminate", True): ("refuse", _UNPROVEN),
    ("indeterminate", False): ("rely", _NOT_REQUIRED),
    ("bogus", True): ("refuse", _BOGUS),
    ("bogus", False): ("refuse", _BOGUS),
}

_DCV_FAILED = "BR 3.2.2.4: a failed domain validation lookup proves nothing: refused"
_SIGNED = ("BR 3.2.2.8: the zone has a DNSSEC chain to the root, so a lookup failure "
           "is not permission to issue")
_NO_PROOF = ("BR 3.2.2.8: the zone is not provably unsigned, so a lookup failure is not "
             "permission to issue")
_INSIDE = ("BR 3.2.2.8: the failure is inside the CA's infrastructure (our resolver did "
           "not answer or refused), so it is not permission to issue")
_NOT_RETRIED = "BR 3.2.2.8: the lookup was not retried, so a failure is not permission"
_PERMIT = ("BR 3.2.2.8: failure outside the CA's infrastructure, retried, and the zone "
           "has no DNSSEC chain to the root: treated as permission to issue")

# (purpose, zone status, failure outside the CA, retried) → (verdict, why).
# Only one cell permits: the CAA exception of BR 3.2.2.8.
FAILURE_TABLE: dict[tuple[Purpose, Status, bool, bool], tuple[Verdict, str]] = {
    ("caa", "secure", True, True): ("refuse", _SIGNED),
    ("caa", "secure", True, False): ("refuse", _SIGNED),
    ("caa", "secure", False, True): ("refuse", _SIGNED),
    ("caa", "secure", False, False): ("refuse", _SIGNED),
    ("caa", "insecure", True, True): ("permit", _PERMIT),
    ("caa", "insecure", True, False): ("refuse", _NOT_RETRIED),
    ("caa", "insecure", False, True): ("refuse", _INSIDE),
    ("caa", "insecure", False, False): ("refuse", _INSIDE),
    ("caa", "indeterminate", True, True): ("refuse", _NO_PROOF),
    ("caa", "indeterminate", True, False): ("refuse", _NO_PROOF),
    ("caa", "indeterminate", False, True): ("refuse", _NO_PROOF),
    ("caa", "indeterminate", False, False): ("refuse", _NO_PROOF),
    ("caa", "bogus", True, True): ("refuse", _BOGUS),
    ("caa", "bogus", True, False): ("refuse", _BOGUS),
    ("caa", "bogus", False, True): ("refuse", _BOGUS),
    ("caa", "bogus", False, False): ("refuse", _BOGUS),
    ("dcv", "secure", True, True): ("refuse", _DCV_FAILED),
    ("dcv", "secure", True, False): ("refuse", _DCV_FAILED),
    ("dcv", "secure", False, True): ("refuse", _DCV_FAILED),
    ("dcv", "secure", False, False): ("refuse", _DCV_FAILED),
    ("dcv", "insecure", True, True): ("refuse", _DCV_FAILED),
    ("dcv", "insecure", True, False): ("refuse", _DCV_FAILED),
    ("dcv", "insecure", False, True): ("refuse", _DCV_FAILED),
    ("dcv", "insecure", False, False): ("refuse", _DCV_FAILED),
    ("dcv", "indeterminate", True, True): ("refuse", _DCV_FAILED),
    ("dcv", "indeterminate", True, False): ("refuse", _DCV_FAILED),
    ("dcv", "indeterminate", False, True): ("refuse", _DCV_FAILED),
    ("dcv", "indeterminate", False, False): ("refuse", _DCV_FAILED),
    ("dcv", "bogus", True, True): ("refuse", _BOGUS),
    ("dcv", "bogus", True, False): ("refuse", _BOGUS),
    ("dcv", "bogus", False, True): ("refuse", _BOGUS),
    ("dcv", "bogus", False, False): ("refuse", _BOGUS),
}


def _status(status: str | None) -> Status:
    # An unknown or missing status is the least trustworthy one that is not bogus.
    return status if status in STATUSES else "indeterminate"  # type: ignore[return-value]


def answer_decision(status: str | None, *, require_dnssec: bool) -> DNSSECDecision:
    """May the VA rely on an answer with this DNSSEC status?"""
    verdict, reason = ANSWER_TABLE[(_status(status), bool(require_dnssec))]
    return DNSSECDecision(verdict, reason)


def failure_decision(purpose: Purpose, status: str | None, *, outside: bool,
                     retried: bool) -> DNSSECDecision:
    """What a failed lookup means: "permit" (the CAA exception) or "refuse"."""
    verdict, reason = FAILURE_TABLE[(purpose, _status(status), bool(outside), bool(retried))]
    return DNSSECDecision(verdict, reason)


def worst(statuses: Iterable[str | None]) -> Status | None:
    """The least trustworthy of ``statuses`` (None entries ignored; None if none)."""
    seen = [_status(s) for s in statuses if s is not None]
    return max(seen, key=STATUSES.index) if seen else None
