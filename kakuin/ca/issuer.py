"""The issuance pipeline. Only this module (and ``hierarchy``) signs with CA keys.

Order (DESIGN.md, Boulder's two-phase issuance):

1. check the request against policy (key rules and blocklist, subject rules,
   names, validity) — nothing is stored for a refused request;
2. reserve a random serial (127 bits from ``secrets``; BR 7.1 wants ≥ 64) and
   record the intent; the database's unique constraint makes it unique;
3. build the TBS and sign it with a throwaway key of the issuer's algorithm family; lint
   that with pkilint; any ERROR/FATAL marks the record failed and stops;
4. sign the very same TBS bytes with the CA key; store the DER; return the
   leaf and the chain to install.

A crash between steps leaves the record in ``reserved`` or ``linted``;
``recover`` marks such records ``abandoned`` and their serials are never used
again (a new request always draws a new serial).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from kakuin.ca import der
from kakuin.ca.authority import AuthorityCache, LoadedCA
from kakuin.ca.csr import csr_names, parse_csr  # noqa: F401  (re-exported)
from kakuin.ca.keystore import KeyType, generate_private_key
from kakuin.ca.lint import CertificateLinter, blocking
from kakuin.ca.requests import (  # noqa: F401  (IssueRequest, Issued re-exported)
    Issued,
    IssueRequest,
    check_institution_confirmed,
    check_names,
    purpose_for,
    subject_for,
    validity_for,
    validity_limits,
)
from kakuin.clock import Clock
from kakuin.config import Config
from kakuin.errors import (
    BlockedKeyError,
    IssuanceError,
    KakuinError,
    KeyRuleError,
    LintError,
    NotFound,
)
from kakuin.policy.keys import check_key, describe_key
from kakuin.policy.profiles import Kind, Profile, extensions_for
from kakuin.policy.validity import decide_exact_not_after
from kakuin.store.db import Database
from kakuin.store.repos import CertificateRepo, IssuanceLedger

STALE_AFTER = dt.timedelta(minutes=10)


@dataclass(slots=True)
class _Prepared:
    req: IssueRequest
    profile: Profile
    subject: x509.Name
    ca: LoadedCA
    shard: int
    values: dict[str, object]
    note: str | None
    serial: int = 0
    cert_id: int = 0


_PENDING: Issued | KakuinError = KakuinError("pending")


def _not_here(_spki: str) -> bool:
    return False


def random_serial() -> int:
    # 16 random bytes with the top bit cleared: positive, 127 bits of entropy,
    # at most 16 content octets (RFC 5280 §4.1.2.2 allows 20).
    return int.from_bytes(secrets.token_bytes(16), "big") & ((1 << 127) - 1) or 1


_THROWAWAY: dict[KeyType, object] = {}


def throwaway_key(key_type: KeyType) -> object:
    key = _THROWAWAY.get(key_type)
    if key is None:
        key = _THROWAWAY[key_type] = generate_private_key(key_type)
    return key


class IssuanceService:
    def __init__(
        self,
        config: Config,
        db: Database,
        authorities: AuthorityCache,
        profiles: dict[str, Profile],
        clock: Clock,
        linter: CertificateLinter | None,
    ) -> None:
        self.config = config
        self.db = db
        self.authorities = authorities
        self.profiles = profiles
        self.clock = clock
        self.linter = linter if config.policy.lint else None
        self.ledger = IssuanceLedger(db.engine, db.autocommit)
        self._ext_cache: dict[tuple[str, int, int, bool], list[tuple[x509.ExtensionType, bool]]] = {}

    # -- policy ------------------------------------------------------------
    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            known = ", ".join(sorted(p for p, v in self.profiles.items() if not v.is_ca))
            raise NotFound(f"unknown profile {name!r} (known: {known})") from None

    def check_not_after(self, profile: str, not_after: dt.datetime, now: dt.datetime) -> None:
        """Refuse (ValidityError) an exact notAfter that issuance at ``now`` under
        ``profile`` could not honour: the early check of an ACME newOrder."""
        limit_days, limit_months = validity_limits(self.config, self.profile(profile), now)
        decide_exact_not_after(now=now, limit_days=limit_days, limit_months=limit_months, not_after=not_after)

    # -- pipeline ----------------------------------------------------------
    def _prepare(self, req: IssueRequest, now: dt.datetime) -> _Prepared:
        """Every policy check; no writes. Raises the specific PolicyError."""
        profile = self.profile(req.profile)
        if profile.is_ca:
            raise NotFound(f"profile {profile.name} is for CA certificates; use kakuin ca …")
        organization: str | None = None
        allowed_domains: list[str] | None = None
        institution_id: int | None = None
        if req.institution:
            inst = self.ledger.institution(req.institution)
            organization, institution_id = inst.name_en, inst.id
            check_institution_confirmed(inst.name_en, inst.confirmed_until, now, self.config.policy)
            allowed_domains = list(inst.approved_domains) or None
        elif self.config.policy.institution_required and profile.subject_rules:
            raise NotFound("an institution is required (policy.institution_required)")
        # The blocklist is consulted in the transaction that records the intent
        # (IssuanceLedger.reserve_many), so a key blocked a moment ago still counts.
        spki = check_key(req.public_key, profile.key_rules, _not_here)
        if profile.kind is Kind.CODE_SIGNING and isinstance(req.public_key, rsa.RSAPublicKey):
            if req.public_key.key_size < 3072:
                # CS BR 6.1.5.2: RSA subscriber keys for code signing ≥ 3072 bits.
                raise KeyRuleError("code signing needs RSA ≥ 3072 bits or ECDSA", rule="rsa-size")
        check_names(profile, req, allowed_domains)
        subject = subject_for(self.config, profile, req, organization)
        not_before, not_after, note = validity_for(self.config, profile, req, now)
        ca = self.authorities.issuing_now(self.db, purpose_for(profile, req), now)
        if not_after > ca.not_after:
            raise IssuanceError(f"{ca.name} expires {ca.not_after:%Y-%m-%d}, before the certificate would; rotate it")
        shard = crl_shard(not_after, self.config.policy.crl_shards)
        values: dict[str, object] = {
            "issuer_id": ca.id,
            "profile": profile.name,
            "state": "reserved",
            "subject": subject.rfc4514_string(),
            "sans": " ".join(req.dns_names + req.emails),
            "spki_sha256": spki,
            "key_type": describe_key(req.public_key),
            "not_before": not_before,
            "not_after": not_after,
            "crl_shard": shard,
            "institution_id": institution_id,
            "requested_by": req.requested_by,
            "note": note,
            "reserved_at": now,
        }
        return _Prepared(req, profile, subject, ca, shard, values, note)

    def _build(self, p: _Prepared) -> x509.CertificateBuilder:
        builder = (
            x509.CertificateBuilder()
            .subject_name(p.subject)
            .issuer_name(p.ca.certificate.subject)
            .public_key(p.req.public_key)
            .serial_number(p.serial)
            .not_valid_before(p.values["not_before"])  # type: ignore[arg-type]
            .not_valid_after(p.values["not_after"])  # type: ignore[arg-type]
        )
        exts = self._extensions(p.profile, p.ca, p.shard, p.req, len(p.subject) == 0)
        for ext, critical in exts + list(p.req.extra_extensions):
            builder = builder.add_extension(ext, critical=critical)
        return builder

    def issue(self, req: IssueRequest, on_step: Callable[[str], None] | None = None) -> Issued:
        """Issue one certificate: check, record the intent, lint, sign, store."""
        step = on_step or (lambda _name: None)
        p = self._prepare(req, self.clock.now())
        self._reserve([p])
        step("reserved")
        signed = False
        try:
            cert, der_bytes = self._sign(p, step)
            signed = True
            step("signed")
            self.ledger.mark_issued(p.cert_id, der_bytes, self.clock.now())
        except BaseException as exc:
            if not isinstance(exc, LintError):
                # The record says whether the CA had signed (then nothing was stored
                # or handed out, but a signature exists) or not.
                when = "signed, then storing failed" if signed else "failed before signing"
                self.ledger.mark_failed(p.cert_id, f"{when}: {type(exc).__name__}: {exc}", self.clock.now())
            raise
        step("stored")
        return Issued(format(p.serial, "x"), cert, p.ca.chain, p.ca.slug, p.note)

    def issue_batch(self, reqs: list[IssueRequest]) -> list[Issued | KakuinError]:
        """Issue many certificates (TSV files, incident re-issuance) with the same
        guarantees as ``issue``: every intent is recorded before anything is signed.
        Intents are recorded in one transaction and results stored in another, so
        the store costs little per certificate. Returns, per request, the
        certificate or the error that refused it."""
        now = self.clock.now()
        results: list[Issued | KakuinError] = []
        prepared: list[_Prepared] = []
        for req in reqs:
            try:
                prepared.append(self._prepare(req, now))
                results.append(_PENDING)
            except KakuinError as exc:
                results.append(exc)
        blocked = self._reserve(prepared, raise_blocked=False)
        done: list[tuple[int, bytes]] = []
        by_index = iter(i for i, r in enumerate(results) if r is _PENDING)
        try:
            for n, p in enumerate(prepared):
                i = next(by_index)
                if n in blocked:
                    results[i] = blocked[n]
                    continue
                try:
                    cert, der_bytes = self._sign(p, lambda _n: None)
                except LintError as exc:
                    results[i] = exc
                    continue
                done.append((p.cert_id, der_bytes))
                results[i] = Issued(format(p.serial, "x"), cert, p.ca.chain, p.ca.slug, p.note)
        finally:
            self.ledger.mark_issued_many(done, self.clock.now())
        return results

    def _reserve(self, prepared: list[_Prepared], raise_blocked: bool = True) -> dict[int, KakuinError]:
        """Draw serials and record the intents in one transaction. A blocked key
        (checked again here, inside that transaction) records nothing; returns
        the refusals by position in ``prepared``."""
        for _ in range(5):
            for p in prepared:
                p.serial = random_serial()
                p.values["serial"] = format(p.serial, "x")
            reserved = self.ledger.reserve_many([p.values for p in prepared])
            if reserved is not None:
                break
        else:  # pragma: no cover - 2^-127 per draw
            raise IssuanceError("could not reserve unique serials")
        refused: dict[int, KakuinError] = {}
        for i, (p, cert_id) in enumerate(zip(prepared, reserved, strict=True)):
            if cert_id is None:
                err = BlockedKeyError(
                    "this key was reported compromised and is blocked; generate a new key pair "
                    "(この鍵は危殆化のため使用できません。新しい鍵ペアを生成してください)",
                    rule="blocked-key",
                )
                if raise_blocked:
                    raise err
                refused[i] = err
            else:
                p.cert_id = cert_id
        return refused

    def _extensions(
        self, profile: Profile, ca: LoadedCA, shard: int, req: IssueRequest, subject_empty: bool
    ) -> list[tuple[x509.ExtensionType, bool]]:
        """Extensions of the leaf. Everything but the names (and a SKI) depends only
        on profile, issuer, CRL shard and key family, so it is built once and reused."""
        is_rsa = isinstance(req.public_key, rsa.RSAPublicKey)
        names: list[tuple[x509.ExtensionType, bool]] = []
        if profile.with_ski:
            return extensions_for(
                profile,
                subject_public_key=req.public_key,
                issuer=ca.issuer_info(self.config.server.pki_url, shard),
                dns_names=req.dns_names,
                emails=req.emails,
                subject_is_empty=subject_empty,
            )
        key = (profile.name, ca.id, shard, is_rsa)
        static = self._ext_cache.get(key)
        if static is None:
            static = [
                (e, c)
                for e, c in extensions_for(
                    profile, subject_public_key=req.public_key, issuer=ca.issuer_info(self.config.server.pki_url, shard)
                )
                if not isinstance(e, x509.SubjectAlternativeName)
            ]
            if len(self._ext_cache) > 4096:
                self._ext_cache.clear()
            self._ext_cache[key] = static
        sans: list[x509.GeneralName] = []
        if profile.dns_names:
            sans += [x509.DNSName(n) for n in req.dns_names]
        if profile.emails:
            sans += [x509.RFC822Name(e) for e in req.emails]
        if sans:
            # RFC 5280 §4.2.1.6: critical when the subject is empty.
            names.append((x509.SubjectAlternativeName(sans), subject_empty))
        return static + names

    def _sign(self, p: _Prepared, step: Callable[[str], None]) -> tuple[x509.Certificate, bytes]:
        builder = self._build(p)
        signer = p.ca.signer
        hash_alg = signer.key_type.signature_hash
        if self.linter is None and signer.private_key is not None:
            cert = builder.sign(signer.private_key, hash_alg)  # type: ignore[arg-type]
            return cert, cert.public_bytes(_DER)
        # The draft's TBS names only the algorithm family and hash (ecdsa-with-
        # SHA384 has no curve; sha256WithRSAEncryption no key size), so the
        # cheapest key of the family gives the very TBS the CA key then signs:
        # a P-256 signature instead of a P-384 one (~30 µs, not ~150), RSA-2048
        # instead of RSA-3072 or -4096.
        draft_type = KeyType.RSA2048 if signer.key_type.is_rsa else KeyType.P256
        draft = builder.sign(throwaway_key(draft_type), hash_alg).public_bytes(_DER)  # type: ignore[arg-type]
        if self.linter is not None:
            bad = blocking(self.linter.lint(draft, p.profile.linter))
            if bad:
                self.ledger.mark_failed(p.cert_id, "lint: " + "; ".join(map(str, bad)), self.clock.now())
                raise LintError(f"pre-issuance lint refused the certificate: {bad[0]}", [str(f) for f in bad])
            self.ledger.mark_linted(p.cert_id, self.clock.now())
            step("linted")
        tbs, alg, _ = der.split_signed(draft)
        cert_der = der.assemble(tbs, alg, signer.sign(tbs, hash_alg))
        return x509.load_der_x509_certificate(cert_der), cert_der

    def recover(self) -> int:
        """Mark intents left by crashed processes as abandoned; returns how many."""
        now = self.clock.now()
        with self.db.session() as s:
            return CertificateRepo(s).abandon_stale(now - STALE_AFTER, now)


from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

_DER = Encoding.DER


def crl_shard(not_after: dt.datetime, shards: int) -> int:
    """Temporal CRL sharding (as Boulder does): certificates expiring in the same
    week share a partition, so a partition empties once its week has passed and
    no CRL grows without bound."""
    return (not_after.date().toordinal() // 7) % shards
