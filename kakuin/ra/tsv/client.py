"""Client and S/MIME rows of a TSV application, by download method (column 3):

1 P12個別 and 2 P12一括: kakuin makes the key pair (RSA), issues, and wraps
each key in a PKCS#12 under the access PIN — one retrieval link per subscriber
(1) or one archive for the officer who applied (2); generated PINs are mailed to
each subscriber separately. 3 ブラウザ個別: nothing is made or issued now; the
checked row is stored and the subscriber gets an enrollment link
(``kakuin.ra.enrollment``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kakuin.ca.issuer import IssuanceService, IssueRequest
from kakuin.clock import Clock
from kakuin.config import Config
from kakuin.errors import KakuinError
from kakuin.notify.outbox import enqueue
from kakuin.ra import notices
from kakuin.ra.actors import Actor
from kakuin.ra.institutions import upsert_person
from kakuin.ra.models import RACertificate
from kakuin.ra.pkcs12 import generate_key, generate_pin, make_pkcs12
from kakuin.ra.retrieval import BundleItem, RetrievalService, officer_email
from kakuin.ra.tsv.check import ClientRow
from kakuin.ra.tsv.results import RowResult, split_issued
from kakuin.store.db import Database
from kakuin.store.repos import InstitutionRepo

if TYPE_CHECKING:
    from kakuin.ra.enrollment import EnrollmentService


class ClientDelivery:
    def __init__(
        self,
        config: Config,
        db: Database,
        clock: Clock,
        issuance: IssuanceService,
        retrieval: RetrievalService,
        enrollment: EnrollmentService | None,
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.issuance = issuance
        self.retrieval = retrieval
        self.enrollment = enrollment

    def deliver(self, rows: list[ClientRow], institution: str, actor: Actor, app_id: int) -> list[RowResult]:
        """Every checked row: issued and offered (methods 1, 2) or waiting for the browser (3)."""
        pending = self._enroll([r for r in rows if r.download == "browser"], institution, actor, app_id)
        rows = [r for r in rows if r.download != "browser"]
        return pending + self._generated(rows, institution, actor, app_id) if rows else pending

    def _enroll(self, rows: list[ClientRow], institution: str, actor: Actor, app_id: int) -> list[RowResult]:
        """In the browser (method 3): no key, no issuance yet; the subscriber's
        link, and a pending result per row."""
        if not rows:
            return []
        if self.enrollment is None:
            raise KakuinError("enrollment in the browser needs kakuin.ra.enrollment, which is not available")
        results = []
        now = self.clock.now()
        with self.db.session() as s:
            inst_id = InstitutionRepo(s).by_name(institution).id
            for row in rows:
                sub = row.subscriber
                person = upsert_person(s, inst_id, "subscriber", sub.name, sub.email, sub.affiliation, now)
                eid, _url = self.enrollment.offer(
                    s,
                    institution_id=inst_id,
                    application_id=app_id,
                    row=row.row,
                    officer=actor.name,
                    subscriber_id=person.id,
                    subscriber_email=sub.email,
                    profile=row.profile_id.profile,
                    profile_id=row.profile_id.id,
                    subject_dn=row.dn,
                    p12_name=row.p12_name,
                    pin_required=row.pin is not None,
                )
                results.append(RowResult(row.row, True, enrollment=eid))
        return results

    def _generated(self, rows: list[ClientRow], institution: str, actor: Actor, app_id: int) -> list[RowResult]:
        """PKCS#12 individually or in bulk (methods 1, 2): kakuin makes the key pair."""
        keys = [generate_key(self.config.ra.generated_rsa_bits) for _ in rows]
        reqs = [
            IssueRequest(
                profile=r.profile_id.profile,
                public_key=k.public_key(),
                subject=r.subject,
                emails=(r.subscriber.email,),
                institution=institution,
                requested_by=actor.name,
            )
            for r, k in zip(rows, keys, strict=True)
        ]
        key_of = {r.row: k for r, k in zip(rows, keys, strict=True)}
        good, results = split_issued(rows, self.issuance.issue_batch(reqs))
        now = self.clock.now()
        bulk: list[BundleItem] = []
        with self.db.session() as s:
            inst_id = InstitutionRepo(s).by_name(institution).id
            for row, issued in good:
                assert isinstance(row, ClientRow)
                sub = row.subscriber
                pin = row.pin or generate_pin()
                p12 = make_pkcs12(key_of[row.row], issued.certificate, issued.chain, pin, sub.email)  # type: ignore[arg-type]
                person = upsert_person(s, inst_id, "subscriber", sub.name, sub.email, sub.affiliation, now)
                s.add(
                    RACertificate(
                        serial=issued.serial,
                        institution_id=inst_id,
                        subscriber_id=person.id,
                        officer=actor.name,
                        application_id=app_id,
                        kind=row.profile_id.profile,
                        download_method=row.download,
                        created_at=now,
                    )
                )
                filename = row.p12_name or f"{issued.serial}.p12"
                if row.download == "p12-bulk":  # one archive for the officer, below
                    bulk.append(BundleItem(issued.serial, sub.email, filename, p12))
                else:
                    self.retrieval.offer(
                        s,
                        serial=issued.serial,
                        institution_id=inst_id,
                        recipient=sub.email,
                        subject=issued.certificate.subject.rfc4514_string(),
                        filename=filename,
                        payload=p12,
                    )
                if row.pin is None:  # generated: mailed separately from the link
                    enqueue(
                        s,
                        notices.access_pin(sub.email, serial=issued.serial, pin=pin),
                        sender=self.retrieval.sender,
                        now=now,
                    )
                results.append(RowResult(row.row, True, serial=issued.serial))
            officer = officer_email(actor.name)
            if bulk and officer:  # check() refuses bulk rows from an actor without a mailbox
                self.retrieval.offer_bundle(
                    s, institution_id=inst_id, recipient=officer, application_id=app_id, items=bulk
                )
        del key_of, keys, bulk  # nothing keeps the private keys past this point
        return results
