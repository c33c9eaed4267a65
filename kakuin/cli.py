"""kakuin's command line (Typer). Thin: each command calls one service.

Errors are one line on stderr and a non-zero exit: 1 for a refused or failed
operation, 2 for bad usage (Typer's own)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.tree import Tree

from kakuin.clock import as_utc
from kakuin.context import Context, default_data_dir, init_data_dir
from kakuin.errors import KakuinError, LintError, PolicyError

app = typer.Typer(
    help="kakuin (角印): a certificate authority and issuance service for institutions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
ca_app = typer.Typer(help="Roots and intermediates: tree, generations, revocation, keys.", no_args_is_help=True)
inst_app = typer.Typer(help="Institutions: registered names and domains.", no_args_is_help=True)
app.add_typer(ca_app, name="ca")
app.add_typer(inst_app, name="institution")
from kakuin.status import cli as status_cli  # noqa: E402

app.command("revoke")(status_cli.revoke)
app.add_typer(status_cli.revocations_app, name="revocations")
app.add_typer(status_cli.crl_app, name="crl")
app.add_typer(status_cli.ocsp_app, name="ocsp")
from kakuin.acme import cli as acme_cli  # noqa: E402

app.add_typer(acme_cli.eab_app, name="eab")
app.add_typer(acme_cli.ari_app, name="ari")
from kakuin.ra import cli as ra_cli  # noqa: E402

ra_cli.register(app, inst_app)

out = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        "-d",
        envvar="KAKUIN_DATA_DIR",
        help="Data directory (kakuin.toml, database, keys).",
        show_default="./kakuin-data",
    ),
]
from kakuin.perspective import cli as perspective_cli  # noqa: E402

perspective_cli.register(app, DataDir)  # kakuin perspective …, kakuin status (issue #6)
from kakuin.incident import cli as incident_cli  # noqa: E402

incident_cli.register(app, ca_app)  # kakuin ca rotate…, incident, check, watch (issue #7)


def _ctx(data_dir: Path | None) -> Context:
    return Context.open((data_dir or default_data_dir()).resolve())


@app.command()
def init(
    data_dir: DataDir = Path("kakuin-data"),
    base_url: Annotated[str, typer.Option(help="Public base URL (AIA, CRL, OCSP, ACME).")] = "http://127.0.0.1:8080",
    listen: Annotated[str, typer.Option(help="Address the server listens on.")] = "127.0.0.1:8080",
    database_url: Annotated[str | None, typer.Option(help="PostgreSQL URL; default SQLite in the data dir.")] = None,
) -> None:
    """Create a data directory with kakuin.toml, the database and a dev CA hierarchy."""
    data_dir = data_dir.resolve()
    fresh = init_data_dir(data_dir, base_url=base_url, listen=listen, database_url=database_url)
    ctx = Context.open(data_dir)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True) as prog:
        task = prog.add_task("creating the CA hierarchy (keys, certificates, lint)…", total=None)
        created = ctx.hierarchy().ensure()
        prog.update(task, completed=1)
    out.print(f"{'created' if fresh else 'kept'} {data_dir / 'kakuin.toml'}")
    for slug in created:
        out.print(f"  created CA [bold]{slug}[/bold]")
    if not created:
        out.print("  hierarchy already complete")
    _print_tree(ctx)


def _print_tree(ctx: Context) -> None:
    from kakuin.ca.hierarchy import ca_tree

    now = ctx.clock.now()
    tree = Tree("CA hierarchy")

    def add(parent: Tree, n) -> None:  # type: ignore[no-untyped-def]
        mark = " [green]← issues now[/green]" if n.issuing_now else ""
        status = "" if n.status == "active" else f" [red]{n.status}[/red]"
        label = (
            f"[bold]{n.name}[/bold] ({n.slug}, {n.purpose}, G{n.generation}, {n.key_type}) "
            f"{n.not_before:%Y-%m-%d} → {n.not_after:%Y-%m-%d}{status}{mark}"
        )
        branch = parent.add(label)
        for c in n.children:
            add(branch, c)

    for root in ca_tree(ctx.db, now):
        add(tree, root)
    out.print(tree)


@ca_app.command("list")
def ca_list(data_dir: DataDir = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:  # type: ignore[assignment]
    """Show the tree: roots, intermediates, generations, validity, and which issues today."""
    ctx = _ctx(data_dir)
    if as_json:
        from dataclasses import asdict

        from kakuin.ca.hierarchy import ca_tree

        out.print_json(json.dumps([asdict(n) for n in ca_tree(ctx.db, ctx.clock.now())], default=str))
        return
    _print_tree(ctx)


@inst_app.command("add")
def institution_add(
    name: Annotated[str, typer.Argument(help="Registered English name (the O of its certificates).")],
    domain: Annotated[list[str], typer.Option("--domain", help="An approved domain (repeatable).")] = [],  # noqa: B006
    prefecture: Annotated[str | None, typer.Option()] = None,
    city: Annotated[str | None, typer.Option()] = None,
    name_ja: Annotated[str | None, typer.Option()] = None,
    data_dir: DataDir = None,  # type: ignore[assignment]
) -> None:
    """Register an institution with its domains."""
    from kakuin.policy.names import check_dns_name
    from kakuin.store.repos import InstitutionRepo

    ctx = _ctx(data_dir)
    for d in domain:
        check_dns_name(d.lower())
    with ctx.db.session() as s:
        inst = InstitutionRepo(s).add(
            name, domains=domain, prefecture=prefecture, city=city, name_ja=name_ja, now=ctx.clock.now()
        )
        out.print(f"institution {inst.id}: {inst.name_en} ({', '.join(domain) or 'no domains'})")


@inst_app.command("list")
def institution_list(data_dir: DataDir = None) -> None:  # type: ignore[assignment]
    """List institutions and their domains."""
    from kakuin.store.repos import InstitutionRepo

    ctx = _ctx(data_dir)
    table = Table("id", "name", "domains", "prefecture", "city")
    with ctx.db.session() as s:
        for i in InstitutionRepo(s).all():
            table.add_row(str(i.id), i.name_en, " ".join(d.domain for d in i.domains), i.prefecture or "", i.city or "")
    out.print(table)


@app.command()
def issue(
    csr: Annotated[Path, typer.Option("--csr", help="CSR file (PEM or DER).", exists=True, dir_okay=False)],
    profile: Annotated[str, typer.Option("--profile", help="server-ov, server-dv, client, smime, code-signing, tsa")],
    institution: Annotated[str | None, typer.Option(help="Registered English name of the institution.")] = None,
    days: Annotated[
        int | None, typer.Option(help="Requested validity in days (default: one day under the limit).")
    ] = None,
    dns: Annotated[list[str], typer.Option("--dns", help="Extra DNS name (repeatable).")] = [],  # noqa: B006
    email: Annotated[list[str], typer.Option("--email", help="Mailbox address (repeatable).")] = [],  # noqa: B006
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write cert.pem, chain.pem, fullchain.pem here.")
    ] = None,
    data_dir: DataDir = None,  # type: ignore[assignment]
) -> None:
    """Issue a certificate from a CSR through the full pipeline (checks, lint, sign, store)."""
    from kakuin.ca.issuer import IssueRequest, csr_names, parse_csr

    ctx = _ctx(data_dir)
    req_csr = parse_csr(csr.read_bytes())
    csr_dns, csr_emails = csr_names(req_csr)
    dns_names = tuple(dict.fromkeys(n.lower() for n in (*csr_dns, *dns)))
    emails = tuple(dict.fromkeys((*csr_emails, *email)))
    cn = req_csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    if profile.startswith("server") and cn and not dns_names:
        dns_names = (str(cn[0].value).lower(),)
    elif profile.startswith("server") and cn and str(cn[0].value).lower() not in dns_names:
        dns_names = (str(cn[0].value).lower(), *dns_names)
    issued = ctx.issuance.issue(
        IssueRequest(
            profile=profile,
            public_key=req_csr.public_key(),  # type: ignore[arg-type]
            subject=req_csr.subject,
            dns_names=dns_names,
            emails=emails,
            institution=institution,
            requested_days=days,
            requested_by="cli",
        )
    )
    leaf = issued.certificate.public_bytes(Encoding.PEM)
    chain = b"".join(c.public_bytes(Encoding.PEM) for c in issued.chain)
    if issued.note:
        err.print(f"[yellow]note:[/yellow] {issued.note}")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "cert.pem").write_bytes(leaf)
        (out_dir / "chain.pem").write_bytes(chain)
        (out_dir / "fullchain.pem").write_bytes(leaf + chain)
        out.print(f"issued serial {issued.serial} by {issued.issuer_slug}")
        out.print(
            f"  {out_dir / 'cert.pem'}\n  {out_dir / 'chain.pem'}  (install this intermediate)\n"
            f"  {out_dir / 'fullchain.pem'}"
        )
    else:
        sys.stdout.write((leaf + chain).decode())


def _cert_line(c) -> list[str]:  # type: ignore[no-untyped-def]
    state = "revoked" if c.revoked_at else c.state
    return [c.serial, c.profile, state, c.subject, c.sans, f"{as_utc(c.not_after):%Y-%m-%d}"]


@app.command()
def show(serial: str, data_dir: DataDir = None, pem: Annotated[bool, typer.Option("--pem")] = False) -> None:  # type: ignore[assignment]
    """Show one certificate: its record, how far the pipeline got, and its status."""
    from kakuin.store.repos import CARepo, CertificateRepo

    ctx = _ctx(data_dir)
    with ctx.db.session() as s:
        c = CertificateRepo(s).by_serial(serial.lower().removeprefix("0x").replace(":", ""))
        ca = CARepo(s).by_id(c.issuer_id)
    if pem:
        if c.der is None:
            raise KakuinError(f"serial {c.serial} was never signed (state {c.state})")
        sys.stdout.write(x509.load_der_x509_certificate(c.der).public_bytes(Encoding.PEM).decode())
        return
    t = Table(show_header=False)
    rows = [
        ("serial", c.serial),
        ("state", c.state),
        ("profile", c.profile),
        ("issuer", f"{ca.name} ({ca.slug})"),
        ("subject", c.subject),
        ("names", c.sans or "-"),
        ("key", c.key_type),
        ("SPKI SHA-256", c.spki_sha256),
        ("not before", f"{as_utc(c.not_before):%Y-%m-%d %H:%M:%S}Z"),
        ("not after", f"{as_utc(c.not_after):%Y-%m-%d %H:%M:%S}Z"),
        ("reserved", f"{as_utc(c.reserved_at):%Y-%m-%d %H:%M:%S}Z"),
        ("linted", f"{as_utc(c.linted_at):%Y-%m-%d %H:%M:%S}Z" if c.linted_at else "-"),
        ("issued", f"{as_utc(c.issued_at):%Y-%m-%d %H:%M:%S}Z" if c.issued_at else "-"),
    ]
    if c.failure:
        rows.append(("failure", c.failure))
    if c.note:
        rows.append(("note", c.note))
    if c.revoked_at:
        rows.append(("revoked", f"{as_utc(c.revoked_at):%Y-%m-%d %H:%M:%S}Z reason {c.revocation_reason}"))
    for k, v in rows:
        t.add_row(k, v)
    out.print(t)
    evidence = perspective_cli.evidence_table(ctx.db, c.serial)  # MPIC evidence (issue #6)
    if evidence is not None:
        out.print(evidence)


@app.command("list")
def list_certs(
    data_dir: DataDir = None,  # type: ignore[assignment]
    profile: Annotated[str | None, typer.Option()] = None,
    issuer: Annotated[str | None, typer.Option(help="CA slug")] = None,
    state: Annotated[str | None, typer.Option(help="reserved, linted, issued, failed, abandoned")] = None,
    institution: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option(help="Substring of subject or SANs")] = None,
    expiring_within: Annotated[int | None, typer.Option(help="Only those expiring within N days")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List certificates by filters."""
    from kakuin.store.repos import CARepo, CertificateFilter, CertificateRepo, InstitutionRepo

    ctx = _ctx(data_dir)
    with ctx.db.session() as s:
        issuer_id = CARepo(s).by_slug(issuer).id if issuer else None
        inst_id = InstitutionRepo(s).by_name(institution).id if institution else None
        rows = CertificateRepo(s).find(
            CertificateFilter(
                issuer_id=issuer_id,
                profile=profile,
                state=state,
                institution_id=inst_id,
                name_contains=name,
                limit=limit,
            )
        )
    if expiring_within is not None:
        horizon = ctx.clock.now() + dt.timedelta(days=expiring_within)
        rows = [r for r in rows if as_utc(r.not_after) <= horizon]
    if as_json:
        keys = ["serial", "profile", "state", "subject", "names", "not_after"]
        out.print_json(json.dumps([dict(zip(keys, _cert_line(r), strict=True)) for r in rows]))
        return
    t = Table("serial", "profile", "state", "subject", "names", "not after")
    for r in rows:
        t.add_row(*_cert_line(r))
    out.print(t)


