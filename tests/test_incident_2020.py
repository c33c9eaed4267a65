"""The 2020 story, end to end on one machine with an injected clock.

An intermediate (G3) issued server certificates from 2019 into 2020, some
through the RA (TSV), some over ACME, some from the CLI. The operator rotates
to G4 and opens an incident with the 2020 rule — issued by G3 from 2019-08-01
through 2020-07-28, expiring on or after 2021-02-28 — and the report must list
exactly the certificates on the inside of every boundary. Notices go out through
a real SMTP server (aiosmtpd); ACME certificates get ARI "renew now"; the rest
are renewed through TSV renew rows; a reminder goes out for what is left; at
the deadline the remainder and G3 are revoked and OCSP, the CRL and the root's
ARL say so; G3's key is destroyed and the signed ceremony log verifies.

In 2019 the Baseline Requirements allowed 825-day server certificates (398 days
only from 2020-09-01); kakuin's schedule (kakuin/policy/validity.py) carries
that history. That is also what makes reissued certificates shorter than the
ones they replace, which the report must say. (Real certbot and ARI: tests/test_incident_certbot.py.)
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import ocsp
from sqlalchemy import select

from kakuin.acme.ari import RenewalInfoService, cert_id
from kakuin.acme.models import ARIOverride
from kakuin.ca.issuer import IssueRequest
from kakuin.ca.rotation import RotationService
from kakuin.clock import UTC, FixedClock
from kakuin.context import Context
from kakuin.incident.campaign import Campaign
from kakuin.incident.html import render_report
from kakuin.incident.report import IncidentService, make_rule
from kakuin.ra.actors import Actor
from kakuin.ra.services import RA
from kakuin.store.models import Institution
from kakuin.store.repos import CARepo, CertificateRepo
from tests.helpers import ov_name, rsa_key
from tests.ra_helpers import INST, OP, SMTPSink, server_fields, setup_institution, smtp, tsv  # noqa: F401
from tests.test_incident_helpers import (
    acme_account,
    acme_issue,
    ca_cert,
    crl_serials,
    early_hierarchy,
    ocsp_status,
)

T = lambda *a: dt.datetime(*a, tzinfo=UTC)  # noqa: E731
OFFICER = Actor("officer:hanako@example.ac.jp")  # institution set once registered


def test_the_2020_story(
    tmp_path: Path,
    smtp: SMTPSink,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = early_hierarchy(tmp_path, generation=3, smtp=(smtp.host, smtp.port))
    # pkilint applies today's 398-day limit to every notBefore: off for 2019's 825-day certificates.
    monkeypatch.setenv("KAKUIN_LINT", "0")
    clock = FixedClock(T(2019, 6, 1))
    ctx = Context.open(data, clock=clock)
    ra = RA(ctx)
    inst_id = setup_institution(ra, domains=("example.ac.jp",))
    with ctx.db.session() as s:
        s.get(Institution, inst_id).confirmed_until = T(2030, 1, 1)  # type: ignore[union-attr]
    ra.institutions.add_officer(INST, name="Hanako Kokuritsu", email="hanako@example.ac.jp", actor=OP)
    officer = Actor(OFFICER.name, institution_id=inst_id)
    account = acme_account(ctx, inst_id, "acme-admin@example.ac.jp")

    def tsv_issue(at: dt.datetime, cn: str, subscriber: str) -> str:
        clock.set(at)
        r = ra.tsv.apply(
            tsv([server_fields(rsa_key(), cn=cn, email_addr=subscriber, profile_id="1")]),
            institution=INST,
            actor=officer,
        )
        assert r.status == "applied", r
        serial = r.results[0].serial
        assert serial
        return serial

    def cli_issue(at: dt.datetime, cn: str, days: int) -> str:
        clock.set(at)
        return ctx.issuance.issue(
            IssueRequest(
                profile="server-ov",
                public_key=rsa_key().public_key(),
                subject=ov_name(cn=cn, o=INST, st="Tokyo", l=None),
                dns_names=(cn,),
                institution=INST,
                requested_days=days,
                requested_by="cli",
            )
        ).serial

    def acme(at: dt.datetime, name: str) -> str:
        clock.set(at)
        req = IssueRequest(
            profile="server-dv",
            public_key=rsa_key().public_key(),
            subject=ov_name(cn=name),
            dns_names=(name,),
            institution=INST,
        )
        return acme_issue(ctx, req, account_id=account).serial

    # -- 2019–2020: G3 issues ------------------------------------------------------------
    c = {
        "before-from": cli_issue(T(2019, 7, 31, 23, 59, 59), "b1.example.ac.jp", 800),  # issued 07-31: out
        "at-from": tsv_issue(T(2019, 8, 1, 0, 0, 0), "a1.example.ac.jp", "taro@example.ac.jp"),  # 08-01 00:00: in
        "acme-1": acme(T(2019, 10, 1), "acme1.example.ac.jp"),
        "mid": tsv_issue(T(2019, 12, 1), "a2.example.ac.jp", "jiro@example.ac.jp"),
        # expires 2021-02-27 23:59:59: out;  expires 2021-02-28 23:59:59: in
        "exp-0227": cli_issue(T(2020, 2, 28), "e1.example.ac.jp", 366),
        "exp-0228": cli_issue(T(2020, 3, 1), "e2.example.ac.jp", 365),
        "acme-2": acme(T(2020, 5, 1), "acme2.example.ac.jp"),
        "at-to": tsv_issue(T(2020, 7, 28, 23, 59), "a3.example.ac.jp", "taro@example.ac.jp"),  # 07-28 23:59: in
    }
    # The operator prepares G4 on 2020-07-20, switching over on 2020-07-30.
    clock.set(T(2020, 7, 20))
    rot = RotationService(ctx)
    g4 = rot.rotate("tls-rsa", at=T(2020, 7, 30))
    assert (g4.slug, g4.name, g4.generation) == ("tls-rsa-g4", "kakuin Development TLS RSA CA - G4", 4)
    c["after-to"] = tsv_issue(T(2020, 7, 29, 0, 0, 30), "b2.example.ac.jp", "taro@example.ac.jp")  # G3, 07-29: out
    new = tsv_issue(T(2020, 8, 5), "n1.example.ac.jp", "taro@example.ac.jp")  # G4: never affected
    with ctx.db.session() as s:
        issuers = {k: CertificateRepo(s).by_serial(v).issuer_id for k, v in c.items()}
        g3_id, g4_id = CARepo(s).by_slug("tls-rsa-g3").id, CARepo(s).by_slug("tls-rsa-g4").id
        assert set(issuers.values()) == {g3_id}, "every certificate above came from G3"
        assert CertificateRepo(s).by_serial(new).issuer_id == g4_id

    # -- the incident ---------------------------------------------------------------------
    clock.set(T(2020, 9, 15))
    svc = IncidentService(ctx)
    rule = make_rule(["tls-rsa-g3"], issued_from="2019-08-01", issued_to="2020-07-28", expires_after="2021-02-28")
    report = svc.open(
        "g3-ocsp-eku",
        rule,
        deadline=T(2021, 3, 15),
        replacement="tls-rsa-g4",
        explanation_url="https://kakuin.example/incident/g3",
        summary_ja="中間CA G3 に OCSP 署名の用途が含まれていたため、G4 に切り替えます。",
        summary_en="Intermediate G3 carried the OCSP-signing purpose; it is replaced by G4.",
    )
    affected = {x.serial for x in report.certificates}
    inside = {"at-from", "acme-1", "mid", "exp-0228", "acme-2", "at-to"}
    assert affected == {c[k] for k in inside}, {k for k, v in c.items() if v in affected} ^ inside
    assert {x.source for x in report.certificates} == {"ra", "acme", "other"}
    assert report.totals.pending == 6
    # 825-day certificates reissued under the 398-day rule end earlier, and the report says so
    short = {x.serial: x.shortened_days for x in report.certificates}
    assert short[c["at-to"]] > 300 and short[c["exp-0228"]] == 0
    by_sub = {g.key: g.total for g in report.by_subscriber}
    assert by_sub["taro@example.ac.jp"] == 2 and by_sub["jiro@example.ac.jp"] == 1
    assert by_sub["acme-admin@example.ac.jp"] == 2
    assert {g.key: g.total for g in report.by_officer}["hanako@example.ac.jp"] == 3
    assert [g.total for g in report.by_institution] == [6]
    csv_text = report.csv()
    assert csv_text.count("\r\n") == 7 and c["at-to"] in csv_text
    assert json.loads(json.dumps(report.json()))["totals"]["total"] == 6
    page = render_report(report, "ja")
    assert "g3-ocsp-eku" in page and "置き換え済み" in page and c["mid"] in page

    # -- notices and ARI -------------------------------------------------------------------
    camp = Campaign(ctx)
    run = camp.notify("g3-ocsp-eku")
    assert run.certificates == 6 and run.ari == 2
    assert camp.notify("g3-ocsp-eku").mails == 0  # once
    flushed = ra.outbox.flush(ra.mailer())
    assert flushed.failed == 0
    msgs = {m["To"]: m for m in smtp.messages() if "g3-ocsp-eku" in str(m["Subject"])}
    # one digest each: subscribers, the officer, the ACME contact, the institution's officers (CLI certs)
    assert {"taro@example.ac.jp", "jiro@example.ac.jp", "hanako@example.ac.jp", "acme-admin@example.ac.jp"} <= set(msgs)
    taro = msgs["taro@example.ac.jp"]
    body = taro.get_body(("plain",)).get_content()
    assert c["at-from"] in body and c["at-to"] in body and c["mid"] not in body
    assert "2021-03-15" in body and "失効" in body and "will be revoked" in body
    assert "kakuin Development TLS RSA CA - G4" in body and "chain.pem" in body
    assert any(p.get_filename() == "new-intermediate.pem" for p in taro.iter_attachments())
    with ctx.db.session() as s:
        assert set(s.scalars(select(ARIOverride.serial))) == {c["acme-1"], c["acme-2"]}
    with ctx.db.session() as s:
        old_acme1 = x509.load_der_x509_certificate(CertificateRepo(s).by_serial(c["acme-1"]).der)
    window = RenewalInfoService(ctx.db, ctx.clock).renewal_info(cert_id(old_acme1))
    assert window.start < ctx.clock.now()  # RFC 9773: renew now

    # -- replacements ----------------------------------------------------------------------
    clock.set(T(2020, 10, 1))
    # ACME client renews with "replaces"
    acme_issue(
        ctx,
        IssueRequest(
            profile="server-dv",
            public_key=rsa_key().public_key(),
            subject=ov_name(),
            dns_names=("acme1.example.ac.jp",),
            institution=INST,
        ),
        account_id=account,
        replaces=cert_id(old_acme1),
    )
    # TSV renew rows (new key, old serial named)
    r = ra.tsv.apply(
        tsv(
            [
                server_fields(
                    rsa_key(),
                    cn="a1.example.ac.jp",
                    email_addr="taro@example.ac.jp",
                    profile_id="1",
                    replaces=c["at-from"],
                )
            ]
        ),
        institution=INST,
        actor=officer,
    )
    assert r.status == "applied" and r.kind == "server-renew"
    # a new certificate for the same names, without naming the old one
    fresh = tsv_issue(T(2020, 10, 2), "a2.example.ac.jp", "jiro@example.ac.jp")
    progress = svc.report("g3-ocsp-eku")
    states = {x.serial: (x.state, x.replaced_via) for x in progress.certificates}
    assert states[c["acme-1"]] == ("replaced", "acme-replaces")
    assert states[c["at-from"]] == ("replaced", "ra-renew")
    assert states[c["mid"]] == ("replaced", "newer")
    assert {x.replaced_by for x in progress.certificates if x.serial == c["mid"]} == {fresh}
    assert (progress.totals.replaced, progress.totals.pending) == (3, 3)

    # -- reminders on schedule -------------------------------------------------------------
    clock.set(T(2021, 2, 1))
    assert camp.remind("g3-ocsp-eku") is None  # 42 days before: none due
    clock.set(T(2021, 3, 8, 1))
    rem = camp.remind("g3-ocsp-eku")
    assert rem is not None and rem.certificates == 2 and rem.label == "remind-7d"  # e2 has expired meanwhile
    assert camp.remind("g3-ocsp-eku") is None  # 7d already sent (14d was folded into it)
    before = len(smtp.received)
    ra.outbox.flush(ra.mailer())
    reminders = [m for m in smtp.messages()[before:] if "g3-ocsp-eku" in str(m["Subject"])]
    assert reminders and all("再送" in str(m["Subject"]) for m in reminders)
    assert all(c["at-from"] not in m.get_body(("plain",)).get_content() for m in reminders)

    # -- the deadline -----------------------------------------------------------------------
    with pytest.raises(Exception, match="deadline"):
        camp.execute("g3-ocsp-eku", reason="cessationOfOperation")
    clock.set(T(2021, 3, 15, 0, 0, 1))
    done = camp.execute("g3-ocsp-eku", reason="cessationOfOperation")
    # e2 expired on 2021-02-28, before the deadline: nothing to revoke
    assert done.revoked == 5 and not done.failed and done.intermediates == ("tls-rsa-g3",)
    final = svc.report("g3-ocsp-eku")
    assert (final.totals.revoked, final.totals.expired) == (5, 1) and final.incident.status == "executed"
    inside.discard("exp-0228")

    g3, root = ca_cert(ctx, "tls-rsa-g3"), ca_cert(ctx, "root-rsa")
    with ctx.db.session() as s:
        leaves = {k: x509.load_der_x509_certificate(CertificateRepo(s).by_serial(v).der) for k, v in c.items()}
        pending_reasons = {k: CertificateRepo(s).by_serial(c[k]).revocation_reason for k in ("acme-2", "at-to")}
        replaced_reason = CertificateRepo(s).by_serial(c["mid"]).revocation_reason
    assert set(pending_reasons.values()) == {5} and replaced_reason == 4
    for k in inside:
        assert ocsp_status(ctx, leaves[k], g3) == ocsp.OCSPCertStatus.REVOKED, k
    assert ocsp_status(ctx, leaves["after-to"], g3) == ocsp.OCSPCertStatus.GOOD
    crl = crl_serials(ctx, "tls-rsa-g3")
    assert {leaves[k].serial_number for k in inside} <= crl
    assert leaves["after-to"].serial_number not in crl
    assert g3.serial_number in crl_serials(ctx, "root-rsa"), "G3 is on the root's ARL"
    with ctx.db.session() as s:
        assert CARepo(s).issuing_for("tls-rsa", clock.now()).slug == "tls-rsa-g4"  # type: ignore[union-attr]
    _ = root

    # -- key destruction, and the log ---------------------------------------------------------
    clock.set(T(2021, 3, 20))
    d = rot.destroy_key("tls-rsa-g3", witnesses=("auditor@example.ac.jp",))
    assert d["verified_absent"] is True and not (data / "keys" / "tls-rsa-g3.key.pem").exists()
    log = rot.log.verify()
    assert log.ok, log.problems
    assert [e.action for e in log.entries] == [
        "log-genesis",
        "rotate",
        "revocation-scheduled",
        "revoked",
        "incident-executed",
        "key-destroyed",
    ]
    ctx.db.dispose()
