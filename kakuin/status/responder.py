"""Delegated OCSP responder certificates, one current generation per issuer.

RFC 6960 §4.2.2.2: a responder certificate issued by the CA itself, carrying
id-kp-OCSPSigning; id-pkix-ocsp-nocheck so clients need not check its status
(which is why it is short-lived: profile "ocsp-responder", 30 days, renewed once
a third of its life remains). An intermediate's own key never signs OCSP
(DESIGN.md: intermediates never carry id-kp-OCSPSigning).

The responder key lives in the same key backend as the CA keys, labelled
``ocsp-{issuer slug}-{generation}-{random}``; the certificate is recorded in the
certificates table like any other (intent first, then lint, then sign) and in
``ocsp_responders`` with its key reference.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy.exc import IntegrityError

from kakuin.ca.authority import AuthorityCache, LoadedCA, urls
from kakuin.ca.hierarchy import sign_certificate
from kakuin.ca.issuer import crl_shard, random_serial
from kakuin.ca.keystore import KeyBackend, KeyRef, KeyType, Signer
from kakuin.ca.lint import CertificateLinter
from kakuin.clock import Clock, as_utc
from kakuin.config import Config
from kakuin.errors import IssuanceError
from kakuin.policy.keys import describe_key, spki_sha256
from kakuin.policy.profiles import IssuerInfo, Linter, Profile, extensions_for
from kakuin.status.models import OCSPResponder
from kakuin.status.repos import OCSPRepo
from kakuin.store.db import Database
from kakuin.store.models import Certificate, CertificateAuthority
from kakuin.store.repos import CARepo, CertificateRepo

PROFILE = "ocsp-responder"
BACKDATE = dt.timedelta(minutes=5)  # clock skew of relying parties


@dataclass(frozen=True, slots=True)
class LoadedResponder:
    issuer: LoadedCA
    generation: int
    certificate: x509.Certificate
    signer: Signer
    not_after: dt.datetime


class ResponderService:
    def __init__(self, config: Config, db: Database, keys: KeyBackend, authorities: AuthorityCache,
                 profiles: dict[str, Profile], clock: Clock, linter: CertificateLinter | None) -> None:
        self.config = config
        self.db = db
        self.keys = keys
        self.authorities = authorities
        self.profile = profiles[PROFILE]
        self.clock = clock
        self.linter = linter
        self._lock = threading.Lock()
        self._loaded: dict[int, LoadedResponder] = {}

    @property
    def lifetime(self) -> dt.timedelta:
        return dt.timedelta(days=self.profile.validity_value)

    def _due(self, not_after: dt.datetime) -> bool:
        return not_after - self.clock.now() < self.lifetime / 3

    def current(self, issuer_id: int) -> LoadedResponder:
        """The responder that signs for ``issuer_id`` now; issues a new generation
        when there is none or the newest has a third of its life left."""
        hit = self._loaded.get(issuer_id)
        if hit is not None and not self._due(hit.not_after):
            return hit
        with self._lock:
            with self.db.session() as s:
                row = OCSPRepo(s).current_responder(issuer_id)
                ca_row = CARepo(s).by_id(issuer_id)
            if row is None or self._due(as_utc(row.not_after)):
                row = self._issue(ca_row, (row.generation + 1) if row else 1)
                if row is None:  # another process issued this generation first
                    with self.db.session() as s:
                        row = OCSPRepo(s).current_responder(issuer_id)
            if row is None:  # pragma: no cover
                raise IssuanceError(f"no OCSP responder for CA {ca_row.slug}")
            with self.db.session() as s:
                issuer = self.authorities.load(s, ca_row)
            signer = self.keys.signer(KeyRef(row.key_backend, row.key_label, KeyType(row.key_type)))
            loaded = LoadedResponder(issuer, row.generation, x509.load_der_x509_certificate(row.der),
                                     signer, as_utc(row.not_after))
            self._loaded[issuer_id] = loaded
            return loaded

    def ensure_all(self) -> list[LoadedResponder]:
        """A current responder for every active intermediate (renewing due ones)."""
        with self.db.session() as s:
            ids = [ca.id for ca in CARepo(s).all() if ca.kind != "root" and ca.status == "active"]
        return [self.current(i) for i in ids]

    def _issue(self, ca_row: CertificateAuthority, generation: int) -> OCSPResponder | None:
        """Issue generation ``generation``; None when another process just did."""
        now = self.clock.now().replace(microsecond=0)
        with self.db.session() as s:
            ca = self.authorities.load(s, ca_row)
        key_type = KeyType.P256 if not ca.signer.key_type.is_rsa else KeyType.RSA2048
        ref = self.keys.generate(f"ocsp-{ca.slug}-{generation}-{secrets.token_hex(3)}", key_type)
        public_key = self.keys.signer(ref).public_key()
        not_before = now - BACKDATE
        not_after = min(now + self.lifetime - dt.timedelta(seconds=1), ca.not_after)
        cn = f"{ca.name} OCSP Responder {generation}"[-64:]
        subject = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, self.config.hierarchy.country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.config.hierarchy.organization),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ])
        serial = random_serial()
        record = Certificate(
            serial=format(serial, "x"), issuer_id=ca.id, profile=PROFILE, state="reserved",
            subject=subject.rfc4514_string(), sans="", spki_sha256=spki_sha256(public_key),
            key_type=describe_key(public_key), not_before=not_before, not_after=not_after,
            crl_shard=crl_shard(not_after, self.config.policy.crl_shards), requested_by="ocsp-responder",
            reserved_at=now,
        )
        with self.db.session() as s:
            if not CertificateRepo(s).reserve(record):  # pragma: no cover - 2^-127
                raise IssuanceError("could not reserve a unique serial for the OCSP responder")
        ca_issuers, _ocsp, _crl = urls(self.config.server.pki_url, ca.slug)
        issuer = IssuerInfo(ca.certificate.subject, ca.certificate.public_key(), ca_issuers, None, None)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.certificate.subject)
                   .public_key(public_key).serial_number(serial)
                   .not_valid_before(not_before).not_valid_after(not_after))
        for ext, critical in extensions_for(self.profile, subject_public_key=public_key, issuer=issuer):
            builder = builder.add_extension(ext, critical=critical)
        tls = ca_row.purpose.startswith("tls")
        profile = self.profile if tls else Profile(
            name=PROFILE, kind=self.profile.kind, linter=Linter.PKIX, eku=self.profile.eku,
            validity=self.profile.validity, validity_value=self.profile.validity_value,
            subject_rules=False, with_aia=False, with_crldp=False, ocsp_nocheck=True)
        try:
            cert = sign_certificate(builder, ca.signer, self.linter, profile)
        except BaseException as exc:
            with self.db.session() as s:
                CertificateRepo(s).mark(record.id, state="failed", failed_at=self.clock.now(),
                                        failure=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        cert_der = cert.public_bytes(Encoding.DER)
        with self.db.session() as s:
            CertificateRepo(s).mark(record.id, state="issued", der=cert_der, issued_at=self.clock.now(),
                                    linted_at=self.clock.now())
        row = OCSPResponder(issuer_id=ca.id, generation=generation, key_backend=ref.backend,
                            key_label=ref.label, key_type=ref.key_type.value, serial=record.serial,
                            der=cert_der, not_before=not_before, not_after=not_after, created_at=now)
        try:
            with self.db.session() as s:
                OCSPRepo(s).add_responder(row)
        except IntegrityError:
            return None
        return row
