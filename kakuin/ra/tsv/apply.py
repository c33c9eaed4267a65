"""Applying a TSV file for an institution: check every row, then (all rows
good, or ``row_by_row``) issue, renew, revoke or make EAB credentials, record
the application and queue the mails. One service method per action:
``check`` and ``apply``."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography import x509

from kakuin.ca.issuer import IssuanceService, IssueRequest, check_institution_confirmed
from kakuin.clock import Clock
from kakuin.config import Config
from kakuin.errors import KakuinError, NotFound, PolicyError
from kakuin.notify.outbox import enqueue
from kakuin.ra import notices
from kakuin.ra.actors import Actor
from kakuin.ra.institutions import upsert_person
from kakuin.ra.models import Application, RACertificate
from kakuin.ra.retrieval import RetrievalService, officer_email
from kakuin.ra.revocation import RevocationService
from kakuin.ra.tsv.check import (
    CertView,
    CheckedRow,
    CheckEnv,
    Checker,
    ClientRow,
    EABRow,
    InstitutionView,
    RevokeRow,
    ServerRow,
)
from kakuin.ra.tsv.client import ClientDelivery
from kakuin.ra.tsv.formats import FORMATS, TSVKind
from kakuin.ra.tsv.messages import policy_message, row_message
from kakuin.ra.tsv.parse import RowError, TSVRefused, decode, split
from kakuin.ra.tsv.results import RowResult, split_issued
from kakuin.store.db import Database
from kakuin.store.repos import BlockedKeyRepo, CertificateRepo, InstitutionRepo
from kakuin.va.evidence import collecting, link_certificate

if TYPE_CHECKING:
    from kakuin.acme.eab import EABService
    from kakuin.ra.enrollment import EnrollmentService
    from kakuin.va import ValidationAuthority


@dataclass(frozen=True, slots=True)
class CheckReport:
    kind: TSVKind
    encoding: str
    rows: int
    checked: tuple[CheckedRow, ...]
    errors: tuple[RowError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class ApplyReport:
    application_id: int
    kind: TSVKind
    status: str  # applied | partial
    results: tuple[RowResult, ...] = field(default=())


def caa_with(va: ValidationAuthority) -> Callable[[list[str]], dict[str, str | None]]:
    """The VA's CAA check (async) as the synchronous function ``CheckEnv`` takes."""

    def check(names: list[str]) -> dict[str, str | None]:
        async def all_names() -> list[object]:
            return await asyncio.gather(
                *(va.check_caa(n, account_uri=None, method=None, wildcard=n.startswith("*.")) for n in names)
            )

        records = asyncio.run(all_names())
        return {n: (None if r.ok else r.error or "CAA") for n, r in zip(names, records, strict=True)}  # type: ignore[attr-defined]

    return check