@app.command()
def recover(data_dir: DataDir = None) -> None:  # type: ignore[assignment]
    """Mark issuance intents left by a crashed process as abandoned (serials are never reused)."""
    n = _ctx(data_dir).issuance.recover()
    out.print(f"{n} abandoned intent(s) marked")


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise KakuinError(f"server.listen {listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


@app.command()
def serve(
    data_dir: DataDir = None,  # type: ignore[assignment]
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            envvar="KAKUIN_WORKERS",
            min=1,
            help="Worker processes (uvicorn). Each is a stateless kakuin on the same database; "
            "on a host with N cores, N is the natural setting.",
        ),
    ] = 1,
    ocsp_port: Annotated[
        int | None,
        typer.Option(
            "--ocsp-port",
            min=0,
            max=65535,
            help="Also serve OCSP alone on this port of the listen host (lean listener; "
            "server.ocsp_port; 0: none).",
        ),
    ] = None,
) -> None:
    """Serve HTTP (CA certificates, and every enabled protocol) on server.listen."""
    from kakuin.app import create_app
    from kakuin.onboarding import next_steps
    from kakuin.workers import serve_app, uvicorn_config

    ctx = _ctx(data_dir)
    ctx.issuance.recover()
    host, port = _host_port(ctx.config.server.listen)
    ocsp_port = ctx.config.server.ocsp_port if ocsp_port is None else ocsp_port
    for line in next_steps(ctx):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    from kakuin.status.http import start_background

    start_background(ctx)  # CRLs, OCSP responders and pre-signed responses
    if ctx.config.dev.dns:  # development only: names of the demo zone resolve here
        from kakuin.devdns import DevDNS

        dns_host, dns_port = _host_port(ctx.config.dev.dns)
        DevDNS(dns_host, dns_port, ctx.config.dev.dns_zone, ctx.config.dev.dns_address).start()
    if ctx.config.portal.enabled:  # the officers' portal on its own mutual-TLS listener
        if workers > 1:
            raise KakuinError("--workers > 1 is not supported with the portal listener (portal.enabled)")
        if ocsp_port:
            raise KakuinError("server.ocsp_port is not supported with the portal listener (portal.enabled)")
        import asyncio

        from kakuin.portal.app import portal_config, serve_with_portal

        main = uvicorn_config(create_app(ctx), host=host, port=port)
        asyncio.run(serve_with_portal(main, portal_config(ctx)))
        return
    if workers > 1:
        from kakuin.workers import serve_workers

        # This process supervises the workers and keeps the background refresh above.
        serve_workers(ctx.config.data_dir, host, port, workers, ocsp_port)
        return
    serve_app(ctx, host, port, ocsp_port)


