"""The RA's services for one process, built from a ``Context`` on first use
(``RA(ctx)``), so the CLI, the portal and the REST API share them.

Service methods the web layer calls (each takes an ``Actor``):

- ``ra.institutions``: register, get, list, confirm, add_domain,
  approve_domain, add_person, add_officer, officer_actor, remind_confirmations
- ``ra.tsv``: check(data, institution=, actor=, kind=) → CheckReport;
  apply(data, institution=, actor=, kind=, row_by_row=, filename=) → ApplyReport
- ``ra.retrieval``: peek(token), fetch(token, client=), renew_link(serial, actor=), purge_expired()
- ``ra.enrollment``: peek(token), enroll(token, csr_der, client=) → Enrolled (TSV method 3,
  key pair made in the subscriber's browser)
- ``ra.stats``: institution_stats(actor=, institution=, weeks=) → [InstitutionStats]
- ``ra.expiry``: enqueue_digests() → ExpiryRun
- ``ra.outbox``: pending(), flush(mailer) → FlushResult; ``ra.mailer()``: the SMTP relay
- ``ra.revoke(serial, reason, actor=, comment=)``: one revocation with its notices
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from kakuin.ra.actors import Actor

if TYPE_CHECKING:
    from kakuin.acme.eab import EABService
    from kakuin.context import Context
    from kakuin.notify.mailer import SMTPMailer
    from kakuin.notify.outbox import OutboxService
    from kakuin.ra.enrollment import EnrollmentService
    from kakuin.ra.expiry import ExpiryService
    from kakuin.ra.institutions import InstitutionService
    from kakuin.ra.retrieval import RetrievalService
    from kakuin.ra.revocation import Revoked
    from kakuin.ra.stats import StatsService
    from kakuin.ra.tsv.apply import TSVService

__all__ = ["RA", "Actor"]


class RA:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def sender(self) -> str:
        return self.ctx.config.mail.sender

    @cached_property
    def institutions(self) -> InstitutionService:
        from kakuin.ra.institutions import InstitutionService

        return InstitutionService(self.ctx.db, self.ctx.clock, self.ctx.issuance, self.ctx.config.ra, self.sender)

    @cached_property
    def retrieval(self) -> RetrievalService:
        from kakuin.ra.retrieval import RetrievalService

        c = self.ctx.config
        return RetrievalService(
            self.ctx.db, self.ctx.clock, base_url=c.server.base_url, days=c.ra.retrieval_days, sender=self.sender
        )

    @cached_property
    def enrollment(self) -> EnrollmentService:
        from kakuin.ra.enrollment import EnrollmentService

        c = self.ctx.config
        return EnrollmentService(
            self.ctx.db,
            self.ctx.clock,
            self.ctx.issuance,
            self.retrieval,
            base_url=c.server.base_url,
            days=c.ra.retrieval_days,
            sender=self.sender,
        )

    def _eab(self) -> EABService | None:
        try:
            return self.ctx.acme.eab
        except (ImportError, AttributeError):
            return None

    @cached_property
    def tsv(self) -> TSVService:
        from kakuin.ra.tsv.apply import TSVService, caa_with

        ctx = self.ctx
        caa = caa_with(ctx.va) if ctx.config.ra.check_caa else None
        return TSVService(
            ctx.config,
            ctx.db,
            ctx.clock,
            ctx.issuance,
            ctx.revocation,
            self.retrieval,
            eab=self._eab,
            caa=caa,
            enrollment=self.enrollment,
        )

    @cached_property
    def stats(self) -> StatsService:
        from kakuin.ra.stats import StatsService

        return StatsService(self.ctx.db, self.ctx.clock)

    @cached_property
    def expiry(self) -> ExpiryService:
        from kakuin.ra.expiry import ExpiryService

        c = self.ctx.config
        return ExpiryService(
            self.ctx.db,
            self.ctx.clock,
            thresholds=c.ra.expiry_notice_days,
            sender=self.sender,
            max_bytes=c.mail.max_message_bytes,
        )

    @cached_property
    def outbox(self) -> OutboxService:
        from kakuin.notify.outbox import OutboxService

        return OutboxService(self.ctx.db, self.ctx.clock, self.sender)

    def mailer(self) -> SMTPMailer:
        from kakuin.notify.mailer import SMTPMailer

        return SMTPMailer(self.ctx.config.mail)

    def revoke(self, serial: str, reason: int | str, *, actor: Actor, comment: str | None = None) -> Revoked:
        """Revoke one certificate for an officer (own institution only) or the
        operator, and notify the subscriber and the officer."""
        from kakuin.ra.revocation import parse_reason

        done = self.ctx.revocation.revoke(
            serial, parse_reason(reason), actor=actor.name, comment=comment, actor_institution_id=actor.institution_id
        )
        self.tsv.tell_revoked(done.serial, done.reason, done.revoked_at, actor)
        return done
