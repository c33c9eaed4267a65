"""Institutions and the people who act for them.

An institution has a registered English name (the O of its certificates), an
address (prefecture and city: ST and L must match), domains approved one by one
by the CA, and a yearly confirmation (UPKI: the CA confirms the organisation at
registration and every year after; ``ca.issuer`` refuses issuance once
``confirmed_until`` has passed). People: one responsible person (機関責任者),
registration officers (登録担当者, who sign in with a client certificate that
``add_officer`` issues) and subscribers (利用管理者).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from kakuin.ca.issuer import IssuanceService, IssueRequest
from kakuin.clock import Clock, as_utc
from kakuin.errors import KakuinError, NotFound, PolicyError
from kakuin.notify.outbox import enqueue
from kakuin.policy.keys import spki_sha256
from kakuin.policy.names import check_dns_name, check_email
from kakuin.policy.prefectures import normalise_prefecture
from kakuin.ra import notices
from kakuin.ra.actors import Actor
from kakuin.ra.models import ROLES, Person, RACertificate
from kakuin.ra.pkcs12 import check_pin, generate_key, generate_pin, make_pkcs12
from kakuin.ra.settings import RAConfig
from kakuin.store.db import Database
from kakuin.store.models import Institution, InstitutionDomain
from kakuin.store.repos import InstitutionRepo


@dataclass(frozen=True, slots=True)
class DomainInfo:
    domain: str
    approved: bool


@dataclass(frozen=True, slots=True)
class PersonInfo:
    id: int
    institution: str
    role: str
    name: str
    email: str
    affiliation: str | None
    cert_serial: str | None


@dataclass(frozen=True, slots=True)
class InstitutionInfo:
    id: int
    name_en: str
    name_ja: str | None
    prefecture: str | None
    city: str | None
    confirmed_until: dt.datetime | None
    domains: tuple[DomainInfo, ...]
    people: tuple[PersonInfo, ...]

    def confirmed_at(self, now: dt.datetime) -> bool:
        return self.confirmed_until is not None and self.confirmed_until >= now


@dataclass(frozen=True, slots=True)
class OfficerEnrolment:
    """The officer's client certificate as PKCS#12. The PIN is here only so the
    caller can mail it (``pin_generated``) or knows it already; never log it."""

    person: PersonInfo
    serial: str
    pkcs12: bytes
    pin: str
    pin_generated: bool


def one_year_after(at: dt.datetime) -> dt.datetime:
    try:
        return at.replace(year=at.year + 1)
    except ValueError:  # 29 February
        return at.replace(year=at.year + 1, day=28)


def _info(inst: Institution, people: list[Person]) -> InstitutionInfo:
    return InstitutionInfo(
        inst.id,
        inst.name_en,
        inst.name_ja,
        inst.prefecture,
        inst.city,
        as_utc(inst.confirmed_until) if inst.confirmed_until else None,
        tuple(DomainInfo(d.domain, d.approved) for d in sorted(inst.domains, key=lambda d: d.domain)),
        tuple(_person(p, inst.name_en) for p in people),
    )


def _person(p: Person, institution: str) -> PersonInfo:
    return PersonInfo(p.id, institution, p.role, p.name, p.email, p.affiliation, p.cert_serial)


def upsert_person(
    s: Session, institution_id: int, role: str, name: str, email: str, affiliation: str | None, now: dt.datetime
) -> Person:
    """The person with this e-mail and role at the institution, created or updated."""
    p = s.scalar(
        select(Person).where(Person.institution_id == institution_id, Person.email == email, Person.role == role)
    )
    if p is None:
        p = Person(
            institution_id=institution_id,
            role=role,
            name=name,
            email=email,
            affiliation=affiliation,
            active=True,
            created_at=now,
        )
        s.add(p)
    else:
        p.name, p.affiliation, p.active = name, affiliation or p.affiliation, True
    s.flush()
    return p


class InstitutionService:
    def __init__(self, db: Database, clock: Clock, issuance: IssuanceService, config: RAConfig, sender: str) -> None:
        self.db = db
        self.clock = clock
        self.issuance = issuance
        self.config = config
        self.sender = sender

    def _load(self, s: Session, name: str, actor: Actor) -> Institution:
        inst = InstitutionRepo(s).by_name(name)
        actor.require_institution(inst.id, name)
        return inst

    def _people(self, s: Session, inst_id: int) -> list[Person]:
        return list(s.scalars(select(Person).where(Person.institution_id == inst_id).order_by(Person.role, Person.id)))

    # -- institutions -------------------------------------------------------
    def register(
        self,
        name_en: str,
        *,
        actor: Actor,
        prefecture: str | None = None,
        city: str | None = None,
        name_ja: str | None = None,
        domains: tuple[str, ...] = (),
    ) -> InstitutionInfo:
        actor.require_operator("register institutions")
        if prefecture is not None and normalise_prefecture(prefecture) is None:
            raise PolicyError(f"{prefecture!r} is not a prefecture name in romaji", rule="st-prefecture", field="ST")
        for d in domains:
            check_dns_name(d.lower().rstrip("."))
        with self.db.session() as s:
            inst = InstitutionRepo(s).add(
                name_en, domains=domains, prefecture=prefecture, city=city, name_ja=name_ja, now=self.clock.now()
            )
            return _info(inst, [])

    def get(self, name: str, *, actor: Actor) -> InstitutionInfo:
        with self.db.session() as s:
            inst = self._load(s, name, actor)
            return _info(inst, self._people(s, inst.id))

    def list(self, *, actor: Actor) -> list[InstitutionInfo]:
        with self.db.session() as s:
            return [
                _info(i, self._people(s, i.id))
                for i in InstitutionRepo(s).all()
                if actor.is_operator or i.id == actor.institution_id
            ]

    def confirm(self, name: str, *, actor: Actor) -> InstitutionInfo:
        """The yearly confirmation: valid for one year from now."""
        actor.require_operator("confirm institutions")
        with self.db.session() as s:
            inst = self._load(s, name, actor)
            inst.confirmed_until = one_year_after(self.clock.now())
            s.flush()
            return _info(inst, self._people(s, inst.id))

    def add_domain(self, name: str, domain: str, *, actor: Actor) -> DomainInfo:
        """Ask for a domain: officers may ask for their institution; only the CA approves.
        A domain the operator adds is still pending until ``approve_domain``."""
        domain = domain.lower().rstrip(".")
        check_dns_name(domain)
        with self.db.session() as s:
            inst = self._load(s, name, actor)
            taken = s.scalar(select(InstitutionDomain).where(InstitutionDomain.domain == domain))
            if taken is not None:
                if taken.institution_id != inst.id:
                    raise PolicyError(f"{domain} is registered to another institution", rule="domain-taken")
                return DomainInfo(taken.domain, taken.approved)
            s.add(InstitutionDomain(institution_id=inst.id, domain=domain, approved=False))
            return DomainInfo(domain, False)

    def approve_domain(self, name: str, domain: str, *, actor: Actor) -> DomainInfo:
        actor.require_operator("approve domains")
        domain = domain.lower().rstrip(".")
        with self.db.session() as s:
            inst = self._load(s, name, actor)
            row = next((d for d in inst.domains if d.domain == domain), None)
            if row is None:
                raise NotFound(f"{name} has not asked for {domain} (kakuin institution domain add)")
            row.approved = True
            return DomainInfo(domain, True)

    # -- people -------------------------------------------------------------
    def add_person(
        self, institution: str, *, role: str, name: str, email: str, actor: Actor, affiliation: str | None = None
    ) -> PersonInfo:
        if role not in ROLES:
            raise PolicyError(f"role must be one of {', '.join(ROLES)}", rule="role")
        if role in ("responsible", "officer"):
            actor.require_operator(f"appoint a {role}")
        check_email(email)
        with self.db.session() as s:
            inst = self._load(s, institution, actor)
            if role == "responsible":
                for p in self._people(s, inst.id):
                    if p.role == "responsible" and p.email != email:
                        p.active = False
            p = upsert_person(s, inst.id, role, name, email, affiliation, self.clock.now())
            return _person(p, inst.name_en)

    def add_officer(
        self, institution: str, *, name: str, email: str, actor: Actor, pin: str | None = None
    ) -> OfficerEnrolment:
        """Appoint an officer and issue their client certificate (profile "client",
        key pair made here) as PKCS#12; the PIN is mailed when generated."""
        actor.require_operator("appoint officers")
        check_email(email)
        if pin is not None:
            check_pin(pin)
        with self.db.session() as s:
            inst = self._load(s, institution, actor)
            inst_name, inst_id, st, city = inst.name_en, inst.id, inst.prefecture, inst.city
        attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "JP")]
        if st:
            attrs.append(x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, st))
        if city:
            attrs.append(x509.NameAttribute(NameOID.LOCALITY_NAME, city))
        attrs += [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, inst_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Registration Officer"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
        key = generate_key(self.config.generated_rsa_bits)
        issued = self.issuance.issue(
            IssueRequest(
                profile="client",
                public_key=key.public_key(),
                subject=x509.Name(attrs),
                emails=(email,),
                institution=inst_name,
                requested_by=actor.name,
            )
        )
        generated = pin is None
        pin = pin or generate_pin()
        p12 = make_pkcs12(key, issued.certificate, issued.chain, pin, f"{name} (kakuin officer)")
        now = self.clock.now()
        with self.db.session() as s:
            p = upsert_person(s, inst_id, "officer", name, email, None, now)
            p.cert_serial, p.cert_spki_sha256 = issued.serial, spki_sha256(key.public_key())
            s.add(
                RACertificate(
                    serial=issued.serial,
                    institution_id=inst_id,
                    subscriber_id=p.id,
                    officer=actor.name,
                    kind="officer",
                    created_at=now,
                )
            )
            if generated:
                enqueue(s, notices.access_pin(email, serial=issued.serial, pin=pin), sender=self.sender, now=now)
            info = _person(p, inst_name)
        return OfficerEnrolment(info, issued.serial, p12, pin, generated)

    def officer_actor(self, *, spki_sha256_hex: str | None = None, email: str | None = None) -> Actor:
        """The Actor of an officer, found by the SPKI of the client certificate the
        portal saw (mutual TLS) or by e-mail (CLI); refuses unknown or inactive ones."""
        with self.db.session() as s:
            q = select(Person).where(Person.role == "officer", Person.active.is_(True))
            if spki_sha256_hex:
                q = q.where(Person.cert_spki_sha256 == spki_sha256_hex)
            elif email:
                q = q.where(Person.email == email)
            else:
                raise KakuinError("an officer is found by certificate or e-mail")
            found = s.scalars(q).all()
            if len(found) != 1:
                raise NotFound("no single active officer matches")
            return Actor(f"officer:{found[0].email}", found[0].institution_id)

    # -- yearly confirmation reminders --------------------------------------
    def remind_confirmations(self) -> int:
        """Queue a reminder to each responsible person whose institution's
        confirmation lapses within ``ra.confirmation_reminder_days`` (or has)."""
        now = self.clock.now()
        horizon = now + dt.timedelta(days=self.config.confirmation_reminder_days)
        queued = 0
        with self.db.session() as s:
            for inst in InstitutionRepo(s).all():
                until = as_utc(inst.confirmed_until) if inst.confirmed_until else None
                if until is not None and until > horizon:
                    continue
                for p in self._people(s, inst.id):
                    if p.role == "responsible" and p.active:
                        mail = notices.confirmation_reminder(
                            p.email, institution=inst.name_en, until=until, institution_id=inst.id
                        )
                        queued += enqueue(s, mail, sender=self.sender, now=now)
        return queued
