"""Configuration: one typed object from ``kakuin.toml`` plus ``KAKUIN_*`` variables.

Parsed with pydantic (unknown keys are errors), then checked across fields. It is
passed in, never imported as a global.

Environment overrides: ``KAKUIN_DATABASE_URL``, ``KAKUIN_BASE_URL``,
``KAKUIN_LISTEN``, ``KAKUIN_OCSP_PORT``, ``KAKUIN_LINT`` (``0``/``1``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kakuin.ca.keystore import KeyType
from kakuin.errors import ConfigError
from kakuin.perspective.settings import MPICConfig
from kakuin.policy.profiles import DEFAULT_CPS_OID, Purpose
from kakuin.policy.validity import OverLimit
from kakuin.portal.settings import PortalConfig
from kakuin.ra.settings import MailConfig, RAConfig

CONFIG_NAME = "kakuin.toml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Model):
    listen: str = "127.0.0.1:8080"
    # The lean OCSP listener (kakuin.status.ocsp_server) on this port of the
    # listen host, besides /ocsp on listen; 0: none.
    ocsp_port: int = Field(default=0, ge=0, le=65535)
    base_url: str = "http://127.0.0.1:8080"
    # Published in certificates (AIA caIssuers/OCSP, CRL DP). BR 7.1.2.11 wants
    # public names here; empty means base_url.
    pki_base_url: str = ""

    @field_validator("base_url", "pki_base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @property
    def pki_url(self) -> str:
        return self.pki_base_url or self.base_url


class DatabaseConfig(_Model):
    url: str = ""  # empty: SQLite file in the data directory
    # Where an ACME request's database work runs (kakuin.http.run_database_work):
    # "thread" hands it to a worker thread, "inline" runs it on the event loop,
    # "auto" is inline on SQLite (a local file: statements take microseconds
    # and a write lock is held for milliseconds, so the thread hand-off and the
    # GIL hand-backs cost more than the work) and thread on PostgreSQL (network
    # round trips must not stall the loop).
    work: Literal["auto", "inline", "thread"] = "auto"


class KeysConfig(_Model):
    backend: Literal["file", "pkcs11"] = "file"
    passphrase_env: str = "KAKUIN_CA_PASSPHRASE"
    passphrase_file: str | None = "secrets/ca-passphrase"
    pkcs11_module: str | None = None
    pkcs11_token: str | None = None
    pkcs11_pin_env: str = "KAKUIN_PKCS11_PIN"

    @model_validator(mode="after")
    def _pkcs11(self) -> KeysConfig:
        if self.backend == "pkcs11" and not (self.pkcs11_module and self.pkcs11_token):
            raise ValueError("keys.backend = 'pkcs11' needs keys.pkcs11_module and keys.pkcs11_token")
        return self


class PolicyConfig(_Model):
    country: str = Field(default="JP", pattern=r"^[A-Z]{2}$")
    client_validity_months: int = Field(default=52, ge=1, le=120)
    over_limit: OverLimit = OverLimit.SHORTEN
    lint: bool = True
    cps_oid: str = Field(default=DEFAULT_CPS_OID, pattern=r"^[0-2](\.[0-9]+)+$")
    tls_ecdsa_curves: tuple[Literal["P-256", "P-384"], ...] = ("P-256", "P-384")
    crl_shards: int = Field(default=16, ge=1, le=4096)
    institution_required: bool = False
    # An institution is re-confirmed yearly (kakuin institution confirm); issuance
    # for one whose confirmed_until has passed is refused. An institution that was
    # never confirmed (confirmed_until empty: registered before the RA workflow,
    # or a development setup) is refused only when this is true. Production: true.
    require_institution_confirmation: bool = False


class VAConfig(_Model):
    """Validation authority. Ports and resolver are configurable (as Pebble's
    are) so tests can run on loopback; production keeps 80/443 and real resolvers."""

    http01_port: int = Field(default=80, ge=1, le=65535)
    tlsalpn01_port: int = Field(default=443, ge=1, le=65535)
    # "host:port" of the resolver for CAA and dns-01; empty: the system resolver.
    resolver: str = ""
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Local address for the VA's outgoing connections and DNS queries (empty:
    # the OS chooses). A remote perspective sets its own (BR 3.2.2.9: each
    # perspective checks from its own network location).
    source_address: str = ""
    # RFC 8659 §4: the issuer domain names that CAA "issue" records must name.
    caa_identities: tuple[str, ...] = ("kakuin.example",)
    # BR 3.2.2.4 / 3.2.2.8.1 (2026-03-15): lookups go through a validating resolver
    # and every answer relied on must be secure or provably insecure; an answer whose
    # status cannot be established (e.g. the resolver does not validate) is refused.
    # false only for development against a non-validating resolver (docs/dnssec.md).
    dnssec: bool = True
    # Seconds before the one retry of a failed lookup (BR 3.2.2.8: "retried").
    dnssec_retry_delay: float = Field(default=1.0, ge=0, le=30)
    # A, AAAA and CAA answers (and NXDOMAIN/NODATA) are kept for their DNS TTL
    # (RFC 2308 for negative answers), at most this many seconds; 0: no cache.
    # Failures are never kept, nor are TXT answers (dns-01 asks afresh).
    dns_cache_seconds: float = Field(default=60.0, ge=0, le=28800)
    # http-01 and tls-alpn-01 connect only to public addresses, and follow
    # redirects only to public names (kakuin.va.targets: no loopback, private,
    # link-local or reserved address, no .localhost/.internal/...). true only for
    # tests and `kakuin run`'s one-machine development setup.
    allow_private_targets: bool = False


class ACMELimitsConfig(_Model):
    """Rate limits of the ACME server (RFC 8555 §6.6 rateLimited), as Boulder
    has them; each 0 = unlimited. The windows are Boulder's and fixed (see
    kakuin.acme.limits); only the counts are settings."""

    # Failed validations per account per hostname per hour (Boulder: 5).
    failed_validations: int = Field(default=5, ge=0)
    # New orders per account per 3 hours (Boulder: 300).
    new_orders: int = Field(default=300, ge=0)
    # Pending (unexpired) authorizations per account (Boulder: 1,000).
    pending_authorizations: int = Field(default=1000, ge=0)
    # Certificates for exactly the same set of names per 7 days, across
    # accounts (Boulder: 5); RFC 9773 "replaces" renewals count too.
    duplicate_certificates: int = Field(default=5, ge=0)
    # EAB key identifiers whose accounts no limit applies to (the operator's
    # escape hatch for a known heavy client).
    exempt_kids: tuple[str, ...] = ()


class ACMEConfig(_Model):
    enabled: bool = True
    external_account_required: bool = True
    terms_of_service: str = ""
    website: str = ""
    # Default profile for ACME orders (DV: names validated by challenge).
    profile: str = "server-dv"
    # How long a challenge response waits for its validation before answering
    # "processing" (the validation goes on either way; 0: answer at once, as Boulder).
    validation_wait_seconds: float = Field(default=5.0, ge=0, le=60)
    limits: ACMELimitsConfig = ACMELimitsConfig()  # [acme.limits]


class DevConfig(_Model):
    """Development helpers that ``kakuin run`` turns on; never for production."""

    # "HOST:PORT" for kakuin.devdns (answers A for dns_zone with dns_address).
    dns: str = ""
    dns_zone: str = "demo.example.ac.jp"
    dns_address: str = "127.0.0.1"


class RootSpec(_Model):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    name: str
    key_type: KeyType
    months: int = Field(default=300, ge=12, le=600)


class IntermediateSpec(_Model):
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    name: str
    purpose: Purpose
    parent: str
    key_type: KeyType
    months: int = Field(default=120, ge=1, le=300)
    generation: int = Field(default=1, ge=1)
    path_length: int | None = 0


class HierarchyConfig(_Model):
    organization: str = "kakuin Development"
    country: str = "JP"
    roots: tuple[RootSpec, ...] = ()
    intermediates: tuple[IntermediateSpec, ...] = ()

    @model_validator(mode="after")
    def _tree(self) -> HierarchyConfig:
        slugs = [r.slug for r in self.roots] + [i.slug for i in self.intermediates]
        dupes = {s for s in slugs if slugs.count(s) > 1}
        if dupes:
            raise ValueError(f"duplicate CA slug(s): {', '.join(sorted(dupes))}")
        roots = {r.slug for r in self.roots}
        for i in self.intermediates:
            if i.parent not in roots:
                raise ValueError(f"intermediate {i.slug}: parent {i.parent!r} is not a root")
            if i.purpose is Purpose.TLS_ECDSA and i.key_type.is_rsa:
                raise ValueError(f"intermediate {i.slug}: tls-ecdsa needs an EC key")
            # BR 6.1.5: CA keys are RSA ≥ 2048 or P-256/P-384; fine by KeyType.
        return self


class Config(_Model):
    data_dir: Path
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    keys: KeysConfig = KeysConfig()
    policy: PolicyConfig = PolicyConfig()
    hierarchy: HierarchyConfig = HierarchyConfig()
    va: VAConfig = VAConfig()
    acme: ACMEConfig = ACMEConfig()
    mail: MailConfig = MailConfig()
    ra: RAConfig = RAConfig()
    dev: DevConfig = DevConfig()
    mpic: MPICConfig = MPICConfig()  # issue #6: remote perspectives (kakuin.va.mpic)
    portal: PortalConfig = PortalConfig()  # officers' portal and REST API (mutual TLS)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'kakuin.db'}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def passphrase_path(self) -> Path | None:
        if self.keys.passphrase_file is None:
            return None
        p = Path(self.keys.passphrase_file)
        return p if p.is_absolute() else self.data_dir / p


def _format_validation_error(exc: ValidationError, source: str) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {loc}: {msg}"


def load_config(data_dir: Path, env: dict[str, str] | None = None) -> Config:
    """Read ``data_dir/kakuin.toml`` and apply ``KAKUIN_*`` overrides."""
    env = dict(os.environ if env is None else env)
    path = data_dir / CONFIG_NAME
    raw: dict[str, object] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    raw["data_dir"] = data_dir
    overrides = {
        "KAKUIN_DATABASE_URL": ("database", "url"),
        "KAKUIN_DATABASE_WORK": ("database", "work"),
        "KAKUIN_BASE_URL": ("server", "base_url"),
        "KAKUIN_LISTEN": ("server", "listen"),
        "KAKUIN_OCSP_PORT": ("server", "ocsp_port"),
        "KAKUIN_LINT": ("policy", "lint"),
    }
    for var, (section, key) in overrides.items():
        if var in env:
            sec = dict(raw.get(section, {}))  # type: ignore[call-overload]
            sec[key] = env[var]
            raw[section] = sec
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, str(path))) from None


DEV_HIERARCHY_TOML = """\
[hierarchy]
organization = "kakuin Development"
country = "JP"