class TSVService:
    def __init__(
        self,
        config: Config,
        db: Database,
        clock: Clock,
        issuance: IssuanceService,
        revocation: RevocationService,
        retrieval: RetrievalService,
        *,
        eab: Callable[[], EABService | None] = lambda: None,
        caa: Callable[[list[str]], dict[str, str | None]] | None = None,
        enrollment: EnrollmentService | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.issuance = issuance
        self.revocation = revocation
        self.retrieval = retrieval
        self.eab = eab
        self.caa = caa
        self.enrollment = enrollment

    # -- environment --------------------------------------------------------
    def _env(self, institution: str, actor: Actor) -> CheckEnv:
        with self.db.session() as s:
            inst = InstitutionRepo(s).by_name(institution)
            actor.require_institution(inst.id, institution)
            view = InstitutionView(
                inst.id, inst.name_en, inst.prefecture, inst.city, tuple(d.domain for d in inst.domains if d.approved)
            )

        def is_blocked(spki: str) -> bool:
            with self.db.session() as s:
                return BlockedKeyRepo(s).is_blocked(spki)

        def certificate(serial: str) -> CertView | None:
            with self.db.session() as s:
                try:
                    c = CertificateRepo(s).by_serial(serial)
                except NotFound:
                    return None
                subject = x509.load_der_x509_certificate(c.der).subject if c.der else x509.Name([])
                return CertView(
                    c.serial, c.institution_id, subject, c.spki_sha256, c.state == "issued", c.revoked_at is not None
                )

        caa = self.caa if self.config.ra.check_caa else None
        return CheckEnv(view, self.config.policy.country, self.issuance.profiles, is_blocked, certificate, caa)

    def check(self, data: bytes, *, institution: str, actor: Actor, kind: TSVKind | None = None) -> CheckReport:
        """Every row checked; nothing is stored. Raises TSVRefused only when the
        file cannot be read at all (encoding, no rows, unknown kind)."""
        text, encoding = decode(data)
        kind, raw_rows, errors = split(text, kind)
        env = self._env(institution, actor)
        if kind is not TSVKind.REVOKE:
            self._confirmed(institution)
        checker = Checker(kind, env)
        checked: list[CheckedRow] = []
        for raw in raw_rows:
            result = checker.check(raw)
            if isinstance(result, ClientRow) and result.download == "p12-bulk" and not officer_email(actor.name):
                # The archive goes to the officer who applied: the operator has no mailbox here.
                col = next(c for c in FORMATS[kind] if c.key == "download")
                errors.append(row_message(raw.no, col, "bulk-needs-officer"))
            elif isinstance(result, RowError):
                errors.append(result)
            else:
                checked.append(result)
        total = len(raw_rows) + len({e.row for e in errors if e.row not in {r.no for r in raw_rows}})
        errors.sort(key=lambda e: (e.row, e.column or 0))
        return CheckReport(kind, encoding, total, tuple(checked), tuple(errors))

    def _confirmed(self, institution: str) -> None:
        with self.db.session() as s:
            inst = InstitutionRepo(s).by_name(institution)
            until, name = inst.confirmed_until, inst.name_en
        try:
            check_institution_confirmed(name, until, self.clock.now(), self.config.policy)
        except PolicyError as exc:
            raise TSVRefused([policy_message(0, None, exc)]) from None

    # -- apply --------------------------------------------------------------
    def apply(
        self,
        data: bytes,
        *,
        institution: str,
        actor: Actor,
        kind: TSVKind | None = None,
        row_by_row: bool = False,
        filename: str | None = None,
    ) -> ApplyReport:
        """Apply the file: all rows, or none (TSVRefused) unless ``row_by_row``,
        in which case good rows are applied and bad ones reported."""
        with collecting() as checks:  # MPIC evidence of the CAA checks, by name (issue #6)
            report = self.check(data, institution=institution, actor=actor, kind=kind)
        digest = hashlib.sha256(data).hexdigest()
        if report.errors and (not row_by_row or not report.checked):
            self._record(
                institution, report.kind, actor, filename, digest, report.rows, 0, "refused", list(report.errors)
            )
            raise TSVRefused(list(report.errors))
        app_id = self._record(
            institution,
            report.kind,
            actor,
            filename,
            digest,
            report.rows,
            len(report.checked),
            "applying",
            list(report.errors),
        )
        if report.kind in (TSVKind.SERVER_ISSUE, TSVKind.SERVER_RENEW):
            results = self._server([r for r in report.checked if isinstance(r, ServerRow)], institution, actor, app_id)
            for r in results:
                if r.ok and r.serial:
                    row = next(x for x in report.checked if x.row == r.row)
                    names = row.dns_names  # type: ignore[union-attr]
                    evidence = [c for n in names for c in checks.get(n.removeprefix("*."), [])]
                    link_certificate(self.db, r.serial, evidence)
        elif report.kind is TSVKind.CLIENT_ISSUE:
            results = self._client([r for r in report.checked if isinstance(r, ClientRow)], institution, actor, app_id)
        elif report.kind is TSVKind.REVOKE:
            results = self._revoke([r for r in report.checked if isinstance(r, RevokeRow)], institution, actor)
        else:
            results = self._eab([r for r in report.checked if isinstance(r, EABRow)], institution, actor)
        bad = {e.row for e in report.errors}
        results += [RowResult(n, False, errors=tuple(e for e in report.errors if e.row == n)) for n in sorted(bad)]
        results.sort(key=lambda r: r.row)
        status = "applied" if all(r.ok for r in results) else "partial"
        with self.db.session() as s:
            row = s.get(Application, app_id)
            assert row is not None
            row.status, row.accepted = status, sum(r.ok for r in results)
            failed = [e.as_dict() for r in results for e in r.errors]
            row.errors = json.dumps(failed, ensure_ascii=False) if failed else None
        return ApplyReport(app_id, report.kind, status, tuple(results))

    def _record(
        self,
        institution: str,
        kind: TSVKind,
        actor: Actor,
        filename: str | None,
        digest: str,
        rows: int,
        accepted: int,
        status: str,
        errors: list[RowError],
    ) -> int:
        with self.db.session() as s:
            inst = InstitutionRepo(s).by_name(institution)
            app = Application(
                institution_id=inst.id,
                kind=str(kind),
                actor=actor.name,
                filename=filename,
                sha256=digest,
                rows=rows,
                accepted=accepted,
                status=status,
                errors=json.dumps([e.as_dict() for e in errors], ensure_ascii=False) if errors else None,
                created_at=self.clock.now(),
            )
            s.add(app)
            s.flush()
            return app.id

    def _server(self, rows: list[ServerRow], institution: str, actor: Actor, app_id: int) -> list[RowResult]:
        reqs = [
            IssueRequest(
                profile=r.profile_id.profile,
                public_key=r.public_key,
                subject=r.subject,
                dns_names=r.dns_names,
                institution=institution,
                requested_by=actor.name,
            )
            for r in rows
        ]
        good, results = split_issued(rows, self.issuance.issue_batch(reqs))
        now = self.clock.now()
        with self.db.session() as s:
            inst_id = InstitutionRepo(s).by_name(institution).id
            for row, issued in good:
                assert isinstance(row, ServerRow)
                sub = row.subscriber
                person = upsert_person(s, inst_id, "subscriber", sub.name, sub.email, sub.affiliation, now)
                s.add(
                    RACertificate(
                        serial=issued.serial,
                        institution_id=inst_id,
                        subscriber_id=person.id,
                        officer=actor.name,
                        application_id=app_id,
                        kind="server",
                        server_software=row.software,
                        replaces=row.replaces,
                        created_at=now,
                    )
                )
                if row.replaces:
                    old = s.get(RACertificate, row.replaces)
                    if old is not None:
                        old.replaced_by = issued.serial
                self.retrieval.offer(
                    s,
                    serial=issued.serial,
                    institution_id=inst_id,
                    recipient=sub.email,
                    subject=issued.certificate.subject.rfc4514_string(),
                    filename=f"{row.dns_names[0]}-{issued.serial[:8]}.pem",
                )
                results.append(RowResult(row.row, True, serial=issued.serial))
        return results

    def _client(self, rows: list[ClientRow], institution: str, actor: Actor, app_id: int) -> list[RowResult]:
        delivery = ClientDelivery(self.config, self.db, self.clock, self.issuance, self.retrieval, self.enrollment)
        return delivery.deliver(rows, institution, actor, app_id)

    def _revoke(self, rows: list[RevokeRow], institution: str, actor: Actor) -> list[RowResult]:
        results = []
        for row in rows:
            with self.db.session() as s:
                inst_id = InstitutionRepo(s).by_name(institution).id
            try:
                done = self.revocation.revoke(
                    row.serial, row.reason, actor=actor.name, comment=row.comment, actor_institution_id=inst_id
                )
            except KakuinError as exc:
                results.append(RowResult(row.row, False, errors=(policy_message(row.row, None, exc),)))
                continue
            self.tell_revoked(done.serial, done.reason, done.revoked_at, actor)
            results.append(RowResult(row.row, True, serial=done.serial))
        return results

    def tell_revoked(self, serial: str, reason: int, at: dt.datetime, actor: Actor) -> None:
        from kakuin.ra.models import Person

        with self.db.session() as s:
            cert = CertificateRepo(s).by_serial(serial)
            ra = s.get(RACertificate, serial)
            to = {officer_email(actor.name)}
            if ra is not None:
                to.add(officer_email(ra.officer))
                person = s.get(Person, ra.subscriber_id) if ra.subscriber_id else None
                to.add(person.email if person else None)
            for addr in sorted(a for a in to if a):
                mail = notices.revocation_complete(addr, serial=serial, subject=cert.subject, reason=reason, at=at)
                enqueue(s, mail, sender=self.retrieval.sender, now=self.clock.now())

    def _eab(self, rows: list[EABRow], institution: str, actor: Actor) -> list[RowResult]:
        service = self.eab()
        if service is None:
            raise KakuinError("EAB credentials need the ACME service (kakuin.acme.eab), which is not available")
        results = []
        acme_url = f"{self.config.server.base_url}/acme/directory"
        for row in rows:
            expires = self.clock.now() + dt.timedelta(days=row.days) if row.days else None
            cred = service.new(institution, domains=row.domains, expires_at=expires, created_by=actor.name)
            with self.db.session() as s:
                inst_id = InstitutionRepo(s).by_name(institution).id
                upsert_person(s, inst_id, "subscriber", row.name, row.email, None, self.clock.now())
                mail = notices.eab_credential(
                    row.email, kid=cred.kid, hmac_key=cred.hmac_key, acme_url=acme_url, institution=institution
                )
                enqueue(s, mail, sender=self.retrieval.sender, now=self.clock.now())
            results.append(RowResult(row.row, True, kid=cred.kid))
        return results
