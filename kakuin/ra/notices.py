"""The RA's mails: Japanese with English alongside (UPKI sends subscribers both).

Each function returns a ``Mail`` keyed so that the same event queues one mail
per recipient however often it is enqueued."""

from __future__ import annotations

import datetime as dt

from kakuin.notify.compose import DigestItem, Mail, bilingual

REASONS_JA = {
    0: "未指定 (unspecified)",
    1: "鍵の危殆化 (keyCompromise)",
    3: "所属の変更 (affiliationChanged)",
    4: "証明書の置き換え (superseded)",
    5: "運用の停止 (cessationOfOperation)",
    9: "権限の取り消し (privilegeWithdrawn)",
}


def _d(at: dt.datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def retrieval_link(
    to: str, *, serial: str, subject: str, url: str, expires_at: dt.datetime, pkcs12: bool, retrieval_id: int
) -> Mail:
    what_ja = "PKCS#12ファイル(アクセスPINで保護)" if pkcs12 else "証明書と中間CA証明書(PEM)"
    what_en = "a PKCS#12 file (protected by your access PIN)" if pkcs12 else "the certificate and its chain (PEM)"
    ja = (
        f"証明書が発行されました。下記のURLから{what_ja}を取得してください。\n\n"
        f"  シリアル番号: {serial}\n  主体者DN: {subject}\n  取得URL: {url}\n"
        f"  有効期限: {_d(expires_at)}\n\n"
        "このURLは一度だけ使用できます。期限を過ぎた場合は登録担当者に再発行を依頼してください。"
    )
    en = (
        f"Your certificate has been issued. Download {what_en} from the URL below.\n\n"
        f"  Serial: {serial}\n  Subject: {subject}\n  URL: {url}\n  Valid until: {_d(expires_at)}\n\n"
        "The URL works once. If it expires, ask your registration officer for a new one."
    )
    return Mail(
        to,
        "retrieval",
        f"{serial}:{retrieval_id}",
        f"[kakuin] 証明書取得URLのお知らせ / Certificate ready: {serial}",
        bilingual(ja, en),
    )


def bulk_link(
    to: str, *, application_id: int, count: int, url: str, expires_at: dt.datetime, retrieval_id: int
) -> Mail:
    """PKCS#12 in bulk (P12一括): one archive for the officer who applied."""
    ja = (
        f"一括ダウンロード(P12一括)の証明書 {count} 件が発行されました。下記のURLからZIPファイル"
        "(各利用者のPKCS#12ファイルと一覧 manifest.tsv)を取得し、利用者に配付してください。\n\n"
        f"  申請番号: {application_id}\n  取得URL: {url}\n  有効期限: {_d(expires_at)}\n\n"
        "このURLは一度だけ使用できます。各PKCS#12ファイルのアクセスPINはZIPファイルに含まれません"
        "(利用者へ別途メールで通知済み、または申請時に指定されたPINです)。"
    )
    en = (
        f"{count} certificates for bulk delivery (PKCS#12 in bulk) have been issued. Download the ZIP file "
        "(each subscriber's PKCS#12 and a list, manifest.tsv) from the URL below and hand the files out.\n\n"
        f"  Application: {application_id}\n  URL: {url}\n  Valid until: {_d(expires_at)}\n\n"
        "The URL works once. The access PINs are not in the ZIP file (each subscriber got theirs by mail, "
        "or they are the PINs given in the application)."
    )
    return Mail(
        to,
        "retrieval-bulk",
        f"{application_id}:{retrieval_id}",
        f"[kakuin] 一括取得URLのお知らせ / PKCS#12 archive ready: application {application_id}",
        bilingual(ja, en),
    )


def enrollment_link(
    to: str, *, subject: str, url: str, expires_at: dt.datetime, pin_required: bool, enrollment_id: int
) -> Mail:
    """Enrollment in the browser (ブラウザ個別): the key pair is made in the browser."""
    pin_ja = (
        "保護パスワードには、登録担当者から通知されたアクセスPINを入力してください。"
        if pin_required
        else "PKCS#12ファイルを保護するパスワードは、ページで自分で決めて入力してください。"
    )
    pin_en = (
        "Protect the file with the access PIN your registration officer gave you."
        if pin_required
        else "You choose the password that protects the PKCS#12 file on the page."
    )
    ja = (
        "証明書の発行申請が受け付けられました。下記のURLをブラウザで開き、鍵ペアを生成して証明書を取得して"
        "ください。鍵ペアはブラウザ内で生成され、秘密鍵が送信されることはありません。\n\n"
        f"  主体者DN: {subject}\n  取得URL: {url}\n  有効期限: {_d(expires_at)}\n\n{pin_ja}\n"
        "このURLは一度だけ使用できます。期限を過ぎた場合は登録担当者に再申請を依頼してください。"
    )
    en = (
        "Your certificate application has been accepted. Open the URL below in your browser to make your key "
        "pair and get the certificate. The key pair is made in the browser; the private key is never sent.\n\n"
        f"  Subject: {subject}\n  URL: {url}\n  Valid until: {_d(expires_at)}\n\n{pin_en}\n"
        "The URL works once. If it expires, ask your registration officer to apply again."
    )
    return Mail(
        to,
        "enrollment",
        str(enrollment_id),
        "[kakuin] 証明書取得(ブラウザ)のお知らせ / Get your certificate in the browser",
        bilingual(ja, en),
    )


def access_pin(to: str, *, serial: str, pin: str) -> Mail:
    ja = (
        f"シリアル番号 {serial} の証明書(PKCS#12ファイル)のアクセスPINをお知らせします。\n\n"
        f"  アクセスPIN: {pin}\n\n取得URLは別のメールでお送りしています。このPINは他人に知らせないでください。"
    )
    en = (
        f"The access PIN of the PKCS#12 file of certificate {serial}:\n\n  Access PIN: {pin}\n\n"
        "The download URL comes in a separate mail. Do not share this PIN."
    )
    return Mail(
        to,
        "access-pin",
        serial,
        f"[kakuin] アクセスPINのお知らせ / Access PIN: {serial}",
        bilingual(ja, en),
        sensitive=True,
    )


def download_complete(to: str, *, serial: str, subject: str, at: dt.datetime, retrieval_id: int) -> Mail:
    ja = f"証明書の取得が完了しました。\n\n  シリアル番号: {serial}\n  主体者DN: {subject}\n  取得日時: {_d(at)}"
    en = f"The certificate has been downloaded.\n\n  Serial: {serial}\n  Subject: {subject}\n  At: {_d(at)}"
    return Mail(
        to,
        "downloaded",
        f"{serial}:{retrieval_id}",
        f"[kakuin] 証明書取得完了のお知らせ / Certificate downloaded: {serial}",
        bilingual(ja, en),
    )


def bulk_download_complete(to: str, *, items: list[tuple[str, str]], at: dt.datetime, retrieval_id: int) -> Mail:
    """One notice for a whole PKCS#12 archive (P12一括), listing its certificates."""
    lines = "\n".join(f"  {serial}  {subject}" for serial, subject in items)
    ja = f"PKCS#12 一括ファイルの取得が完了しました({len(items)} 件)。\n\n  取得日時: {_d(at)}\n\n{lines}"
    en = f"The PKCS#12 archive has been downloaded ({len(items)} certificates).\n\n  At: {_d(at)}\n\n{lines}"
    return Mail(
        to,
        "downloaded-bulk",
        f"bulk:{retrieval_id}",
        f"[kakuin] 一括取得完了のお知らせ / Archive downloaded: {len(items)} certificates",
        bilingual(ja, en),
    )


def revocation_complete(to: str, *, serial: str, subject: str, reason: int, at: dt.datetime) -> Mail:
    ja = (
        f"証明書を失効しました。\n\n  シリアル番号: {serial}\n  主体者DN: {subject}\n"
        f"  失効理由: {REASONS_JA.get(reason, str(reason))}\n  失効日時: {_d(at)}"
    )
    en = (
        f"The certificate has been revoked.\n\n  Serial: {serial}\n  Subject: {subject}\n"
        f"  Reason: {reason}\n  At: {_d(at)}"
    )
    return Mail(
        to, "revoked", serial, f"[kakuin] 証明書失効完了のお知らせ / Certificate revoked: {serial}", bilingual(ja, en)
    )


def expiry_item(*, serial: str, subject: str, names: str, not_after: dt.datetime, days_left: int) -> DigestItem:
    return DigestItem(
        f"- {serial}  {subject}  {names}\n  有効期限: {_d(not_after)} (残り{days_left}日)",
        f"- {serial}  {subject}  {names}\n  Expires: {_d(not_after)} ({days_left} days left)",
    )


EXPIRY_INTRO = (
    "次の証明書の有効期限が近づいています。更新(新しい鍵ペアでの更新申請)を行ってください。",
    "The certificates below expire soon. Please renew them (a renewal application with a new key pair).",
)
EXPIRY_SUBJECT = "[kakuin] 証明書有効期限のお知らせ / Certificates expiring soon"


def confirmation_reminder(to: str, *, institution: str, until: dt.datetime | None, institution_id: int) -> Mail:
    when_ja = f"{until:%Y-%m-%d}" if until else "(未確認)"
    when_en = f"{until:%Y-%m-%d}" if until else "(never confirmed)"
    ja = (
        f"機関「{institution}」の年次確認の期限は {when_ja} です。期限までに機関情報(名称・所在地・ドメイン・"
        "担当者)を確認し、認証局に確認を依頼してください。期限を過ぎると証明書を発行できません。"
    )
    en = (
        f"The yearly confirmation of {institution} is due on {when_en}. Please review the institution's details "
        "(name, address, domains, officers) and ask the CA to confirm them; after that date no certificate "
        "can be issued."
    )
    key = f"{institution_id}:{when_en}"
    return Mail(
        to,
        "confirm-reminder",
        key,
        f"[kakuin] 機関の年次確認のお願い / Yearly confirmation: {institution}",
        bilingual(ja, en),
    )


def eab_credential(to: str, *, kid: str, hmac_key: str, acme_url: str, institution: str) -> Mail:
    cmd = (
        f"certbot register --server {acme_url} --email {to} --agree-tos \\\n"
        f"    --eab-kid {kid} --eab-hmac-key={hmac_key}"
    )
    ja = (
        f"ACME用のEAB Credentialを発行しました({institution})。初回のみ次のコマンドで登録してください。\n\n"
        f"  Key ID: {kid}\n  HMAC Key: {hmac_key}\n\n{cmd}\n\nHMAC Keyは再表示できません。他人に知らせないでください。"
    )
    en = (
        f"An ACME EAB credential has been issued ({institution}). Register once with:\n\n"
        f"  Key ID: {kid}\n  HMAC key: {hmac_key}\n\n{cmd}\n\nThe HMAC key cannot be shown again. Keep it secret."
    )
    return Mail(
        to, "eab", kid, "[kakuin] EAB Credentialのお知らせ / ACME EAB credential", bilingual(ja, en), sensitive=True
    )
