"""Revocation requests, deadlines (BR 4.9.1.1), actors, the key blocklist."""

from __future__ import annotations

import datetime as dt

import pytest

from kakuin.clock import UTC
from kakuin.errors import PolicyError, Unauthorized
from kakuin.ra.revocation import (
    AFFILIATION_CHANGED,
    KEY_COMPROMISE,
    SUPERSEDED,
    UNSPECIFIED,
    revocation_deadline,
)
from kakuin.store.repos import CertificateRepo, InstitutionRepo
from tests.helpers import add_institution, ec_key, make_csr, ov_name
from tests.status_helpers import issue_dv, kakuin

T = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("reason,subscriber,hours", [
    (KEY_COMPROMISE, False, 24), (KEY_COMPROMISE, True, 24), (UNSPECIFIED, True, 24),
    (AFFILIATION_CHANGED, False, 120), (SUPERSEDED, True, 120), (UNSPECIFIED, False, 120),
])
def test_deadline_table(reason: int, subscriber: bool, hours: int) -> None:
    assert revocation_deadline(reason, T, by_subscriber=subscriber) == T + dt.timedelta(hours=hours)


def test_key_compromise_report_is_due_in_24h_and_flagged_overdue(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(T)
    issued = issue_dv(ctx)
    p = ctx.revocation.report(issued.serial, "keyCompromise", reported_by="officer:alice")
    assert p.deadline == T + dt.timedelta(hours=24) and not p.overdue
    ctx.clock.advance(dt.timedelta(hours=23, minutes=59))
    assert not ctx.revocation.pending()[0].overdue
    ctx.clock.advance(dt.timedelta(minutes=2))
    [late] = ctx.revocation.pending()
    assert late.overdue and late.time_left < dt.timedelta(0)
    # the revocation closes the request
    r = ctx.revocation.revoke(issued.serial, KEY_COMPROMISE, actor="officer:alice", request_id=p.id)
    assert r.request_id == p.id and ctx.revocation.pending() == []


def test_pending_cli_shows_overdue(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(dt.datetime.now(UTC) - dt.timedelta(days=6))  # reported six days ago
    issued = issue_dv(ctx)
    ctx.revocation.report(issued.serial, "superseded", reported_by="officer:bob")
    res = kakuin(ctx.config.data_dir, "revocations", "pending")
    assert res.returncode == 3, res.stdout + res.stderr
    assert issued.serial in res.stdout and "OVERDUE" in res.stdout


def test_unspecified_needs_a_comment(ctx) -> None:  # type: ignore[no-untyped-def]
    issued = issue_dv(ctx)
    with pytest.raises(PolicyError, match="needs a comment"):
        ctx.revocation.revoke(issued.serial, UNSPECIFIED, actor="operator:test")
    r = ctx.revocation.revoke(issued.serial, UNSPECIFIED, actor="operator:test", comment="decommissioned")
    assert r.reason == UNSPECIFIED


def test_reason_not_allowed_for_subscribers(ctx) -> None:  # type: ignore[no-untyped-def]
    issued = issue_dv(ctx)
    with pytest.raises(PolicyError, match="not allowed"):
        ctx.revocation.revoke(issued.serial, 6, actor="operator:test")  # certificateHold: BR 7.2.2


def test_officer_cannot_revoke_another_institutions_certificate(ctx) -> None:  # type: ignore[no-untyped-def]
    from kakuin.ca.issuer import IssueRequest

    add_institution(ctx)
    add_institution(ctx, "Other University", ("other.ac.jp",))
    with ctx.db.session() as s:
        ours = InstitutionRepo(s).by_name("Example University").id
        other = InstitutionRepo(s).by_name("Other University").id
    issued = ctx.issuance.issue(IssueRequest(profile="server-ov", public_key=ec_key().public_key(),
                                             subject=ov_name(), dns_names=("www.example.ac.jp",),
                                             institution="Example University"))
    with pytest.raises(Unauthorized):
        ctx.revocation.revoke(issued.serial, AFFILIATION_CHANGED, actor="officer:x", actor_institution_id=other)
    with pytest.raises(Unauthorized):
        ctx.revocation.report(issued.serial, AFFILIATION_CHANGED, reported_by="officer:x", actor_institution_id=other)
    # on behalf of a subscriber who has left: the officer of the same institution may
    r = ctx.revocation.revoke(issued.serial, AFFILIATION_CHANGED, actor="officer:y", actor_institution_id=ours)
    assert r.reason == AFFILIATION_CHANGED


def test_key_compromise_offers_the_other_certificates_with_that_key(ctx) -> None:  # type: ignore[no-untyped-def]
    key = ec_key()
    a, b, c = issue_dv(ctx, "a.example.ac.jp", key), issue_dv(ctx, "b.example.ac.jp", key), issue_dv(ctx)
    r = ctx.revocation.revoke(a.serial, KEY_COMPROMISE, actor="acme:acct/1")
    assert r.blocked_key and set(r.same_key) == {b.serial}
    assert c.serial not in r.same_key


def test_blocked_key_is_refused_by_kakuin_issue_and_revoke_all_with_key(ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = ec_key()
    a, b = issue_dv(ctx, "a.example.ac.jp", key), issue_dv(ctx, "b.example.ac.jp", key)
    d = ctx.config.data_dir
    res = kakuin(d, "revoke", a.serial, "--reason", "keyCompromise", "--all-with-key")
    assert res.returncode == 0, res.stderr
    assert "key blocked" in res.stdout and f"revoked {b.serial}" in res.stdout
    with ctx.db.session() as s:
        assert CertificateRepo(s).by_serial(b.serial).revocation_reason == KEY_COMPROMISE
    csr = tmp_path / "new.csr"
    csr.write_bytes(make_csr(key, ov_name(cn="c.example.ac.jp"), dns=["c.example.ac.jp"]))
    res = kakuin(d, "issue", "--csr", str(csr), "--profile", "server-dv")
    assert res.returncode == 1
    assert "block" in res.stderr.lower() and "compromise" in res.stderr.lower(), res.stderr
    # a new key is fine
    csr.write_bytes(make_csr(ec_key(), ov_name(cn="c.example.ac.jp"), dns=["c.example.ac.jp"]))
    assert kakuin(d, "issue", "--csr", str(csr), "--profile", "server-dv").returncode == 0


def test_report_then_reject(ctx) -> None:  # type: ignore[no-untyped-def]
    issued = issue_dv(ctx)
    p = ctx.revocation.report(issued.serial, SUPERSEDED, reported_by="officer:z")
    with pytest.raises(PolicyError):
        ctx.revocation.reject(p.id, actor="officer:z", comment=" ")
    ctx.revocation.reject(p.id, actor="officer:z", comment="the certificate is still in use")
    assert ctx.revocation.pending() == []
