"""CRLs: full, partitioned (sharded) and ARLs, built fast and signed by the issuer.

cryptography's ``CertificateRevocationListBuilder`` copies its entry list on
every ``add_revoked_certificate`` (quadratic: > 20 s for 100,000 entries), so the
list is encoded here directly. cryptography builds the header (issuer, dates,
extensions) as an empty CRL signed by a throwaway key; the revokedCertificates
SEQUENCE is spliced into that TBSCertList, which is then linted (with a sample
of the entries) and signed with the CA's Signer — the same TBS-then-sign path
as certificates (``ca.der``), so HSM keys work too.

Scopes (``shard``): -1 is the full CRL of an issuer (for a root: its ARL over
revoked intermediates; BR 7.2.2); 0…N-1 are the partitions named in the CRL
Distribution Points of the certificates (``ca.issuer.crl_shard``), each with an
Issuing Distribution Point whose distributionPoint is exactly that URL.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kakuin.ca import der
from kakuin.ca.authority import AuthorityCache, LoadedCA, shard_crl_url
from kakuin.ca.issuer import throwaway_key
from kakuin.ca.lint import CertificateLinter, blocking
from kakuin.clock import UTC, Clock, as_utc
from kakuin.config import Config
from kakuin.errors import LintError, NotFound
from kakuin.status.repos import CRLRepo, RawEntry
from kakuin.store.db import Database
from kakuin.store.models import CertificateAuthority
from kakuin.store.repos import CARepo

FULL = -1
# BR 4.9.7: nextUpdate at most 10 days after thisUpdate. We publish for 7 days
# and re-sign daily (and within a minute of a revocation), well before.
CRL_VALIDITY = dt.timedelta(days=7)
CRL_REFRESH = dt.timedelta(days=1)
LINT_SAMPLE = 64  # entries linted with the header before the real signature

_REASON_OID = bytes.fromhex("0603551d15")  # id-ce-cRLReasons 2.5.29.21
_INVALIDITY_OID = bytes.fromhex("0603551d18")  # id-ce-invalidityDate 2.5.29.24


def _reason_ext(code: int) -> bytes:
    # Extension ::= SEQUENCE { extnID, extnValue OCTET STRING { ENUMERATED } }
    return der.tlv(0x30, _REASON_OID + der.tlv(0x04, der.tlv(0x0A, bytes([code]))))


_REASON_EXTS = {code: _reason_ext(code) for code in range(1, 11)}


_DROP = str.maketrans("", "", "-: ")


def _digits(value: object) -> str:
    """YYYYMMDDHHMMSS of a raw DB timestamp (ISO string from SQLite, or datetime)."""
    if isinstance(value, str):
        # "2025-06-01 12:34:56[.ffffff]" as SQLAlchemy stores it in SQLite (UTC)
        return value[:19].translate(_DROP)
    if isinstance(value, dt.datetime):
        return as_utc(value).strftime("%Y%m%d%H%M%S")
    raise TypeError(f"not a timestamp: {value!r}")


def _time(digits: str) -> bytes:
    """RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050."""
    if "1950" <= digits[:4] < "2050":
        return b"\x17\x0d" + digits[2:].encode() + b"Z"
    return b"\x18\x0f" + digits.encode() + b"Z"


_LEN = [bytes([i]) for i in range(128)]


def encode_entries(rows: Iterable[RawEntry]) -> tuple[bytes, int]:
    """The DER revokedCertificates SEQUENCE and the number of entries.

    revokedCertificates ::= SEQUENCE OF SEQUENCE { userCertificate INTEGER,
    revocationDate Time, crlEntryExtensions Extensions OPTIONAL }

    The hot loop of a million-entry CRL: short-form lengths come from a table,
    serials go hex → bytes directly, SQLite's ISO strings are sliced, not parsed.
    """
    tlv = der.tlv
    lens = _LEN
    reason_exts = _REASON_EXTS
    fromhex = bytes.fromhex
    drop = _DROP
    parts: list[bytes] = []
    append = parts.append
    for serial_hex, revoked, reason, invalidity in rows:
        if len(serial_hex) & 1:
            serial_hex = "0" + serial_hex
        serial = fromhex(serial_hex)
        if serial[0] & 0x80:  # keep the INTEGER positive
            serial = b"\x00" + serial
        if type(revoked) is str and "1950" <= revoked[:4] < "2050":
            when = b"\x17\x0d" + revoked[2:19].translate(drop).encode() + b"Z"
        else:
            when = _time(_digits(revoked))
        body = b"\x02" + lens[len(serial)] + serial + when
        exts = b""
        # BR 7.2.2: reasonCode is omitted for unspecified (0).
        if reason:
            exts = reason_exts[reason]
        if invalidity is not None:
            # RFC 5280 §5.3.2: invalidityDate is always GeneralizedTime.
            exts += tlv(0x30, _INVALIDITY_OID + tlv(0x04, b"\x18\x0f" + _digits(invalidity).encode() + b"Z"))
        if exts:
            body += tlv(0x30, exts)
        n = len(body)
        append(b"\x30" + lens[n] + body if n < 128 else tlv(0x30, body))
    return tlv(0x30, b"".join(parts)), len(parts)


def splice(tbs: bytes, revoked: bytes) -> bytes:
    """Insert ``revoked`` (a DER SEQUENCE) into an entry-less TBSCertList, after
    nextUpdate and before the [0] crlExtensions."""
    tag, start, end = der.read_tlv(tbs, 0)
    if tag != 0x30 or end != len(tbs):
        raise ValueError("not a TBSCertList")
    pos = start
    while pos < end:
        t, _s, e = der.read_tlv(tbs, pos)
        if t == 0xA0:
            break
        pos = e
    return der.tlv(0x30, tbs[start:pos] + revoked + tbs[pos:end])


@dataclass(frozen=True, slots=True)
class BuiltCRL:
    issuer_slug: str
    shard: int
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    der: bytes

    @property
    def filename(self) -> str:
        return f"{self.issuer_slug}.crl" if self.shard == FULL else f"{self.issuer_slug}/{self.shard}.crl"


def build_crl(ca: LoadedCA, *, number: int, this_update: dt.datetime, next_update: dt.datetime,
              rows: Sequence[RawEntry], idp_url: str | None,
              lint: Callable[[bytes], list[str]] | None = None) -> tuple[bytes, int]:
    """Sign a CRL of ``rows`` with ``ca``'s key; returns (DER, entry count)."""
    signer = ca.signer
    hash_alg = signer.key_type.signature_hash
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        # RFC 5280 §5.2.1 / BR 7.2.2: AKI keyIdentifier of the issuer
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.certificate.public_key()), critical=False)  # type: ignore[arg-type]
        # RFC 5280 §5.2.3: cRLNumber, non-critical
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    if idp_url is not None:
        # RFC 5280 §5.2.5 / BR 7.2.2.1: a partitioned CRL names its partition; critical.
        builder = builder.add_extension(x509.IssuingDistributionPoint(
            full_name=[x509.UniformResourceIdentifier(idp_url)], relative_name=None,
            only_contains_user_certs=True, only_contains_ca_certs=False, only_some_reasons=None,
            indirect_crl=False, only_contains_attribute_certs=False), critical=True)
    skeleton = builder.sign(throwaway_key(signer.key_type), hash_alg).public_bytes(Encoding.DER)  # type: ignore[arg-type]
    empty_tbs, alg, _ = der.split_signed(skeleton)
    if lint is not None:
        sample, _ = encode_entries(rows[:LINT_SAMPLE])
        draft_tbs = splice(empty_tbs, sample) if rows else empty_tbs
        draft = der.assemble(draft_tbs, alg, b"\x00" * 64)
        bad = lint(draft)
        if bad:
            raise LintError(f"CRL lint refused {ca.slug} CRL: {bad[0]}", bad)
    if rows:
        revoked, count = encode_entries(rows)
        tbs = splice(empty_tbs, revoked)
    else:
        tbs, count = empty_tbs, 0
    return der.assemble(tbs, alg, signer.sign(tbs, hash_alg)), count


