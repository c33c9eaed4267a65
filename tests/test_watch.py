"""Expiry watch: certificates nearing expiry without a successor are found,
their holders alerted once a day through the outbox (a real SMTP server), and
the numbers offered for GET /metrics; renewed ones are left alone."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

from cryptography import x509
from typer.testing import CliRunner

from kakuin.ca.issuer import IssueRequest
from kakuin.clock import UTC
from kakuin.context import Context
from kakuin.incident.watch import expiry_metrics, metrics_text, run_expiry_watch
from kakuin.ra.services import RA
from tests.helpers import ec_key
from tests.ra_helpers import INST, OP, SMTPSink, setup_institution, smtp, smtp_ctx  # noqa: F401

NOW = dt.datetime(2026, 4, 1, tzinfo=UTC)


def issue(ctx: Context, name: str, days: int) -> str:
    return ctx.issuance.issue(
        IssueRequest(
            profile="server-dv",
            public_key=ec_key().public_key(),
            subject=x509.Name([]),
            dns_names=(name,),
            institution=INST,
            requested_days=days,
            requested_by="cli",
        )
    ).serial


def test_expiry_watch(make_ctx: Callable[..., Context], smtp: SMTPSink) -> None:  # noqa: F811
    ctx = smtp_ctx(make_ctx, NOW - dt.timedelta(days=20), smtp)
    ra = RA(ctx)
    setup_institution(ra)
    ra.institutions.add_officer(INST, name="Hanako", email="hanako@example.ac.jp", actor=OP)
    forgotten = issue(ctx, "a.example.ac.jp", 30)  # expires in 10 days, nobody renewed it
    renewed = issue(ctx, "b.example.ac.jp", 30)
    far = issue(ctx, "c.example.ac.jp", 100)  # noqa: F841
    ctx.clock.set(NOW - dt.timedelta(days=5))  # type: ignore[attr-defined]
    issue(ctx, "b.example.ac.jp", 90)  # the successor of "renewed"
    ctx.clock.set(NOW)  # type: ignore[attr-defined]

    r = run_expiry_watch(ctx, 30)
    assert [e.serial for e in r.expiring] == [forgotten]
    assert r.expiring[0].recipients == ("hanako@example.ac.jp",) and r.expiring[0].days_left == 9
    assert r.mails == 1
    assert run_expiry_watch(ctx, 30).mails == 0  # once a day
    ra.outbox.flush(ra.mailer())
    [mail] = [m for m in smtp.messages() if "not renewed" in str(m["Subject"])]
    body = mail.get_body(("plain",)).get_content()
    assert forgotten in body and renewed not in body and "certbot renew --dry-run" in body

    m = expiry_metrics(ctx)
    assert m['kakuin_certificates_expiring_without_successor{within="7d"}'] == 0
    assert m['kakuin_certificates_expiring_without_successor{within="30d"}'] == 1
    assert m["kakuin_expiry_watch_alerts_total"] == 1
    assert "# TYPE kakuin_expiry_watch_alerts_total counter" in metrics_text(ctx)

    from kakuin.cli import app

    res = CliRunner().invoke(app, ["watch", "expiry", "--days", "5", "--json", "--data-dir", str(ctx.config.data_dir)])
    assert res.exit_code == 0 and json.loads(res.stdout)["expiring"] == []  # (real clock: all long expired)
