"""OCSP responder logic (RFC 6960, RFC 5019 profile, RFC 8954 nonces).

Serving is a lookup. Every issued, unexpired certificate has a response signed
ahead of time for SHA-1 CertIDs (what browsers and most clients send) stored in
``ocsp_responses``; ``refresh_due`` (a background job) re-signs each one three
days after its thisUpdate (BR 4.9.10: at most 10 days valid, updated no later
than 4 days after thisUpdate), and a revocation re-signs it at once
(``on_revoked``). Responses for SHA-256 CertIDs are signed on first request and
then stored and refreshed the same way. Each process keeps an in-memory LRU of
DER keyed by CertID, re-read from the database after ``cache_ttl`` seconds, so a
revocation made by another process is served within seconds.

Nonces (RFC 8954): a request with a nonce of at most 32 octets gets a response
signed on demand that echoes it (``echo_nonce=True``, the default; such
responses are never cached); a longer nonce is refused with malformedRequest
(RFC 8954 §2.1). With ``echo_nonce=False`` the nonce is ignored and the cached
response served, which RFC 8954 §2.1 allows and most public CAs do.

Status: good / revoked (time and reason; reason omitted for unspecified, as in
the CRL, BR 7.2.2) for our certificates, unknown for a serial we never issued
(BR 4.9.10: never "good" for an unused serial), and the error statuses
malformedRequest (cannot be parsed, several CertIDs, unknown hash algorithm)
and unauthorized (the issuer is not one of ours).

Several CertIDs in one request: RFC 6960 §4.1.1 allows a requestList of many,
answered by as many SingleResponses (§4.2.1), but RFC 5019 §2.1.1 (and its
update, draft-ietf-lamps-rfc5019bis) says clients MUST send only one, and
browsers and openssl's default do. Boulder parses with Go's x/crypto/ocsp
``ParseRequest``, which reads the first CertID and ignores the rest; answering
the first only would send a response that does not cover what was asked, so we
refuse the request with malformedRequest instead. Supporting them would mean
signing a multi-response on demand (no pre-signed response fits); not worth it
without a client that needs it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from kakuin.ca.der import read_tlv, tlv
from kakuin.ca.issuer import throwaway_key
from kakuin.ca.lint import CertificateLinter, blocking
from kakuin.clock import UTC, Clock, as_utc
from kakuin.errors import LintError, NotFound
from kakuin.status.repos import OCSPRepo
from kakuin.status.responder import LoadedResponder, ResponderService
from kakuin.store.db import Database
from kakuin.store.models import Certificate
from kakuin.store.repos import CARepo, CertificateRepo

# OCSPResponse with only a responseStatus (RFC 6960 §4.2.1)
MALFORMED_REQUEST = bytes.fromhex("30030a0101")
INTERNAL_ERROR = bytes.fromhex("30030a0102")
TRY_LATER = bytes.fromhex("30030a0103")
UNAUTHORIZED = bytes.fromhex("30030a0106")

RESPONSE_VALIDITY = dt.timedelta(days=7)  # BR 4.9.10: ≥ 8 hours, ≤ 10 days
REFRESH_AFTER = dt.timedelta(days=3)  # BR 4.9.10: re-signed ≤ 4 days after thisUpdate
MAX_NONCE = 32  # RFC 8954 §2.1
# Parsed nonce-less requests kept by their exact bytes: clients ask the same
# CertID in the same bytes again and again (a SHA-1 request is 75-85 bytes), so
# the hot path skips the DER parser. Bounded in entries and size: about 430
# bytes an entry for SHA-1 (measured with tracemalloc), at most ~20 MB a process.
PARSED_MAX = 32_768
PARSED_MAX_BYTES = 256

HASHES: dict[str, type[hashes.HashAlgorithm]] = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}
_REASONS = {
    1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}


@dataclass(frozen=True, slots=True)
class Status:
    state: str  # good | revoked | unknown
    revoked_at: dt.datetime | None = None
    reason: int | None = None


GOOD = Status("good")
UNKNOWN = Status("unknown")


@dataclass(frozen=True, slots=True)
class Answer:
    """A DER OCSPResponse and what HTTP needs to cache it."""

    der: bytes
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None
    cacheable: bool = False
    etag: str = ""


@dataclass(slots=True)
class _Cached:
    answer: Answer
    status: Status
    issuer_id: int
    serial: int
    alg: str
    until: float  # monotonic time after which the database is asked again


def _etag(der: bytes) -> str:
    return '"' + hashlib.sha256(der).hexdigest()[:32] + '"'


def status_of(cert: Certificate) -> Status:
    if cert.revoked_at is not None:
        return Status("revoked", as_utc(cert.revoked_at), cert.revocation_reason)
    return GOOD


def resign(response: bytes, responder: LoadedResponder) -> bytes:
    """Replace the signature of a BasicOCSPResponse with one by the responder's
    Signer (which may be an HSM key). Same path as certificates (``ca.der``)."""
    _, s0, _ = read_tlv(response, 0)
    _, _, e1 = read_tlv(response, s0)  # responseStatus
    status = response[s0:e1]
    _, s2, _ = read_tlv(response, e1)  # [0] EXPLICIT
    _, s3, _ = read_tlv(response, s2)  # ResponseBytes
    _, _, e4 = read_tlv(response, s3)  # responseType OID
    oid = response[s3:e4]
    _, s5, e5 = read_tlv(response, e4)  # OCTET STRING
    basic = response[s5:e5]
    _, b0, b1 = read_tlv(basic, 0)
    _, _, t1 = read_tlv(basic, b0)
    _, _, a1 = read_tlv(basic, t1)
    _, _, g1 = read_tlv(basic, a1)
    tbs, alg, rest = basic[b0:t1], basic[t1:a1], basic[g1:b1]
    signer = responder.signer
    sig = signer.sign(tbs, signer.key_type.signature_hash)
    new_basic = tlv(0x30, tbs + alg + tlv(0x03, b"\x00" + sig) + rest)
    return tlv(0x30, status + tlv(0xA0, tlv(0x30, oid + tlv(0x04, new_basic))))


class OCSPService:
    def __init__(
        self,
        db: Database,
        responders: ResponderService,
        clock: Clock,
        *,
        linter: CertificateLinter | None = None,
        echo_nonce: bool = True,
        cache_size: int = 100_000,
        cache_ttl: float = 10.0,
    ) -> None:
        self.db = db
        self.responders = responders
        self.clock = clock
        self.linter = linter
        self.echo_nonce = echo_nonce
        self.cache_size = cache_size
        self.cache_ttl = cache_ttl
        self._cache: dict[tuple[str, bytes, bytes, int], _Cached] = {}
        self._lock = threading.Lock()
        self._issuers: dict[tuple[str, bytes, bytes], int] = {}
        self._issuer_hashes: dict[tuple[int, str], tuple[bytes, bytes]] = {}
        self._issuers_loaded = 0.0
        self._linted: set[tuple[int, str, bool]] = set()
        self._parsed: dict[bytes, tuple[tuple[str, bytes, bytes, int], None]] = {}

    # -- issuers -----------------------------------------------------------
    def _load_issuers(self) -> None:
        issuers: dict[tuple[str, bytes, bytes], int] = {}
        own: dict[tuple[int, str], tuple[bytes, bytes]] = {}
        with self.db.session() as s:
            rows = [(ca.id, ca.der) for ca in CARepo(s).all() if ca.kind != "root"]
        for ca_id, der in rows:
            cert = x509.load_der_x509_certificate(der)
            for name, alg in HASHES.items():
                # RFC 6960 §4.1.1: issuerNameHash over the issuer's DN; the key
                # hash (over the BIT STRING value) comes from the builder.
                req = ocsp.OCSPRequestBuilder().add_certificate(cert, cert, alg()).build()
                key = (hashlib.new(name, cert.subject.public_bytes()).digest(), req.issuer_key_hash)
                issuers[(name, *key)] = ca_id
                own[(ca_id, name)] = key
        self._issuers, self._issuer_hashes = issuers, own
        self._issuers_loaded = time.monotonic()

    def _issuer(self, alg: str, name_hash: bytes, key_hash: bytes) -> int | None:
        found = self._issuers.get((alg, name_hash, key_hash))
        if found is None and time.monotonic() - self._issuers_loaded > 60:
            self._load_issuers()  # a CA created since (rotation), at most once a minute
            found = self._issuers.get((alg, name_hash, key_hash))
        return found

    # -- signing -----------------------------------------------------------
    def sign(self, issuer_id: int, serial: int, alg: str, status: Status, nonce: bytes | None = None) -> Answer:
        """Sign one response now."""
        if not self._issuer_hashes:
            self._load_issuers()
        responder = self.responders.current(issuer_id)
        name_hash, key_hash = self._issuer_hashes[(issuer_id, alg)]
        now = self.clock.now().astimezone(UTC).replace(microsecond=0)
        next_update = min(now + RESPONSE_VALIDITY, responder.not_after)
        cert_status = {
            "good": ocsp.OCSPCertStatus.GOOD,
            "revoked": ocsp.OCSPCertStatus.REVOKED,
            "unknown": ocsp.OCSPCertStatus.UNKNOWN,
        }[status.state]
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=name_hash,
                issuer_key_hash=key_hash,
                serial_number=serial,
                algorithm=HASHES[alg](),
                cert_status=cert_status,
                this_update=now,
                next_update=next_update,
                revocation_time=status.revoked_at.replace(microsecond=0) if status.revoked_at else None,
                # BR 7.2.2 / 7.3: as in the CRL, no reason for unspecified
                revocation_reason=_REASONS.get(status.reason or 0),
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, responder.certificate)
            .certificates([responder.certificate])
        )
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        signer = responder.signer
        hash_alg = signer.key_type.signature_hash
        if signer.private_key is not None:
            der = builder.sign(signer.private_key, hash_alg).public_bytes(Encoding.DER)  # type: ignore[arg-type]
        else:
            draft = builder.sign(throwaway_key(signer.key_type), hash_alg).public_bytes(Encoding.DER)  # type: ignore[arg-type]
            der = resign(draft, responder)
        self._lint_once(issuer_id, status.state, nonce is not None, der)
        return Answer(der, now, next_update, nonce is None, _etag(der))

    def _lint_once(self, issuer_id: int, state: str, nonce: bool, der: bytes) -> None:
        """pkilint the first response of each kind per issuer and process (3 ms each)."""
        key = (issuer_id, state, nonce)
        if self.linter is None or key in self._linted:
            return
        bad = blocking(self.linter.lint_ocsp_response(der))
        if bad:
            raise LintError(f"OCSP response lint: {bad[0]}", [str(f) for f in bad])
        self._linted.add(key)

    def presign(self, cert: Certificate, alg: str = "sha1") -> Answer:
        """Sign and store the response for one certificate."""
        return self.presign_many([(cert, alg)])[0]

    def presign_many(self, items: list[tuple[Certificate, str]]) -> list[Answer]:
        """Sign the responses of many (certificate, CertID hash) pairs, then store
        them in one transaction (one upsert statement)."""
        answers, rows = [], []
        for cert, alg in items:
            answer = self.sign(cert.issuer_id, int(cert.serial, 16), alg, status_of(cert))
            assert answer.this_update and answer.next_update
            answers.append(answer)
            rows.append({
                "serial": cert.serial,
                "hash_alg": alg,
                "issuer_id": cert.issuer_id,
                "status": "revoked" if cert.revoked_at else "good",
                "this_update": answer.this_update,
                "next_update": answer.next_update,
                "der": answer.der,
            })
        with self.db.session() as s:
            OCSPRepo(s).store_many(rows)
        return answers

    def refresh_due(self, limit: int = 1000, batch: int = 250) -> int:
        """Pre-sign missing responses and re-sign those due; returns how many.
        Stored ``batch`` at a time: a pass over newly issued certificates costs a
        signature each and one transaction per batch, not one per certificate."""
        now = self.clock.now()
        with self.db.session() as s:
            certs = list(OCSPRepo(s).certificates_due(now, now - REFRESH_AFTER, limit))
            others = [(r.serial, r.hash_alg) for r in OCSPRepo(s).other_hashes_due(now - REFRESH_AFTER, limit)]
            by_serial = {c.serial: c for c in CertificateRepo(s).by_serials([sn for sn, _ in others])}
            s.expunge_all()
        items = [(c, "sha1") for c in certs] + [(by_serial[sn], alg) for sn, alg in others if sn in by_serial]
        for i in range(0, len(items), batch):
            self.presign_many(items[i:i + batch])
        return len(items)

    def on_revoked(self, serials: list[str]) -> None:
        """Re-sign at once the stored responses of newly revoked certificates."""
        for serial in serials:
            with self.db.session() as s:
                cert = CertificateRepo(s).by_serial(serial)
                algs = {"sha1"} | {a for a in HASHES if OCSPRepo(s).response(serial, a) is not None}
            for alg in sorted(algs):
                self.presign(cert, alg)
            n = int(serial, 16)
            with self._lock:
                for k in [k for k in self._cache if k[3] == n]:
                    self._cache.pop(k, None)

    # -- serving -----------------------------------------------------------
    def parse(self, request_der: bytes) -> tuple[tuple[str, bytes, bytes, int], bytes | None] | Answer:
        """(CertID key, nonce) of a request, or the error Answer to send."""
        hit = self._parsed.get(request_der)
        if hit is not None:
            return hit
        parsed = self._parse(request_der)
        if not isinstance(parsed, Answer) and parsed[1] is None and len(request_der) <= PARSED_MAX_BYTES:
            if len(self._parsed) >= PARSED_MAX:
                self._parsed.clear()
            self._parsed[request_der] = (parsed[0], None)
        return parsed

    def _parse(self, request_der: bytes) -> tuple[tuple[str, bytes, bytes, int], bytes | None] | Answer:
        try:
            req = ocsp.load_der_ocsp_request(request_der)
            alg = req.hash_algorithm.name
            key = (alg, req.issuer_name_hash, req.issuer_key_hash, req.serial_number)
            nonce: bytes | None = None
            for ext in req.extensions:
                if isinstance(ext.value, x509.OCSPNonce):
                    nonce = ext.value.nonce
        except (ValueError, UnsupportedAlgorithm, TypeError, NotImplementedError):
            # NotImplementedError: cryptography refuses several CertIDs that way
            return Answer(MALFORMED_REQUEST)
        if alg not in HASHES:
            return Answer(MALFORMED_REQUEST)
        if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE:
            return Answer(MALFORMED_REQUEST)  # RFC 8954 §2.1
        return key, (nonce if self.echo_nonce else None)

    def cached(self, key: tuple[str, bytes, bytes, int]) -> Answer | None:
        """The fast path: a fresh in-memory answer for a CertID, or None."""
        hit = self._cache.get(key)
        if hit is not None and hit.until > time.monotonic():
            return hit.answer
        return None

    def respond(self, request_der: bytes) -> Answer:
        """The full path (may touch the database and sign): call off the event loop."""
        parsed = self.parse(request_der)
        if isinstance(parsed, Answer):
            return parsed
        key, nonce = parsed
        if not self._issuers:
            self._load_issuers()
        alg, name_hash, key_hash, serial = key
        if nonce is None:
            hit = self.cached(key)
            if hit is not None:
                return hit
        issuer_id = self._issuer(alg, name_hash, key_hash)
        if issuer_id is None:
            return Answer(UNAUTHORIZED)
        entry = self._lookup(issuer_id, serial, alg)
        if nonce is not None:
            return self.sign(issuer_id, serial, alg, entry.status, nonce)
        with self._lock:
            if len(self._cache) >= self.cache_size:
                for old in list(self._cache)[: self.cache_size // 10 or 1]:
                    self._cache.pop(old, None)
            self._cache[key] = entry
        return entry.answer

    def _lookup(self, issuer_id: int, serial: int, alg: str) -> _Cached:
        now = self.clock.now()
        until = time.monotonic() + self.cache_ttl
        serial_hex = format(serial, "x")
        with self.db.session() as s:
            row = OCSPRepo(s).response(serial_hex, alg)
            if row is not None and row.issuer_id == issuer_id and as_utc(row.next_update) > now:
                status = Status(row.status)
                if row.status == "revoked":
                    status = status_of(CertificateRepo(s).by_serial(serial_hex))
                answer = Answer(row.der, as_utc(row.this_update), as_utc(row.next_update), True, _etag(row.der))
                return _Cached(answer, status, issuer_id, serial, alg, until)
            try:
                cert = CertificateRepo(s).by_serial(serial_hex)
            except NotFound:
                cert = None
        if cert is None or cert.issuer_id != issuer_id or cert.state != "issued":
            return _Cached(self.sign(issuer_id, serial, alg, UNKNOWN), UNKNOWN, issuer_id, serial, alg, until)
        return _Cached(self.presign(cert, alg), status_of(cert), issuer_id, serial, alg, until)
