"""Who is at the other end of the portal's TLS connection.

The TLS layer has verified the client certificate against the client CAs
(``kakuin.portal.tls``). Before any page or API route, ``identify`` checks,
in this order, and refuses with a reason otherwise:

1. a certificate was presented (``scope["extensions"]["tls"]["client_cert_chain"]``);
2. it is signed by one of kakuin's client-authentication intermediates (the
   TLS layer also trusts the roots, which sign other intermediates too);
3. it is within its validity and kakuin issued it (the serial is in the store)
   and it is not revoked;
4. its SPKI SHA-256 is an operator's (``portal.operators``) or an active
   officer's (the key ``kakuin officer add`` made for them; a re-enrolled
   officer's old key no longer matches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from kakuin.context import Context
from kakuin.errors import NotFound
from kakuin.policy.keys import spki_sha256
from kakuin.portal.tls import client_ca_certificates
from kakuin.ra.actors import Actor
from kakuin.ra.services import RA
from kakuin.store.repos import CertificateRepo


@dataclass(frozen=True, slots=True)
class Identity:
    actor: Actor
    display_name: str
    institution: str | None  # registered English name; None: the operator
    spki_sha256: str
    serial: str


class Refused(Exception):
    """Sign-in refused; ``reason`` is a key of the i18n catalogue."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def peer_certificate(scope: dict[str, Any]) -> x509.Certificate | None:
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    pem = chain[0]
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def _signed_by(cert: x509.Certificate, issuers: list[x509.Certificate]) -> bool:
    for ca in issuers:
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):
            continue
        return True
    return False


class Authenticator:
    def __init__(self, ctx: Context, ra: RA) -> None:
        self.ctx = ctx
        self.ra = ra
        self._issuers: list[x509.Certificate] | None = None

    def issuers(self) -> list[x509.Certificate]:
        if self._issuers is None:
            self._issuers = [c for c in client_ca_certificates(self.ctx) if c.issuer != c.subject]
        return self._issuers

    def identify(self, scope: dict[str, Any]) -> Identity:
        cert = peer_certificate(scope)
        if cert is None:
            raise Refused("no-certificate")
        if not _signed_by(cert, self.issuers()):
            raise Refused("not-client-ca")
        now = self.ctx.clock.now()
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise Refused("expired")
        serial = format(cert.serial_number, "x")
        with self.ctx.db.session() as s:
            try:
                row = CertificateRepo(s).by_serial(serial)
            except NotFound:
                raise Refused("unknown-certificate") from None
            revoked, state = row.revoked_at is not None, row.state
        if revoked:
            raise Refused("revoked")
        if state != "issued":
            raise Refused("unknown-certificate")
        spki = spki_sha256(cert.public_key())  # type: ignore[arg-type]
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(cns[0].value) if cns else serial
        if spki in self.ctx.config.portal.operators:
            return Identity(Actor.operator(f"operator:{name}"), name, None, spki, serial)
        try:
            actor = self.ra.institutions.officer_actor(spki_sha256_hex=spki)
        except NotFound:
            raise Refused("not-officer") from None
        assert actor.institution_id is not None
        inst = self._institution_name(actor.institution_id)
        return Identity(actor, name, inst, spki, serial)

    def _institution_name(self, inst_id: int) -> str:
        for info in self.ra.institutions.list(actor=Actor("portal:lookup", inst_id)):
            return info.name_en
        raise Refused("not-officer")
