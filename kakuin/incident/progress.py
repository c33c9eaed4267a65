"""Has a certificate been replaced? One answer for incidents and the expiry watch.

A certificate counts as replaced by a newer one when, in this order:

1. the RA recorded it (a TSV renew row names the old serial: ``ra_certificates.replaced_by``);
2. an ACME order said so (RFC 9773 §5 ``replaces`` = the old certificate's ARI CertID);
3. a newer certificate for the same institution carries every name of the old
   one (its DNS names and mailboxes; the subject when it has none), whoever
   asked for it (certbot without ``replaces``, a TSV issue row, the CLI).

In each case the successor must be issued, unrevoked, and not from an excluded
issuer (during an incident: the affected intermediates).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy import select

from kakuin.clock import as_utc
from kakuin.store.models import Certificate


@dataclass(frozen=True, slots=True)
class Successor:
    serial: str
    via: str  # ra-renew | acme-replaces | newer
    issued_at: dt.datetime
    issuer_id: int


@dataclass(frozen=True, slots=True)
class _Cand:
    serial: str
    institution_id: int | None
    names: frozenset[str]
    subject: str
    issued_at: dt.datetime
    issuer_id: int


def _names(sans: str) -> frozenset[str]:
    return frozenset(n.lower() for n in sans.split())


def _cand(c: Certificate) -> _Cand:
    return _Cand(
        c.serial, c.institution_id, _names(c.sans), c.subject, as_utc(c.issued_at or c.not_before), c.issuer_id
    )


def successors(
    s,
    olds: Sequence[Certificate],
    *,
    exclude_issuers: Iterable[int] = (),  # type: ignore[no-untyped-def]
    issued_after: dt.datetime | None = None,
) -> dict[str, Successor]:
    """The successor of each of ``olds`` that has one, by serial."""
    from kakuin.acme.ari import cert_id
    from kakuin.acme.models import ACMEOrder
    from kakuin.ra.models import RACertificate

    if not olds:
        return {}
    excluded = set(exclude_issuers)
    old_serials = {o.serial for o in olds}
    floor = min(as_utc(o.issued_at or o.not_before) for o in olds)
    if issued_after is not None:
        floor = max(floor, issued_after)
    q = select(Certificate).where(
        Certificate.state == "issued",
        Certificate.revoked_at.is_(None),
        Certificate.profile != "ocsp-responder",
        Certificate.issued_at >= floor,
    )
    insts = {o.institution_id for o in olds}
    if None not in insts:
        q = q.where(Certificate.institution_id.in_(insts))
    by_key: dict[tuple[int | None, str], list[_Cand]] = defaultdict(list)
    by_serial: dict[str, _Cand] = {}
    for c in s.scalars(q):
        if c.serial in old_serials or c.issuer_id in excluded:
            continue
        cand = _cand(c)
        by_serial[c.serial] = cand
        for n in cand.names or {"subject:" + cand.subject}:
            by_key[(cand.institution_id, n)].append(cand)

    ra_links = dict(
        s.execute(
            select(RACertificate.serial, RACertificate.replaced_by).where(
                RACertificate.serial.in_(old_serials), RACertificate.replaced_by.is_not(None)
            )
        ).all()
    )
    acme_olds = {o.serial: o for o in olds if o.requested_by.startswith("acme:") and o.der}
    by_cid: dict[str, str] = {}
    for o in acme_olds.values():
        try:
            by_cid[cert_id(x509.load_der_x509_certificate(o.der))] = o.serial  # type: ignore[arg-type]
        except (ValueError, x509.ExtensionNotFound):
            continue
    acme_links: dict[str, str] = {}
    if by_cid:
        for cid, new_serial in s.execute(
            select(ACMEOrder.replaces, ACMEOrder.certificate_serial).where(
                ACMEOrder.replaces.in_(list(by_cid)),
                ACMEOrder.status == "valid",
                ACMEOrder.certificate_serial.is_not(None),
            )
        ):
            acme_links[by_cid[cid]] = new_serial

    out: dict[str, Successor] = {}
    for o in olds:
        born = as_utc(o.issued_at or o.not_before)
        for via, link in (("ra-renew", ra_links.get(o.serial)), ("acme-replaces", acme_links.get(o.serial))):
            cand = by_serial.get(link) if link else None
            if cand is not None:
                out[o.serial] = Successor(cand.serial, via, cand.issued_at, cand.issuer_id)
                break
        if o.serial in out:
            continue
        names = _names(o.sans)
        probe = next(iter(names)) if names else "subject:" + o.subject
        found = [
            c
            for c in by_key.get((o.institution_id, probe), ())
            if c.issued_at > born
            and (issued_after is None or c.issued_at >= issued_after)
            and (names <= c.names if names else c.subject == o.subject)
        ]
        if found:
            best = min(found, key=lambda c: c.issued_at)
            out[o.serial] = Successor(best.serial, "newer", best.issued_at, best.issuer_id)
    return out
