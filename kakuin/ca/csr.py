"""CSR parsing shared by every entry point (CLI, ACME finalize, TSV)."""

from __future__ import annotations

from cryptography import x509

from kakuin.errors import BadCSR


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    """A CSR from PEM or DER, with its self-signature checked."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise BadCSR(f"cannot parse CSR: {exc}") from None
    try:
        valid = csr.is_signature_valid
    except Exception:  # unsupported key types raise here
        raise BadCSR("CSR signature cannot be checked (unsupported key type)") from None
    if not valid:
        raise BadCSR("CSR signature is invalid")
    return csr


def csr_san(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    """Every GeneralName of the CSR's requested subjectAltName ([] without one)."""
    try:
        return list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:
        raise BadCSR(f"CSR extensions cannot be parsed: {exc}") from None


def csr_names(csr: x509.CertificateSigningRequest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(dNSNames, rfc822Names) requested in the CSR's extensionRequest."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    except ValueError as exc:
        raise BadCSR(f"CSR extensions cannot be parsed: {exc}") from None
    return (
        tuple(san.get_values_for_type(x509.DNSName)),
        tuple(san.get_values_for_type(x509.RFC822Name)),
    )
