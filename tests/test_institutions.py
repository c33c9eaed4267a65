"""Institutions and roles: yearly confirmation (and refusal once it lapses),
domains asked for and approved, officers with their client certificate, and
the CLI around them."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from kakuin.ca.issuer import IssueRequest
from kakuin.clock import UTC
from kakuin.errors import PolicyError, Unauthorized
from kakuin.ra.actors import Actor
from kakuin.ra.services import RA
from tests.helpers import ec_key, make_csr, ov_name, run
from tests.ra_helpers import INST, OP, outbox, pin_of, setup_institution

AT = dt.datetime(2025, 6, 2, tzinfo=UTC)


def _issue(ra: RA) -> str:
    return ra.ctx.issuance.issue(
        IssueRequest(
            profile="server-ov",
            public_key=ec_key().public_key(),
            subject=ov_name(l=None),
            dns_names=("www.example.ac.jp",),
            institution=INST,
        )
    ).serial


def test_confirmation_lasts_a_year_then_issuance_is_refused(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ra = RA(make_ctx(AT))
    setup_institution(ra)
    info = ra.institutions.get(INST, actor=OP)
    assert info.confirmed_until == dt.datetime(2026, 6, 2, tzinfo=UTC)
    assert _issue(ra)
    ra.ctx.clock.set(dt.datetime(2026, 6, 3, tzinfo=UTC))  # type: ignore[attr-defined]
    with pytest.raises(PolicyError) as e:
        _issue(ra)
    assert e.value.rule == "institution-unconfirmed"
    assert (
        "confirmed until 2026-06-02" in e.value.message and "年次確認の期限 2026-06-02 が過ぎている" in e.value.message
    )
    ra.institutions.confirm(INST, actor=OP)
    assert _issue(ra)


def test_never_confirmed_is_refused_only_when_policy_says_so(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ctx = make_ctx(AT)
    ra = RA(ctx)
    setup_institution(ra, confirm=False)
    assert _issue(ra)  # default: policy.require_institution_confirmation = false
    cfg = ctx.config.data_dir / "kakuin.toml"
    cfg.write_text(cfg.read_text().replace("[policy]\n", "[policy]\nrequire_institution_confirmation = true\n"))
    from kakuin.clock import FixedClock
    from kakuin.context import Context

    strict = RA(Context.open(ctx.config.data_dir, clock=FixedClock(AT)))
    with pytest.raises(PolicyError) as e:
        _issue(strict)
    assert e.value.rule == "institution-unconfirmed" and "never been confirmed" in e.value.message


def test_domains_are_asked_for_and_approved_by_the_ca(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ra = RA(make_ctx(AT))
    a = setup_institution(ra)
    b = setup_institution(ra, "Other University", domains=("other.ac.jp",))
    officer = Actor("officer:o@example.ac.jp", a)
    assert ra.institutions.add_domain(INST, "Lab.Example.JP", actor=officer).approved is False
    with pytest.raises(Unauthorized):
        ra.institutions.add_domain("Other University", "x.other.jp", actor=officer)
    with pytest.raises(Unauthorized):
        ra.institutions.approve_domain(INST, "lab.example.jp", actor=officer)
    with pytest.raises(PolicyError):
        ra.institutions.add_domain(INST, "other.ac.jp", actor=OP)  # another institution's
    ra.institutions.approve_domain(INST, "lab.example.jp", actor=OP)
    doms = {d.domain: d.approved for d in ra.institutions.get(INST, actor=officer).domains}
    assert doms == {"example.ac.jp": True, "lab.example.jp": True}
    assert [i.id for i in ra.institutions.list(actor=officer)] == [a] and b


def test_officer_gets_a_client_certificate_as_pkcs12(make_ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ra = RA(make_ctx(AT))
    setup_institution(ra)
    e = ra.institutions.add_officer(INST, name="Ichiro Suzuki", email="ichiro@example.ac.jp", actor=OP)
    assert e.pin_generated
    [mail] = outbox(ra.ctx, "access-pin")
    assert mail["To"] == "ichiro@example.ac.jp" and pin_of(mail) == e.pin
    p12 = tmp_path / "o.p12"
    p12.write_bytes(e.pkcs12)
    openssl = shutil.which("openssl")
    assert openssl, "openssl is required"
    res = run([openssl, "pkcs12", "-info", "-nokeys", "-in", p12, "-passin", f"pass:{e.pin}"])
    assert res.returncode == 0 and "Ichiro Suzuki" in res.stdout, res.stderr
    actor = ra.institutions.officer_actor(email="ichiro@example.ac.jp")
    from cryptography.hazmat.primitives.serialization import pkcs12

    _, cert, _ = pkcs12.load_key_and_certificates(e.pkcs12, e.pin.encode())
    assert cert is not None
    from kakuin.policy.keys import spki_sha256

    assert ra.institutions.officer_actor(spki_sha256_hex=spki_sha256(cert.public_key())) == actor
    assert actor.institution_id == ra.institutions.get(INST, actor=OP).id
    with pytest.raises(Unauthorized):
        ra.institutions.add_officer(INST, name="X", email="x@example.ac.jp", actor=actor)


def test_confirmation_reminder_goes_to_the_responsible_person(make_ctx) -> None:  # type: ignore[no-untyped-def]
    ra = RA(make_ctx(AT))
    setup_institution(ra)
    ra.institutions.add_person(INST, role="responsible", name="責任者", email="boss@example.ac.jp", actor=OP)
    assert ra.institutions.remind_confirmations() == 0
    ra.ctx.clock.set(dt.datetime(2026, 5, 10, tzinfo=UTC))  # type: ignore[attr-defined]
    assert ra.institutions.remind_confirmations() == 1
    assert ra.institutions.remind_confirmations() == 0  # once per confirmation period
    [mail] = outbox(ra.ctx, "confirm-reminder")
    assert mail["To"] == "boss@example.ac.jp" and "2026-06-02" in mail.get_body().get_content()


def test_cli_institution_officer_tsv_make_and_stats(make_ctx, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kakuin.cli import app

    ctx = make_ctx(AT)
    d = str(ctx.config.data_dir)
    runner = CliRunner()

    def cli(*args: str) -> str:
        res = runner.invoke(app, [*args, "--data-dir", d])
        assert res.exit_code == 0, res.output
        return res.output

    cli("institution", "add", INST, "--domain", "example.ac.jp", "--prefecture", "Tokyo")
    assert "confirmed until" in cli("institution", "confirm", INST)
    assert "pending approval" in cli("institution", "domain", "add", INST, "lab.example.ac.jp")
    cli("institution", "domain", "approve", INST, "lab.example.ac.jp")
    p12 = tmp_path / "officer.p12"
    text = cli(
        "officer",
        "add",
        "--institution",
        INST,
        "--name",
        "Ichiro Suzuki",
        "--email",
        "ichiro@example.ac.jp",
        "--out",
        str(p12),
    )
    assert p12.exists() and "queued for mailing" in text and "PIN:" not in text
    key = ec_key(ec.SECP384R1())
    csr = tmp_path / "www.csr"
    csr.write_bytes(
        make_csr(key, ov_name(cn="www.example.ac.jp", l=None), dns=["www.example.ac.jp", "lab.example.ac.jp"])
    )
    row = tmp_path / "apply.tsv"
    res = runner.invoke(
        app,
        [
            "tsv",
            "make",
            "--csr",
            str(csr),
            "--profile-id",
            "11",
            "--name",
            "国立 太郎",
            "--affiliation",
            "情報基盤センター",
            "--email",
            "taro@example.ac.jp",
            "--software",
            "nginx 1.24",
            "--out",
            str(row),
        ],
    )
    assert res.exit_code == 0, res.output
    raw = row.read_bytes()
    assert raw.endswith(b"\r\n") and "国立 太郎".encode("cp932") in raw
    fields = raw.decode("cp932").rstrip("\r\n").split("\t")
    assert fields[0] == "CN=www.example.ac.jp,O=Example University,ST=Tokyo,C=JP"
    assert (fields[10], fields[12]) == ("www.example.ac.jp", "lab.example.ac.jp")
    assert "1 row(s) OK (shift_jis)" in cli("tsv", "check", str(row), "--institution", INST)
    out = cli("tsv", "apply", str(row), "--institution", INST, "--as-officer", "ichiro@example.ac.jp")
    assert "applied" in out
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(raw.replace(b"\t11\t", b"\t9\t"))
    res = runner.invoke(app, ["tsv", "check", str(bad), "--institution", INST, "--data-dir", d])
    assert res.exit_code == 1
    assert "1行目 2列目" in res.output and "row 1, column 2" in res.output and "[unknown-profile]" in res.output
    import json

    stats = json.loads(cli("stats", "--json", "--as-officer", "ichiro@example.ac.jp"))
    assert stats[0]["institution"] == INST and stats[0]["issued"] == 2  # officer's own cert + the server cert
