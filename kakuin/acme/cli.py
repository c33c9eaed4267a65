"""CLI of ACME: ``kakuin eab new|list|revoke`` and ``kakuin ari renew-now``.
Thin: each command calls one service method. HMAC keys are printed once, to
stdout, and never logged."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from kakuin.clock import UTC
from kakuin.context import Context, default_data_dir
from kakuin.errors import KakuinError

out = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", "-d", envvar="KAKUIN_DATA_DIR", help="Data directory.",
                 show_default="./kakuin-data"),
]

eab_app = typer.Typer(help="ACME External Account Binding credentials (for certbot --eab-kid).",
                      no_args_is_help=True)
ari_app = typer.Typer(help="ACME Renewal Information (RFC 9773).", no_args_is_help=True)


def _ctx(data_dir: Path | None) -> Context:
    return Context.open((data_dir or default_data_dir()).resolve())


def _expiry(value: str | None) -> dt.datetime | None:
    """An ISO date/time, or a number of days from now ("30d")."""
    if not value:
        return None
    if value.endswith("d") and value[:-1].isdigit():
        try:
            return dt.datetime.now(UTC) + dt.timedelta(days=int(value[:-1]))
        except OverflowError:
            raise KakuinError(f"--expires {value!r}: too far in the future") from None
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        raise KakuinError(f"--expires {value!r}: give an ISO date (2026-03-31) or days (30d)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@eab_app.command("new")
def eab_new(
    institution: Annotated[str, typer.Option("--institution", help="Registered English name.")],
    domains: Annotated[list[str], typer.Option("--domains", help="Restrict to these domains "
                                               "(repeatable; default: all the institution's).")] = [],  # noqa: B006
    expires: Annotated[str | None, typer.Option("--expires", help="ISO date or days (30d).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """Make a credential; the HMAC key is shown now and never again."""
    ctx = _ctx(data_dir)
    names = tuple(d for item in domains for d in item.replace(",", " ").split())
    cred = ctx.acme.eab.new(institution, domains=names, expires_at=_expiry(expires), created_by="cli")
    directory = ctx.acme.service.urls.directory
    if as_json:
        print(json.dumps({"kid": cred.kid, "hmac_key": cred.hmac_key, "institution": cred.institution,
                          "domains": list(cred.domains), "directory": directory,
                          "expires": cred.expires_at.isoformat() if cred.expires_at else None}))
        return
    # Plain print: rich would wrap the key and the command mid-word.
    print(f"EAB credential for {cred.institution}")
    print(f"  key identifier: {cred.kid}")
    print(f"  HMAC key:       {cred.hmac_key}   (shown once; not stored in the clear)")
    print(f"  certbot register --server {directory} --email <you> --agree-tos "
          f"--eab-kid {cred.kid} --eab-hmac-key={cred.hmac_key}")


@eab_app.command("list")
def eab_list(data_dir: DataDir = None,
             as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List credentials (never their keys)."""
    rows = _ctx(data_dir).acme.eab.list()
    if as_json:
        print(json.dumps([{"kid": r.kid, "institution": r.institution, "domains": list(r.domains),
                           "state": r.state, "account": r.account_id,
                           "created": r.created_at.isoformat(),
                           "expires": r.expires_at.isoformat() if r.expires_at else None}
                          for r in rows]))
        return
    t = Table("institution", "domains", "state", "account", "expires")
    t.columns.insert(0, Column("key identifier", no_wrap=True))
    for r in rows:
        t.add_row(r.kid, r.institution, " ".join(r.domains) or "(all)", r.state,
                  str(r.account_id or ""), f"{r.expires_at:%Y-%m-%d}" if r.expires_at else "")
    out.print(t)


@eab_app.command("revoke")
def eab_revoke(
    kid: str,
    revoke_account: Annotated[bool, typer.Option(
        "--revoke-account",
        help="Also revoke the ACME account it bound: its requests are refused from now on.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Revoke a credential: it can no longer bind an account."""
    account = _ctx(data_dir).acme.eab.revoke(kid, revoke_account=revoke_account)
    out.print(f"revoked {kid}", markup=False)
    if account is not None and revoke_account:
        out.print(f"revoked ACME account {account}: its requests are refused from now on", markup=False)
    elif account is not None:
        err.print(f"ACME account {account} bound to {kid} keeps working; run again with --revoke-account "
                  "to stop it", markup=False)


@ari_app.command("renew-now")
def ari_renew_now(
    serials: Annotated[list[str], typer.Argument(help="Certificate serials (hex).")],
    explanation_url: Annotated[str | None, typer.Option("--explanation-url")] = None,
    data_dir: DataDir = None,
) -> None:
    """Tell ACME clients (RFC 9773) to renew these certificates now."""
    n = _ctx(data_dir).acme.set_renewal_now(serials, explanation_url)
    out.print(f"{n} certificate(s): renewal window moved to now", markup=False)
