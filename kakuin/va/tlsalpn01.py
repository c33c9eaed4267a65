"""tls-alpn-01 validation (RFC 8737).

Connect to the resolved address on the configured port, offer only the ALPN
protocol "acme-tls/1" with SNI = the domain, and check the (self-signed)
certificate: exactly one subjectAltName, a dNSName equal to the domain, and a
critical id-pe-acmeIdentifier extension whose value is the SHA-256 digest of
the key authorization (§3). The certificate is not otherwise verified. The
address lookup must be DNSSEC-trustworthy (``kakuin.va.dnssec.checked_addresses``).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ssl
from typing import TYPE_CHECKING

from cryptography import x509

from kakuin.va.dnssec import AddressRefused, checked_addresses
from kakuin.va.targets import dial_order

if TYPE_CHECKING:
    from kakuin.va import ValidationAuthority, ValidationRecord
    from kakuin.va.resolver import Resolver

ALPN = "acme-tls/1"  # RFC 8737 §6.2
ID_PE_ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737 §6.1
METHOD = "tls-alpn-01"


def _context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # RFC 8737: the certificate is self-signed
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 §4
    ctx.set_alpn_protocols([ALPN])
    return ctx


def check_certificate(der: bytes, domain: str, key_authorization: str) -> str | None:
    """None when the certificate answers the challenge, else the reason."""
    try:
        cert = x509.load_der_x509_certificate(der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return "the certificate has no subjectAltName"
    except x509.DuplicateExtension as exc:  # RFC 5280 §4.2: each extension at most once
        return f"the certificate repeats an extension: {exc}"
    except ValueError as exc:
        return f"the certificate cannot be parsed: {exc}"
    names = list(san.value)
    if (
        len(names) != 1
        or not isinstance(names[0], x509.DNSName)
        or names[0].value.lower() != domain
    ):
        return (
            f"the certificate must name exactly {domain} (it names {[str(n.value) for n in names]})"
        )
    try:
        ext = cert.extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    except x509.ExtensionNotFound:
        return "the certificate has no acmeIdentifier extension"
    if not ext.critical:
        return "the acmeIdentifier extension must be critical"
    digest = hashlib.sha256(key_authorization.encode()).digest()
    value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    if value != b"\x04\x20" + digest:  # DER OCTET STRING (SIZE (32))
        return "the acmeIdentifier extension does not match the key authorization"
    return None


async def validate_tlsalpn01(
    va: ValidationAuthority, domain: str, key_authorization: str,
    *, resolver: Resolver | None = None,
) -> ValidationRecord:
    """``resolver`` defaults to the VA's own; a remote perspective (issue #6) passes its own."""
    port = va.config.tlsalpn01_port
    observed: dict[str, object] = {"port": port}
    try:
        checked = await checked_addresses(va, domain, resolver)
    except AddressRefused as exc:
        observed["dnssec"] = exc.evidence
        return va.record(
            METHOD,
            domain,
            ok=False,
            observed=observed,
            problem="dns",
            error=f"DNS problem looking up A/AAAA for {domain}: {exc.reason}",
            dnssec=exc.dnssec,
        )
    record = functools.partial(va.record, dnssec=checked.dnssec)
    if checked.dnssec is not None:
        observed["dnssec"] = checked.evidence
    addrs = checked.addresses
    if not addrs:
        return record(
            METHOD,
            domain,
            ok=False,
            observed=observed,
            problem="dns",
            error=f"DNS problem: no A or AAAA records found for {domain}",
        )
    observed["addresses"] = addrs
    last = ""
    for addr in dial_order(addrs):
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    addr, port, ssl=_context(), server_hostname=domain,
                    local_addr=(va.config.source_address, 0) if va.config.source_address else None,
                ),
                va.config.timeout_seconds,
            )
        except ssl.SSLError as exc:
            return record(
                METHOD,
                domain,
                ok=False,
                observed=observed,
                problem="tls",
                error=f"{addr}:{port}: TLS handshake failed: {exc.reason or exc}",
            )
        except (TimeoutError, OSError) as exc:
            last = f"{addr}:{port}: {type(exc).__name__}: {exc}"
            continue
        try:
            sslobj = writer.get_extra_info("ssl_object")
            alpn = sslobj.selected_alpn_protocol() if sslobj else None
            der = sslobj.getpeercert(binary_form=True) if sslobj else None
        finally:
            writer.close()
        observed.update(address=addr, alpn=alpn)
        if alpn != ALPN:
            return record(
                METHOD,
                domain,
                ok=False,
                observed=observed,
                problem="unauthorized",
                error=f"{addr}:{port} did not negotiate ALPN {ALPN}",
            )
        reason = check_certificate(der or b"", domain, key_authorization)
        if reason:
            return record(
                METHOD,
                domain,
                ok=False,
                observed=observed,
                problem="unauthorized",
                error=f"{addr}:{port}: {reason}",
            )
        return record(METHOD, domain, ok=True, observed=observed)
    return record(METHOD, domain, ok=False, observed=observed, problem="connection", error=last)
