"""CLI of incident response: ``kakuin ca rotate|new-root|cross-sign|revoke|due|
destroy-key|log``, ``kakuin incident open|list|show|notify|progress|remind|execute``,
``kakuin check`` and ``kakuin watch expiry``. Thin: each command calls one service."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kakuin.errors import KakuinError

out = Console()
err = Console(stderr=True)

incident_app = typer.Typer(
    help="Incidents: affected certificates, notices, progress, the deadline.", no_args_is_help=True
)
watch_app = typer.Typer(help="Scheduled watches (cron-able).", no_args_is_help=True)

# The same option as the main CLI's --data-dir (defined here: postponed annotations
# are resolved in this module's globals).
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        envvar="KAKUIN_DATA_DIR",
        help="Data directory (kakuin.toml, database, keys).",
        show_default="./kakuin-data",
    ),
]


def _ctx(data_dir: Path | None):  # type: ignore[no-untyped-def]
    from kakuin.context import Context, default_data_dir

    return Context.open((data_dir or default_data_dir()).resolve())


def _when(value: str | None, tz: str = "UTC"):  # type: ignore[no-untyped-def]
    from kakuin.incident.report import parse_bound

    return parse_bound(value, tz) if value else None


def register(app: typer.Typer, ca_app: typer.Typer) -> None:
    """Add the commands to kakuin's CLI (called from ``kakuin.cli``)."""

    # -- kakuin ca … --------------------------------------------------------
    @ca_app.command("rotate")
    def ca_rotate(
        purpose: Annotated[str, typer.Argument(help="tls-rsa, tls-ecdsa, client, smime, code-signing, tsa")],
        under: Annotated[
            str | None, typer.Option(help="Root slug for the new generation (default: same root).")
        ] = None,
        at: Annotated[str | None, typer.Option(help="Switch-over time (ISO date/time, UTC); default now.")] = None,
        key_type: Annotated[
            str | None, typer.Option(help="Key type (default: that of the current generation).")
        ] = None,
        data_dir: DataDir = None,
    ) -> None:
        """Create the next generation of an issuing intermediate; it issues from --at on."""
        from kakuin.ca.keystore import KeyType
        from kakuin.ca.rotation import RotationService

        r = RotationService(_ctx(data_dir)).rotate(
            purpose, under=under, at=_when(at), key_type=KeyType(key_type) if key_type else None
        )
        out.print(
            f"created [bold]{r.name}[/bold] ({r.slug}, G{r.generation}) under {r.parent}; "
            f"issues {r.purpose} from {r.active_from:%Y-%m-%d %H:%M}Z (previous: {r.previous})"
        )

    @ca_app.command("new-root")
    def ca_new_root(
        slug: str,
        name: Annotated[str, typer.Option(help="Subject CN, e.g. '… Root CA RSA - G2'.")],
        key_type: Annotated[str, typer.Option(help="rsa4096, ec-p384, …")] = "rsa4096",
        months: Annotated[int, typer.Option(min=12, max=600)] = 300,
        data_dir: DataDir = None,
    ) -> None:
        """Create a new root."""
        from kakuin.ca.keystore import KeyType
        from kakuin.ca.rotation import RotationService

        row = RotationService(_ctx(data_dir)).new_root(slug, name, KeyType(key_type), months=months)
        out.print(f"created root [bold]{row.name}[/bold] ({row.slug}), serial {row.serial}")

    @ca_app.command("cross-sign")
    def ca_cross_sign(
        new_root: str,
        by: Annotated[str, typer.Option("--by", help="The old root that signs.")],
        months: Annotated[int | None, typer.Option(help="Validity in months (default: as long as both roots).")] = None,
        data_dir: DataDir = None,
    ) -> None:
        """Issue a cross-certificate for NEW_ROOT signed by an old root (offered as an alternate ACME chain)."""
        from kakuin.ca.rotation import RotationService

        cert = RotationService(_ctx(data_dir)).cross_sign(new_root, by=by, months=months)
        out.print(
            f"cross-certificate serial {cert.serial_number:x}: {cert.subject.rfc4514_string()} "
            f"by {cert.issuer.rfc4514_string()}, until {cert.not_valid_after_utc:%Y-%m-%d}"
        )

    @ca_app.command("revoke")
    def ca_revoke(
        slug: str,
        at: Annotated[str, typer.Option(help="When (ISO date/time, UTC); now or later.")],
        reason: Annotated[
            str, typer.Option(help="superseded, cACompromise, keyCompromise, cessationOfOperation…")
        ] = "superseded",
        data_dir: DataDir = None,
    ) -> None:
        """Schedule the revocation of an intermediate: at that time it goes on its root's ARL."""
        from kakuin.ca.rotation import RotationService

        r = RotationService(_ctx(data_dir)).schedule_revocation(slug, at=_when(at), reason=reason)
        state = "revoked now" if r.applied else "scheduled"
        out.print(f"{slug}: {state} for {r.at:%Y-%m-%d %H:%M}Z, reason {r.reason}")

    @ca_app.command("due")
    def ca_due(data_dir: DataDir = None) -> None:
        """Apply scheduled CA revocations whose time has come (cron-able; serve does it too)."""
        from kakuin.ca.rotation import RotationService

        done = RotationService(_ctx(data_dir)).apply_due()
        out.print(f"revoked: {', '.join(done)}" if done else "nothing due")

    @ca_app.command("destroy-key")
    def ca_destroy_key(
        slug: str,
        witness: Annotated[list[str], typer.Option("--witness", help="Who witnessed it (repeatable).")] = [],  # noqa: B006
        force: Annotated[bool, typer.Option(help="Even though the CA is neither revoked nor expired.")] = False,
        data_dir: DataDir = None,
    ) -> None:
        """Destroy a CA's private key (file or PKCS#11 objects) and record it in the signed log."""
        from kakuin.ca.rotation import RotationService

        d = RotationService(_ctx(data_dir)).destroy_key(slug, witnesses=tuple(witness), force=force)
        out.print(
            f"destroyed key {d['key']} of {slug}; {d['final_crls']} final CRL(s) signed; log entry {d['entry_hash']}"
        )

    @ca_app.command("log")
    def ca_log(data_dir: DataDir = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Print the key ceremony log and verify its chain and signatures."""
        from kakuin.ca.ceremony import CeremonyLog

        ctx = _ctx(data_dir)
        v = CeremonyLog(ctx.db, ctx.keys, ctx.clock).verify()
        if as_json:
            body = {
                "ok": v.ok,
                "key_sha256": v.key_fingerprint,
                "problems": list(v.problems),
                "entries": [
                    {
                        "seq": e.seq,
                        "at": e.at.isoformat(),
                        "actor": e.actor,
                        "action": e.action,
                        "ca": e.ca_slug,
                        "details": e.details,
                        "hash": e.entry_hash,
                        "ok": e.ok,
                    }
                    for e in v.entries
                ],
            }
            sys.stdout.write(json.dumps(body, ensure_ascii=False, default=str, indent=2) + "\n")
        else:
            t = Table("#", "at (UTC)", "actor", "action", "CA", "details", "ok")
            for e in v.entries:
                details = ", ".join(f"{k}={v}" for k, v in e.details.items() if k != "public_key")
                t.add_row(
                    str(e.seq),
                    f"{e.at:%Y-%m-%d %H:%M:%S}",
                    e.actor,
                    e.action,
                    e.ca_slug or "",
                    details,
                    "✓" if e.ok else "✗",
                )
            out.print(t)
            out.print(f"log key SHA-256: {v.key_fingerprint}")
            out.print(
                "[green]verified: every link and signature is good[/green]"
                if v.ok
                else "[red]NOT verified:[/red]\n  " + "\n  ".join(v.problems)
            )
        if not v.ok:
            raise typer.Exit(2)

    # -- kakuin incident … ----------------------------------------------------
    @incident_app.command("open")
    def incident_open(
        name: str,
        issuer: Annotated[list[str], typer.Option("--issuer", help="Affected CA slug (repeatable).")],
        deadline: Annotated[str, typer.Option(help="When the remaining certificates and the CA are revoked.")],
        issued_from: Annotated[str | None, typer.Option(help="First day (or instant) of issuance, inclusive.")] = None,
        issued_to: Annotated[str | None, typer.Option(help="Last day (or instant) of issuance, inclusive.")] = None,
        expires_after: Annotated[str | None, typer.Option(help="Expiring on or after this day, inclusive.")] = None,
        profile: Annotated[str | None, typer.Option()] = None,
        key_type: Annotated[str | None, typer.Option(help="e.g. rsa, ec, rsa2048, ec-p256")] = None,
        timezone: Annotated[str, typer.Option(help="Time zone of bare dates (e.g. Asia/Tokyo).")] = "UTC",
        replacement: Annotated[str | None, typer.Option(help="Slug of the new intermediate to install.")] = None,
        explanation_url: Annotated[str | None, typer.Option(help="Public page about the incident (ARI).")] = None,
        summary_ja: Annotated[str, typer.Option()] = "",
        summary_en: Annotated[str, typer.Option()] = "",
        dry_run: Annotated[bool, typer.Option(help="Only count what the rule selects.")] = False,
        data_dir: DataDir = None,
    ) -> None:
        """Open an incident: select the affected certificates by rule and write the report."""
        from kakuin.incident.report import IncidentService, make_rule

        ctx = _ctx(data_dir)
        rule = make_rule(
            issuer,
            issued_from=issued_from,
            issued_to=issued_to,
            expires_after=expires_after,
            profile=profile,
            key_type=key_type,
            tz=timezone,
        )
        svc = IncidentService(ctx)
        if dry_run:
            out.print(f"{len(svc.select(rule))} certificate(s): {rule.text()}")
            return
        report = svc.open(
            name,
            rule,
            deadline=_when(deadline, timezone),
            replacement=replacement,
            explanation_url=explanation_url,
            summary_ja=summary_ja,
            summary_en=summary_en,
        )
        _print_report(report)

    @incident_app.command("list")
    def incident_list(data_dir: DataDir = None) -> None:
        """List incidents."""
        from kakuin.incident.report import IncidentService

        t = Table("name", "status", "opened", "deadline", "rule")
        for i in IncidentService(_ctx(data_dir)).names():
            t.add_row(i.name, i.status, f"{i.opened_at:%Y-%m-%d}", f"{i.deadline:%Y-%m-%d %H:%M}", i.rule_text)
        out.print(t)

    @incident_app.command("show")
    def incident_show(
        name: str,
        fmt: Annotated[str, typer.Option("--format", help="table, json, csv, html")] = "table",
        lang: Annotated[str, typer.Option(help="ja or en (html)")] = "ja",
        out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file.")] = None,
        data_dir: DataDir = None,
    ) -> None:
        """The report: per institution, officer and subscriber, and every certificate."""
        from kakuin.incident.html import render_report
        from kakuin.incident.report import IncidentService

        report = IncidentService(_ctx(data_dir)).report(name)
        if fmt == "table":
            _print_report(report, detail=True)
            return
        text = {
            "json": lambda: json.dumps(report.json(), ensure_ascii=False, indent=2) + "\n",
            "csv": report.csv,
            "html": lambda: render_report(report, lang),
        }.get(fmt)
        if text is None:
            raise KakuinError(f"unknown format {fmt!r} (table, json, csv, html)")
        if out_file is not None:
            out_file.write_text(text(), encoding="utf-8")
            out.print(f"wrote {out_file}")
        else:
            sys.stdout.write(text())

    @incident_app.command("progress")
    def incident_progress(name: str, data_dir: DataDir = None) -> None:
        """Replaced / pending / revoked, now."""
        from kakuin.incident.report import IncidentService

        _print_report(IncidentService(_ctx(data_dir)).report(name))

    @incident_app.command("notify")
    def incident_notify(name: str, data_dir: DataDir = None) -> None:
        """Queue the notices (one digest per subscriber and officer) and set ARI for ACME certificates."""
        from kakuin.incident.campaign import Campaign

        r = Campaign(_ctx(data_dir)).notify(name)
        out.print(
            f"{r.certificates} certificate(s): {r.mails} mail(s) queued, ARI renew-now set for {r.ari}; "
            "send with: kakuin mail send"
        )

    @incident_app.command("remind")
    def incident_remind(
        name: str, force: Annotated[bool, typer.Option(help="Remind now.")] = False, data_dir: DataDir = None
    ) -> None:
        """Remind the holders of what is still pending (run daily; sends at the configured thresholds)."""
        from kakuin.incident.campaign import Campaign

        r = Campaign(_ctx(data_dir)).remind(name, force=force)
        out.print("no reminder due" if r is None else f"{r.label}: {r.certificates} pending, {r.mails} mail(s)")

    @incident_app.command("execute")
    def incident_execute(
        name: str,
        reason: Annotated[str, typer.Option(help="Reason for the certificates not replaced.")] = "superseded",
        force: Annotated[bool, typer.Option(help="Act before the deadline.")] = False,
        data_dir: DataDir = None,
    ) -> None:
        """At the deadline: revoke the remaining affected certificates, then the intermediate(s)."""
        from kakuin.incident.campaign import Campaign

        r = Campaign(_ctx(data_dir)).execute(name, reason=reason, force=force)
        out.print(f"revoked {r.revoked} certificate(s); intermediate(s) revoked: {', '.join(r.intermediates) or '-'}")
        for f in r.failed:
            err.print(f"  failed: {f}")

    app.add_typer(incident_app, name="incident")

    # -- kakuin check / watch ---------------------------------------------------
    @app.command("check")
    def check(
        target: Annotated[str, typer.Argument(help="HOST[:PORT] (default port 443)")],
        sni: Annotated[str | None, typer.Option(help="Server name to send (default: HOST).")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        ca_file: Annotated[str | None, typer.Option(help="Extra trust anchors (PEM).")] = None,
        lang: Annotated[str, typer.Option(help="en or ja")] = "en",
        timeout: Annotated[float, typer.Option()] = 10.0,
        data_dir: DataDir = None,
    ) -> None:
        """Check a live server's certificate and chain; exit 0 ok, 1 warning, 2 critical."""
        from kakuin.incident.check import check_server

        ctx = None
        try:
            ctx = _ctx(data_dir)
        except KakuinError:
            pass  # no data dir: check against --ca-file only
        try:
            result = check_server(ctx, target, sni=sni, ca_file=ca_file, timeout=timeout)
        except KakuinError as exc:
            if as_json:
                sys.stdout.write(json.dumps({"severity": "critical", "exit_code": 2, "error": exc.message}) + "\n")
            else:
                err.print(f"CRITICAL: {exc.message}", markup=False, highlight=False)
            raise typer.Exit(2) from None
        if as_json:
            sys.stdout.write(json.dumps(result.json(), ensure_ascii=False, indent=2) + "\n")
        else:
            out.print(result.text(lang), markup=False, highlight=False)
        raise typer.Exit(result.exit_code)

    @watch_app.command("expiry")
    def watch_expiry(
        days: Annotated[int, typer.Option(help="Window in days.")] = 30,
        alert: Annotated[bool, typer.Option(help="Queue alert digests.")] = True,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        data_dir: DataDir = None,
    ) -> None:
        """Certificates expiring within --days with no successor; alert their holders (cron: daily)."""
        from kakuin.incident.watch import run_expiry_watch

        r = run_expiry_watch(_ctx(data_dir), days, alert=alert)
        if as_json:
            sys.stdout.write(
                json.dumps(
                    {
                        "window_days": r.window_days,
                        "mails": r.mails,
                        "expiring": [
                            {
                                "serial": e.serial,
                                "names": e.names,
                                "not_after": e.not_after.isoformat(),
                                "days_left": e.days_left,
                                "source": e.source,
                                "recipients": list(e.recipients),
                            }
                            for e in r.expiring
                        ],
                    }
                )
                + "\n"
            )
        else:
            t = Table("serial", "names", "expires", "days", "source", "alerted")
            for e in r.expiring:
                t.add_row(
                    e.serial,
                    e.names or e.subject,
                    f"{e.not_after:%Y-%m-%d}",
                    str(e.days_left),
                    e.source,
                    ", ".join(e.recipients) or "-",
                )
            out.print(t)
            out.print(f"{len(r.expiring)} certificate(s) without a successor; {r.mails} mail(s) queued")
        raise typer.Exit(1 if r.expiring else 0)

    app.add_typer(watch_app, name="watch")


def _print_report(report, detail: bool = False) -> None:  # type: ignore[no-untyped-def]
    i = report.incident
    tot = report.totals
    out.print(f"[bold]{i.name}[/bold] ({i.status}): {i.rule_text}")
    out.print(f"  deadline {i.deadline:%Y-%m-%d %H:%M}Z; replacement {i.replacement or '-'}")
    out.print(
        f"  {tot.total} affected: {tot.pending} pending, {tot.replaced} replaced, {tot.revoked} revoked, "
        f"{tot.expired} expired; "
        f"{report.shortened} would get a shorter lifetime when reissued"
    )
    for title, groups in (
        ("institution", report.by_institution),
        ("officer", report.by_officer),
        ("subscriber", report.by_subscriber),
    ):
        t = Table(title, "total", "pending", "replaced", "revoked", "expired")
        for g in groups:
            t.add_row(g.key, str(g.total), str(g.pending), str(g.replaced), str(g.revoked), str(g.expired))
        out.print(t)
    if detail:
        t = Table("serial", "names", "source", "not after", "state", "replaced by", "reissue ends")
        for c in report.certificates:
            t.add_row(
                c.serial,
                c.names or c.subject,
                c.source,
                f"{c.not_after:%Y-%m-%d}",
                c.state,
                c.replaced_by or "",
                f"{c.reissue_not_after:%Y-%m-%d}" if c.shortened_days else "",
            )
        out.print(t)
