"""TLS for the portal listener: its server certificate, the client CAs it asks
for, and a uvicorn protocol that hands the peer certificate to the ASGI app.

uvicorn (0.54) does not put the client certificate into the ASGI scope. The
ASGI TLS extension (asgiref "TLS Extension": ``scope["extensions"]["tls"]``
with ``client_cert_chain``, a list of PEM strings) is what hypercorn provides;
``MTLSProtocol`` adds it to uvicorn's h11 protocol: at ``connection_made`` it
reads the peer certificate from the SSL object of the transport and wraps the
app of that connection so every request of it carries the extension. The
certificate has been verified by OpenSSL against ``client_ca_bundle`` by then;
``kakuin.portal.auth`` checks the rest (issuer is a client CA of kakuin, not
revoked, an active officer).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from uvicorn.protocols.http.h11_impl import H11Protocol

from kakuin.ca.issuer import IssueRequest
from kakuin.context import Context
from kakuin.errors import ConfigError
from kakuin.policy.profiles import Purpose
from kakuin.store.repos import CARepo

# Reissue the generated server certificate when less than this is left.
RENEW_BEFORE = dt.timedelta(days=14)
SERVER_CERT_DAYS = 90


def _data_path(ctx: Context, name: str) -> Path:
    p = Path(name)
    return p if p.is_absolute() else ctx.config.data_dir / p


def client_ca_certificates(ctx: Context) -> list[x509.Certificate]:
    """The client-authentication intermediates (every generation that is not
    revoked) and the roots above them."""
    with ctx.db.session() as s:
        cas = list(CARepo(s).all())
    by_id = {c.id: c for c in cas}
    chosen: dict[int, bytes] = {}
    for c in cas:
        if c.kind != "root" and c.purpose == Purpose.CLIENT.value and c.status != "revoked":
            chosen[c.id] = c.der
            parent = by_id.get(c.parent_id) if c.parent_id else None
            if parent is not None:
                chosen[parent.id] = parent.der
    return [x509.load_der_x509_certificate(d) for d in chosen.values()]


def client_ca_bundle(ctx: Context) -> Path:
    """A PEM file of the client CAs for ``ssl_ca_certs`` (written on each start)."""
    certs = client_ca_certificates(ctx)
    if not certs:
        raise ConfigError("the portal needs a client-authentication CA (purpose 'client'); run kakuin init")
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in certs)
    extra = ctx.config.portal.client_ca_extra
    if extra:
        pem += _data_path(ctx, extra).read_bytes()
    path = ctx.config.data_dir / "portal" / "client-cas.pem"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(pem)
    return path


def server_certificate(ctx: Context) -> tuple[Path, Path]:
    """(certificate chain PEM, key PEM) for the listener: the configured files,
    or a certificate for ``portal.server_name`` issued through the normal
    pipeline (policy, lint, record) by the TLS CA and kept in ``portal/``;
    reissued when it nears its end."""
    cfg = ctx.config.portal
    if cfg.tls_cert or cfg.tls_key:
        if not (cfg.tls_cert and cfg.tls_key):
            raise ConfigError("portal.tls_cert and portal.tls_key go together")
        cert, key = _data_path(ctx, cfg.tls_cert), _data_path(ctx, cfg.tls_key)
        for p in (cert, key):
            if not p.exists():
                raise ConfigError(f"portal: {p} does not exist")
        return cert, key
    d = ctx.config.data_dir / "portal"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = d / "server.pem", d / "server-key.pem"
    if cert_path.exists() and key_path.exists():
        current = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        names = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        fresh = current.not_valid_after_utc - ctx.clock.now() > RENEW_BEFORE
        if fresh and cfg.server_name in names.get_values_for_type(x509.DNSName):
            return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ctx.issuance.issue(
        IssueRequest(
            profile="server-dv",
            public_key=key.public_key(),
            subject=x509.Name([]),
            dns_names=(cfg.server_name,),
            requested_days=SERVER_CERT_DAYS,
            requested_by="kakuin portal",
        )
    )
    key_pem = key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    chain = b"".join(c.public_bytes(Encoding.PEM) for c in (issued.certificate, *issued.chain))
    cert_path.write_bytes(chain)
    return cert_path, key_path


def tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
    """The ASGI TLS extension for one connection (asgiref TLS extension spec)."""
    if ssl_object is None:
        return {}
    der = ssl_object.getpeercert(binary_form=True)
    chain = [ssl.DER_cert_to_PEM_cert(der)] if der else []
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
        "tls_version_name": ssl_object.version(),  # kakuin's addition, for logs
        "cipher_name": cipher[0] if cipher else None,
    }


class MTLSProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus the ASGI TLS extension with the client certificate."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ext = tls_extension(transport.get_extra_info("ssl_object"))
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") in ("http", "websocket"):
                scope = dict(scope)
                scope["extensions"] = {**(scope.get("extensions") or {}), "tls": ext}
            await inner(scope, receive, send)

        self.app = app


def ssl_options(ctx: Context) -> dict[str, Any]:
    """uvicorn.Config keyword arguments for the portal listener.

    CERT_OPTIONAL, not CERT_REQUIRED: a browser without an officer certificate
    still completes the handshake and gets a page (Japanese and English) that
    says what is missing, instead of a bare TLS alert the user cannot read. A
    certificate that is presented but does not verify against the client CAs
    still fails the handshake (OpenSSL verifies every certificate it is given).
    """
    cert, key = server_certificate(ctx)
    return {
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
        "ssl_ca_certs": str(client_ca_bundle(ctx)),
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        "http": MTLSProtocol,
    }
