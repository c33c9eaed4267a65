"""ACME tables (RFC 8555 objects, EAB credentials, nonces, ARI overrides).

Everything that must be unique across processes is unique in the database:
nonces (a row per used nonce), the account key (thumbprint), the EAB
credential an account is bound to, and an order's claim on finalization
(a conditional UPDATE from ``ready`` to ``processing``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from kakuin.store.models import TS, Base

ID = BigInteger().with_variant(Integer, "sqlite")


class EABCredential(Base):
    """An External Account Binding credential (RFC 8555 §7.3.4) handed out by a
    registration officer. The HMAC key is stored encrypted (AES-GCM)."""

    __tablename__ = "eab_credentials"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    hmac_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    # Space-separated; empty: every approved domain of the institution.
    domains: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    expires_at: Mapped[dt.datetime | None] = mapped_column(TS)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(TS)


class ACMEAccount(Base):
    __tablename__ = "acme_accounts"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    # RFC 7638 thumbprint of the account key: one account per key.
    thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    jwk: Mapped[dict] = mapped_column(JSON)
    contact: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="valid")  # valid|deactivated|revoked
    # RFC 8555 §7.3.4: a credential binds at most one account (unique; NULLs allowed).
    eab_credential_id: Mapped[int | None] = mapped_column(
        ForeignKey("eab_credentials.id"), unique=True
    )
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"))
    tos_agreed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(TS)


class ACMEOrder(Base):
    __tablename__ = "acme_orders"
    __table_args__ = (
        Index("ix_acme_orders_account", "account_id", "id"),
        # Rate limits (kakuin.acme.limits): new orders per account in a window,
        # certificates per exact set of names in a window.
        Index("ix_acme_orders_account_created", "account_id", "created_at"),
        Index("ix_acme_orders_names", "names_hash", "created_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("acme_accounts.id"))
    # pending/ready are derived from the authorizations; stored: pending,
    # processing, valid, invalid.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    identifiers: Mapped[list] = mapped_column(JSON)  # [{"type": "dns", "value": …}]
    authz_ids: Mapped[list] = mapped_column(JSON)
    not_before: Mapped[dt.datetime | None] = mapped_column(TS)
    not_after: Mapped[dt.datetime | None] = mapped_column(TS)
    expires: Mapped[dt.datetime] = mapped_column(TS)
    error: Mapped[dict | None] = mapped_column(JSON)
    certificate_serial: Mapped[str | None] = mapped_column(String(64), index=True)
    # RFC 9773 §5: the certificate this order replaces (its ARI CertID).
    replaces: Mapped[str | None] = mapped_column(String(256), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(TS)
    # SHA-256 (hex) of the sorted identifiers: the "exact set of names" of the
    # duplicate-certificate limit. NULL for orders made before 0009.
    names_hash: Mapped[str | None] = mapped_column(String(64))


class ACMEAuthorization(Base):
    __tablename__ = "acme_authorizations"
    __table_args__ = (
        Index("ix_acme_authz_reuse", "account_id", "identifier", "status"),
        # Rate limits: failed validations per account and name in a window
        # (validated_at is when the validation was decided, either way), and
        # pending authorizations per account that have not expired.
        Index("ix_acme_authz_failed", "account_id", "identifier", "status", "validated_at"),
        Index("ix_acme_authz_pending", "account_id", "status", "expires"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("acme_accounts.id"))
    identifier: Mapped[str] = mapped_column(String(253))  # without "*."
    wildcard: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    expires: Mapped[dt.datetime] = mapped_column(TS)
    validated_at: Mapped[dt.datetime | None] = mapped_column(TS)
    created_at: Mapped[dt.datetime] = mapped_column(TS)


class ACMEChallenge(Base):
    __tablename__ = "acme_challenges"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    authz_id: Mapped[int] = mapped_column(ForeignKey("acme_authorizations.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    validated_at: Mapped[dt.datetime | None] = mapped_column(TS)
    error: Mapped[dict | None] = mapped_column(JSON)
    record: Mapped[dict | None] = mapped_column(JSON)  # the VA's ValidationRecord, for audit


class ACMENonce(Base):
    """RFC 8555 §6.5: a nonce is valid once. Nonces are minted without a row
    (kakuin.acme.nonces); a row is the record of a used one, inserted on
    redemption, and the INSERT's row count is the proof, so two processes
    cannot both accept one. Rows older than the nonce lifetime are purged."""

    __tablename__ = "acme_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(TS, index=True)


class ARIOverride(Base):
    """RFC 9773: an operator's "renew now" for one certificate."""

    __tablename__ = "ari_overrides"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)
    explanation_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(TS)


# -- read-only views ------------------------------------------------------------
# What the request path reads (``repos.ACMELedger``, SQLAlchemy Core): frozen
# values with the tables' column names, so rendering works on either kind.


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    thumbprint: str
    jwk: dict[str, Any]
    contact: list[str]
    status: str
    eab_credential_id: int | None
    institution_id: int | None
    tos_agreed: bool
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    account_id: int
    status: str
    identifiers: list[dict[str, str]]
    authz_ids: list[int]
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    expires: dt.datetime
    error: dict[str, Any] | None
    certificate_serial: str | None
    replaces: str | None
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Authorization:
    id: int
    account_id: int
    identifier: str
    wildcard: bool
    status: str
    expires: dt.datetime
    validated_at: dt.datetime | None
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Challenge:
    id: int
    authz_id: int
    type: str
    token: str
    status: str
    validated_at: dt.datetime | None
    error: dict[str, Any] | None
    record: dict[str, Any] | None


__all__ = [
    "ACMEAccount",
    "ACMEAuthorization",
    "ACMEChallenge",
    "ACMENonce",
    "ACMEOrder",
    "ARIOverride",
    "Account",
    "Authorization",
    "Challenge",
    "EABCredential",
    "Order",
]
