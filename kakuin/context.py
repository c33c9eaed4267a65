"""Composition root: builds the services of one kakuin process from a data dir.

Everything is passed in from here (config, clock, key backend, database); no
module reaches for a global.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from kakuin.ca.authority import AuthorityCache
from kakuin.ca.hierarchy import HierarchyBuilder
from kakuin.ca.issuer import IssuanceService
from kakuin.ca.keystore import FileKeyBackend, KeyBackend, load_passphrase
from kakuin.ca.lint import CertificateLinter
from kakuin.clock import Clock, SystemClock
from kakuin.config import CONFIG_NAME, Config, default_config_text, load_config
from kakuin.errors import ConfigError
from kakuin.policy.profiles import Profile, default_profiles
from kakuin.ra.revocation import RevocationService
from kakuin.store.db import Database

if TYPE_CHECKING:
    from kakuin.acme import ACME
    from kakuin.status.crl import CRLService
    from kakuin.status.ocsp import OCSPService
    from kakuin.va import ValidationAuthority


def default_data_dir() -> Path:
    return Path(os.environ.get("KAKUIN_DATA_DIR", "kakuin-data")).resolve()


@dataclass
class Context:
    config: Config
    clock: Clock = field(default_factory=SystemClock)
    keys_override: KeyBackend | None = None

    @classmethod
    def open(cls, data_dir: Path, clock: Clock | None = None, migrate: bool = True) -> Context:
        if not (data_dir / CONFIG_NAME).exists():
            raise ConfigError(f"{data_dir} is not a kakuin data directory (run: kakuin init --data-dir {data_dir})")
        ctx = cls(load_config(data_dir), clock or SystemClock())
        if migrate:
            ctx.db.migrate()
        return ctx

    @cached_property
    def db(self) -> Database:
        return Database(self.config.database_url)

    @cached_property
    def keys(self) -> KeyBackend:
        if self.keys_override is not None:
            return self.keys_override
        k = self.config.keys
        if k.backend == "pkcs11":
            from kakuin.ca.pkcs11_backend import Pkcs11KeyBackend

            pin = os.environ.get(k.pkcs11_pin_env)
            if not pin:
                raise ConfigError(f"keys.backend = 'pkcs11': set ${k.pkcs11_pin_env} to the token PIN")
            return Pkcs11KeyBackend(str(k.pkcs11_module), str(k.pkcs11_token), pin)
        passphrase = load_passphrase(k.passphrase_env, self.config.passphrase_path)
        return FileKeyBackend(self.config.keys_dir, passphrase)

    @cached_property
    def linter(self) -> CertificateLinter:
        return CertificateLinter()

    @cached_property
    def profiles(self) -> dict[str, Profile]:
        p = self.config.policy
        curves = frozenset({"P-256": "secp256r1", "P-384": "secp384r1"}[c] for c in p.tls_ecdsa_curves)
        return default_profiles(cps_oid=p.cps_oid, client_months=p.client_validity_months, tls_ecdsa_curves=curves)

    @cached_property
    def authorities(self) -> AuthorityCache:
        return AuthorityCache(self.keys)

    @cached_property
    def issuance(self) -> IssuanceService:
        return IssuanceService(
            self.config,
            self.db,
            self.authorities,
            self.profiles,
            self.clock,
            self.linter if self.config.policy.lint else None,
        )

    @cached_property
    def revocation(self) -> RevocationService:
        from kakuin.status import status_listener

        return RevocationService(self.db, self.clock, listeners=[status_listener(self)])

    @cached_property
    def crls(self) -> CRLService:
        from kakuin.status.crl import CRLService

        return CRLService(
            self.config, self.db, self.authorities, self.clock, self.linter if self.config.policy.lint else None
        )

    @cached_property
    def ocsp(self) -> OCSPService:
        from kakuin.status.ocsp import OCSPService
        from kakuin.status.responder import ResponderService

        lint = self.linter if self.config.policy.lint else None
        responders = ResponderService(
            self.config, self.db, self.keys, self.authorities, self.profiles, self.clock, lint
        )
        return OCSPService(self.db, responders, self.clock, linter=lint)

    @cached_property
    def va(self) -> ValidationAuthority:
        from kakuin.va import ValidationAuthority

        if self.config.mpic.enabled:  # issue #6: every check corroborated by remote perspectives
            from kakuin.va.mpic import CorroboratingVA

            return CorroboratingVA.from_config(self.config.va, self.config.mpic, self.clock,
                                               self.config.data_dir, self.db)
        return ValidationAuthority(self.config.va, self.clock)

    @cached_property
    def acme(self) -> ACME:
        from kakuin.acme import ACME

        return ACME(self)

    def hierarchy(self) -> HierarchyBuilder:
        return HierarchyBuilder(
            self.config, self.db, self.keys, self.clock, self.linter if self.config.policy.lint else None
        )


def init_data_dir(
    data_dir: Path,
    *,
    base_url: str = "http://127.0.0.1:8080",
    listen: str = "127.0.0.1:8080",
    database_url: str | None = None,
) -> bool:
    """Write kakuin.toml and a random CA passphrase file; False if they exist."""
    cfg = data_dir / CONFIG_NAME
    if cfg.exists():
        return False
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = default_config_text(base_url, listen)
    if database_url:
        text = text.replace('url = ""', f'url = "{database_url}"', 1)
    cfg.write_text(text, encoding="utf-8")
    secrets_dir = data_dir / "secrets"
    secrets_dir.mkdir(exist_ok=True, mode=0o700)
    pp = secrets_dir / "ca-passphrase"
    if not pp.exists() and not os.environ.get("KAKUIN_CA_PASSPHRASE"):
        # Dev default only: production sets KAKUIN_CA_PASSPHRASE or an HSM.
        fd = os.open(pp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return True
