"""The chains a certificate can be served with (RFC 8555 §7.4.2).

``certificate_chains`` is the one function that says which: the first is the
default (the issuing intermediate up to, not including, its root); the others
are alternates, served at ``/acme/cert/<serial>/<n>`` and linked with
rel="alternate": the same chain extended by a cross-certificate of its root
(``kakuin ca cross-sign``), for clients that trust only the older root.
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
    """Alternate chains: the default chain followed by a cross-certificate of its
    root issued by another (older) root, one per valid cross-certificate."""
    from kakuin.ca.rotation import cross_certificates_for

    repo = CARepo(s)
    ca = repo.by_id(cert.issuer_id)
    while ca.parent_id is not None and ca.kind != "root":
        ca = repo.by_id(ca.parent_id)
    if ca.kind != "root":
        return []
    default = default_chain(s, cert)
    return [Chain((*default.certificates, x), default.issuer_slug)
            for x in cross_certificates_for(s, ca.id)]


def certificate_chains(s: Session, cert: Certificate) -> list[Chain]:
    return [default_chain(s, cert), *alternate_chains(s, cert)]
