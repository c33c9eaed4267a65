"""Just enough DER to put a certificate together from TBS + signature.

cryptography signs only with its own key objects; an HSM signs bytes. Building
the TBS once (signed by a throwaway key, which is also what gets linted) and
then attaching the real signature lets both key backends share one pipeline and
guarantees that the bytes we linted are the bytes we sign.
"""

from __future__ import annotations


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def read_tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the element at ``offset``."""
    tag = data[offset]
    first = data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, offset + 2 + first
    count = first & 0x7F
    if count == 0 or count > 4:
        raise ValueError("unsupported DER length")
    length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
    start = offset + 2 + count
    return tag, start, start + length


def split_signed(der: bytes) -> tuple[bytes, bytes, bytes]:
    """(tbs, signatureAlgorithm, signature value) of a signed X.509 structure."""
    tag, start, end = read_tlv(der, 0)
    if tag != 0x30 or end != len(der):
        raise ValueError("not a DER SEQUENCE")
    _, tbs_start, tbs_end = read_tlv(der, start)
    tbs = der[start:tbs_end]
    _, alg_start, alg_end = read_tlv(der, tbs_end)
    alg = der[tbs_end:alg_end]
    tag, sig_start, sig_end = read_tlv(der, alg_end)
    if tag != 0x03:
        raise ValueError("signature is not a BIT STRING")
    _ = tbs_start, alg_start
    return tbs, alg, der[sig_start + 1 : sig_end]


def issuer_and_subject(cert_der: bytes) -> tuple[bytes, bytes]:
    """The DER of a certificate's issuer and subject Names, as they stand in it."""
    tbs, _, _ = split_signed(cert_der)
    _, offset, end = read_tlv(tbs, 0)
    fields: list[bytes] = []
    while offset < end and len(fields) < 6:
        tag, _, nxt = read_tlv(tbs, offset)
        if not (tag == 0xA0 and not fields):  # [0] version, when present, comes first
            fields.append(tbs[offset:nxt])
        offset = nxt
    if len(fields) < 5 or fields[2][0] != 0x30 or fields[4][0] != 0x30:
        raise ValueError("not a TBSCertificate")
    return fields[2], fields[4]  # serialNumber, signature, issuer, validity, subject


def assemble(tbs: bytes, algorithm: bytes, signature: bytes) -> bytes:
    """SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING signature }"""
    return tlv(0x30, tbs + algorithm + tlv(0x03, b"\x00" + signature))
