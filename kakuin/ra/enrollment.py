"""Enrollment in the browser (TSV download method 3, ブラウザ個別).

Applying the TSV stores the checked row (subject DN, profile, subscriber,
officer, application) and mails the subscriber a single-use link with an
expiry (``offer``); no key exists yet and nothing is issued. The link's page
makes the key pair in the subscriber's browser (WebCrypto), sends only a
PKCS#10 CSR, and builds the PKCS#12 there under a password the subscriber types
(``kakuin/ra/static/enroll.js``): the private key never reaches the server.

``enroll`` checks the CSR (signature, the profile's key rules, the blocklist),
ignores the CSR's subject and uses the stored, checked DN, then issues through
the normal pipeline (``IssuanceService.issue``: policy, record, lint, sign).
The link is claimed before issuing and released again if issuance fails, so a
refused CSR or a failed issuance leaves the link usable and nothing issued; a
second use is refused. The download is recorded (statistics) and the
completion notices go out as for any retrieval.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import update
from sqlalchemy.orm import Session

from kakuin.ca.csr import parse_csr
from kakuin.ca.issuer import IssuanceService, IssueRequest
from kakuin.clock import Clock, as_utc
from kakuin.notify.outbox import enqueue
from kakuin.policy.keys import check_key
from kakuin.policy.subject import parse_dn
from kakuin.ra import notices
from kakuin.ra.models import Enrollment, RACertificate
from kakuin.ra.retrieval import RetrievalGone, RetrievalService, new_token, open_link, token_hash
from kakuin.store.db import Database
from kakuin.store.repos import BlockedKeyRepo, InstitutionRepo


@dataclass(frozen=True, slots=True)
class EnrollmentInfo:
    """What the page shows before the subscriber acts (the link is not used)."""

    subject: str
    email: str
    profile: str
    pin_required: bool  # column 15 was given: the page asks for that PIN
    filename: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Enrolled:
    serial: str
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # the intermediates to install, issuer first
    filename: str
    friendly_name: str


class EnrollmentService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        issuance: IssuanceService,
        retrieval: RetrievalService,
        *,
        base_url: str,
        days: int,
        sender: str,
    ) -> None:
        self.db = db
        self.clock = clock
        self.issuance = issuance
        self.retrieval = retrieval
        self.base_url = base_url.rstrip("/")
        self.days = days
        self.sender = sender

    def offer(
        self,
        s: Session,
        *,
        institution_id: int,
        application_id: int | None,
        row: int,
        officer: str,
        subscriber_id: int | None,
        subscriber_email: str,
        profile: str,
        profile_id: str,
        subject_dn: str,
        p12_name: str | None,
        pin_required: bool,
    ) -> tuple[int, str]:
        """Store a checked row and queue the subscriber's link, in the caller's
        transaction; returns (enrollment id, URL)."""
        now = self.clock.now()
        token = new_token()
        e = Enrollment(
            institution_id=institution_id,
            application_id=application_id,
            row=row,
            officer=officer,
            subscriber_id=subscriber_id,
            subscriber_email=subscriber_email,
            profile=profile,
            profile_id=profile_id,
            subject_dn=subject_dn,
            p12_name=p12_name,
            pin_required=pin_required,
            token_sha256=token_hash(token),
            created_at=now,
            expires_at=now + dt.timedelta(days=self.days),
        )
        s.add(e)
        s.flush()
        url = f"{self.base_url}/enroll/{token}"
        mail = notices.enrollment_link(
            subscriber_email,
            subject=subject_dn,
            url=url,
            expires_at=e.expires_at,
            pin_required=pin_required,
            enrollment_id=e.id,
        )
        enqueue(s, mail, sender=self.sender, now=now)
        return e.id, url

    def _open(self, s: Session, token: str) -> Enrollment:
        return open_link(s, Enrollment, token, self.clock.now(), what_en="enrollment", what_ja="証明書取得URL")

    def peek(self, token: str) -> EnrollmentInfo:
        with self.db.session() as s:
            e = self._open(s, token)
            return EnrollmentInfo(
                e.subject_dn,
                e.subscriber_email,
                e.profile,
                e.pin_required,
                _filename(e),
                as_utc(e.expires_at),
            )

    def enroll(self, token: str, csr_der: bytes, *, client: str | None = None) -> Enrolled:
        """Issue for the CSR the browser sent; the link works once."""
        with self.db.session() as s:
            e = self._open(s, token)
            snapshot = (e.id, e.profile, e.subject_dn, e.subscriber_email, e.institution_id, e.officer)
        enrollment_id, profile_name, dn, email, institution_id, officer = snapshot
        # Checks first: a refused CSR stores nothing and leaves the link usable.
        csr = parse_csr(csr_der)  # BadCSR: unreadable or bad self-signature
        profile = self.issuance.profile(profile_name)

        def is_blocked(spki: str) -> bool:
            with self.db.session() as s:
                return BlockedKeyRepo(s).is_blocked(spki)

        key = csr.public_key()
        check_key(key, profile.key_rules, is_blocked)  # KeyRuleError / BlockedKeyError
        subject = parse_dn(dn)  # the checked DN from the TSV; the CSR's subject is ignored
        now = self.clock.now()
        with self.db.session() as s:  # claim: two requests racing issue once
            won = s.execute(
                update(Enrollment)
                .where(Enrollment.id == enrollment_id, Enrollment.used_at.is_(None))
                .values(used_at=now, used_from=(client or "")[:64])
            ).rowcount
            institution = InstitutionRepo(s).by_id(institution_id).name_en
        if not won:
            raise RetrievalGone("this link was used already (この証明書取得URLは使用済みです)")
        try:
            issued = self.issuance.issue(
                IssueRequest(
                    profile=profile_name,
                    public_key=key,  # type: ignore[arg-type]
                    subject=subject,
                    emails=(email,),
                    institution=institution,
                    requested_by=officer,
                )
            )
        except BaseException:
            with self.db.session() as s:  # nothing issued: the link works again
                s.execute(update(Enrollment).where(Enrollment.id == enrollment_id).values(used_at=None, used_from=None))
            raise
        with self.db.session() as s:
            e2 = s.get(Enrollment, enrollment_id)
            assert e2 is not None
            e2.serial = issued.serial
            s.add(
                RACertificate(
                    serial=issued.serial,
                    institution_id=institution_id,
                    subscriber_id=e2.subscriber_id,
                    officer=officer,
                    application_id=e2.application_id,
                    kind=profile_name,
                    download_method="browser",
                    created_at=now,
                )
            )
            s.flush()
            filename = _filename(e2, issued.serial)
            self.retrieval.record_download(
                s,
                serial=issued.serial,
                institution_id=institution_id,
                recipient=email,
                filename=filename,
                client=client,
            )
        return Enrolled(issued.serial, issued.certificate, issued.chain, filename, email)


def _filename(e: Enrollment, serial: str | None = None) -> str:
    return e.p12_name or f"{serial or 'certificate'}.p12"