[[hierarchy.roots]]
slug = "root-rsa"
name = "kakuin Development Root CA RSA - G1"
key_type = "rsa4096"

[[hierarchy.roots]]
slug = "root-ecc"
name = "kakuin Development Root CA ECC - G1"
key_type = "ec-p384"

[[hierarchy.intermediates]]
slug = "tls-rsa-g1"
name = "kakuin Development TLS RSA CA - G1"
purpose = "tls-rsa"
parent = "root-rsa"
key_type = "rsa2048"

[[hierarchy.intermediates]]
slug = "tls-ecdsa-g1"
name = "kakuin Development TLS ECC P-384 CA - G1"
purpose = "tls-ecdsa"
parent = "root-ecc"
key_type = "ec-p384"

[[hierarchy.intermediates]]
slug = "client-g1"
name = "kakuin Development Client Authentication CA - G1"
purpose = "client"
parent = "root-rsa"
key_type = "rsa2048"

[[hierarchy.intermediates]]
slug = "smime-g1"
name = "kakuin Development S/MIME CA - G1"
purpose = "smime"
parent = "root-rsa"
key_type = "rsa2048"

[[hierarchy.intermediates]]
slug = "code-signing-g1"
name = "kakuin Development Code Signing CA - G1"
purpose = "code-signing"
parent = "root-rsa"
key_type = "rsa3072"

[[hierarchy.intermediates]]
slug = "tsa-g1"
name = "kakuin Development Timestamping CA - G1"
purpose = "tsa"
parent = "root-rsa"
key_type = "rsa2048"
"""


DEV_PKI_BASE_URL = "http://pki.kakuin-dev.example.ac.jp"


def default_config_text(base_url: str, listen: str, pki_base_url: str = DEV_PKI_BASE_URL) -> str:
    return f"""\
# kakuin configuration. Every key is documented in docs/configuration.md.

[server]
listen = "{listen}"
base_url = "{base_url}"
# The URLs written into certificates (AIA, CRL DP). Point this at the public
# name that serves /ca, /crl and /ocsp; the dev default is a placeholder.
pki_base_url = "{pki_base_url}"

[database]
# Empty: SQLite in this directory. PostgreSQL: "postgresql+psycopg://user@host/db"
url = ""

[keys]
backend = "file"
passphrase_env = "KAKUIN_CA_PASSPHRASE"
passphrase_file = "secrets/ca-passphrase"

[policy]
country = "JP"
client_validity_months = 52
over_limit = "shorten"
lint = true
crl_shards = 16

{DEV_HIERARCHY_TOML}"""
