"""CLI of revocation and status: ``kakuin revoke``, ``kakuin revocations …``,
``kakuin crl publish``, ``kakuin ocsp refresh``. Thin: each command calls one
service method."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kakuin.context import Context, default_data_dir
from kakuin.ra.revocation import ALLOWED_REASONS, KEY_COMPROMISE, parse_reason

out = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", "-d", envvar="KAKUIN_DATA_DIR", help="Data directory.", show_default="./kakuin-data"),
]
REASONS = ", ".join(ALLOWED_REASONS.values())
Reason = Annotated[str, typer.Option("--reason", help=f"RFC 5280 reason: {REASONS} (or its number).")]
Comment = Annotated[str | None, typer.Option("--comment", help="Why (required for unspecified).")]

revocations_app = typer.Typer(help="Revocation requests: report, pending (BR 4.9.1.1 deadlines), reject.",
                              no_args_is_help=True)
crl_app = typer.Typer(help="CRLs: sign and publish.", no_args_is_help=True)
ocsp_app = typer.Typer(help="OCSP: responder certificates and pre-signed responses.", no_args_is_help=True)


def _ctx(data_dir: Path | None) -> Context:
    return Context.open((data_dir or default_data_dir()).resolve())


def _serial(s: str) -> str:
    return s.strip().lower().removeprefix("0x").replace(":", "")


def _left(delta: dt.timedelta) -> str:
    secs = int(delta.total_seconds())
    sign, secs = ("-" if secs < 0 else ""), abs(secs)
    return f"{sign}{secs // 86400}d {secs % 86400 // 3600}h {secs % 3600 // 60}m"


def revoke(
    serial: Annotated[str, typer.Argument(help="Serial number (hex).")],
    reason: Reason,
    comment: Comment = None,
    invalidity_date: Annotated[str | None, typer.Option(help="When the key was compromised (ISO 8601, UTC).")] = None,
    all_with_key: Annotated[bool, typer.Option("--all-with-key", help="keyCompromise: also revoke every other "
                                               "certificate with the same key.")] = False,
    request: Annotated[int | None, typer.Option(help="Close this revocation request.")] = None,
    actor: Annotated[str, typer.Option(help="Who revokes (recorded).")] = "operator:cli",
    data_dir: DataDir = None,
) -> None:
    """Revoke a certificate now (opens and closes a revocation request)."""
    ctx = _ctx(data_dir)
    invalid = None
    if invalidity_date:
        invalid = dt.datetime.fromisoformat(invalidity_date)
        invalid = invalid.replace(tzinfo=dt.UTC) if invalid.tzinfo is None else invalid.astimezone(dt.UTC)
    svc = ctx.revocation
    r = svc.revoke(_serial(serial), parse_reason(reason), actor=actor, comment=comment,
                   invalidity_date=invalid, request_id=request)
    out.print(f"revoked {r.serial} ({ALLOWED_REASONS[r.reason]}) at {r.revoked_at:%Y-%m-%d %H:%M:%S}Z")
    if r.blocked_key:
        out.print("  key blocked: no certificate will be issued for it again")
    if r.same_key:
        out.print(f"  {len(r.same_key)} other certificate(s) have the same key: {' '.join(r.same_key)}")
        go = all_with_key or (sys.stdin.isatty() and typer.confirm("Revoke them too (keyCompromise)?"))
        if go:
            for other in r.same_key:
                o = svc.revoke(other, KEY_COMPROMISE, actor=actor, comment=f"same key as {r.serial}",
                               invalidity_date=invalid)
                out.print(f"revoked {o.serial} (keyCompromise)")
        else:
            out.print("  not revoked; run again with --all-with-key, or revoke each")


@revocations_app.command("report")
def report(
    serial: Annotated[str, typer.Argument(help="Serial number (hex).")],
    reason: Reason,
    comment: Comment = None,
    reported_by: Annotated[str, typer.Option(help="Who reported the problem.")] = "operator:cli",
    subscriber: Annotated[bool, typer.Option("--subscriber", help="Reported by the subscriber itself.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Record a problem report without revoking: starts the 24 h / 5 day clock."""
    p = _ctx(data_dir).revocation.report(_serial(serial), reason, reported_by=reported_by, comment=comment,
                                         by_subscriber=subscriber)
    out.print(f"request {p.id}: {p.serial} {ALLOWED_REASONS[p.reason]}, revoke by "
              f"{p.deadline:%Y-%m-%d %H:%M:%S}Z ({_left(p.time_left)} left)")


@revocations_app.command("pending")
def pending(data_dir: DataDir = None) -> None:
    """Open revocation requests with the time left; overdue ones are flagged."""
    rows = _ctx(data_dir).revocation.pending()
    t = Table("id", "serial", "reason", "reported", "by", "deadline", "left")
    for p in rows:
        left = f"[red]OVERDUE {_left(p.time_left)}[/red]" if p.overdue else _left(p.time_left)
        t.add_row(str(p.id), p.serial, ALLOWED_REASONS[p.reason], f"{p.reported_at:%Y-%m-%d %H:%M}Z",
                  p.reported_by, f"{p.deadline:%Y-%m-%d %H:%M}Z", left)
    out.print(t if rows else "no open revocation requests")
    if any(p.overdue for p in rows):
        raise typer.Exit(3)


@revocations_app.command("reject")
def reject(request_id: int, comment: Annotated[str, typer.Option("--comment")],
           actor: Annotated[str, typer.Option()] = "operator:cli", data_dir: DataDir = None) -> None:
    """Close a request without revoking (the report did not hold up)."""
    _ctx(data_dir).revocation.reject(request_id, actor=actor, comment=comment)
    out.print(f"request {request_id} rejected")


@crl_app.command("publish")
def crl_publish(
    out_dir: Annotated[Path | None, typer.Option("--out", help="Also write the CRLs here.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Sign every CRL now (full, shards, ARLs) and optionally write them to a directory."""
    built = _ctx(data_dir).crls.publish(out_dir.resolve() if out_dir else None)
    for b in built:
        if b.shard == -1 or b.entries:
            out.print(f"{b.filename}: #{b.number}, {b.entries} entries, next update {b.next_update:%Y-%m-%d %H:%M}Z")
    out.print(f"{len(built)} CRL(s) signed" + (f", written to {out_dir}" if out_dir else ""))


@ocsp_app.command("refresh")
def ocsp_refresh(data_dir: DataDir = None) -> None:
    """Renew due responder certificates, pre-sign missing/due OCSP responses, re-sign due CRLs."""
    from kakuin.status.http import refresh_once

    ctx = _ctx(data_dir)
    refresh_once(ctx)
    for r in ctx.ocsp.responders.ensure_all():
        out.print(f"{r.issuer.slug}: responder G{r.generation} until {r.not_after:%Y-%m-%d %H:%M}Z")
