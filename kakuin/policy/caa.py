"""CAA decision logic (RFC 8659, RFC 8657): pure, no DNS.

The VA (``kakuin.va.caa``) finds the Relevant RRset and hands its records here.
Everything that decides "may kakuin issue?" lives in this module, so it can be
read in one sitting and tested without a resolver:

- ``on_lookup``: what one CAA query's outcome means for the tree climb;
- ``LOOKUP_FAILURE_ALLOWS`` / ``lookup_failure_decision``: what a failed lookup
  means (issue #8 refines this with DNSSEC; change it here and only here);
- ``decide_caa``: the decision over a Relevant RRset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from kakuin.policy.dnssec import failure_decision

__all__ = [
    "CAADecision", "CAARecord", "IssueValue", "LOOKUP_FAILURE_ALLOWS", "decide_caa",
    "lookup_failure_decision", "on_lookup", "parse_issue_value",
]

# RFC 8659 §3/§6 (paraphrased): a CA that cannot get a definitive answer (SERVFAIL,
# timeout) may treat it as forbidding issuance. BR 3.2.2.8 lets a CA go ahead on a
# lookup failure only when the failure is outside the CA's infrastructure, was
# retried, and the zone has no DNSSEC chain to the ICANN root. Which failures
# qualify is decided by kakuin.policy.dnssec.FAILURE_TABLE (issue #8); without
# that evidence (the defaults of lookup_failure_decision) a failure refuses.
LOOKUP_FAILURE_ALLOWS = False

# RFC 8659 §4.1: "Issuer Critical Flag: If the value is set to "1", the Property is
# critical." — bit 0 in network order, i.e. the value 128. Like Boulder we also
# honour the value 1, which zone operators widely use by mistake; reading it as
# critical can only make us more careful.
CRITICAL_FLAGS = 128 | 1

# RFC 8659 §4.2 ABNF:
#   issue-value = *WSP [issuer-domain-name *WSP] [";" *WSP [parameters *WSP]]
#   issuer-domain-name = label *("." label)
#   label = (ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT))
#   parameters = (parameter *WSP ";" *WSP parameters) / parameter
#   parameter = tag *WSP "=" *WSP value
#   tag = (ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT))
#   value = *(%x21-3A / %x3C-7E)
_LABEL = r"[A-Za-z0-9](?:-*[A-Za-z0-9])*"
_ISSUER = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_TAG = re.compile(_LABEL)
_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]*")
_WSP = " \t"
# RFC 8657 §4: validationmethods value = [*(label ",") label], label = 1*(ALPHA / DIGIT / "-")
_METHOD = re.compile(r"[A-Za-z0-9-]+")

# Tags we understand. RFC 8659 §4.2-4.4 define issue, issuewild and iodef; the
# CA/Browser Forum BR (appendix A) define contactemail and contactphone, which say
# whom to contact and restrict nothing; RFC 9495's issuemail governs S/MIME
# certificates and restricts nothing for a server certificate, so a critical one
# must not stop TLS issuance (Boulder ignores it too).
KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef", "contactemail", "contactphone", "issuemail"})
# RFC 8659 §4.4: iodef URLs with the mailto:, http: or https: schemes.
IODEF_SCHEMES = ("mailto:", "http:", "https:")


@dataclass(frozen=True, slots=True)
class CAARecord:
    """One CAA resource record: flags, tag (as published) and value."""

    flags: int
    tag: str
    value: str

    @property
    def critical(self) -> bool:
        return bool(self.flags & CRITICAL_FLAGS)

    @property
    def tag_lower(self) -> str:
        # RFC 8659 §4.1: matching of Property Tags is case insensitive.
        return self.tag.lower()

    def __str__(self) -> str:
        return f'{self.flags} {self.tag} "{self.value}"'


@dataclass(frozen=True, slots=True)
class IssueValue:
    """A parsed issue/issuewild value. ``issuer`` is lower-cased, None when empty;
    ``malformed`` says why the value fails the grammar (then it authorizes no one)."""

    issuer: str | None
    parameters: tuple[tuple[str, str], ...] = ()
    malformed: str | None = None

    def params(self, tag: str) -> list[str]:
        return [v for t, v in self.parameters if t == tag]


@dataclass(frozen=True, slots=True)
class CAADecision:
    allowed: bool
    reason: str
    # "issue" or "issuewild": which property set was applied; None when none restricts.
    applied_tag: str | None = None
    matched: CAARecord | None = None  # the record that authorized issuance
    # Why each applicable record did not authorize us: (record, reason).
    rejected: tuple[tuple[str, str], ...] = ()
    iodef: tuple[str, ...] = field(default=())  # RFC 8659 §4.4 report URLs to alert


def on_lookup(rcode: str, has_records: bool) -> Literal["decide", "climb", "fail"]:
    """RFC 8659 §3 — what one query at one level of the tree climb means.

    NOERROR with CAA records: this is the Relevant RRset, decide on it.
    NOERROR without records (NODATA) or NXDOMAIN: "the CAA RRset is empty", climb.
    Anything else (SERVFAIL, REFUSED, timeout): the lookup failed.
    """
    if rcode == "NOERROR":
        return "decide" if has_records else "climb"
    if rcode == "NXDOMAIN":
        return "climb"
    return "fail"


def lookup_failure_decision(name: str, reason: str, *, dnssec: str | None = None,
                            outside: bool = False, retried: bool = False) -> CAADecision:
    """The decision when the CAA lookup at ``name`` failed: refuse, unless
    ``kakuin.policy.dnssec`` grants the BR 3.2.2.8 exception — ``dnssec`` is the
    zone's status, ``outside`` whether the failure is outside the CA's
    infrastructure, ``retried`` whether the lookup was retried. Without that
    evidence the answer is LOOKUP_FAILURE_ALLOWS."""
    if dnssec is None:
        return CAADecision(allowed=LOOKUP_FAILURE_ALLOWS,
                           reason=f"CAA lookup failed at {name}: {reason}")
    rule = failure_decision("caa", dnssec, outside=outside, retried=retried)
    return CAADecision(allowed=rule.verdict == "permit",
                       reason=f"CAA lookup failed at {name}: {reason} "
                              f"(DNSSEC: {dnssec}); {rule.reason}")


def parse_issue_value(value: str) -> IssueValue:
    """Parse an issue/issuewild property value per RFC 8659 §4.2."""
    head, sep, rest = value.partition(";")
    issuer = head.strip(_WSP)
    if issuer and not _ISSUER.fullmatch(issuer):
        return IssueValue(None, (), f"issuer-domain-name {issuer!r} is not valid")
    params: list[tuple[str, str]] = []
    if sep and rest.strip(_WSP):
        for part in rest.split(";"):
            tag, eq, val = part.partition("=")
            tag, val = tag.strip(_WSP), val.strip(_WSP)
            if not eq or not _TAG.fullmatch(tag) or not _VALUE.fullmatch(val):
                return IssueValue(issuer.lower() or None, (),
                                  f"parameter {part.strip(_WSP)!r} is not tag=value")
            params.append((tag.lower(), val))
    return IssueValue(issuer.lower() or None, tuple(params))


def _why_not(record: CAARecord, *, identities: set[str], account_uri: str | None,
             method: str | None) -> str | None:
    """None when ``record`` authorizes us for this request, else the reason it does not."""
    parsed = parse_issue_value(record.value)
    if parsed.malformed:
        # RFC 8659 §4.2: a value that does not follow the grammar authorizes no issuer
        # (it is treated like an empty issuer-domain-name).
        return f"malformed: {parsed.malformed}"
    if parsed.issuer is None:
        # RFC 8659 §4.2: "FQDN owners can use an issue Property with no
        # issuer-domain-name to request no issuance."
        return "empty issuer-domain-name: no issuance requested"
    # RFC 8659 §4.2: the issuer-domain-name names the CA; domain names compare
    # case-insensitively (RFC 4343), so both sides are lower-cased.
    if parsed.issuer not in identities:
        return f"names issuer {parsed.issuer}, not {', '.join(sorted(identities))}"
    # RFC 8657 §3 (paraphrased): a record with an accounturi parameter authorizes
    # issuance only to the ACME account with exactly that URI; a record carrying
    # more than one accounturi parameter cannot be satisfied.
    uris = parsed.params("accounturi")
    if len(uris) > 1:
        return "more than one accounturi parameter"
    if uris and (account_uri is None or uris[0] != account_uri):
        return f"accounturi {uris[0]} does not match account {account_uri or '(none)'}"
    # RFC 8657 §4: with a validationmethods parameter the CA may issue only when the
    # method used to validate the name is listed (names are ACME challenge types).
    methods = parsed.params("validationmethods")
    if len(methods) > 1:
        return "more than one validationmethods parameter"
    if methods:
        listed = methods[0].split(",")
        if not all(_METHOD.fullmatch(m) for m in listed):
            return f"validationmethods {methods[0]!r} is not a list of method names"
        if method is None or method not in listed:
            return f"validationmethods {methods[0]} excludes {method or '(unknown method)'}"
    # Other parameters are not ours to interpret; like Boulder we ignore them.
    return None


def decide_caa(records: list[CAARecord], *, identities: set[str], wildcard: bool,
               account_uri: str | None, method: str | None) -> CAADecision:
    """Decide on the Relevant RRset ``records`` (empty: no CAA anywhere in the tree)."""
    ids = {i.lower().rstrip(".") for i in identities}
    iodef = tuple(r.value.strip() for r in records
                  if r.tag_lower == "iodef" and r.value.strip().lower().startswith(IODEF_SCHEMES))
    if not records:
        return CAADecision(True, "no CAA records: issuance not restricted")
    # RFC 8659 §4.1: "A CA MUST NOT issue certificates for any FQDN if the Relevant
    # RRset for that FQDN contains a CAA critical Property for an unknown or
    # unsupported Property Tag."
    critical = [r for r in records if r.critical and r.tag_lower not in KNOWN_TAGS]
    if critical:
        return CAADecision(False, f"critical CAA property with unknown tag: {critical[0]}",
                           rejected=tuple((str(r), "critical, unknown tag") for r in critical),
                           iodef=iodef)
    issue = [r for r in records if r.tag_lower == "issue"]
    issuewild = [r for r in records if r.tag_lower == "issuewild"]
    # RFC 8659 §4.3: "Each issuewild Property MUST be ignored when processing a
    # request for an FQDN that is not a Wildcard Domain Name." and "If at least one
    # issuewild Property is specified in the Relevant RRset for a Wildcard Domain
    # Name, each issue Property MUST be ignored when processing a request for that
    # Wildcard Domain Name."
    applied_tag, applied = ("issuewild", issuewild) if wildcard and issuewild else ("issue", issue)
    if not applied:
        # RFC 8659 §4: if the Relevant RRset "contains no Property Tags that restrict
        # issuance (for instance, if it contains only iodef Property Tags or only
        # Property Tags unrecognized by the CA), CAA does not restrict issuance".
        return CAADecision(True, "CAA records present but none restricts issuance", iodef=iodef)
    rejected: list[tuple[str, str]] = []
    for record in applied:
        why = _why_not(record, identities=ids, account_uri=account_uri, method=method)
        if why is None:
            # RFC 8659 §4.2: authorizations add up; one matching property suffices.
            return CAADecision(True, f"authorized by {applied_tag} property {record}",
                               applied_tag=applied_tag, matched=record,
                               rejected=tuple(rejected), iodef=iodef)
        rejected.append((str(record), why))
    detail = "; ".join(f"{rec}: {why}" for rec, why in rejected)
    return CAADecision(False, f"no {applied_tag} property authorizes this CA ({detail})",
                       applied_tag=applied_tag, rejected=tuple(rejected), iodef=iodef)
