"""CLI for MPIC: ``kakuin perspective serve``, ``kakuin perspective keygen``,
``kakuin status``, and the evidence table ``kakuin show`` prints.

Registered on the main app by ``register(app)``; thin: each command calls one thing.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kakuin.errors import ConfigError, KakuinError

perspective_app = typer.Typer(help="Remote network perspectives for MPIC (BR 3.2.2.9).",
                              no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise KakuinError(f"--listen {value!r} is not ADDR:PORT")
    return host.strip("[]"), int(port)


def _read_key(key_file: Path | None, key_env: str | None) -> bytes:
    if key_file is not None:
        key = key_file.read_bytes().strip()
    elif key_env and os.environ.get(key_env, "").strip():
        key = os.environ[key_env].strip().encode()
    else:
        raise ConfigError("the perspective needs its shared key: --key-file FILE or --key-env VAR")
    if len(key) < 32:
        raise ConfigError("the shared key must be at least 32 bytes")
    return key


@perspective_app.command("serve")
def serve(
    name: Annotated[str, typer.Option("--name", help="This perspective's name (as the CA configures it).")],
    listen: Annotated[str, typer.Option("--listen", help="ADDR:PORT to listen on.")],
    resolver: Annotated[str, typer.Option("--resolver", help="ADDR:PORT of this perspective's resolver "
                                          "(default: the system's).")] = "",
    key_file: Annotated[Path | None, typer.Option("--key-file", exists=True, dir_okay=False,
                                                  help="File holding the key shared with the CA.")] = None,
    key_env: Annotated[str | None, typer.Option("--key-env", help="…or the variable holding it.")] = None,
    http01_port: Annotated[int, typer.Option(help="Port for http-01 (tests only; 80 in production).")] = 80,
    tlsalpn01_port: Annotated[int, typer.Option(help="Port for tls-alpn-01 (443 in production).")] = 443,
    timeout: Annotated[float, typer.Option(help="Per-check network timeout, seconds.")] = 10.0,
    caa_identity: Annotated[list[str], typer.Option("--caa-identity", help="Issuer domain name for CAA, "
                                                    "when the request names none (repeatable).")] = [],  # noqa: B006
    dnssec: Annotated[bool | None, typer.Option("--dnssec/--no-dnssec", help="Require DNSSEC proof "
                                                "(default: the VA's default).")] = None,
    allow_private_targets: Annotated[bool, typer.Option(
        "--allow-private-targets", help="Test mode: allow loopback and other non-public targets.")] = False,
) -> None:
    """Serve one remote network perspective: authenticated checks with kakuin's own VA."""
    import uvicorn

    from kakuin.config import VAConfig
    from kakuin.perspective.service import Perspective, create_perspective_app

    host, port = _host_port(listen)
    key = _read_key(key_file, key_env)
    # BR 3.2.2.9: the perspective checks from its own address, the one it listens on.
    source = "" if host in ("0.0.0.0", "::") else host
    settings: dict[str, Any] = {"resolver": resolver, "http01_port": http01_port,
                                "tlsalpn01_port": tlsalpn01_port, "timeout_seconds": timeout,
                                "source_address": source}
    if caa_identity:
        settings["caa_identities"] = tuple(caa_identity)
    if dnssec is not None:
        if "dnssec" not in VAConfig.model_fields:
            raise ConfigError("--dnssec/--no-dnssec: this VA has no DNSSEC setting")
        settings["dnssec"] = dnssec
    perspective = Perspective(name, key, VAConfig.model_validate(settings),
                              allow_private_targets=allow_private_targets)
    if allow_private_targets:
        err.print("[yellow]test mode:[/yellow] non-public targets are allowed (--allow-private-targets)")
    err.print(f"perspective {name} on http://{listen} (resolver {resolver or 'system'})",
              markup=False, highlight=False)
    uvicorn.run(create_perspective_app(perspective), host=host, port=port, log_level="warning")


