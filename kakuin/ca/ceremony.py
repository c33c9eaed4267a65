"""The key ceremony log: what was done to CA keys and certificates, by whom, when.

Every entry (root created, generation rotated, cross-certificate, revocation
scheduled or applied, key destroyed, incident executed) is appended to
``key_ceremony_log``, hash-chained and signed.

Why a signature by a dedicated log key, and not an HMAC chain or the root key:

- a bare hash chain proves order but anyone with write access to the database
  can rewrite the whole chain;
- an HMAC chain needs the verifier to hold the secret, so every auditor who can
  verify could also forge;
- signing with a root key would bring the offline root online for routine log
  writes, and the log must outlive any one root (roots are retired too).

So each entry carries ``entry_hash = SHA-256(prev_hash || canonical JSON)`` and
an ECDSA P-256 signature over that hash by a key labelled ``ceremony-log`` in
the same key backend as the CA keys (an HSM in production). The first entry
(``log-genesis``) publishes the public key; ``verify`` checks every link and
every signature and prints the key's fingerprint so an auditor can pin it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from kakuin.ca.keystore import KeyBackend, KeyRef, KeyType
from kakuin.clock import Clock, as_utc
from kakuin.errors import KakuinError
from kakuin.store.db import Database
from kakuin.store.models import TS, Base

LOG_KEY_LABEL = "ceremony-log"
GENESIS = "0" * 64


class KeyCeremonyEntry(Base):
    __tablename__ = "key_ceremony_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(TS)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    ca_slug: Mapped[str | None] = mapped_column(String(64), index=True)
    details: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)
    signature: Mapped[str] = mapped_column(Text)  # hex DER ECDSA-Sig-Value over entry_hash


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    at: dt.datetime
    actor: str
    action: str
    ca_slug: str | None
    details: dict[str, object]
    entry_hash: str
    ok: bool  # link and signature verified


@dataclass(frozen=True, slots=True)
class LogVerification:
    entries: tuple[LogEntry, ...]
    key_fingerprint: str  # SHA-256 of the log key's SubjectPublicKeyInfo
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _canonical(seq: int, at: dt.datetime, actor: str, action: str, ca_slug: str | None, details: str) -> bytes:
    body = {
        "seq": seq,
        "at": as_utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": actor,
        "action": action,
        "ca": ca_slug,
        "details": json.loads(details),
    }
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _hash(prev: str, canonical: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev) + canonical).hexdigest()


class CeremonyLog:
    def __init__(self, db: Database, keys: KeyBackend, clock: Clock) -> None:
        self.db = db
        self.keys = keys
        self.clock = clock
        self._ref = KeyRef(keys.name, LOG_KEY_LABEL, KeyType.P256)

    def _signer_ref(self) -> KeyRef:
        if not self.keys.exists(self._ref):
            return self.keys.generate(LOG_KEY_LABEL, KeyType.P256)
        return self._ref

    def append(
        self,
        action: str,
        *,
        actor: str,
        ca_slug: str | None = None,
        details: dict[str, object] | None = None,
        session: Session | None = None,
    ) -> str:
        """Append one signed entry; returns its hash. With ``session`` the entry is
        written in the caller's transaction (so the act and its record commit together)."""
        if session is not None:
            return self._append(session, action, actor, ca_slug, details or {})
        with self.db.session() as s:
            return self._append(s, action, actor, ca_slug, details or {})

    def _append(self, s: Session, action: str, actor: str, ca_slug: str | None, details: dict[str, object]) -> str:
        last = s.scalar(select(KeyCeremonyEntry).order_by(KeyCeremonyEntry.seq.desc()).limit(1))
        if last is None:
            self._write(s, 1, GENESIS, "log-genesis", "kakuin", None, {"public_key": self._public_pem()})
            last = s.scalar(select(KeyCeremonyEntry).order_by(KeyCeremonyEntry.seq.desc()).limit(1))
            assert last is not None
        return self._write(s, last.seq + 1, last.entry_hash, action, actor, ca_slug, details)

    def _public_pem(self) -> str:
        signer = self.keys.signer(self._signer_ref())
        return (
            signer.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def _write(
        self, s: Session, seq: int, prev: str, action: str, actor: str, ca_slug: str | None, details: dict[str, object]
    ) -> str:
        at = self.clock.now()
        text = json.dumps(details, sort_keys=True, ensure_ascii=False, default=str)
        h = _hash(prev, _canonical(seq, at, actor, action, ca_slug, text))
        signer = self.keys.signer(self._signer_ref())
        # ECDSA-with-SHA256 over the 32 bytes of the entry hash.
        sig = signer.sign(bytes.fromhex(h), hashes.SHA256())
        s.add(
            KeyCeremonyEntry(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                ca_slug=ca_slug,
                details=text,
                prev_hash=prev,
                entry_hash=h,
                signature=sig.hex(),
            )
        )
        s.flush()
        return h

    def verify(self) -> LogVerification:
        """Check every link of the chain and every signature against the key
        published in the genesis entry."""
        with self.db.session() as s:
            rows = list(s.scalars(select(KeyCeremonyEntry).order_by(KeyCeremonyEntry.seq)))
        return verify_entries(rows)


def verify_entries(rows: Sequence[KeyCeremonyEntry]) -> LogVerification:
    problems: list[str] = []
    out: list[LogEntry] = []
    if not rows:
        return LogVerification((), "", ())
    try:
        pem = json.loads(rows[0].details)["public_key"]
        key = serialization.load_pem_public_key(pem.encode())
        if not isinstance(key, ec.EllipticCurvePublicKey) or rows[0].action != "log-genesis":
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return LogVerification((), "", ("the first entry is not a log genesis with a public key",))
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    fingerprint = hashlib.sha256(spki).hexdigest()
    prev = GENESIS
    for i, r in enumerate(rows, start=1):
        ok = True
        if r.seq != i:
            problems.append(f"entry {r.seq}: expected sequence number {i} (an entry is missing)")
            ok = False
        if r.prev_hash != prev:
            problems.append(f"entry {r.seq}: does not link to the entry before it")
            ok = False
        h = _hash(r.prev_hash, _canonical(r.seq, r.at, r.actor, r.action, r.ca_slug, r.details))
        if h != r.entry_hash:
            problems.append(f"entry {r.seq}: content does not match its hash (altered)")
            ok = False
        try:
            key.verify(bytes.fromhex(r.signature), bytes.fromhex(r.entry_hash), ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            problems.append(f"entry {r.seq}: bad signature")
            ok = False
        out.append(LogEntry(r.seq, as_utc(r.at), r.actor, r.action, r.ca_slug, json.loads(r.details), r.entry_hash, ok))
        prev = r.entry_hash
    return LogVerification(tuple(out), fingerprint, tuple(problems))


class CeremonyError(KakuinError):
    pass
