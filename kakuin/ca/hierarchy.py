"""Create and describe the CA hierarchy: roots and issuing intermediates.

Intermediates are linted like leaves (TLS sub-CAs with the serverauth linter)
and never carry id-kp-OCSPSigning: the profile refuses it and the lint's house
rule refuses it again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from kakuin.ca import der
from kakuin.ca.authority import urls
from kakuin.ca.issuer import random_serial, throwaway_key
from kakuin.ca.keystore import KeyBackend, KeyRef, KeyType, Signer
from kakuin.ca.lint import CertificateLinter, blocking
from kakuin.clock import Clock, as_utc
from kakuin.config import Config, IntermediateSpec, RootSpec
from kakuin.errors import LintError
from kakuin.policy.profiles import IssuerInfo, Profile, default_profiles, extensions_for, sub_ca_profile
from kakuin.policy.validity import SECOND, _add_months
from kakuin.store.db import Database
from kakuin.store.models import CertificateAuthority
from kakuin.store.repos import CARepo


def ca_name(config: Config, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, config.hierarchy.country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, config.hierarchy.organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def sign_certificate(
    builder: x509.CertificateBuilder, signer: Signer, linter: CertificateLinter | None, profile: Profile
) -> x509.Certificate:
    """Throwaway-sign, lint, then sign the same TBS with ``signer``."""
    hash_alg = signer.key_type.signature_hash
    draft = builder.sign(throwaway_key(signer.key_type), hash_alg).public_bytes(Encoding.DER)  # type: ignore[arg-type]
    if linter is not None:
        bad = blocking(linter.lint(draft, profile.linter))
        if bad:
            raise LintError(f"lint refused the CA certificate: {bad[0]}", [str(f) for f in bad])
    tbs, alg, _ = der.split_signed(draft)
    return x509.load_der_x509_certificate(der.assemble(tbs, alg, signer.sign(tbs, hash_alg)))


@dataclass
class HierarchyBuilder:
    config: Config
    db: Database
    keys: KeyBackend
    clock: Clock
    linter: CertificateLinter | None

    def ensure(self, progress: object | None = None) -> list[str]:
        """Create every CA of the configured hierarchy that does not exist yet."""
        created: list[str] = []
        with self.db.session() as s:
            existing = {ca.slug for ca in CARepo(s).all()}
        for root in self.config.hierarchy.roots:
            if root.slug not in existing:
                self.create_root(root)
                created.append(root.slug)
        for spec in self.config.hierarchy.intermediates:
            if spec.slug not in existing:
                self.create_intermediate(spec)
                created.append(spec.slug)
        return created

    def create_root(self, spec: RootSpec) -> CertificateAuthority:
        now = self.clock.now().replace(microsecond=0)
        ref = self.keys.generate(spec.slug, spec.key_type)
        signer = self.keys.signer(ref)
        name = ca_name(self.config, spec.name)
        profile = default_profiles()["root"]
        not_after = _add_months(now, spec.months) - SECOND
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(signer.public_key())
            .serial_number(random_serial())
            .not_valid_before(now)
            .not_valid_after(not_after)
        )
        for ext, critical in extensions_for(profile, subject_public_key=signer.public_key(), issuer=None):
            builder = builder.add_extension(ext, critical=critical)
        cert = sign_certificate(builder, signer, self.linter, profile)
        return self._store(spec.slug, spec.name, "root", f"root-{spec.key_type.value}", 1, None, ref, cert, now)

    def create_intermediate(
        self, spec: IntermediateSpec, *, active_from: dt.datetime | None = None
    ) -> CertificateAuthority:
        now = self.clock.now().replace(microsecond=0)
        with self.db.session() as s:
            parent = CARepo(s).by_slug(spec.parent)
        parent_signer = self.keys.signer(KeyRef(parent.key_backend, parent.key_label, KeyType(parent.key_type)))
        parent_cert = x509.load_der_x509_certificate(parent.der)
        ref = self.keys.generate(spec.slug, spec.key_type)
        signer = self.keys.signer(ref)
        profile = sub_ca_profile(spec.purpose, months=spec.months, path_length=spec.path_length)
        not_after = min(_add_months(now, spec.months) - SECOND, as_utc(parent.not_after))
        ca_issuers, _ocsp, arl = urls(self.config.server.pki_url, parent.slug)
        issuer = IssuerInfo(parent_cert.subject, parent_cert.public_key(), ca_issuers, None, arl)
        builder = (
            x509.CertificateBuilder()
            .subject_name(ca_name(self.config, spec.name))
            .issuer_name(parent_cert.subject)
            .public_key(signer.public_key())
            .serial_number(random_serial())
            .not_valid_before(now)
            .not_valid_after(not_after)
        )
        for ext, critical in extensions_for(profile, subject_public_key=signer.public_key(), issuer=issuer):
            builder = builder.add_extension(ext, critical=critical)
        cert = sign_certificate(builder, parent_signer, self.linter, profile)
        return self._store(
            spec.slug,
            spec.name,
            "intermediate",
            spec.purpose.value,
            spec.generation,
            parent.id,
            ref,
            cert,
            active_from or now,
        )

    def _store(
        self,
        slug: str,
        name: str,
        kind: str,
        purpose: str,
        generation: int,
        parent_id: int | None,
        ref: KeyRef,
        cert: x509.Certificate,
        active_from: dt.datetime,
    ) -> CertificateAuthority:
        row = CertificateAuthority(
            slug=slug,
            name=name,
            kind=kind,
            purpose=purpose,
            generation=generation,
            parent_id=parent_id,
            key_backend=ref.backend,
            key_label=ref.label,
            key_type=ref.key_type.value,
            serial=format(cert.serial_number, "x"),
            der=cert.public_bytes(Encoding.DER),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            active_from=active_from,
            status="active",
            created_at=self.clock.now(),
        )
        with self.db.session() as s:
            return CARepo(s).add(row)


@dataclass(frozen=True, slots=True)
class CANode:
    slug: str
    name: str
    kind: str
    purpose: str
    generation: int
    key_type: str
    not_before: dt.datetime
    not_after: dt.datetime
    status: str
    issuing_now: bool
    children: tuple[CANode, ...]


def ca_tree(db: Database, at: dt.datetime) -> list[CANode]:
    with db.session() as s:
        repo = CARepo(s)
        rows = list(repo.all())
        issuing = {
            ca.id
            for p in {r.purpose for r in rows if r.kind == "intermediate"}
            if (ca := repo.issuing_for(p, at)) is not None
        }

    def node(r: CertificateAuthority) -> CANode:
        kids = tuple(node(c) for c in rows if c.parent_id == r.id)
        return CANode(
            r.slug,
            r.name,
            r.kind,
            r.purpose,
            r.generation,
            r.key_type,
            as_utc(r.not_before),
            as_utc(r.not_after),
            r.status,
            r.id in issuing,
            kids,
        )

    return [node(r) for r in rows if r.parent_id is None]
