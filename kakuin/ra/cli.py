"""CLI of the registration authority: ``kakuin institution confirm|domain|person|remind``,
``kakuin officer``, ``kakuin tsv check|apply|make``, ``kakuin mail send|list``,
``kakuin notify expiry``, ``kakuin stats``, ``kakuin retrieval renew``.
Thin: each command calls one service method. ``--as-officer EMAIL`` acts as
that officer (own institution only); otherwise the operator acts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kakuin.context import Context, default_data_dir
from kakuin.errors import KakuinError
from kakuin.ra.actors import Actor
from kakuin.ra.services import RA
from kakuin.ra.tsv.formats import PROFILE_IDS, TSVKind
from kakuin.ra.tsv.parse import TSVRefused

out = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", "-d", envvar="KAKUIN_DATA_DIR", help="Data directory.", show_default="./kakuin-data"),
]
AsOfficer = Annotated[str | None, typer.Option("--as-officer", help="Act as this officer (e-mail).")]

officer_app = typer.Typer(help="Registration officers and their client certificates.", no_args_is_help=True)
tsv_app = typer.Typer(help="TSV applications: check, apply, make.", no_args_is_help=True)
mail_app = typer.Typer(help="The mail outbox: send, list.", no_args_is_help=True)
notify_app = typer.Typer(help="Scheduled notices (digests).", no_args_is_help=True)
retrieval_app = typer.Typer(help="Retrieval links.", no_args_is_help=True)
domain_app = typer.Typer(help="Domains of an institution: add (ask), approve (CA).", no_args_is_help=True)
person_app = typer.Typer(help="People of an institution (responsible, subscriber).", no_args_is_help=True)


def _ra(data_dir: Path | None) -> RA:
    return RA(Context.open((data_dir or default_data_dir()).resolve()))


def _actor(ra: RA, as_officer: str | None) -> Actor:
    return ra.institutions.officer_actor(email=as_officer) if as_officer else Actor.operator()


def register(app: typer.Typer, institution_app: typer.Typer) -> None:
    """Hook the RA's commands into the main CLI (one line in kakuin/cli.py)."""
    institution_app.command("confirm")(institution_confirm)
    institution_app.command("remind")(institution_remind)
    institution_app.add_typer(domain_app, name="domain")
    institution_app.add_typer(person_app, name="person")
    app.add_typer(officer_app, name="officer")
    app.add_typer(tsv_app, name="tsv")
    app.add_typer(mail_app, name="mail")
    app.add_typer(notify_app, name="notify")
    app.add_typer(retrieval_app, name="retrieval")
    app.command("stats")(stats)


def institution_confirm(name: str, data_dir: DataDir = None) -> None:
    """Record the yearly confirmation: valid for one year from now."""
    info = _ra(data_dir).institutions.confirm(name, actor=Actor.operator())
    assert info.confirmed_until is not None
    out.print(f"{info.name_en}: confirmed until {info.confirmed_until:%Y-%m-%d}")


def institution_remind(data_dir: DataDir = None) -> None:
    """Queue yearly-confirmation reminders to responsible persons (then: kakuin mail send)."""
    n = _ra(data_dir).institutions.remind_confirmations()
    out.print(f"{n} reminder(s) queued")


@domain_app.command("add")
def domain_add(name: str, domain: str, as_officer: AsOfficer = None, data_dir: DataDir = None) -> None:
    """Ask for a domain for the institution (pending until approved)."""
    ra = _ra(data_dir)
    d = ra.institutions.add_domain(name, domain, actor=_actor(ra, as_officer))
    out.print(f"{d.domain}: {'approved' if d.approved else 'pending approval'}")


@domain_app.command("approve")
def domain_approve(name: str, domain: str, data_dir: DataDir = None) -> None:
    """Approve a domain (CA operator)."""
    d = _ra(data_dir).institutions.approve_domain(name, domain, actor=Actor.operator())
    out.print(f"{d.domain}: approved")


@person_app.command("add")
def person_add(
    institution: str,
    role: Annotated[str, typer.Option(help="responsible | subscriber")],
    name: Annotated[str, typer.Option()],
    email: Annotated[str, typer.Option()],
    affiliation: Annotated[str | None, typer.Option()] = None,
    data_dir: DataDir = None,
) -> None:
    """Add the responsible person or a subscriber."""
    p = _ra(data_dir).institutions.add_person(
        institution, role=role, name=name, email=email, affiliation=affiliation, actor=Actor.operator()
    )
    out.print(f"{p.role} {p.name} <{p.email}> at {p.institution}")


