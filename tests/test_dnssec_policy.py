"""kakuin.policy.dnssec: every cell of both decision tables, and the CAA failure rule."""

from __future__ import annotations

import itertools

import pytest

from kakuin.policy import caa, dnssec
from kakuin.policy.dnssec import answer_decision, failure_decision, worst

S, N, B, X = "secure", "insecure", "bogus", "indeterminate"

# (status, va.dnssec) → verdict for an answer.
ANSWERS = [
    (S, True, "rely"), (S, False, "rely"),
    (N, True, "rely"), (N, False, "rely"),
    (X, True, "refuse"), (X, False, "rely"),
    (B, True, "refuse"), (B, False, "refuse"),
]

# (purpose, zone status, outside the CA, retried) → verdict for a failed lookup.
# Written out cell by cell: only the BR 3.2.2.8 exception permits.
FAILURES = [
    ("caa", S, True, True, "refuse"), ("caa", S, True, False, "refuse"),
    ("caa", S, False, True, "refuse"), ("caa", S, False, False, "refuse"),
    ("caa", N, True, True, "permit"), ("caa", N, True, False, "refuse"),
    ("caa", N, False, True, "refuse"), ("caa", N, False, False, "refuse"),
    ("caa", X, True, True, "refuse"), ("caa", X, True, False, "refuse"),
    ("caa", X, False, True, "refuse"), ("caa", X, False, False, "refuse"),
    ("caa", B, True, True, "refuse"), ("caa", B, True, False, "refuse"),
    ("caa", B, False, True, "refuse"), ("caa", B, False, False, "refuse"),
    ("dcv", S, True, True, "refuse"), ("dcv", S, True, False, "refuse"),
    ("dcv", S, False, True, "refuse"), ("dcv", S, False, False, "refuse"),
    ("dcv", N, True, True, "refuse"), ("dcv", N, True, False, "refuse"),
    ("dcv", N, False, True, "refuse"), ("dcv", N, False, False, "refuse"),
    ("dcv", X, True, True, "refuse"), ("dcv", X, True, False, "refuse"),
    ("dcv", X, False, True, "refuse"), ("dcv", X, False, False, "refuse"),
    ("dcv", B, True, True, "refuse"), ("dcv", B, True, False, "refuse"),
    ("dcv", B, False, True, "refuse"), ("dcv", B, False, False, "refuse"),
]


@pytest.mark.parametrize(("status", "required", "verdict"), ANSWERS)
def test_answer_cell(status: str, required: bool, verdict: str) -> None:
    d = answer_decision(status, require_dnssec=required)
    assert d.verdict == verdict
    assert d.refused is (verdict == "refuse")
    assert d.reason


@pytest.mark.parametrize(("purpose", "status", "outside", "retried", "verdict"), FAILURES)
def test_failure_cell(purpose: str, status: str, outside: bool, retried: bool,
                      verdict: str) -> None:
    d = failure_decision(purpose, status, outside=outside, retried=retried)  # type: ignore[arg-type]
    assert d.verdict == verdict
    assert "BR 3.2.2" in d.reason


def test_tables_cover_every_cell_and_nothing_else() -> None:
    assert set(dnssec.ANSWER_TABLE) == set(itertools.product(dnssec.STATUSES, (True, False)))
    assert set(dnssec.FAILURE_TABLE) == set(itertools.product(
        ("caa", "dcv"), dnssec.STATUSES, (True, False), (True, False)))
    assert {(s, r) for s, r, _ in ANSWERS} == set(dnssec.ANSWER_TABLE)
    assert {(p, s, o, r) for p, s, o, r, _ in FAILURES} == set(dnssec.FAILURE_TABLE)


def test_bogus_never_permits() -> None:
    for key, (verdict, _) in dnssec.FAILURE_TABLE.items():
        if key[1] == B:
            assert verdict == "refuse", key
    for key, (verdict, _) in dnssec.ANSWER_TABLE.items():
        if key[0] == B:
            assert verdict == "refuse", key


@pytest.mark.parametrize("status", [None, "", "weird"])
def test_unknown_status_is_indeterminate(status: str | None) -> None:
    assert answer_decision(status, require_dnssec=True).refused
    assert failure_decision("caa", status, outside=True, retried=True).refused


@pytest.mark.parametrize(("statuses", "expected"), [
    ([], None), ([None], None), ([S], S), ([S, N], N), ([N, X, S], X), ([S, B, X], B),
    ([None, S], S),
])
def test_worst(statuses: list, expected: str | None) -> None:
    assert worst(statuses) == expected


# -- kakuin.policy.caa consults the table -------------------------------------------

@pytest.mark.parametrize(("status", "outside", "retried", "allowed"), [
    (N, True, True, True),
    (N, True, False, False),
    (N, False, True, False),
    (S, True, True, False),
    (X, True, True, False),
    (B, True, True, False),
])
def test_caa_lookup_failure_decision(status: str, outside: bool, retried: bool,
                                     allowed: bool) -> None:
    d = caa.lookup_failure_decision("www.example.org", "SERVFAIL", dnssec=status,
                                    outside=outside, retried=retried)
    assert d.allowed is allowed
    assert "www.example.org" in d.reason and "SERVFAIL" in d.reason and "BR 3.2.2" in d.reason


def test_caa_lookup_failure_without_evidence_refuses() -> None:
    assert caa.LOOKUP_FAILURE_ALLOWS is False
    assert not caa.lookup_failure_decision("example.com", "timeout").allowed
