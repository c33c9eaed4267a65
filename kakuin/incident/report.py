"""Open an incident and report it: which certificates the rule selects, who holds
them, and how far their replacement has come.

The rule (as the 2020 one was stated, every boundary inclusive): issued by one
of the named CAs, notBefore from ``issued_from`` through ``issued_to``, notAfter
on or after ``expires_after``; optionally one profile and one key type. A bare
date means the whole day in the rule's time zone (default UTC; the 2020 dates
were JST: ``--timezone Asia/Tokyo``). Revoked and expired certificates are not
selected: nothing is left to replace.

``IncidentService.report(name)`` returns the data (for the CLI, the REST API and
the portal); ``IncidentReport.json()`` / ``.csv()`` and
``kakuin.incident.html.render_report`` render it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select

from kakuin.clock import UTC, as_utc
from kakuin.errors import KakuinError, NotFound
from kakuin.incident.models import Incident, IncidentCertificate
from kakuin.incident.progress import successors
from kakuin.policy.profiles import Kind, ValidityKind
from kakuin.policy.validity import DAY, OverLimit, decide_validity, max_tls_validity_days
from kakuin.store.models import Certificate, CertificateAuthority, Institution
from kakuin.store.repos import CARepo

if TYPE_CHECKING:
    from kakuin.context import Context

DEFAULT_REMIND_DAYS = (14, 7, 3, 1)


def jsonable(o: object) -> object:
    """Dataclass-as-dict values for JSON: datetimes as RFC 3339 UTC strings."""
    if isinstance(o, dt.datetime):
        return o.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(o, dict):
        return {k: jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [jsonable(v) for v in o]
    return o


def parse_bound(value: str | dt.date | dt.datetime | None, tz: str = "UTC", *, end: bool = False) -> dt.datetime | None:
    """A rule boundary as an aware UTC instant. A date is a whole day in ``tz``:
    its first second (start) or its last second (end, inclusive)."""
    if value is None or value == "":
        return None
    zone = ZoneInfo(tz)
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value) if len(value) == 10 else dt.datetime.fromisoformat(value)
        except ValueError:
            raise KakuinError(f"{value!r} is not a date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM)") from None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)
    start = dt.datetime.combine(value, dt.time(0), zone)
    if end:
        start = dt.datetime.combine(value + dt.timedelta(days=1), dt.time(0), zone) - dt.timedelta(seconds=1)
    return start.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Rule:
    issuers: tuple[str, ...]
    issued_from: dt.datetime | None = None
    issued_to: dt.datetime | None = None  # last second included
    expires_after: dt.datetime | None = None  # first second included
    profile: str | None = None
    key_type: str | None = None

    def text(self) -> str:
        parts = [f"issuer in {{{', '.join(self.issuers)}}}"]
        if self.issued_from:
            parts.append(f"notBefore ≥ {self.issued_from:%Y-%m-%d %H:%M:%S}Z")
        if self.issued_to:
            parts.append(f"notBefore ≤ {self.issued_to:%Y-%m-%d %H:%M:%S}Z")
        if self.expires_after:
            parts.append(f"notAfter ≥ {self.expires_after:%Y-%m-%d %H:%M:%S}Z")
        if self.profile:
            parts.append(f"profile = {self.profile}")
        if self.key_type:
            parts.append(f"key = {self.key_type}")
        return " and ".join(parts)


def make_rule(
    issuers: Sequence[str],
    *,
    issued_from: str | dt.date | dt.datetime | None = None,
    issued_to: str | dt.date | dt.datetime | None = None,
    expires_after: str | dt.date | dt.datetime | None = None,
    profile: str | None = None,
    key_type: str | None = None,
    tz: str = "UTC",
) -> Rule:
    if not issuers:
        raise KakuinError("name at least one issuing CA (--issuer)")
    return Rule(
        tuple(issuers),
        parse_bound(issued_from, tz),
        parse_bound(issued_to, tz, end=True),
        parse_bound(expires_after, tz),
        profile,
        key_type,
    )


@dataclass(frozen=True, slots=True)
class AffectedCertificate:
    serial: str
    issuer: str
    profile: str
    key_type: str
    subject: str
    names: str
    institution: str
    officer: str
    subscriber: str
    source: str  # acme | ra | other
    not_before: dt.datetime
    not_after: dt.datetime
    state: str  # pending | replaced | revoked | expired
    replaced_by: str | None
    replaced_via: str | None
    reissue_not_after: dt.datetime | None  # what a certificate issued today would get
    shortened_days: int  # > 0: the reissued certificate ends this many days earlier


@dataclass(frozen=True, slots=True)
class Group:
    key: str
    total: int
    pending: int
    replaced: int
    revoked: int
    expired: int


@dataclass(frozen=True, slots=True)
class IncidentInfo:
    name: str
    status: str
    rule_text: str
    issuers: tuple[str, ...]
    opened_at: dt.datetime
    opened_by: str
    deadline: dt.datetime
    replacement: str | None
    explanation_url: str | None
    summary_ja: str
    summary_en: str
    notified_at: dt.datetime | None
    executed_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class IncidentReport:
    incident: IncidentInfo
    generated_at: dt.datetime
    certificates: tuple[AffectedCertificate, ...]
    by_institution: tuple[Group, ...]
    by_officer: tuple[Group, ...]
    by_subscriber: tuple[Group, ...]

    @property
    def totals(self) -> Group:
        return _group("all", self.certificates)

    @property
    def shortened(self) -> int:
        return sum(1 for c in self.certificates if c.shortened_days > 0)

    def json(self) -> dict[str, object]:

        return jsonable(
            {
                "incident": asdict(self.incident),
                "generated_at": self.generated_at,
                "totals": asdict(self.totals),
                "shortened": self.shortened,
                "by_institution": [asdict(g) for g in self.by_institution],
                "by_officer": [asdict(g) for g in self.by_officer],
                "by_subscriber": [asdict(g) for g in self.by_subscriber],
                "certificates": [asdict(c) for c in self.certificates],
            }
        )  # type: ignore[return-value]

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        fields = list(AffectedCertificate.__dataclass_fields__)
        w.writerow(fields)
        for c in self.certificates:
            row = asdict(c)
            w.writerow(
                [
                    v.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(v, dt.datetime) else ("" if v is None else v)
                    for v in (row[f] for f in fields)
                ]
            )
        return buf.getvalue()


def _group(key: str, certs: Sequence[AffectedCertificate]) -> Group:
    n = Counter(c.state for c in certs)
    return Group(key, len(certs), n["pending"], n["replaced"], n["revoked"], n["expired"])


def _groups(certs: Sequence[AffectedCertificate], attr: str) -> tuple[Group, ...]:
    by: dict[str, list[AffectedCertificate]] = defaultdict(list)
    for c in certs:
        for k in (getattr(c, attr) or "-").split(", "):
            by[k].append(c)
    return tuple(_group(k, v) for k, v in sorted(by.items()))


class IncidentService:
    """Open, list and report incidents. The campaign (notices, ARI, reminders,
    the deadline) is ``kakuin.incident.campaign.Campaign``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- selection ---------------------------------------------------------
    def select(self, rule: Rule) -> list[Certificate]:
        now = self.ctx.clock.now()
        with self.ctx.db.session() as s:
            repo = CARepo(s)
            ids = [repo.by_slug(slug).id for slug in rule.issuers]
            q = select(Certificate).where(
                Certificate.issuer_id.in_(ids),
                Certificate.state == "issued",
                Certificate.revoked_at.is_(None),
                Certificate.not_after > now,
                Certificate.profile != "ocsp-responder",
            )
            if rule.issued_from:
                q = q.where(Certificate.not_before >= rule.issued_from)
            if rule.issued_to:
                q = q.where(Certificate.not_before <= rule.issued_to)
            if rule.expires_after:
                q = q.where(Certificate.not_after >= rule.expires_after)
            if rule.profile:
                q = q.where(Certificate.profile == rule.profile)
            if rule.key_type:
                q = q.where(Certificate.key_type.like(f"{rule.key_type}%"))
            return list(s.scalars(q.order_by(Certificate.not_before, Certificate.id)))

    def open(
        self,
        name: str,
        rule: Rule,
        *,
        deadline: dt.datetime,
        replacement: str | None = None,
        explanation_url: str | None = None,
        summary_ja: str = "",
        summary_en: str = "",
        remind_days: Sequence[int] = DEFAULT_REMIND_DAYS,
        actor: str = "operator",
    ) -> IncidentReport:
        """Record the incident and the certificates its rule selects now."""
        now = self.ctx.clock.now()
        if deadline <= now:
            raise KakuinError("the deadline must be in the future")
        certs = self.select(rule)
        with self.ctx.db.session() as s:
            if s.scalar(select(Incident.id).where(Incident.name == name)) is not None:
                raise KakuinError(f"an incident named {name!r} exists already")
            if replacement:
                repl = CARepo(s).by_slug(replacement)
                if repl.slug in rule.issuers:
                    raise KakuinError("the replacement CA is one of the affected ones")
            inc = Incident(
                name=name,
                issuers=list(rule.issuers),
                issued_from=rule.issued_from,
                issued_to=rule.issued_to,
                expires_after=rule.expires_after,
                profile=rule.profile,
                key_type=rule.key_type,
                rule_text=rule.text(),
                status="open",
                opened_at=now,
                opened_by=actor,
                deadline=deadline,
                replacement=replacement,
                explanation_url=explanation_url,
                summary_ja=summary_ja,
                summary_en=summary_en,
                remind_days=sorted(set(remind_days), reverse=True),
            )
            s.add(inc)
            s.flush()
            holders = _holders(s, certs)
            slugs = {ca.id: ca.slug for ca in CARepo(s).all()}
            for c in certs:
                inst_id, source, officer, subscriber = holders[c.serial]
                s.add(
                    IncidentCertificate(
                        incident_id=inc.id,
                        serial=c.serial,
                        issuer=slugs[c.issuer_id],
                        profile=c.profile,
                        key_type=c.key_type,
                        subject=c.subject,
                        names=c.sans,
                        institution_id=inst_id,
                        source=source,
                        officer=officer,
                        subscriber=subscriber,
                        not_before=c.not_before,
                        not_after=c.not_after,
                    )
                )
        return self.report(name)

    # -- reading -----------------------------------------------------------
    def names(self) -> list[IncidentInfo]:
        with self.ctx.db.session() as s:
            return [_info(i) for i in s.scalars(select(Incident).order_by(Incident.id))]

    def info(self, name: str) -> IncidentInfo:
        with self.ctx.db.session() as s:
            return _info(_incident(s, name))

    def refresh(self, name: str) -> None:
        """Record which affected certificates have been replaced since the incident opened."""
        with self.ctx.db.session() as s:
            inc = _incident(s, name)
            rows = list(
                s.scalars(
                    select(IncidentCertificate).where(
                        IncidentCertificate.incident_id == inc.id, IncidentCertificate.replaced_by.is_(None)
                    )
                )
            )
            if not rows:
                return
            excluded = [CARepo(s).by_slug(x).id for x in inc.issuers]
            olds = list(s.scalars(select(Certificate).where(Certificate.serial.in_([r.serial for r in rows]))))
            found = successors(s, olds, exclude_issuers=excluded, issued_after=as_utc(inc.opened_at))
            for r in rows:
                if (succ := found.get(r.serial)) is not None:
                    r.replaced_by, r.replaced_via, r.replaced_at = succ.serial, succ.via, succ.issued_at

    def report(self, name: str) -> IncidentReport:
        self.refresh(name)
        now = self.ctx.clock.now()
        with self.ctx.db.session() as s:
            inc = _incident(s, name)
            rows = list(
                s.scalars(
                    select(IncidentCertificate)
                    .where(IncidentCertificate.incident_id == inc.id)
                    .order_by(IncidentCertificate.not_before, IncidentCertificate.serial)
                )
            )
            revoked = set(
                s.scalars(
                    select(Certificate.serial).where(
                        Certificate.serial.in_([r.serial for r in rows]), Certificate.revoked_at.is_not(None)
                    )
                )
            )
            insts = dict(s.execute(select(Institution.id, Institution.name_en)).all())
            info = _info(inc)
        certs = []
        for r in rows:
            state = (
                "revoked"
                if r.serial in revoked
                else "replaced"
                if r.replaced_by
                else "expired"
                if as_utc(r.not_after) <= now
                else "pending"
            )
            reissue = self._reissue_not_after(r.profile, now)
            shortened = 0
            if reissue is not None and reissue < as_utc(r.not_after):
                shortened = (as_utc(r.not_after) - reissue) // DAY
            certs.append(
                AffectedCertificate(
                    r.serial,
                    r.issuer,
                    r.profile,
                    r.key_type,
                    r.subject,
                    r.names,
                    insts.get(r.institution_id, "-") if r.institution_id else "-",
                    r.officer or "-",
                    r.subscriber or "-",
                    r.source,
                    as_utc(r.not_before),
                    as_utc(r.not_after),
                    state,
                    r.replaced_by,
                    r.replaced_via,
                    reissue,
                    shortened,
                )
            )
        return IncidentReport(
            info,
            now,
            tuple(certs),
            _groups(certs, "institution"),
            _groups(certs, "officer"),
            _groups(certs, "subscriber"),
        )

    def _reissue_not_after(self, profile_name: str, now: dt.datetime) -> dt.datetime | None:
        """The notAfter a certificate of this profile issued now would get (today's rules)."""
        profile = self.ctx.profiles.get(profile_name)
        if profile is None:
            return None
        limit_days = limit_months = None
        if profile.validity is ValidityKind.TLS_SCHEDULE:
            limit_days = max_tls_validity_days(now)
        elif profile.validity is ValidityKind.MONTHS:
            limit_months = (
                self.ctx.config.policy.client_validity_months if profile.kind is Kind.CLIENT else profile.validity_value
            )
        else:
            limit_days = profile.validity_value
        d = decide_validity(
            now=now,
            limit_days=limit_days,
            limit_months=limit_months,
            requested_days=None,
            default_days=None,
            over_limit=OverLimit.SHORTEN,
        )
        return d.not_after