@officer_app.command("add")
def officer_add(
    institution: Annotated[str, typer.Option("--institution")],
    name: Annotated[str, typer.Option("--name", help="In romaji: the CN of the officer's certificate.")],
    email: Annotated[str, typer.Option("--email")],
    out_file: Annotated[Path | None, typer.Option("--out", help="PKCS#12 file (default NAME.p12).")] = None,
    pin_env: Annotated[str | None, typer.Option(help="Take the PIN from this environment variable.")] = None,
    print_pin: Annotated[bool, typer.Option("--print-pin", help="Print a generated PIN (default: mail it).")] = False,
    data_dir: DataDir = None,
) -> None:
    """Appoint an officer and issue their client certificate as a PIN-protected PKCS#12."""
    ra = _ra(data_dir)
    pin = os.environ.get(pin_env) if pin_env else None
    if pin_env and not pin:
        raise KakuinError(f"${pin_env} is empty")
    e = ra.institutions.add_officer(institution, name=name, email=email, actor=Actor.operator(), pin=pin)
    path = out_file or Path(f"{email.split('@')[0]}.p12")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(e.pkcs12)
    out.print(f"officer {e.person.name} <{e.person.email}>: certificate {e.serial}, PKCS#12 written to {path}")
    if e.pin_generated:
        if print_pin:
            out.print(f"access PIN: {e.pin}", markup=False, highlight=False)
        else:
            out.print("the access PIN has been queued for mailing to the officer (kakuin mail send)")


@officer_app.command("list")
def officer_list(institution: str, data_dir: DataDir = None) -> None:
    """People of an institution with their roles."""
    info = _ra(data_dir).institutions.get(institution, actor=Actor.operator())
    t = Table("role", "name", "email", "certificate")
    for p in info.people:
        t.add_row(p.role, p.name, p.email, p.cert_serial or "")
    out.print(t)


def _errors(errors: list, code: int = 1) -> None:  # type: ignore[type-arg]
    for e in errors:
        err.print(str(e), markup=False, highlight=False)
    raise typer.Exit(code)


KindOpt = Annotated[TSVKind | None, typer.Option("--kind", help="Default: from the column count.")]


def _institution_of(ra: RA, data: bytes, given: str | None, actor: Actor) -> str:
    if given:
        return given
    if actor.institution_id is not None:
        return ra.institutions.list(actor=actor)[0].name_en
    names = [i.name_en for i in ra.institutions.list(actor=actor)]
    if len(names) == 1:
        return names[0]
    raise KakuinError("say which institution the file is for: --institution NAME")


@tsv_app.command("check")
def tsv_check(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    kind: KindOpt = None,
    institution: Annotated[str | None, typer.Option()] = None,
    as_officer: AsOfficer = None,
    data_dir: DataDir = None,
) -> None:
    """Check every row; store nothing. Errors name row, column and rule."""
    ra = _ra(data_dir)
    actor = _actor(ra, as_officer)
    data = file.read_bytes()
    try:
        r = ra.tsv.check(data, institution=_institution_of(ra, data, institution, actor), actor=actor, kind=kind)
    except TSVRefused as exc:
        _errors(exc.errors)
        return
    if r.errors:
        _errors(list(r.errors))
    out.print(f"{r.kind}: {r.rows} row(s) OK ({r.encoding})")


@tsv_app.command("apply")
def tsv_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    institution: Annotated[str, typer.Option("--institution")],
    kind: KindOpt = None,
    row_by_row: Annotated[bool, typer.Option("--row-by-row", help="Apply good rows, report bad ones.")] = False,
    as_officer: AsOfficer = None,
    data_dir: DataDir = None,
) -> None:
    """Apply the file: every row or none (unless --row-by-row). Mails go to the outbox."""
    ra = _ra(data_dir)
    actor = _actor(ra, as_officer)
    try:
        r = ra.tsv.apply(
            file.read_bytes(),
            institution=institution,
            actor=actor,
            kind=kind,
            row_by_row=row_by_row,
            filename=file.name,
        )
    except TSVRefused as exc:
        _errors(exc.errors)
        return
    for res in r.results:
        if res.ok:
            pending = f"pending enrollment {res.enrollment} (link mailed to the subscriber)" if res.enrollment else None
            out.print(f"row {res.row}: {res.serial or res.kid or pending}")
        else:
            for e in res.errors:
                err.print(str(e), markup=False, highlight=False)
    out.print(f"application {r.application_id}: {r.status}")
    if r.status != "applied":
        raise typer.Exit(1)


