"""Column specifications of the TSV files, as data (UPKI TSV formats).

Server issue (サーバ証明書発行申請), 13 columns: 1 subject DN (CN, OU…, O, L/ST, C;
CN equals column 11), 2 profile ID, 3–6 reserved, 7 CSR (its DN equals column 1),
8 subscriber name, 9 subscriber affiliation, 10 subscriber e-mail (symbols
only - _ @ .), 11 server FQDN, 12 server software and version, 13 extra dNSNames.
Server renew (更新申請): the same, with column 4 the serial of the certificate it
replaces. Revoke (失効申請): serial, reason code, comment (required for 0).
Client / S/MIME issue (クライアント証明書発行申請), 15 columns: 1 DN, 2 profile ID
(5 client, 7 S/MIME), 3 download method (1 PKCS#12 individually, 2 PKCS#12 in
bulk, 3 in the browser), 4–7 empty, 8–10 subscriber name, affiliation, e-mail,
11 reserved, 12 PKCS#12 file name (optional), 13–14 reserved, 15 access PIN
(optional; generated and mailed when empty). EAB credential (kakuin's format
for UPKI's "専用フォーマット"), 4 columns: subscriber name, e-mail, domains
(space separated; empty: all the institution's), validity in days (optional).

Serials are written in hexadecimal, as kakuin shows them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TSVKind(enum.StrEnum):
    SERVER_ISSUE = "server-issue"
    SERVER_RENEW = "server-renew"
    REVOKE = "revoke"
    CLIENT_ISSUE = "client-issue"
    EAB = "eab"


class Charset(enum.StrEnum):
    ASCII = "ascii"  # 半角: printable ASCII
    TEXT = "text"  # 全角・半角: anything Shift_JIS can carry, no control characters
    DIGITS = "digits"
    HEX = "hex"
    EMAIL = "email"  # letters, digits and - _ @ . only
    RESERVED = "reserved"  # must be empty


@dataclass(frozen=True, slots=True)
class Column:
    no: int  # 1-based, as the UPKI documents number them
    key: str
    name_ja: str
    name_en: str
    required: bool
    max_len: int
    charset: Charset


def _reserved(no: int) -> Column:
    return Column(no, f"reserved{no}", "予約済", "reserved", False, 0, Charset.RESERVED)


_DN = Column(1, "dn", "主体者DN", "subject DN", True, 250, Charset.ASCII)
_NAME = Column(8, "subscriber_name", "利用管理者氏名", "subscriber name", True, 64, Charset.TEXT)
_AFFIL = Column(9, "subscriber_affiliation", "利用管理者所属", "subscriber affiliation", True, 64, Charset.TEXT)
_EMAIL = Column(10, "subscriber_email", "利用管理者E-mail", "subscriber e-mail", True, 78, Charset.EMAIL)

_SERVER_TAIL = (
    Column(7, "csr", "CSR", "CSR", True, 8192, Charset.ASCII),
    _NAME,
    _AFFIL,
    _EMAIL,
    Column(11, "fqdn", "サーバFQDN", "server FQDN", True, 64, Charset.ASCII),
    Column(
        12, "software", "サーバソフトウェア名およびバージョン", "server software and version", True, 128, Charset.TEXT
    ),
    Column(13, "dns_names", "dNSName", "extra dNSNames", False, 2500, Charset.ASCII),
)

FORMATS: dict[TSVKind, tuple[Column, ...]] = {
    TSVKind.SERVER_ISSUE: (
        _DN,
        Column(2, "profile_id", "証明書プロファイルID", "profile ID", True, 2, Charset.DIGITS),
        _reserved(3),
        _reserved(4),
        _reserved(5),
        _reserved(6),
        *_SERVER_TAIL,
    ),
    TSVKind.SERVER_RENEW: (
        _DN,
        Column(2, "profile_id", "証明書プロファイルID", "profile ID", True, 2, Charset.DIGITS),
        _reserved(3),
        Column(
            4, "replaces", "更新対象証明書シリアル番号", "serial of the certificate replaced", True, 40, Charset.HEX
        ),
        _reserved(5),
        _reserved(6),
        *_SERVER_TAIL,
    ),
    TSVKind.REVOKE: (
        Column(1, "serial", "失効対象証明書シリアル番号", "serial", True, 40, Charset.HEX),
        Column(2, "reason", "失効理由", "reason code", True, 1, Charset.DIGITS),
        Column(3, "comment", "失効理由コメント", "comment", False, 256, Charset.TEXT),
    ),
    TSVKind.CLIENT_ISSUE: (
        _DN,
        Column(2, "profile_id", "証明書プロファイルID", "profile ID", True, 2, Charset.DIGITS),
        Column(3, "download", "ダウンロード方法", "download method", True, 1, Charset.DIGITS),
        _reserved(4),
        _reserved(5),
        _reserved(6),
        _reserved(7),
        _NAME,
        _AFFIL,
        _EMAIL,
        _reserved(11),
        Column(12, "p12_name", "P12ダウンロードファイル名", "PKCS#12 file name", False, 64, Charset.ASCII),
        _reserved(13),
        _reserved(14),
        Column(15, "pin", "アクセスPIN", "access PIN", False, 32, Charset.ASCII),
    ),
    TSVKind.EAB: (
        Column(1, "subscriber_name", "利用管理者氏名", "subscriber name", True, 64, Charset.TEXT),
        Column(2, "subscriber_email", "利用管理者E-mail", "subscriber e-mail", True, 78, Charset.EMAIL),
        Column(3, "domains", "対象ドメイン", "domains", False, 2500, Charset.ASCII),
        Column(4, "days", "有効日数", "validity in days", False, 4, Charset.DIGITS),
    ),
}


@dataclass(frozen=True, slots=True)
class ProfileID:
    id: str
    profile: str  # kakuin profile name
    key: str  # "rsa" | "ec-p384" | "generated"
    label_ja: str
    label_en: str


# UPKI profile IDs: 1 server (RSA, sha256WithRSAEncryption); 11 server ECDSA
# P-384 (ecdsa-with-SHA384, seed 004 "証明書プロファイル11"); 5 client; 7 S/MIME.
PROFILE_IDS: dict[TSVKind, dict[str, ProfileID]] = {
    TSVKind.SERVER_ISSUE: {
        "1": ProfileID("1", "server-ov", "rsa", "サーバ証明書(RSA)", "server certificate (RSA)"),
        "11": ProfileID("11", "server-ov", "ec-p384", "サーバ証明書(ECDSA P-384)", "server certificate (ECDSA P-384)"),
    },
    TSVKind.CLIENT_ISSUE: {
        "5": ProfileID("5", "client", "generated", "クライアント証明書", "client certificate"),
        "7": ProfileID("7", "smime", "generated", "S/MIME証明書", "S/MIME certificate"),
    },
}
PROFILE_IDS[TSVKind.SERVER_RENEW] = PROFILE_IDS[TSVKind.SERVER_ISSUE]

DOWNLOAD_METHODS: dict[str, tuple[str, str, str]] = {
    "1": ("p12-individual", "P12個別", "PKCS#12, one link per subscriber"),
    "2": ("p12-bulk", "P12一括", "PKCS#12, one archive for the officer"),
    "3": ("browser", "ブラウザ個別", "key pair made in the subscriber's browser, one link per subscriber"),
}


def kind_for_columns(count: int, fourth: str = "") -> TSVKind | None:
    """Guess the kind from the column count of the first row (13: issue, or
    renew when column 4 holds a serial)."""
    if count == 13:
        return TSVKind.SERVER_RENEW if fourth.strip() else TSVKind.SERVER_ISSUE
    return {3: TSVKind.REVOKE, 15: TSVKind.CLIENT_ISSUE, 4: TSVKind.EAB}.get(count)