def _incident(s, name: str) -> Incident:  # type: ignore[no-untyped-def]
    inc = s.scalar(select(Incident).where(Incident.name == name))
    if inc is None:
        raise NotFound(f"no incident named {name!r}")
    return inc  # type: ignore[no-any-return]


def _info(i: Incident) -> IncidentInfo:
    return IncidentInfo(
        i.name,
        i.status,
        i.rule_text,
        tuple(i.issuers),
        as_utc(i.opened_at),
        i.opened_by,
        as_utc(i.deadline),
        i.replacement,
        i.explanation_url,
        i.summary_ja,
        i.summary_en,
        as_utc(i.notified_at) if i.notified_at else None,
        as_utc(i.executed_at) if i.executed_at else None,
    )


def _holders(s, certs: Sequence[Certificate]) -> dict[str, tuple[int | None, str, str | None, str | None]]:  # type: ignore[no-untyped-def]
    """(institution id, source, officer, subscriber) of each certificate."""
    from kakuin.acme.models import ACMEAccount, EABCredential
    from kakuin.ra.models import Person, RACertificate
    from kakuin.ra.retrieval import officer_email

    serials = [c.serial for c in certs]
    ra = {r.serial: r for r in s.scalars(select(RACertificate).where(RACertificate.serial.in_(serials)))}
    people = {
        p.id: p.email
        for p in s.scalars(
            select(Person).where(Person.id.in_([r.subscriber_id for r in ra.values() if r.subscriber_id]))
        )
    }
    account_ids = {
        int(c.requested_by[5:]) for c in certs if c.requested_by.startswith("acme:") and c.requested_by[5:].isdigit()
    }
    accounts = {a.id: a for a in s.scalars(select(ACMEAccount).where(ACMEAccount.id.in_(account_ids)))}
    eabs = {
        e.id: e
        for e in s.scalars(
            select(EABCredential).where(
                EABCredential.id.in_([a.eab_credential_id for a in accounts.values() if a.eab_credential_id])
            )
        )
    }
    out: dict[str, tuple[int | None, str, str | None, str | None]] = {}
    for c in certs:
        if (r := ra.get(c.serial)) is not None:
            out[c.serial] = (
                r.institution_id,
                "ra",
                officer_email(r.officer) or r.officer,
                people.get(r.subscriber_id) if r.subscriber_id else None,
            )
        elif c.requested_by.startswith("acme:") and (a := accounts.get(int(c.requested_by[5:]))) is not None:
            contact = ", ".join(x.removeprefix("mailto:") for x in (a.contact or []) if x.startswith("mailto:"))
            eab = eabs.get(a.eab_credential_id) if a.eab_credential_id else None
            officer = (officer_email(eab.created_by) or eab.created_by) if eab else None
            out[c.serial] = (c.institution_id or a.institution_id, "acme", officer, contact or None)
        else:
            out[c.serial] = (c.institution_id, "other", None, None)
    return out


def affected_serials(s, at: dt.datetime | None = None) -> dict[str, Incident]:  # type: ignore[no-untyped-def]
    """Serial → open incident, for every certificate an open incident affects."""
    q = select(IncidentCertificate.serial, Incident).join(Incident, Incident.id == IncidentCertificate.incident_id)
    return {serial: inc for serial, inc in s.execute(q.where(Incident.status == "open"))}


def issuer_slugs(s) -> dict[int, CertificateAuthority]:  # type: ignore[no-untyped-def]
    return {ca.id: ca for ca in CARepo(s).all()}
