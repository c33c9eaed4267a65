"""The issuance pipeline: records before it signs, refuses without storing,
and survives a kill at every step without ever reusing a serial."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select

from kakuin.ca.issuer import IssueRequest
from kakuin.clock import UTC
from kakuin.errors import BlockedKeyError, KeyRuleError, LintError, NameRuleError, SubjectRuleError
from kakuin.policy.keys import spki_sha256
from kakuin.store.models import Certificate
from kakuin.store.repos import BlockedKeyRepo, CertificateRepo
from tests.helpers import add_institution, ec_key, ov_name, rsa_key

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def count(ctx) -> int:  # type: ignore[no-untyped-def]
    with ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(Certificate)) or 0


def dv(key, *names: str) -> IssueRequest:  # type: ignore[no-untyped-def]
    return IssueRequest(
        profile="server-dv", public_key=key.public_key(), subject=ov_name(), dns_names=names or ("www.example.ac.jp",)
    )


def test_issued_record_says_every_step(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(NOW)
    issued = ctx.issuance.issue(dv(ec_key()))
    with ctx.db.session() as s:
        rec = CertificateRepo(s).by_serial(issued.serial)
    assert rec.state == "issued" and rec.der == issued.certificate.public_bytes(Encoding.DER)
    assert rec.reserved_at and rec.linted_at and rec.issued_at
    assert int(issued.serial, 16) == issued.certificate.serial_number


def test_serials_are_random_and_positive() -> None:
    from kakuin.ca.issuer import random_serial

    serials = [random_serial() for _ in range(2000)]
    assert len(set(serials)) == 2000 and all(0 < s < 2**127 for s in serials)
    # 127 random bits: the top 63 bits alone (≥ 64 bits of CSPRNG output overall) vary.
    assert len({s >> 64 for s in serials}) == 2000


@pytest.mark.parametrize(
    "key,rule",
    [
        (rsa_key(1024), "rsa-size"),
        (ec.generate_private_key(ec.SECP521R1()), "ec-curve"),
        (ed25519.Ed25519PrivateKey.generate(), "key-type"),
    ],
    ids=["rsa1024", "p521", "ed25519"],
)
def test_key_rules_refuse_and_store_nothing(make_ctx, key, rule) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(NOW)
    before = count(ctx)
    with pytest.raises(KeyRuleError) as e:
        ctx.issuance.issue(dv(key))
    assert e.value.rule == rule
    assert count(ctx) == before


def test_blocked_key_is_refused(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(NOW)
    key = ec_key()
    with ctx.db.session() as s:
        BlockedKeyRepo(s).block(spki_sha256(key.public_key()), "test", None, NOW)
    with pytest.raises(BlockedKeyError):
        ctx.issuance.issue(dv(key))
    assert count(ctx) == 0


def test_subject_rule_refusal_names_field(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(NOW)
    add_institution(ctx)
    req = IssueRequest(
        profile="server-ov",
        public_key=ec_key().public_key(),
        subject=ov_name(l="Academe", st=None),
        dns_names=("www.example.ac.jp",),
        institution="Example University",
    )
    with pytest.raises(SubjectRuleError) as e:
        ctx.issuance.issue(req)
    assert (e.value.field, e.value.rule) == ("L", "l-placeholder")
    wrong_o = IssueRequest(
        profile="server-ov",
        public_key=ec_key().public_key(),
        subject=ov_name(o="Other University"),
        dns_names=("www.example.ac.jp",),
        institution="Example University",
    )
    with pytest.raises(SubjectRuleError) as e:
        ctx.issuance.issue(wrong_o)
    assert e.value.rule == "o-mismatch"
    assert count(ctx) == 0


def test_names_outside_the_institution_are_refused(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(NOW)
    add_institution(ctx)
    req = IssueRequest(
        profile="server-ov",
        public_key=ec_key().public_key(),
        subject=ov_name(cn="www.other.ac.jp"),
        dns_names=("www.other.ac.jp",),
        institution="Example University",
    )
    with pytest.raises(NameRuleError) as e:
        ctx.issuance.issue(req)
    assert e.value.rule == "domain-not-registered"


@pytest.mark.parametrize(
    "name,rule",
    [
        ("WWW.example.ac.jp", "dns-case"),
        ("10.0.0.1", "dns-ip"),
        ("*.jp", "dns-wildcard"),
        ("foo", "dns-fqdn"),
        ("a..example.ac.jp", "dns-label"),
        ("-a.example.ac.jp", "dns-label"),
    ],
)
def test_bad_dns_names(make_ctx, name, rule) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(NOW)
    with pytest.raises(NameRuleError) as e:
        ctx.issuance.issue(dv(ec_key(), name))
    assert e.value.rule == rule


def test_lint_failure_records_failed_and_signs_nothing(make_ctx) -> None:  # type: ignore[no-untyped-def]
    from cryptography import x509

    ctx = make_ctx(NOW)
    # An extension pkilint refuses in a TLS subscriber certificate: basicConstraints CA:TRUE.
    bad = IssueRequest(
        profile="server-dv",
        public_key=ec_key().public_key(),
        subject=ov_name(),
        dns_names=("www.example.ac.jp",),
        extra_extensions=(
            (x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.ac.jp")], excluded_subtrees=None), True),
        ),
    )
    with pytest.raises(LintError):
        ctx.issuance.issue(bad)
    with ctx.db.session() as s:
        rows = s.scalars(select(Certificate)).all()
    assert len(rows) == 1 and rows[0].state == "failed" and rows[0].der is None
    assert rows[0].failure.startswith("lint:")


CRASH_SCRIPT = textwrap.dedent(
    """
    import datetime as dt, os, signal, sys
    from pathlib import Path
    from kakuin.ca.issuer import IssueRequest
    from kakuin.clock import FixedClock, UTC
    from kakuin.context import Context
    from tests.helpers import ec_key, ov_name
    ctx = Context.open(Path(sys.argv[1]), clock=FixedClock(dt.datetime.fromisoformat(sys.argv[3])))
    def on_step(name):
        print("step", name, flush=True)
        if name == sys.argv[2]:
            os.kill(os.getpid(), signal.SIGKILL)
    issued = ctx.issuance.issue(IssueRequest(profile="server-dv", public_key=ec_key().public_key(),
                                subject=ov_name(), dns_names=("www.example.ac.jp",)), on_step=on_step)
    print("serial", issued.serial, flush=True)
    """
)


@pytest.mark.parametrize(
    "kill_at,expected_state",
    [("reserved", "reserved"), ("linted", "linted"), ("signed", "linted"), ("stored", "issued")],
)
def test_kill_at_each_step(make_ctx, kill_at, expected_state) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(NOW)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(ctx.config.data_dir), kill_at, NOW.isoformat()],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stdout + proc.stderr
    assert f"step {kill_at}" in proc.stdout
    with ctx.db.session() as s:
        rows = s.scalars(select(Certificate)).all()
    assert len(rows) == 1
    crashed = rows[0]
    assert crashed.state == expected_state
    if expected_state != "issued":
        assert crashed.der is None  # nothing signed was ever stored without its record
    # A restart later: stale intents are marked, and new issuance draws a new serial.
    ctx.clock.advance(dt.timedelta(minutes=11))
    assert ctx.issuance.recover() == (0 if expected_state == "issued" else 1)
    with ctx.db.session() as s:
        again = CertificateRepo(s).by_serial(crashed.serial)
    assert again.state == ("issued" if expected_state == "issued" else "abandoned")
    if again.state == "abandoned":
        # Killed before the lint, nothing was signed; after it (killed at "linted"
        # or right after the signature, at "signed") the record may not say so.
        if expected_state == "reserved":
            assert "nothing was signed" in (again.failure or "")
        else:
            assert "may have signed" in (again.failure or "")
    issued = ctx.issuance.issue(dv(ec_key()))
    assert issued.serial != crashed.serial
    with ctx.db.session() as s:
        assert s.scalar(select(func.count(func.distinct(Certificate.serial)))) == 2


def test_serial_collision_draws_again(make_ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import kakuin.ca.issuer as issuer

    ctx = make_ctx(NOW)
    first = ctx.issuance.issue(dv(ec_key()))
    draws = iter([int(first.serial, 16), 0x1234567890ABCDEF1234])
    monkeypatch.setattr(issuer, "random_serial", lambda: next(draws))
    second = ctx.issuance.issue(dv(ec_key()))
    assert second.serial == "1234567890abcdef1234"


def test_issue_batch_reports_each_row_and_records_only_what_it_may(make_ctx) -> None:  # type: ignore[no-untyped-def]
    from kakuin.ca.issuer import Issued

    ctx = make_ctx(NOW)
    blocked = ec_key()
    with ctx.db.session() as s:
        BlockedKeyRepo(s).block(spki_sha256(blocked.public_key()), "test", None, NOW)
    reqs = [dv(ec_key()), dv(rsa_key(1024)), dv(blocked), dv(ec_key(), "Bad..Name"), dv(rsa_key())]
    out = ctx.issuance.issue_batch(reqs)
    assert isinstance(out[0], Issued) and isinstance(out[4], Issued)
    assert isinstance(out[1], KeyRuleError) and out[1].rule == "rsa-size"
    assert isinstance(out[2], BlockedKeyError)
    assert isinstance(out[3], NameRuleError)
    with ctx.db.session() as s:
        rows = s.scalars(select(Certificate)).all()
    assert sorted(r.serial for r in rows) == sorted([out[0].serial, out[4].serial])
    assert all(r.state == "issued" and r.der for r in rows)


def test_a_failure_after_signing_says_so(make_ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The record of a certificate whose storing failed says the CA had signed."""
    ctx = make_ctx(NOW)
    add_institution(ctx)

    def blip(*a: object, **kw: object) -> None:
        raise RuntimeError("db blip")

    monkeypatch.setattr(ctx.issuance.ledger, "mark_issued", blip)
    with pytest.raises(RuntimeError):
        ctx.issuance.issue(dv(ec_key()))
    with ctx.db.session() as s:
        [row] = s.scalars(select(Certificate)).all()
    assert row.state == "failed" and row.der is None
    assert (row.failure or "").startswith("signed, then storing failed: RuntimeError: db blip")
