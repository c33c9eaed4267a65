"""The chains a certificate can be served with (RFC 8555 §7.4.2).

``certificate_chains`` is the one function that says which: the first is the
default (the issuing intermediate up to, not including, its root); the others
are alternates, served at ``/acme/cert/<serial>/<n>`` and linked with
rel="alternate". There are none today; the incident work adds cross-signed
chains here.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from sqlalchemy.orm import Session

from kakuin.store.models import Certificate
from kakuin.store.repos import CARepo


@dataclass(frozen=True, slots=True)
class Chain:
    certificates: tuple[x509.Certificate, ...]  # what follows the leaf, issuer first
    issuer_slug: str  # the CA whose certificate rel="up" points at


def default_chain(s: Session, cert: Certificate) -> Chain:
    repo = CARepo(s)
    ca = repo.by_id(cert.issuer_id)
    slug = ca.slug
    chain: list[x509.Certificate] = []
    while ca.kind != "root":
        chain.append(x509.load_der_x509_certificate(ca.der))
        if ca.parent_id is None:
            break
        ca = repo.by_id(ca.parent_id)
    return Chain(tuple(chain), slug)


def alternate_chains(s: Session, cert: Certificate) -> list[Chain]:
    """Alternate chains (cross-signed paths); empty until cross-signs exist."""
    return []


def certificate_chains(s: Session, cert: Certificate) -> list[Chain]:
    return [default_chain(s, cert), *alternate_chains(s, cert)]