class CRLService:
    """Generates, stores and publishes every CRL of the hierarchy."""

    def __init__(self, config: Config, db: Database, authorities: AuthorityCache, clock: Clock,
                 linter: CertificateLinter | None) -> None:
        self.config = config
        self.db = db
        self.authorities = authorities
        self.clock = clock
        self.linter = linter
        self._lock = threading.Lock()

    @property
    def shards(self) -> int:
        return self.config.policy.crl_shards

    def _lint(self, arl: bool) -> Callable[[bytes], list[str]] | None:
        if self.linter is None:
            return None
        linter = self.linter

        def run(draft: bytes) -> list[str]:
            return [str(f) for f in blocking(linter.lint_crl(draft, arl=arl))]

        return run

    def scopes(self) -> list[tuple[CertificateAuthority, int]]:
        """Every (CA, shard) that has a CRL: each CA's full CRL, and the shards of
        intermediates."""
        with self.db.session() as s:
            cas = list(CARepo(s).all())
        out: list[tuple[CertificateAuthority, int]] = []
        for ca in cas:
            if ca.key_destroyed_at is not None:
                continue  # its last CRLs were signed before the key was destroyed (issue #7)
            out.append((ca, FULL))
            if ca.kind != "root":
                out += [(ca, k) for k in range(self.shards)]
        return out

    def generate(self, ca_row: CertificateAuthority, shard: int = FULL) -> BuiltCRL:
        """Sign a fresh CRL of one scope and store it (unless a newer one won)."""
        if shard != FULL and not 0 <= shard < self.shards:
            raise NotFound(f"no CRL shard {shard} (policy.crl_shards = {self.shards})")
        now = self.clock.now().astimezone(UTC).replace(microsecond=0)
        with self.db.session() as s:
            ca = self.authorities.load(s, ca_row)
            repo = CRLRepo(s)
            if ca_row.kind == "root":
                rows = repo.revoked_cas(ca_row.id)
            else:
                rows = repo.revoked_leaves(ca_row.id, None if shard == FULL else shard, now)
            number = repo.next_number(ca_row.id)
        idp = None if shard == FULL else shard_crl_url(self.config.server.pki_url, ca_row.slug, shard)
        next_update = now + CRL_VALIDITY
        crl_der, count = build_crl(ca, number=number, this_update=now, next_update=next_update,
                                   rows=rows, idp_url=idp, lint=self._lint(ca_row.kind == "root"))
        with self.db.session() as s:
            CRLRepo(s).publish(ca_row.id, shard, number, now, next_update, count, crl_der)
        return BuiltCRL(ca_row.slug, shard, number, now, next_update, count, crl_der)

    def current(self, slug: str, shard: int = FULL) -> tuple[int, dt.datetime, dt.datetime, bytes]:
        """(number, thisUpdate, nextUpdate, DER) of the newest CRL of a scope; signs
        one when none is stored or the stored one was invalidated by a revocation."""
        with self.db.session() as s:
            ca = CARepo(s).by_slug(slug)
            if ca.kind == "root" and shard != FULL:
                raise NotFound(f"{slug} is a root: it publishes one ARL, no shards")
            if shard != FULL and not 0 <= shard < self.shards:
                raise NotFound(f"no CRL shard {shard} for {slug}")
            row = CRLRepo(s).get(ca.id, shard)
            if row is not None and not row.stale and as_utc(row.next_update) > self.clock.now():
                return row.number, as_utc(row.this_update), as_utc(row.next_update), row.der
        built = self.generate(ca, shard)
        return built.number, built.this_update, built.next_update, built.der

    def invalidate(self, issuer_id: int, shard: int | None) -> None:
        shards = [FULL] if shard is None else [FULL, shard]
        with self.db.session() as s:
            CRLRepo(s).mark_stale(issuer_id, shards)

    def refresh_due(self) -> list[BuiltCRL]:
        """Re-sign every CRL that is missing, invalidated, or a day old."""
        with self._lock:
            now = self.clock.now()
            with self.db.session() as s:
                have = {(r.issuer_id, r.shard) for r in CRLRepo(s).all()}
                due = set(CRLRepo(s).due(now - CRL_REFRESH))
            return [self.generate(ca, shard) for ca, shard in self.scopes()
                    if (ca.id, shard) in due or (ca.id, shard) not in have]

    def publish(self, out_dir: Path | None = None) -> list[BuiltCRL]:
        """Sign every CRL now and, with ``out_dir``, write ``{slug}.crl`` and
        ``{slug}/{shard}.crl`` there (atomically: temp file then rename)."""
        built = [self.generate(ca, shard) for ca, shard in self.scopes()]
        if out_dir is not None:
            for b in built:
                path = out_dir / b.filename
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".crl.tmp")
                tmp.write_bytes(b.der)
                tmp.replace(path)
        return built
