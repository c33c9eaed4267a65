"""Loaded CAs: certificate, signer and chain, cached per process.

CA rows are immutable except for their status, so a loaded CA is cached by id;
which generation issues is asked of the store on every issuance, so a rotation
in another process takes effect at its switch-over time.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass

from cryptography import x509
from sqlalchemy.orm import Session

from kakuin.ca.keystore import KeyBackend, KeyRef, KeyType, Signer
from kakuin.clock import as_utc
from kakuin.errors import NotFound
from kakuin.policy.profiles import IssuerInfo, Purpose
from kakuin.store.db import Database
from kakuin.store.models import CertificateAuthority
from kakuin.store.repos import CARepo


def urls(base_url: str, slug: str) -> tuple[str, str, str]:
    """(caIssuers, OCSP, full CRL) URLs of the CA ``slug``."""
    return f"{base_url}/ca/{slug}.der", f"{base_url}/ocsp", f"{base_url}/crl/{slug}.crl"


def shard_crl_url(base_url: str, slug: str, shard: int) -> str:
    return f"{base_url}/crl/{slug}/{shard}.crl"


@dataclass(frozen=True, slots=True)
class LoadedCA:
    id: int
    slug: str
    name: str
    certificate: x509.Certificate
    signer: Signer
    chain: tuple[x509.Certificate, ...]  # what a subscriber installs beside the leaf
    not_after: dt.datetime

    def issuer_info(self, base_url: str, shard: int | None = None) -> IssuerInfo:
        ca_issuers, ocsp, full_crl = urls(base_url, self.slug)
        return IssuerInfo(
            name=self.certificate.subject,
            public_key=self.certificate.public_key(),
            ca_issuers_url=ca_issuers,
            ocsp_url=ocsp,
            crl_url=shard_crl_url(base_url, self.slug, shard) if shard is not None else full_crl,
        )


class AuthorityCache:
    """Loaded CAs by id, and which CA issues per purpose.

    The choice of issuing CA is cached for ``ttl`` seconds (wall clock) so the
    hot path does not ask the store on every certificate; a rotation or CA
    revocation made by another process takes effect within that time.
    """

    def __init__(self, keys: KeyBackend, ttl: float = 1.0) -> None:
        self.keys = keys
        self.ttl = ttl
        self._lock = threading.Lock()
        self._loaded: dict[int, LoadedCA] = {}
        self._choice: dict[tuple[str, dt.datetime], tuple[float, int | None]] = {}

    def load(self, s: Session, row: CertificateAuthority) -> LoadedCA:
        with self._lock:
            hit = self._loaded.get(row.id)
        if hit is not None:
            return hit
        cert = x509.load_der_x509_certificate(row.der)
        chain: list[x509.Certificate] = []
        if row.kind != "root":
            chain.append(cert)
            parent = row.parent_id
            repo = CARepo(s)
            while parent is not None:
                p = repo.by_id(parent)
                if p.kind == "root":
                    break
                chain.append(x509.load_der_x509_certificate(p.der))
                parent = p.parent_id
        signer = self.keys.signer(KeyRef(row.key_backend, row.key_label, KeyType(row.key_type)))
        loaded = LoadedCA(row.id, row.slug, row.name, cert, signer, tuple(chain), as_utc(row.not_after))
        with self._lock:
            self._loaded[row.id] = loaded
        return loaded

    def issuing(self, s: Session, purpose: Purpose, at: dt.datetime) -> LoadedCA:
        key = (purpose.value, at.replace(microsecond=0))
        now = time.monotonic()
        with self._lock:
            hit = self._choice.get(key)
        if hit is not None and hit[0] > now and hit[1] is not None and hit[1] in self._loaded:
            return self._loaded[hit[1]]
        row = CARepo(s).issuing_for(purpose.value, at)
        with self._lock:
            if len(self._choice) > 1024:
                self._choice.clear()
            self._choice[key] = (now + self.ttl, row.id if row else None)
        if row is None:
            raise NotFound(f"no active {purpose.value} intermediate issues at {at:%Y-%m-%d %H:%M}Z")
        return self.load(s, row)

    def issuing_now(self, db: Database, purpose: Purpose, at: dt.datetime) -> LoadedCA:
        """Like ``issuing`` but opens a session only when the cache cannot answer."""
        hit = self._choice.get((purpose.value, at.replace(microsecond=0)))
        if hit is not None and hit[0] > time.monotonic() and hit[1] in self._loaded:
            return self._loaded[hit[1]]  # type: ignore[index]
        with db.session() as s:
            return self.issuing(s, purpose, at)

    def forget(self, ca_id: int | None = None) -> None:
        """Drop cached CAs (one, or all) and every cached choice."""
        with self._lock:
            if ca_id is None:
                self._loaded.clear()
            else:
                self._loaded.pop(ca_id, None)
            self._choice.clear()
