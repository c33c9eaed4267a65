"""Issuance statistics per institution and per domain (UPKI 発行統計): issued,
revoked and currently valid; downloaded and not yet downloaded; expiring within
30 days; and upcoming expiries by week (for a chart)."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from kakuin.clock import Clock, as_utc
from kakuin.errors import Unauthorized
from kakuin.ra.actors import Actor
from kakuin.ra.models import Retrieval
from kakuin.store.db import Database
from kakuin.store.models import Certificate
from kakuin.store.repos import InstitutionRepo

OTHER = "(other)"
EXPIRING_DAYS = 30


@dataclass(slots=True)
class Counts:
    issued: int = 0  # のべ発行数: every certificate signed
    revoked: int = 0
    valid: int = 0  # issued, not revoked, within its validity now
    downloaded: int = 0  # retrieval link used
    not_downloaded: int = 0  # a link was offered and not used yet
    expiring_30d: int = 0  # valid and expiring within 30 days

    def add(self, other: Counts) -> None:
        for k in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, k, getattr(self, k) + getattr(other, k))


@dataclass(frozen=True, slots=True)
class DomainStats:
    domain: str
    counts: Counts


@dataclass(frozen=True, slots=True)
class WeekBucket:
    week_start: dt.date  # Monday
    count: int


@dataclass(frozen=True, slots=True)
class InstitutionStats:
    institution: str
    counts: Counts
    domains: tuple[DomainStats, ...] = field(default=())
    expiring_by_week: tuple[WeekBucket, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        def c(x: Counts) -> dict[str, int]:
            return {k: getattr(x, k) for k in Counts.__slots__}  # type: ignore[attr-defined]

        return {
            "institution": self.institution,
            **c(self.counts),
            "domains": [{"domain": d.domain, **c(d.counts)} for d in self.domains],
            "expiring_by_week": [
                {"week_start": b.week_start.isoformat(), "count": b.count} for b in self.expiring_by_week
            ],
        }


def _domains_of(names: str, registered: list[str]) -> set[str]:
    found = set()
    for n in names.split():
        host = n.rpartition("@")[2].lower().removeprefix("*.")
        match = max((d for d in registered if host == d or host.endswith("." + d)), key=len, default=None)
        found.add(match or OTHER)
    return found or {OTHER}


class StatsService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def institution_stats(
        self, *, actor: Actor, institution: str | None = None, weeks: int = 12
    ) -> list[InstitutionStats]:
        """Statistics of one institution (officers: only their own), or of all
        institutions the actor may see."""
        now = self.clock.now()
        with self.db.session() as s:
            repo = InstitutionRepo(s)
            if institution is not None:
                insts = [repo.by_name(institution)]
                actor.require_institution(insts[0].id, institution)
            elif actor.is_operator:
                insts = list(repo.all())
            else:
                assert actor.institution_id is not None
                insts = [repo.by_id(actor.institution_id)]
            out = []
            for inst in insts:
                registered = [d.domain for d in inst.domains]
                certs = s.execute(
                    select(
                        Certificate.serial,
                        Certificate.sans,
                        Certificate.not_before,
                        Certificate.not_after,
                        Certificate.revoked_at,
                    ).where(Certificate.institution_id == inst.id, Certificate.state == "issued")
                ).all()
                links: dict[str, bool] = {}
                for serial, used in s.execute(
                    select(Retrieval.serial, Retrieval.used_at).where(Retrieval.institution_id == inst.id)
                ):
                    links[serial] = links.get(serial, False) or used is not None
                total, per_domain = Counts(), defaultdict(Counts)
                weeks_count: Counter[dt.date] = Counter()
                horizon = now + dt.timedelta(weeks=weeks)
                for serial, sans, nb, na, revoked_at in certs:
                    c = Counts(issued=1)
                    na, nb = as_utc(na), as_utc(nb)
                    if revoked_at is not None:
                        c.revoked = 1
                    elif nb <= now < na:
                        c.valid = 1
                        if na < now + dt.timedelta(days=EXPIRING_DAYS):
                            c.expiring_30d = 1
                        if na < horizon:
                            weeks_count[na.date() - dt.timedelta(days=na.weekday())] += 1
                    if serial in links:
                        c.downloaded, c.not_downloaded = (1, 0) if links[serial] else (0, 1)
                    total.add(c)
                    for d in _domains_of(sans, registered):
                        per_domain[d].add(c)
                for d in registered:
                    per_domain.setdefault(d, Counts())
                out.append(
                    InstitutionStats(
                        inst.name_en,
                        total,
                        tuple(DomainStats(d, per_domain[d]) for d in sorted(per_domain)),
                        tuple(WeekBucket(w, n) for w, n in sorted(weeks_count.items())),
                    )
                )
            if not out and institution is None and not actor.is_operator:
                raise Unauthorized("no institution to show")
            return out
