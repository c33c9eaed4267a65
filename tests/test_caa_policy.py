"""decide_caa and friends (kakuin.policy.caa): table-driven, no DNS."""

from __future__ import annotations

import re

import pytest

from kakuin.policy import caa
from kakuin.policy.caa import CAARecord, decide_caa, on_lookup, parse_issue_value

ME = "kakuin.example"
ACCT = "https://ca.kakuin.example/acme/acct/17"
_PRES = re.compile(r'^(\d+)\s+(\S+)\s+"(.*)"$')


def rec(text: str) -> CAARecord:
    """'0 issue "kakuin.example"' → CAARecord."""
    m = _PRES.match(text)
    assert m, text
    return CAARecord(int(m.group(1)), m.group(2), m.group(3))


def decide(records: list[str], *, ids: set[str] | None = None, wildcard: bool = False,
           account: str | None = ACCT, method: str | None = "http-01") -> caa.CAADecision:
    return decide_caa([rec(r) for r in records], identities=ids or {ME}, wildcard=wildcard,
                      account_uri=account, method=method)


# (id, records, options, allowed)
CASES = [
    # RFC 8659 §3/§4: no Relevant RRset anywhere → CAA does not restrict.
    ("no-records", [], {}, True),
    ("issue-us", ['0 issue "kakuin.example"'], {}, True),
    ("issuer-case-insensitive", ['0 issue "KAKUIN.Example"'], {}, True),
    ("tag-case-insensitive", ['0 ISSUE "kakuin.example"'], {}, True),
    ("issue-other-ca", ['0 issue "other-ca.example"'], {}, False),
    ("issuer-suffix-is-not-a-match", ['0 issue "ca.kakuin.example"'], {}, False),
    ("authorizations-add-up", ['0 issue "other-ca.example"', '0 issue "kakuin.example"'], {},
     True),
    ("empty-issuer-semicolon", ['0 issue ";"'], {}, False),
    ("empty-issuer-blank", ['0 issue ""'], {}, False),
    ("empty-issuer-beside-us", ['0 issue ";"', '0 issue "kakuin.example"'], {}, True),
    ("malformed-issuer", ['0 issue "kakuin_example"'], {}, False),
    ("malformed-issuer-trailing-dot", ['0 issue "kakuin.example."'], {}, False),
    ("malformed-parameter", ['0 issue "kakuin.example; accounturi"'], {}, False),
    ("trailing-semicolon", ['0 issue "kakuin.example;"'], {}, True),
    ("unknown-parameter-ignored", ['0 issue "kakuin.example; account=230123"'], {}, True),
    ("whitespace-around-parameters", [f'0 issue "  kakuin.example ;  accounturi = {ACCT} "'],
     {}, True),
    # RFC 8657 §3 accounturi — enforced.
    ("accounturi-match", [f'0 issue "kakuin.example; accounturi={ACCT}"'], {}, True),
    ("accounturi-mismatch", ['0 issue "kakuin.example; accounturi=https://x.example/acct/1"'],
     {}, False),
    ("accounturi-no-account", [f'0 issue "kakuin.example; accounturi={ACCT}"'],
     {"account": None}, False),
    ("accounturi-twice", [f'0 issue "kakuin.example; accounturi={ACCT}; accounturi={ACCT}"'],
     {}, False),
    ("accounturi-other-record-open", ['0 issue "kakuin.example; accounturi=https://x/1"',
                                      '0 issue "kakuin.example"'], {}, True),
    # RFC 8657 §4 validationmethods — enforced.
    ("methods-include", ['0 issue "kakuin.example; validationmethods=dns-01,http-01"'], {},
     True),
    ("methods-exclude", ['0 issue "kakuin.example; validationmethods=dns-01"'], {}, False),
    ("methods-unknown-method", ['0 issue "kakuin.example; validationmethods=dns-01"'],
     {"method": None}, False),
    ("methods-malformed", ['0 issue "kakuin.example; validationmethods=dns-01,,http-01"'], {},
     False),
    ("methods-and-account", [f'0 issue "kakuin.example; accounturi={ACCT}; '
                             'validationmethods=http-01"'], {}, True),
    # RFC 8659 §4.1 critical flag.
    ("critical-unknown-tag", ['0 issue "kakuin.example"', '128 tbs "Unknown"'], {}, False),
    ("critical-unknown-tag-alone", ['128 future "x"'], {}, False),
    ("critical-flag-value-1", ['0 issue "kakuin.example"', '1 tbs "Unknown"'], {}, False),
    ("noncritical-unknown-ignored", ['0 issue "kakuin.example"', '0 tbs "Unknown"'], {}, True),
    ("noncritical-unknown-alone", ['0 tbs "Unknown"'], {}, True),
    ("critical-iodef-is-known", ['128 iodef "mailto:sec@example.com"',
                                 '0 issue "kakuin.example"'], {}, True),
    ("critical-issue-is-known", ['128 issue "kakuin.example"'], {}, True),
    # RFC 9495: issuemail is known, and governs only S/MIME: no effect on TLS.
    ("critical-issuemail-is-known", ['128 issuemail "other.example"', '0 issue "kakuin.example"'], {}, True),
    ("critical-issuemail-alone", ['128 issuemail ";"'], {}, True),
    ("only-iodef", ['0 iodef "mailto:sec@example.com"'], {}, True),
    ("contactemail-known", ['128 contactemail "sec@example.com"'], {}, True),
    # RFC 8659 §4.3 issuewild.
    ("issuewild-us-for-wildcard", ['0 issue "other-ca.example"', '0 issuewild "kakuin.example"'],
     {"wildcard": True}, True),
    ("issuewild-ignored-for-non-wildcard",
     ['0 issue "other-ca.example"', '0 issuewild "kakuin.example"'], {}, False),
    ("issuewild-other-overrides-issue-us",
     ['0 issue "kakuin.example"', '0 issuewild "other-ca.example"'], {"wildcard": True}, False),
    ("wildcard-falls-back-to-issue", ['0 issue "kakuin.example"'], {"wildcard": True}, True),
    ("wildcard-issue-other", ['0 issue "other-ca.example"'], {"wildcard": True}, False),
    ("issuewild-forbid-all", ['0 issue "kakuin.example"', '0 issuewild ";"'], {"wildcard": True},
     False),
    ("only-issuewild-non-wildcard", ['0 issuewild "other-ca.example"'], {}, True),
    ("issuewild-methods-enforced", ['0 issuewild "kakuin.example; validationmethods=dns-01"'],
     {"wildcard": True}, False),
]