@app.command()
def run(
    data_dir: DataDir = Path("kakuin-data"),
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = "127.0.0.1:8080",
    portal_port: Annotated[int, typer.Option(help="Port of the officers' portal (mutual TLS).")] = 8443,
    dns_port: Annotated[int, typer.Option(help="Port of the development DNS server for the demo zone.")] = 8053,
    http01_port: Annotated[int, typer.Option(help="Port the VA fetches http-01 from (certbot --standalone).")] = 5002,
) -> None:
    """Start kakuin on its embedded default: create the data directory and the dev
    hierarchy if needed, then serve and print what to do next.

    A new data directory gets a development setup that works on one machine:
    the portal, a DNS server answering for the demo zone (kakuin.devdns), and the
    VA pointed at it and at an unprivileged http-01 port. The port options only
    apply when the data directory is created."""
    data_dir = data_dir.resolve()
    if init_data_dir(data_dir, base_url=f"http://{listen}", listen=listen):
        host = listen.rpartition(":")[0] or "127.0.0.1"
        with (data_dir / "kakuin.toml").open("a", encoding="utf-8") as fh:
            fh.write(
                "\n# Development setup written by `kakuin run` (see docs/configuration.md).\n"
                f'[portal]\nenabled = true  # the officers\' portal (docs/portal.md)\nlisten = "{host}:{portal_port}"\n'
                f'\n[va]\nhttp01_port = {http01_port}\nresolver = "{host}:{dns_port}"\n'
                "dnssec = false  # kakuin.devdns does not sign; production needs a validating resolver\n"
                "allow_private_targets = true  # the demo zone points at this machine; never in production\n"
                f'\n[dev]\ndns = "{host}:{dns_port}"\n'
            )
    ctx = Context.open(data_dir)
    created = ctx.hierarchy().ensure()
    if created:
        err.print(f"created the dev CA hierarchy: {', '.join(created)}")
    if ctx.config.portal.enabled:
        from kakuin.portal.onboarding import ensure_dev_officer

        for line in ensure_dev_officer(ctx):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    serve(data_dir)