@tsv_app.command("make")
def tsv_make(
    csr: Annotated[Path, typer.Option("--csr", exists=True, dir_okay=False)],
    profile_id: Annotated[str | None, typer.Option(help="1 RSA server, 11 ECDSA P-384 server")] = None,
    name: Annotated[str | None, typer.Option(help="Subscriber name")] = None,
    affiliation: Annotated[str | None, typer.Option(help="Subscriber affiliation")] = None,
    email: Annotated[str | None, typer.Option(help="Subscriber e-mail")] = None,
    software: Annotated[str | None, typer.Option(help="Server software and version")] = None,
    replaces: Annotated[str | None, typer.Option(help="Renew: serial of the certificate replaced")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Append the row to this file.")] = None,
    encoding: Annotated[str, typer.Option(help="shift_jis or utf-8")] = "shift_jis",
) -> None:
    """Make a server issue (or renew) row from a CSR; asks for what the CSR does not say."""
    from kakuin.ra.tsv.make import encode, make_server_row, read_csr

    fields = read_csr(csr.read_bytes())
    interactive = sys.stdin.isatty()

    def ask(value: str | None, prompt: str) -> str:
        if value is not None:
            return value
        if not interactive:
            raise KakuinError(f"give --{prompt.split(' ')[0].lower()} (not interactive)")
        return str(typer.prompt(prompt))

    known = "/".join(PROFILE_IDS[TSVKind.SERVER_ISSUE])
    line = make_server_row(
        fields,
        profile_id=ask(profile_id, f"profile-id ({known})"),
        name=ask(name, "name (利用管理者氏名)"),
        affiliation=ask(affiliation, "affiliation (利用管理者所属)"),
        email=ask(email, "email (利用管理者E-mail)"),
        software=ask(software, "software (サーバソフトウェア名・バージョン)"),
        replaces=replaces,
    )
    data = encode([line], encoding)
    if out_file is None:
        sys.stdout.buffer.write(data)
        return
    with out_file.open("ab") as fh:
        fh.write(data)
    err.print(f"row for {fields.fqdn} appended to {out_file}")


@mail_app.command("send")
def mail_send(data_dir: DataDir = None) -> None:
    """Send the queued mails through the relay ([mail]); failures stay queued for the next run."""
    ra = _ra(data_dir)
    r = ra.outbox.flush(ra.mailer())
    out.print(f"sent {r.sent}, failed {r.failed}, still queued {r.pending}")
    if r.failed:
        raise typer.Exit(1)


@mail_app.command("list")
def mail_list(data_dir: DataDir = None) -> None:
    """Mails waiting in the outbox."""
    t = Table("id", "to", "kind", "subject", "attempts", "last error")
    for m in _ra(data_dir).outbox.pending():
        t.add_row(str(m.id), m.recipient, m.kind, m.subject, str(m.attempts), m.last_error or "")
    out.print(t)


@notify_app.command("expiry")
def notify_expiry(data_dir: DataDir = None) -> None:
    """Queue today's expiry digests (60/30/7 days) and clear unused expired PKCS#12 files."""
    ra = _ra(data_dir)
    r = ra.expiry.enqueue_digests()
    purged = ra.retrieval.purge_expired()
    out.print(f"{r.certificates} certificate(s) in {r.mails} digest mail(s) queued; {purged} expired PKCS#12 cleared")


@retrieval_app.command("renew")
def retrieval_renew(serial: str, as_officer: AsOfficer = None, data_dir: DataDir = None) -> None:
    """Make a new retrieval link (the old one stops working) and mail it."""
    ra = _ra(data_dir)
    ra.retrieval.renew_link(serial, actor=_actor(ra, as_officer))
    out.print(f"a new link for {serial} has been queued for mailing")


def stats(
    institution: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    as_officer: AsOfficer = None,
    data_dir: DataDir = None,
) -> None:
    """Issued, revoked, valid, downloaded, not downloaded and expiring (30 days), per institution and domain."""
    ra = _ra(data_dir)
    result = ra.stats.institution_stats(actor=_actor(ra, as_officer), institution=institution)
    if as_json:
        out.print_json(json.dumps([r.as_dict() for r in result]))
        return
    t = Table("institution / domain", "issued", "revoked", "valid", "downloaded", "not downloaded", "expiring 30d")
    for r in result:
        c = r.counts
        t.add_row(
            r.institution, *map(str, (c.issued, c.revoked, c.valid, c.downloaded, c.not_downloaded, c.expiring_30d))
        )
        for d in r.domains:
            c = d.counts
            t.add_row(
                "  " + d.domain,
                *map(str, (c.issued, c.revoked, c.valid, c.downloaded, c.not_downloaded, c.expiring_30d)),
            )
    out.print(t)
