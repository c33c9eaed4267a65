"""Row errors in Japanese and English: the TSV rules' own messages, and the
Japanese for rules whose shared checker speaks English only. One table, so
wording stays consistent."""

from __future__ import annotations

from kakuin.errors import CAAError, KakuinError, PolicyError
from kakuin.ra.tsv.formats import Column
from kakuin.ra.tsv.parse import RowError

# TSV rules: (Japanese, English); {col_ja}/{col_en} name the column.
TSV_RULES: dict[str, tuple[str, str]] = {
    "unknown-profile": (
        "証明書プロファイルID「{value}」は使用できません(使用可能: {known})",
        "profile ID {value!r} is not known (known: {known})",
    ),
    "dn-order": (
        "主体者DNはCN, OU, O, L, ST, Cの順で記述してください",
        "write the subject DN in the order CN, OU, O, L, ST, C",
    ),
    "st-mismatch": (
        "STの値「{value}」が機関の所在地({expected})と一致しません",
        "ST={value} does not match the institution's prefecture {expected}",
    ),
    "l-mismatch": (
        "Lの値「{value}」が機関の所在地({expected})と一致しません",
        "L={value} does not match the institution's city {expected}",
    ),
    "cn-fqdn-mismatch": (
        "主体者DNのCN「{cn}」とサーバFQDN「{fqdn}」が一致しません",
        "the subject CN {cn!r} differs from the server FQDN {fqdn!r}",
    ),
    "csr-invalid": (
        "CSRを読み取れないか署名が不正です({detail})",
        "the CSR cannot be read or its signature is invalid ({detail})",
    ),
    "csr-dn-mismatch": (
        "CSRのDN({dn})が主体者DN(#1)と一致しません",
        "the CSR's DN ({dn}) does not match the subject DN (#1)",
    ),
    "profile-key-mismatch": (
        "CSRの鍵の種類が証明書プロファイルID {value}({label})と一致しません",
        "the CSR's key does not fit profile ID {value} ({label})",
    ),
    "duplicate-serial": (
        "シリアル番号 {serial} がファイル内で重複しています",
        "serial {serial} appears twice in the file",
    ),
    "unknown-serial": (
        "シリアル番号 {serial} の発行済み証明書はありません",
        "no issued certificate has serial {serial}",
    ),
    "other-institution": (
        "シリアル番号 {serial} は他機関の証明書です",
        "certificate {serial} belongs to another institution",
    ),
    "already-revoked": ("シリアル番号 {serial} は失効済みです", "certificate {serial} is already revoked"),
    "renew-dn-mismatch": (
        "更新対象証明書の主体者DN({dn})と一致しません",
        "the subject DN differs from that of the certificate replaced ({dn})",
    ),
    "renew-same-key": (
        "旧証明書(シリアル番号 {serial})の鍵ペアは更新申請に使用できません。新しい鍵ペアでCSRを作成してください",
        "the key pair of the old certificate {serial} cannot be reused; make a new key pair and CSR",
    ),
    "unknown-download": (
        "ダウンロード方法「{value}」は使用できません(1, 2, 3のいずれか)",
        "download method {value!r} is not known (1, 2 or 3)",
    ),
    "p12-name": (
        "P12ファイル名は英数字と . _ - で指定してください",
        "the PKCS#12 file name may use letters, digits and . _ - only",
    ),
    "p12-name-duplicate": (
        "P12ファイル名「{name}」が一括ダウンロード(P12一括)の中で重複しています(manifest.tsvも使用できません)",
        "the PKCS#12 file name {name!r} appears twice in the bulk archive (manifest.tsv is taken too)",
    ),
    "bulk-needs-officer": (
        "P12一括は登録担当者の申請でのみ使用できます(ZIPファイルは申請した登録担当者に送られます)",
        "PKCS#12 in bulk needs an application by a registration officer (the archive goes to the officer who applied)",
    ),
    "days-range": ("有効日数は1〜3650で指定してください", "the validity is 1 to 3650 days"),
    "caa": (
        "{name} のCAAレコードにより発行できません(エラーコード338): {detail}",
        "CAA forbids issuance for {name} (error 338): {detail}",
    ),
}

# Japanese for rules whose checker (policy.names, policy.keys, ra.revocation,
# ca.csr) words its message in English only.
POLICY_JA: dict[str, str] = {
    "dns-case": "DNS名は小文字で指定してください",
    "dns-length": "DNS名の長さが不正です",
    "dns-ip": "IPアドレスは指定できません。DNS名を指定してください",
    "dns-wildcard": "ワイルドカードの範囲が広すぎます",
    "dns-fqdn": "DNS名は完全修飾ドメイン名(FQDN)で指定してください",
    "dns-label": "DNS名に不正なラベルが含まれています",
    "dns-idna": "DNS名に不正な国際化ドメイン名(A-label)が含まれています",
    "domain-not-registered": "機関に登録・承認されたドメインではありません",
    "email-syntax": "メールアドレスの形式が不正です",
    "key-type": "この鍵の種類は使用できません",
    "rsa-size": "RSA鍵長が不正です(2048ビット以上)",
    "rsa-exponent": "RSA公開指数が不正です",
    "rsa-modulus": "RSA鍵が不正です",
    "ec-curve": "この楕円曲線は使用できません",
    "revocation-reason": "失効理由コードが不正です(0, 1, 3, 4, 5, 9のいずれか)",
    "revocation-comment": "失効理由が0(unspecified)の場合は失効理由コメントが必須です",
    "pin-format": "アクセスPINは英数字8〜32文字で指定してください",
    "bad-csr": "CSRを読み取れないか署名が不正です",
}


def _where(col: Column | None) -> tuple[str, str]:
    if col is None:
        return "", ""
    return f"{col.name_ja}(#{col.no}): ", f"{col.name_en} (#{col.no}): "


def row_message(row: int, col: Column | None, rule: str, **params: object) -> RowError:
    ja, en = TSV_RULES[rule]
    wj, we = _where(col)
    return RowError(row, col.no if col else None, rule, wj + ja.format(**params), we + en.format(**params))


def split_bilingual(message: str) -> tuple[str, str] | None:
    """ "English (日本語)" as the shared checkers write it → (ja, en)."""
    at = message.rfind(" (")
    if at > 0 and message.endswith(")"):
        inner = message[at + 2 : -1]
        if any(not ch.isascii() for ch in inner):
            return inner, message[:at]
    return None


def policy_message(row: int, col: Column | None, exc: KakuinError) -> RowError:
    """A RowError from a shared checker's error, keeping its rule id."""
    rule = exc.rule if isinstance(exc, PolicyError) else exc.code
    both = split_bilingual(exc.message)
    if both is not None:
        ja, en = both
    else:
        ja, en = POLICY_JA.get(rule, exc.message), exc.message
    if isinstance(exc, CAAError):
        ja, en = ja + "(エラーコード338)", en + " (error 338)"
    wj, we = _where(col)
    return RowError(row, col.no if col else None, rule, wj + ja, we + en)
