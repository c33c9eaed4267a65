"""ACME Renewal Information (RFC 9773).

A certificate is named by ``base64url(AKI keyIdentifier) "." base64url(serial)``
(§4.1). The suggested window is normally the start of the last third of the
lifetime (as Boulder: one third before notAfter) and lasts a sixth of it
(so a client that renews late still has margin). An operator's override, or a
revocation, moves the window into the past: RFC 9773 §4.2 clients then renew
at once. ``set_renewal_now`` is the one function the CLI and the incident tool
use for that.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy.orm import Session

from kakuin.acme.errors import AlreadyReplaced, Malformed
from kakuin.acme.jws import b64d, b64e
from kakuin.acme.repos import ARIRepo, OrderRepo
from kakuin.clock import Clock, as_utc
from kakuin.errors import NotFound, Unauthorized
from kakuin.store.db import Database
from kakuin.store.models import Certificate
from kakuin.store.repos import CARepo, CertificateRepo

RETRY_AFTER = 6 * 3600  # Boulder asks clients to poll ARI every six hours


@dataclass(frozen=True, slots=True)
class RenewalInfo:
    start: dt.datetime
    end: dt.datetime
    explanation_url: str | None
    retry_after: int = RETRY_AFTER

    def json(self) -> dict[str, object]:
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        body: dict[str, object] = {
            "suggestedWindow": {"start": self.start.strftime(fmt), "end": self.end.strftime(fmt)}
        }
        if self.explanation_url:
            body["explanationURL"] = self.explanation_url
        return body


def parse_cert_id(cert_id: str) -> tuple[bytes, str]:
    """(AKI keyIdentifier, serial as kakuin's lowercase hex). Only the one
    canonical spelling of a certificate's identifier is accepted: unpadded
    base64url with zero trailing bits, and the serial's DER content octets,
    which are minimal (no leading zero octet unless the next has its top bit
    set) — so the identifier a ``replaces`` names can be compared as a string."""
    aki_b64, dot, serial_b64 = cert_id.partition(".")
    if not dot or not aki_b64 or not serial_b64 or "=" in cert_id:
        raise Malformed("a certificate identifier is base64url(AKI).base64url(serial)")
    aki, serial = b64d(aki_b64, "AKI"), b64d(serial_b64, "serial")
    if b64e(aki) != aki_b64 or b64e(serial) != serial_b64:
        raise Malformed("a certificate identifier must be canonical base64url (no stray trailing bits)")
    if not serial or serial[0] & 0x80:
        raise Malformed("the serial must be the DER encoding of a positive integer")
    if len(serial) > 1 and serial[0] == 0 and not serial[1] & 0x80:
        raise Malformed("the serial must be its minimal DER encoding (no needless leading zero)")
    return aki, format(int.from_bytes(serial, "big"), "x")


def cert_id(cert: x509.Certificate) -> str:
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    n = cert.serial_number
    serial = n.to_bytes((n.bit_length() + 8) // 8, "big")  # DER INTEGER content octets
    return f"{b64e(aki or b'')}.{b64e(serial)}"


def _lookup(s: Session, cid: str) -> Certificate:
    aki, serial = parse_cert_id(cid)
    try:
        row = CertificateRepo(s).by_serial(serial)
    except NotFound:
        raise NotFound("no certificate with this identifier") from None
    if row.state != "issued" or row.der is None:
        raise NotFound("no certificate with this identifier")
    issuer = x509.load_der_x509_certificate(CARepo(s).by_id(row.issuer_id).der)
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    if ski != aki:
        raise NotFound("no certificate with this identifier")
    return row


def check_replaces(s: Session, account_id: int, cid: str, names: list[str], now: dt.datetime) -> None:
    """RFC 9773 §5: the replaced certificate was ordered by this account, shares a
    name with the new order, and is not already named by another order that is
    not invalid (pending, ready, processing or valid; Boulder's rules)."""
    row = _lookup(s, cid)
    order = OrderRepo(s).by_serial(row.serial)
    if order is None or order.account_id != account_id:
        # Boulder: unauthorized (RFC 9773 names no type for this).
        raise Unauthorized("replaces names a certificate this account did not order")
    if not set(row.sans.split()) & set(names):
        raise Malformed("the new order shares no identifier with the certificate it replaces")
    check_not_replaced(s, cid, now)


def check_not_replaced(s: Session, cid: str, now: dt.datetime) -> None:
    """AlreadyReplaced if an order that is not invalid already names ``cid``. Run
    again inside newOrder's transaction, after the account's lock
    (``ACMELedger.new_order``): only the account that ordered a certificate may
    replace it, so two of its newOrders cannot both pass this and both insert."""
    from kakuin.acme.service import order_statuses

    for oid, status in order_statuses(s, OrderRepo(s).replacing(cid), now).items():
        if status in ("processing", "valid"):
            raise AlreadyReplaced("this certificate has already been replaced")
        if status != "invalid":
            raise AlreadyReplaced(f"this certificate is already being replaced by order {oid}")


class RenewalInfoService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def renewal_info(self, cid: str) -> RenewalInfo:
        now = self.clock.now()
        with self.db.session() as s:
            row = _lookup(s, cid)
            override = ARIRepo(s).get(row.serial)
        if override is not None or row.revoked_at is not None:
            # As Boulder's RenewalInfoImmediate: a window that has already passed.
            start = now - dt.timedelta(hours=1)
            return RenewalInfo(
                start,
                start + dt.timedelta(minutes=30),
                override.explanation_url if override else None,
            )
        nb, na = as_utc(row.not_before), as_utc(row.not_after)
        lifetime = na - nb
        start = na - lifetime / 3
        return RenewalInfo(start, start + lifetime / 6, None)

    def set_renewal_now(self, serials: list[str], explanation_url: str | None = None) -> int:
        """Ask ACME clients to renew these certificates now; returns how many.
        Unknown serials raise NotFound and nothing is stored."""
        now = self.clock.now()
        with self.db.session() as s:
            repo = CertificateRepo(s)
            rows = [repo.by_serial(x) for x in serials]  # as openssl prints them, too
            for r in rows:
                ARIRepo(s).put(r.serial, explanation_url, now)
        return len(rows)
