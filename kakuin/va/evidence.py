"""Validation evidence: what each perspective saw, kept so an auditor can read back
why a certificate was issued (BR 3.2.2.9, BR 5.4.1: validation records).

``record_check`` writes one row per perspective of a corroborated check (by
``kakuin.va.mpic.CorroboratingVA``); ``link_certificate`` ties the checks an
issuance relied on to the certificate's serial (ACME: the order's authorizations
and the CAA checks at finalize; TSV: the CAA checks of the row);
``evidence_for`` reads them back (``kakuin show SERIAL``).

``collecting()`` lets a caller that cannot see the records (the TSV path gets
only {name: error}) gather the check ids of the checks run inside it.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kakuin.va.models import EvidenceLink, ValidationEvidence

if TYPE_CHECKING:
    from kakuin.perspective.client import RemoteResult
    from kakuin.store.db import Database
    from kakuin.va import ValidationRecord
    from kakuin.va.mpic import Corroboration

__all__ = ["Evidence", "check_ids_of", "collecting", "evidence_for", "link_certificate", "record_check"]

# domain → check ids, for the checks run inside ``collecting()``.
_collected: contextvars.ContextVar[dict[str, list[str]] | None] = contextvars.ContextVar(
    "kakuin_evidence_collected", default=None)


@contextmanager
def collecting() -> Iterator[dict[str, list[str]]]:
    """Collect {domain: [check_id, …]} of the checks recorded inside this block
    (including those run under ``asyncio.run`` from it: the context is copied)."""
    seen: dict[str, list[str]] = {}
    token = _collected.set(seen)
    try:
        yield seen
    finally:
        _collected.reset(token)


def _note(domain: str, check_id: str) -> None:
    seen = _collected.get()
    if seen is not None:
        seen.setdefault(domain, []).append(check_id)


def record_check(db: Database, check_id: str, method: str, domain: str, primary: ValidationRecord,
                 remotes: list[RemoteResult], decision: Corroboration) -> None:
    """One row for the primary (``corroborates``: the quorum was met) and one per remote."""
    value = None
    if method == "caa":
        value = "permit" if primary.ok else "deny"
    rows = [ValidationEvidence(
        check_id=check_id, domain=domain, method=method, perspective="primary", ok=primary.ok,
        corroborates=decision.ok, outcome="passed" if primary.ok else "failed", value=value,
        error=primary.error, observed={**_jsonable(primary.observed), "quorum": decision.summary()},
        dnssec=primary.dnssec, at=primary.at, perspective_at=primary.at.isoformat())]
    for r in remotes:
        rows.append(ValidationEvidence(
            check_id=check_id, domain=domain, method=method, perspective=r.perspective, ok=r.ok,
            corroborates=r.perspective in decision.corroborating, outcome=r.outcome, value=r.value,
            error=r.error, observed=_jsonable(r.observed), dnssec=r.dnssec, at=primary.at,
            perspective_at=r.at, latency_ms=round(r.latency * 1000)))
    with db.session() as s:
        s.add_all(rows)
    _note(domain, check_id)


def check_ids_of(records: Iterable[ValidationRecord | dict[str, Any] | None]) -> list[str]:
    """The check ids carried by records (``observed.mpic.check_id``), in order, once each."""
    out: list[str] = []
    for r in records:
        if r is None:
            continue
        observed = r.get("observed") if isinstance(r, dict) else r.observed
        cid = ((observed or {}).get("mpic") or {}).get("check_id")
        if cid and cid not in out:
            out.append(cid)
    return out


def link_certificate(db: Database, serial: str, check_ids: Iterable[str | tuple[str, int | None]], *,
                     order_id: int | None = None, now: Any = None) -> int:
    """Tie checks to the certificate ``serial``; items are check ids or (check id, authz id).
    Idempotent. Returns the number of links made."""
    import datetime as dt

    now = now or dt.datetime.now(dt.UTC)
    made = 0
    for item in check_ids:
        cid, authz = (item, None) if isinstance(item, str) else item
        try:
            with db.session() as s:
                s.add(EvidenceLink(check_id=cid, certificate_serial=serial, order_id=order_id,
                                   authz_id=authz, created_at=now))
            made += 1
        except IntegrityError:
            pass  # already linked
    return made


@dataclass(frozen=True, slots=True)
class Evidence:
    check_id: str
    domain: str
    method: str
    perspective: str
    ok: bool
    corroborates: bool
    outcome: str
    value: str | None
    error: str | None
    at: Any
    perspective_at: str | None
    dnssec: str | None
    latency_ms: int | None
    observed: dict[str, Any]


def evidence_for(db: Database, serial: str) -> list[Evidence]:
    """Every evidence row of the checks linked to ``serial``, primary first per check."""
    with db.session() as s:
        ids = list(s.scalars(select(EvidenceLink.check_id).where(EvidenceLink.certificate_serial == serial)))
        if not ids:
            return []
        rows = s.scalars(select(ValidationEvidence).where(ValidationEvidence.check_id.in_(ids))
                         .order_by(ValidationEvidence.at, ValidationEvidence.check_id,
                                   ValidationEvidence.id)).all()
        return [Evidence(r.check_id, r.domain, r.method, r.perspective, r.ok, r.corroborates, r.outcome,
                         r.value, r.error, r.at, r.perspective_at, r.dnssec, r.latency_ms, r.observed)
                for r in rows]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
