"""The TSV-making tool (TSV作成ツール): a server issue or renew row from a CSR.

The subject DN, the FQDN (the CN) and the extra dNSNames (the CSR's SANs other
than the CN) come from the CSR; the rest is given. The row is then split and
checked by the same ``parse`` column rules as an uploaded file, so the tool
cannot make a row the RA would refuse for its form."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from kakuin.ca.csr import csr_names, parse_csr
from kakuin.errors import BadCSR
from kakuin.policy.subject import format_dn
from kakuin.ra.tsv.formats import TSVKind
from kakuin.ra.tsv.parse import TSVRefused, format_row, split


@dataclass(frozen=True, slots=True)
class FromCSR:
    dn: str
    fqdn: str
    dns_names: tuple[str, ...]
    csr_line: str  # the CSR on one line, as the TSV carries it


def read_csr(data: bytes) -> FromCSR:
    csr = parse_csr(data)
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        raise BadCSR("the CSR has no CN; the server FQDN is taken from it")
    fqdn = str(cns[0].value)
    dns, _ = csr_names(csr)
    extra = tuple(d for d in dict.fromkeys(dns) if d != fqdn)
    der = csr.public_bytes(Encoding.DER)
    line = "-----BEGIN CERTIFICATE REQUEST-----" + base64.b64encode(der).decode() + "-----END CERTIFICATE REQUEST-----"
    return FromCSR(format_dn(csr.subject), fqdn, extra, line)


def make_server_row(
    csr: FromCSR,
    *,
    profile_id: str,
    name: str,
    affiliation: str,
    email: str,
    software: str,
    replaces: str | None = None,
) -> str:
    kind = TSVKind.SERVER_RENEW if replaces else TSVKind.SERVER_ISSUE
    line = format_row(
        kind,
        {
            "dn": csr.dn,
            "profile_id": profile_id,
            "replaces": replaces or "",
            "csr": csr.csr_line,
            "subscriber_name": name,
            "subscriber_affiliation": affiliation,
            "subscriber_email": email,
            "fqdn": csr.fqdn,
            "software": software,
            "dns_names": " ".join(csr.dns_names),
        },
    )
    _, _, errors = split(line, kind)
    if errors:
        raise TSVRefused(errors)
    return line


def encode(lines: list[str], encoding: str = "shift_jis") -> bytes:
    """The file: CRLF line ends, Shift_JIS (cp932) by default as UPKI asks."""
    text = "\r\n".join(lines) + "\r\n"
    return text.encode("cp932" if encoding.lower().replace("-", "_") in ("shift_jis", "sjis", "cp932") else "utf-8")
