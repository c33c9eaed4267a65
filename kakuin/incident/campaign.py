"""The campaign of an open incident: tell everyone, push ACME renewals, follow
progress, remind, and act at the deadline.

- ``notify``: one digest per subscriber and per officer (Japanese, then
  English: what happened, what to do by when, which intermediate to install,
  the new intermediate attached), queued in the outbox in the same transaction
  that records it; and ARI "renew now" (RFC 9773) for every affected ACME
  certificate, so certbot ≥ 4 renews on its next ``renew`` run.
- ``remind``: the same digest for what is still pending, once per threshold
  of ``remind_days`` before the deadline (cron-able: run it daily).
- ``progress``: replaced / pending / revoked, live (``IncidentService.report``).
- ``execute``: at the deadline, revoke every affected certificate not yet
  revoked (replaced ones as superseded, the rest with the operator's reason),
  then the affected intermediates (onto their roots' ARLs).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from kakuin.ca.rotation import RotationService
from kakuin.clock import as_utc
from kakuin.errors import KakuinError
from kakuin.incident.models import Incident, IncidentCertificate, IncidentReminder
from kakuin.incident.report import AffectedCertificate, IncidentReport, IncidentService, _incident
from kakuin.notify.compose import Attachment, DigestItem, build_digest
from kakuin.notify.outbox import enqueue
from kakuin.ra.recipients import officer_emails
from kakuin.store.repos import CARepo

if TYPE_CHECKING:
    from kakuin.context import Context

SUPERSEDED = 4


@dataclass(frozen=True, slots=True)
class NoticeRun:
    label: str
    certificates: int
    mails: int
    ari: int


@dataclass(frozen=True, slots=True)
class Execution:
    revoked: int
    failed: tuple[str, ...]
    intermediates: tuple[str, ...]


def _d(at: dt.datetime) -> str:
    return f"{as_utc(at):%Y-%m-%d %H:%M} UTC"


class Campaign:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.incidents = IncidentService(ctx)

    # -- notices -----------------------------------------------------------
    def notify(self, name: str, *, actor: str = "operator") -> NoticeRun:
        """The first notice to every holder, and ARI for the ACME certificates."""
        report = self.incidents.report(name)
        if report.incident.status != "open":
            raise KakuinError(f"incident {name} is {report.incident.status}")
        pending = [c for c in report.certificates if c.state == "pending"]
        acme = [c.serial for c in pending if c.source == "acme"]
        ari = 0
        if acme:
            url = report.incident.explanation_url or f"{self.ctx.config.server.base_url}/incident/{name}"
            ari = self.ctx.acme.set_renewal_now(acme, url)
        run = self._send(report, pending, "notice")
        now = self.ctx.clock.now()
        with self.ctx.db.session() as s:
            inc = _incident(s, name)
            inc.notified_at = inc.notified_at or now
            for row in s.scalars(
                select(IncidentCertificate).where(
                    IncidentCertificate.incident_id == inc.id, IncidentCertificate.serial.in_(acme)
                )
            ):
                row.ari_set_at = now
        return NoticeRun(run.label, run.certificates, run.mails, ari)

    def remind(self, name: str, *, force: bool = False) -> NoticeRun | None:
        """A reminder for what is pending, when one of ``remind_days`` before the
        deadline has been reached and not yet reminded (or ``force``: now)."""
        report = self.incidents.report(name)
        inc = report.incident
        if inc.status != "open":
            return None
        now = self.ctx.clock.now()
        with self.ctx.db.session() as s:
            row = _incident(s, name)
            days = list(row.remind_days or [])
            sent = set(s.scalars(select(IncidentReminder.label).where(IncidentReminder.incident_id == row.id)))
        left = (inc.deadline - now) / dt.timedelta(days=1)
        due = [d for d in days if left <= d and f"remind-{d}d" not in sent]
        if force:
            label = f"remind-{now:%Y%m%dT%H%M}"
        elif due:
            label = f"remind-{min(due)}d"
        else:
            return None
        pending = [c for c in report.certificates if c.state == "pending"]
        run = self._send(report, pending, label)
        if not force:  # the thresholds skipped over are reminded by this one too
            with self.ctx.db.session() as s:
                inc_id = _incident(s, name).id
                for d in due:
                    if s.get(IncidentReminder, (inc_id, f"remind-{d}d")) is None:
                        s.add(IncidentReminder(incident_id=inc_id, label=f"remind-{d}d", sent_at=now, mails=0))
        return run

    def _send(self, report: IncidentReport, certs: list[AffectedCertificate], label: str) -> NoticeRun:
        inc = report.incident
        now = self.ctx.clock.now()
        mail = self.ctx.config.mail
        with self.ctx.db.session() as s:
            inc_row = _incident(s, inc.name)
            if s.get(IncidentReminder, (inc_row.id, label)) is not None:
                return NoticeRun(label, 0, 0, 0)
            chain_pem, repl_name = self._replacement(s, inc.replacement)
            by_recipient: dict[str, list[DigestItem]] = defaultdict(list)
            officers: dict[int | None, list[str]] = {}
            inst_ids = dict(
                s.execute(
                    select(IncidentCertificate.serial, IncidentCertificate.institution_id).where(
                        IncidentCertificate.incident_id == inc_row.id
                    )
                ).all()
            )
            for c in certs:
                item = _item(c)
                to = {a for v in (c.subscriber, c.officer) for a in (v or "").split(", ") if "@" in a}
                if not to:
                    inst = inst_ids.get(c.serial)
                    to = set(officer_emails(s, inst, officers)) if inst is not None else set()
                for r in to:
                    by_recipient[r].append(item)
            files = (Attachment("new-intermediate.pem", chain_pem, "application/x-pem-file"),) if chain_pem else ()
            intro = _intro(inc, repl_name, reminder=label != "notice")
            subject = (
                f"[kakuin] {'再送: ' if label != 'notice' else ''}重要: 中間CA証明書の切り替えに伴う証明書の再発行"
                f"のお願い / Action required: replace your certificates by {inc.deadline:%Y-%m-%d} ({inc.name})"
            )
            mails = 0
            for to, items in sorted(by_recipient.items()):
                items = [DigestItem(items[0].text_ja, items[0].text_en, files), *items[1:]]
                for m in build_digest(
                    to,
                    "incident",
                    f"{inc.name}:{label}",
                    subject,
                    intro,
                    items,
                    max_bytes=mail.max_message_bytes,
                    sender=mail.sender,
                    at=now,
                ):
                    mails += enqueue(s, m, sender=mail.sender, now=now)
            s.add(IncidentReminder(incident_id=inc_row.id, label=label, sent_at=now, mails=mails))
        return NoticeRun(label, len(certs), mails, 0)

    def _replacement(self, s, slug: str | None) -> tuple[bytes, str | None]:  # type: ignore[no-untyped-def]
        if not slug:
            return b"", None
        repo = CARepo(s)
        ca = repo.by_slug(slug)
        pem, name, row = b"", ca.name, ca
        while row is not None and row.kind != "root":
            pem += x509.load_der_x509_certificate(row.der).public_bytes(Encoding.PEM)
            row = repo.by_id(row.parent_id) if row.parent_id else None
        return pem, name

    # -- the deadline ------------------------------------------------------
    def execute(
        self, name: str, *, reason: int | str = SUPERSEDED, force: bool = False, actor: str = "operator"
    ) -> Execution:
        """Revoke what the incident still leaves valid, then its intermediates.
        Refused before the deadline unless ``force``."""
        from kakuin.ra.revocation import parse_reason

        code = parse_reason(reason)
        report = self.incidents.report(name)
        inc = report.incident
        now = self.ctx.clock.now()
        if inc.status != "open":
            raise KakuinError(f"incident {name} is {inc.status}")
        if now < inc.deadline and not force:
            raise KakuinError(f"the deadline is {_d(inc.deadline)}; it is {_d(now)} (use --force to act now)")
        revoked = 0
        failed: list[str] = []
        comment = f"incident {name}: issuing CA replaced"
        for c in report.certificates:
            if c.state in ("revoked", "expired"):  # an expired certificate needs no revocation
                continue
            r = SUPERSEDED if c.state == "replaced" else code
            try:
                self.ctx.revocation.revoke(c.serial, r, actor=actor, comment=comment)
                revoked += 1
            except KakuinError as exc:
                failed.append(f"{c.serial}: {exc.message}")
        rotation = RotationService(self.ctx)
        done: list[str] = []
        for slug in inc.issuers:
            with self.ctx.db.session() as s:
                if CARepo(s).by_slug(slug).status == "revoked":
                    continue
            rotation.schedule_revocation(slug, at=now, reason=SUPERSEDED, actor=actor)
            done.append(slug)
        with self.ctx.db.session() as s:
            row: Incident = _incident(s, name)
            row.status, row.executed_at, row.revoke_reason = "executed", now, code
            rotation.log.append(
                "incident-executed",
                actor=actor,
                session=s,
                details={
                    "incident": name,
                    "revoked": revoked,
                    "failed": len(failed),
                    "intermediates": done,
                    "reason": code,
                },
            )
        return Execution(revoked, tuple(failed), tuple(done))


def _item(c: AffectedCertificate) -> DigestItem:
    short_ja = short_en = ""
    if c.shortened_days > 0 and c.reissue_not_after is not None:
        short_ja = (
            f"\n    ※ 再発行後の有効期限は {c.reissue_not_after:%Y-%m-%d} となり、現在の証明書より"
            f" {c.shortened_days} 日短くなります(現在の有効期間の上限による)"
        )
        short_en = (
            f"\n    Note: a reissued certificate expires on {c.reissue_not_after:%Y-%m-%d}, {c.shortened_days} "
            "days earlier than this one (today's maximum validity)"
        )
    how_ja = (
        "ACMEクライアント(certbot renew)で自動更新されます" if c.source == "acme" else "更新申請(TSV)をしてください"
    )
    how_en = "your ACME client (certbot renew) renews it" if c.source == "acme" else "apply for renewal (TSV renew row)"
    ja = (
        f"- シリアル番号: {c.serial}\n    主体者DN: {c.subject}\n    名前: {c.names or '-'}\n"
        f"    有効期限: {c.not_after:%Y-%m-%d}\n    発行CA: {c.issuer}\n    利用管理者: {c.subscriber}\n"
        f"    対応: {how_ja}{short_ja}"
    )
    en = (
        f"- Serial: {c.serial}\n    Subject: {c.subject}\n    Names: {c.names or '-'}\n"
        f"    Expires: {c.not_after:%Y-%m-%d}\n    Issuer: {c.issuer}\n    Subscriber: {c.subscriber}\n"
        f"    What to do: {how_en}{short_en}"
    )
    return DigestItem(ja, en)


def _intro(inc, replacement: str | None, *, reminder: bool) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    issuers = ", ".join(inc.issuers)
    repl_ja = (
        f"新しい中間CA証明書「{replacement}」(添付の new-intermediate.pem)" if replacement else "新しい中間CA証明書"
    )
    repl_en = (
        f'the new intermediate "{replacement}" (attached: new-intermediate.pem)'
        if replacement
        else ("the new intermediate certificate")
    )
    again_ja = "【再送】下記の証明書はまだ置き換えられていません。\n\n" if reminder else ""
    again_en = "Reminder: the certificates below have not been replaced yet.\n\n" if reminder else ""
    more = f"\n詳細: {inc.explanation_url}" if inc.explanation_url else ""
    more_en = f"\nDetails: {inc.explanation_url}" if inc.explanation_url else ""
    ja = (
        f"{again_ja}{inc.summary_ja or '中間CA証明書を切り替えることになりました。'}\n\n"
        f"中間CA({issuers})から発行された下記の証明書は {_d(inc.deadline)} に失効されます。"
        "それまでに次の対応をお願いします。\n\n"
        "  1. 新しい鍵ペアとCSRで証明書を再発行(更新)してください。ACME(certbot 等)で取得した証明書は、"
        "certbot renew(ARI対応)が自動的に更新します。\n"
        f"  2. 新しい証明書と一緒に{repl_ja}をサーバに設定してください(fullchain.pem または chain.pem)。\n"
        "  3. 設定後、kakuin check ホスト名 で新しい中間CAを経由していることを確認してください。\n\n"
        f"再発行される証明書は現在の有効期間の上限に従います。{more}"
    )
    en = (
        f"{again_en}{inc.summary_en or 'We are replacing an intermediate CA certificate.'}\n\n"
        f"The certificates below, issued by {issuers}, will be revoked on {_d(inc.deadline)}. Before then:\n\n"
        "  1. Get a new certificate with a new key pair and CSR. Certificates obtained by ACME (certbot …) "
        "are renewed by certbot renew (ARI) without your help.\n"
        f"  2. Install it together with {repl_en} (fullchain.pem or chain.pem).\n"
        "  3. Then run kakuin check YOUR-HOST to confirm the server chains through the new intermediate.\n\n"
        f"Reissued certificates follow today's maximum validity.{more_en}"
    )
    return ja, en
