"""Configuration sections of the registration authority and of mail (``[ra]``,
``[mail]`` in kakuin.toml). Parsed by ``kakuin.config``; kept here so the RA
owns its settings. Secrets are never in the file: the SMTP password is read
from the environment variable named by ``mail.password_env``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class MailConfig(_Model):
    """The SMTP relay every notice goes through (the outbox flushes to it)."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(default="kakuin@localhost", alias="from")
    starttls: bool = False
    username: str = ""
    password_env: str = "KAKUIN_SMTP_PASSWORD"
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    # One mail may not exceed this (UPKI: digests are split above 10 MB).
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=64 * 1024)


class RAConfig(_Model):
    # How long a retrieval URL works (single use) before the officer must renew it.
    retrieval_days: int = Field(default=14, ge=1, le=90)
    # Check CAA for every DNS name of a server TSV row before accepting it (needs DNS).
    check_caa: bool = False
    # Days before expiry at which the expiry digest names a certificate.
    expiry_notice_days: tuple[int, ...] = (60, 30, 7)
    # Remind the responsible person this many days before the yearly confirmation lapses.
    confirmation_reminder_days: int = Field(default=30, ge=1, le=180)
    # RSA size of the key pairs kakuin generates for client and S/MIME rows.
    generated_rsa_bits: int = Field(default=2048, ge=2048, le=4096)