@perspective_app.command("keygen")
def keygen(path: Annotated[Path, typer.Argument(help="Where to write the new shared key (0600).")]) -> None:
    """Write a new random shared key for one perspective (give it to both sides)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48) + "\n")
    out.print(f"wrote {path}")


def status(data_dir: Path) -> None:
    """Perspectives (health) plus a summary of the CA and the database."""
    from sqlalchemy import func, select

    from kakuin.context import Context
    from kakuin.perspective.client import PerspectiveClient
    from kakuin.store.models import Certificate, CertificateAuthority
    from kakuin.va.models import ValidationEvidence

    ctx = Context.open(data_dir)
    mpic = ctx.config.mpic
    out.print(f"data directory {ctx.config.data_dir}")
    out.print(f"database       {ctx.db.engine.url.render_as_string(hide_password=True)}")
    with ctx.db.session() as s:
        cas = s.scalar(select(func.count()).select_from(CertificateAuthority)) or 0
        by_state = dict(s.execute(select(Certificate.state, func.count()).group_by(Certificate.state)).all())
        checks = s.scalar(select(func.count(func.distinct(ValidationEvidence.check_id)))) or 0
    states = ", ".join(f"{k} {v}" for k, v in sorted(by_state.items())) or "none"
    out.print(f"CAs            {cas}")
    out.print(f"certificates   {states}")
    out.print(f"MPIC checks    {checks} recorded")
    if not mpic.perspectives:
        out.print(f"MPIC           {'enabled' if mpic.enabled else 'disabled'}, no perspectives configured")
        return
    out.print(f"MPIC           {'enabled' if mpic.enabled else 'disabled'}: {len(mpic.perspectives)} remote "
              f"perspectives, at most {mpic.max_failures} may fail (required {mpic.required_remote})")
    clients = [PerspectiveClient(p.name, p.url, b"", timeout=min(mpic.timeout_seconds, 5))
               for p in mpic.perspectives]

    async def probe() -> list[tuple[bool, str, float]]:
        return await asyncio.gather(*(c.health() for c in clients))

    table = Table("perspective", "url", "health", "latency", "detail")
    healthy = 0
    for c, (ok, detail, secs) in zip(clients, asyncio.run(probe()), strict=True):
        healthy += ok
        table.add_row(c.name, c.url, "[green]ok[/green]" if ok else "[red]down[/red]",
                      f"{secs * 1000:.0f} ms", detail)
    out.print(table)
    if mpic.enabled and len(clients) - healthy > mpic.max_failures:
        err.print(f"[red]warning:[/red] {len(clients) - healthy} perspectives down: issuance will be "
                  f"refused (at most {mpic.max_failures} may fail)")
        raise typer.Exit(1)


def evidence_table(db: Any, serial: str) -> Table | None:
    """The evidence linked to ``serial`` as a table, or None when there is none."""
    from kakuin.clock import as_utc
    from kakuin.va.evidence import evidence_for

    rows = evidence_for(db, serial)
    if not rows:
        return None
    t = Table("check", "domain", "method", "perspective", "result", "corroborates", "value", "at",
              "dnssec", "detail", title="validation evidence (MPIC)")
    for e in rows:
        result = e.outcome if e.perspective != "primary" else ("passed" if e.ok else "failed")
        corr = ("quorum met" if e.corroborates else "quorum NOT met") if e.perspective == "primary" else (
            "yes" if e.corroborates else "no")
        value = (e.value or "")[:24] + ("…" if e.value and len(e.value) > 24 else "")
        t.add_row(e.check_id[:8], e.domain, e.method, e.perspective, result, corr, value,
                  f"{as_utc(e.at):%Y-%m-%d %H:%M:%S}Z", e.dnssec or "-", (e.error or "")[:80])
    return t


def register(app: typer.Typer, data_dir_option: Any) -> None:
    app.add_typer(perspective_app, name="perspective")

    def status_command(data_dir: Path | None = None) -> None:
        """Perspective health (GET /health of each), plus a CA and database summary."""
        from kakuin.context import default_data_dir

        status((data_dir or default_data_dir()).resolve())

    # The main CLI's --data-dir option (this module uses postponed annotations).
    status_command.__annotations__ = {"data_dir": data_dir_option, "return": None}
    app.command("status")(status_command)