@pytest.mark.parametrize(("records", "options", "allowed"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide_caa(records: list[str], options: dict, allowed: bool) -> None:
    decision = decide(records, **options)
    assert decision.allowed is allowed, decision.reason


# RFC 8659 §4.2 and §4.3 examples, with the identity of the CA deciding.
RFC_EXAMPLES = [
    # certs.example.com CAA 0 issue "ca1.example.net" / CAA 0 issue "ca2.example.org"
    ("4.2-ca1", ['0 issue "ca1.example.net"', '0 issue "ca2.example.org"'], "ca1.example.net",
     False, True),
    ("4.2-ca2", ['0 issue "ca1.example.net"', '0 issue "ca2.example.org"'], "ca2.example.org",
     False, True),
    ("4.2-ca3", ['0 issue "ca1.example.net"', '0 issue "ca2.example.org"'], "ca3.example.com",
     False, False),
    # nocerts.example.com CAA 0 issue ";"
    ("4.2-nocerts", ['0 issue ";"'], "ca1.example.net", False, False),
    # example.com CAA 0 issue "ca1.example.net; account=230123"
    ("4.2-parameter", ['0 issue "ca1.example.net; account=230123"'], "ca1.example.net", False,
     True),
    # wild.example.com CAA 0 issue "ca1.example.net" / CAA 0 issuewild "ca2.example.org"
    ("4.3-plain-ca1", ['0 issue "ca1.example.net"', '0 issuewild "ca2.example.org"'],
     "ca1.example.net", False, True),
    ("4.3-plain-ca2", ['0 issue "ca1.example.net"', '0 issuewild "ca2.example.org"'],
     "ca2.example.org", False, False),
    ("4.3-wild-ca1", ['0 issue "ca1.example.net"', '0 issuewild "ca2.example.org"'],
     "ca1.example.net", True, False),
    ("4.3-wild-ca2", ['0 issue "ca1.example.net"', '0 issuewild "ca2.example.org"'],
     "ca2.example.org", True, True),
    # §4.1: example.com CAA 0 issue "ca.example.net" / 0 iodef "mailto:…" / 128 tbs "Unknown"
    ("4.1-critical", ['0 issue "ca.example.net"', '0 iodef "mailto:security@example.com"',
                      '128 tbs "Unknown"'], "ca.example.net", False, False),
]


@pytest.mark.parametrize(("records", "identity", "wildcard", "allowed"),
                         [c[1:] for c in RFC_EXAMPLES], ids=[c[0] for c in RFC_EXAMPLES])
def test_rfc8659_examples(records: list[str], identity: str, wildcard: bool,
                          allowed: bool) -> None:
    assert decide(records, ids={identity}, wildcard=wildcard).allowed is allowed


def test_rfc8657_example_accounturi_and_methods() -> None:
    # RFC 8657 §5 style: one account, only dns-01.
    records = ['0 issue "kakuin.example; accounturi=https://ca.kakuin.example/acct/1; '
               'validationmethods=dns-01"']
    ok = dict(account="https://ca.kakuin.example/acct/1", method="dns-01")
    assert decide(records, **ok).allowed
    assert not decide(records, account="https://ca.kakuin.example/acct/2",
                      method="dns-01").allowed
    assert not decide(records, account=ok["account"], method="http-01").allowed


def test_iodef_urls_are_reported_on_refusal_and_on_success() -> None:
    refused = decide(['0 issue "other-ca.example"', '0 iodef "mailto:sec@example.com"',
                      '0 iodef "https://iodef.example.com/report"', '0 iodef "ftp://x.example"'])
    assert not refused.allowed
    assert refused.iodef == ("mailto:sec@example.com", "https://iodef.example.com/report")
    allowed = decide(['0 issue "kakuin.example"', '0 IODEF "mailto:sec@example.com"'])
    assert allowed.allowed and allowed.iodef == ("mailto:sec@example.com",)


def test_refusal_says_why_for_each_record() -> None:
    d = decide(['0 issue "other-ca.example"', '0 issue "kakuin.example; validationmethods=dns-01"'])
    assert not d.allowed and d.applied_tag == "issue"
    assert [why for _, why in d.rejected] == [
        "names issuer other-ca.example, not kakuin.example",
        "validationmethods dns-01 excludes http-01"]


def test_matched_record_is_reported() -> None:
    d = decide(['0 issue "other-ca.example"', '0 issue "kakuin.example"'])
    assert d.matched == CAARecord(0, "issue", "kakuin.example")


def test_identities_compare_without_case_or_trailing_dot() -> None:
    assert decide(['0 issue "kakuin.example"'], ids={"Kakuin.Example."}).allowed


@pytest.mark.parametrize(("value", "issuer", "params", "malformed"), [
    ("kakuin.example", "kakuin.example", (), False),
    (";", None, (), False),
    ("", None, (), False),
    ("  Kakuin.Example  ", "kakuin.example", (), False),
    ("ca.example; a=1; B=2", "ca.example", (("a", "1"), ("b", "2")), False),
    ("ca.example;a=1;b=", "ca.example", (("a", "1"), ("b", "")), False),
    ("ca..example", None, (), True),
    ("-ca.example", None, (), True),
    ("ca.example; a b=1", "ca.example", (), True),
    ("ca.example; a=b c", "ca.example", (), True),
])
def test_parse_issue_value(value: str, issuer: str | None, params: tuple,
                           malformed: bool) -> None:
    parsed = parse_issue_value(value)
    assert parsed.issuer == issuer
    assert parsed.parameters == params
    assert (parsed.malformed is not None) is malformed


@pytest.mark.parametrize(("rcode", "has_records", "step"), [
    ("NOERROR", True, "decide"),
    ("NOERROR", False, "climb"),  # NODATA
    ("NXDOMAIN", False, "climb"),
    ("SERVFAIL", False, "fail"),
    ("REFUSED", False, "fail"),
])
def test_on_lookup(rcode: str, has_records: bool, step: str) -> None:
    assert on_lookup(rcode, has_records) == step


def test_lookup_failure_refuses() -> None:
    assert caa.LOOKUP_FAILURE_ALLOWS is False
    d = caa.lookup_failure_decision("example.com", "SERVFAIL")
    assert not d.allowed and "SERVFAIL" in d.reason