# `kakuin --help` is the map of the CLI: commands grouped by who uses them, in
# the order an operator meets them.
_PANELS: dict[str, tuple[str, int]] = {
    "run": ("Start", 0), "init": ("Start", 1), "serve": ("Start", 2), "status": ("Start", 3),
    "ca": ("Certificate authority", 10), "issue": ("Certificate authority", 11),
    "show": ("Certificate authority", 12), "list": ("Certificate authority", 13),
    "recover": ("Certificate authority", 14),
    "revoke": ("Revocation", 20), "revocations": ("Revocation", 21), "crl": ("Revocation", 22),
    "ocsp": ("Revocation", 23),
    "institution": ("Registration authority", 30), "officer": ("Registration authority", 31),
    "tsv": ("Registration authority", 32), "retrieval": ("Registration authority", 33),
    "stats": ("Registration authority", 34), "mail": ("Registration authority", 35),
    "notify": ("Registration authority", 36),
    "eab": ("ACME", 40), "ari": ("ACME", 41), "perspective": ("ACME", 42),
    "incident": ("Incidents and monitoring", 50), "check": ("Incidents and monitoring", 51),
    "watch": ("Incidents and monitoring", 52),
}


def _arrange_help() -> None:
    def name_of(info) -> str:  # type: ignore[no-untyped-def]
        return info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")

    for info in [*app.registered_commands, *app.registered_groups]:
        panel = _PANELS.get(name_of(info))
        if panel:
            info.rich_help_panel = panel[0]
    app.registered_commands.sort(key=lambda i: _PANELS.get(name_of(i), ("", 99))[1])
    app.registered_groups.sort(key=lambda i: _PANELS.get(name_of(i), ("", 99))[1])


_arrange_help()


def main() -> None:
    try:
        app()
    except PolicyError as exc:
        where = f" [{exc.field}]" if exc.field else ""
        err.print(f"error: {exc.message} (rule {exc.rule}){where}", markup=False, highlight=False)
        raise SystemExit(1) from None
    except LintError as exc:
        err.print(f"error: {exc.message}", markup=False, highlight=False)
        for f in exc.findings[1:]:
            err.print(f"  {f}", markup=False, highlight=False)
        raise SystemExit(1) from None
    except KakuinError as exc:
        err.print(f"error: {exc.message}", markup=False, highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
