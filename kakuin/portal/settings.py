"""The ``[portal]`` section of kakuin.toml: the officers' portal and REST API on
their own HTTPS listener with mutual TLS (docs/portal.md)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator


class PortalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Off unless asked for: ``kakuin serve`` then keeps one listener (tests and
    # existing deployments run several servers side by side); ``kakuin run``
    # turns it on in the dev data directory it creates.
    enabled: bool = False
    listen: str = "127.0.0.1:8443"
    # The DNS name in the portal's server certificate when kakuin makes one
    # (tls_cert empty): issued through the normal pipeline by the TLS CA, so it
    # must be a public-style FQDN (BR 7.1.4.2.1: no internal names, no IP
    # addresses). Point it at this machine in DNS (or /etc/hosts in development).
    server_name: str = "portal.kakuin-dev.example.ac.jp"
    # PEM files of a certificate (with its chain) and key issued elsewhere;
    # relative paths are under the data directory. Empty: kakuin makes one.
    tls_cert: str = ""
    tls_key: str = ""
    # SPKI SHA-256 (hex) of client certificates that sign in as the CA operator
    # (they must still be issued by a client CA of kakuin and not revoked).
    operators: tuple[str, ...] = ()
    # Extra PEM bundle of client CAs (relative to the data dir); kakuin's own
    # client intermediates and their roots are always trusted.
    client_ca_extra: str = ""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        if not re.fullmatch(r"\[?[0-9A-Za-z.:-]+\]?:\d{1,5}", v):
            raise ValueError("must be HOST:PORT")
        return v

    @field_validator("operators")
    @classmethod
    def _hex(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for h in v:
            if not re.fullmatch(r"[0-9a-f]{64}", h):
                raise ValueError("operators are SPKI SHA-256 digests in lowercase hex (64 characters)")
        return v
