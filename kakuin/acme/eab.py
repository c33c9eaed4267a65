"""External Account Binding credentials (RFC 8555 §7.3.4), issued by officers.

A credential is a key identifier plus an HMAC key. The HMAC key is shown once,
when it is made; at rest it is AES-256-GCM encrypted under a key derived (HKDF)
from a secret that is not in the database: ``$KAKUIN_EAB_SECRET`` (base64) when
set — the same value for every process of a multi-host service — else
``secrets/eab-secret`` in the data directory, made on first use with mode 0600.
The key identifier is the associated data, so a ciphertext cannot be moved to
another credential. HMAC keys are never logged.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session

from kakuin.acme.jws import b64e
from kakuin.acme.models import EABCredential
from kakuin.acme.repos import EABRepo
from kakuin.clock import Clock, as_utc
from kakuin.errors import KakuinError, NotFound, Unauthorized
from kakuin.policy.names import check_dns_name, check_within
from kakuin.secretfile import installation_secret
from kakuin.store.db import Database
from kakuin.store.repos import InstitutionRepo

SECRET_ENV = "KAKUIN_EAB_SECRET"
HMAC_KEY_BYTES = 32  # HS256: a key as long as the hash output (RFC 2104 §3)


class EABKeyring:
    """Encrypts and decrypts HMAC keys at rest."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise KakuinError("the EAB secret must be at least 32 bytes")
        key = HKDF(hashes.SHA256(), 32, salt=None, info=b"kakuin eab hmac-key v1").derive(secret)
        self._aead = AESGCM(key)
        # The ACME nonce MAC key (kakuin.acme.nonces): same secret, its own label.
        self.nonce_key = HKDF(hashes.SHA256(), 32, salt=None, info=b"kakuin acme nonce v1").derive(secret)

    @classmethod
    def for_data_dir(cls, data_dir: Path, env: dict[str, str] | None = None) -> EABKeyring:
        env = dict(os.environ if env is None else env)
        if env.get(SECRET_ENV):
            return cls(base64.b64decode(env[SECRET_ENV]))
        return cls(installation_secret(data_dir / "secrets" / "eab-secret"))

    def seal(self, kid: str, hmac_key: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, hmac_key, kid.encode())

    def open(self, kid: str, blob: bytes) -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], kid.encode())


@dataclass(frozen=True, slots=True)
class NewCredential:
    """Shown once: the HMAC key is not stored in the clear and cannot be shown again."""

    kid: str
    hmac_key: str  # base64url without padding, as certbot and lego take it
    institution: str
    domains: tuple[str, ...]
    expires_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class CredentialInfo:
    kid: str
    institution: str
    domains: tuple[str, ...]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    account_id: int | None

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        return "bound" if self.account_id else "unused"


class EABService:
    def __init__(self, db: Database, clock: Clock, keyring: EABKeyring) -> None:
        self.db = db
        self.clock = clock
        self.keyring = keyring

    def new(
        self,
        institution: str,
        *,
        domains: tuple[str, ...] = (),
        expires_at: dt.datetime | None = None,
        created_by: str = "cli",
    ) -> NewCredential:
        now = self.clock.now()
        if expires_at is not None and as_utc(expires_at) <= now:
            raise KakuinError("the expiry of an EAB credential must be in the future")
        domains = tuple(d.lower().rstrip(".") for d in domains)
        with self.db.session() as s:
            inst = InstitutionRepo(s).by_name(institution)
            registered = [d.domain for d in inst.domains if d.approved]
            for d in domains:
                if d.startswith("*."):  # check_within matches names, not patterns
                    raise KakuinError(f"--domains {d!r}: give the domain ({d[2:]}); its wildcard "
                                      "and every name below it are included")
                check_dns_name(d)
                check_within(d, registered)
            kid = "kid-" + secrets.token_urlsafe(18)
            key = secrets.token_bytes(HMAC_KEY_BYTES)
            EABRepo(s).add(
                EABCredential(
                    kid=kid,
                    hmac_encrypted=self.keyring.seal(kid, key),
                    institution_id=inst.id,
                    domains=" ".join(domains),
                    created_at=now,
                    created_by=created_by,
                    expires_at=expires_at,
                )
            )
            name = inst.name_en
        return NewCredential(kid, b64e(key), name, domains, expires_at)

    def revoke(self, kid: str, *, revoke_account: bool = False) -> int | None:
        """The credential binds no new account; returns the account it bound, if
        any. That account keeps working (as at step-ca and AWS) unless
        ``revoke_account``: then its status becomes "revoked" (RFC 8555 §7.1.6,
        server-initiated), every later request of it is refused (401), and its
        pending authorizations are deactivated. Issued certificates stay valid:
        revoking them is a decision of its own (kakuin revoke)."""
        from sqlalchemy import update

        from kakuin.acme.models import ACMEAccount, ACMEAuthorization

        with self.db.session() as s:
            repo = EABRepo(s)
            cred = repo.by_kid(kid)
            if cred is None:
                raise NotFound(f"no EAB credential {kid!r}")
            if cred.revoked_at is None:
                cred.revoked_at = self.clock.now()
            account_id = repo.bound_account(cred.id)
            if revoke_account and account_id is not None:
                s.execute(update(ACMEAccount).where(ACMEAccount.id == account_id).values(status="revoked"))
                s.execute(update(ACMEAuthorization)
                          .where(ACMEAuthorization.account_id == account_id, ACMEAuthorization.status == "pending")
                          .values(status="deactivated"))
            return account_id

    def list(self) -> list[CredentialInfo]:
        with self.db.session() as s:
            repo, insts = EABRepo(s), InstitutionRepo(s)
            return [
                CredentialInfo(
                    c.kid,
                    insts.by_id(c.institution_id).name_en,
                    tuple(c.domains.split()),
                    as_utc(c.created_at),
                    as_utc(c.expires_at) if c.expires_at else None,
                    as_utc(c.revoked_at) if c.revoked_at else None,
                    repo.bound_account(c.id),
                )
                for c in repo.all()
            ]

    def usable(self, s: Session, kid: str) -> tuple[EABCredential, bytes]:
        """The credential and its HMAC key, if it may bind a new account now.

        Unknown, revoked, expired or already bound credentials are refused as
        "unauthorized" without saying which (nothing to learn by probing)."""
        cred = EABRepo(s).by_kid(kid)
        now = self.clock.now()
        if (
            cred is None
            or cred.revoked_at is not None
            or (cred.expires_at is not None and as_utc(cred.expires_at) <= now)
            or EABRepo(s).bound_account(cred.id) is not None
        ):
            raise Unauthorized(
                "the external account binding key identifier is unknown, "
                "revoked, expired or already used"
            )
        return cred, self.keyring.open(cred.kid, cred.hmac_encrypted)
