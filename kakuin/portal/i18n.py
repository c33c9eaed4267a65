"""Japanese and English for the portal. The language comes from ``?lang=``
(which also sets a cookie), then the ``kakuin_lang`` cookie, then the
browser's Accept-Language; Japanese when nothing says otherwise."""

from __future__ import annotations

from collections.abc import Mapping

LANGS = ("ja", "en")
COOKIE = "kakuin_lang"

# key → (ja, en)
CATALOGUE: dict[str, tuple[str, str]] = {
    "app": ("kakuin 登録担当者ポータル", "kakuin officers' portal"),
    "skip": ("本文へ移動", "Skip to content"),
    "nav.dashboard": ("ダッシュボード", "Dashboard"),
    "nav.tsv": ("TSV申請", "TSV upload"),
    "nav.certs": ("証明書検索", "Certificates"),
    "nav.eab": ("EAB認証情報", "EAB credentials"),
    "nav.revocations": ("失効申請", "Revocation requests"),
    "nav.api": ("REST API", "REST API"),
    "signed_in_as": ("ログイン中", "Signed in as"),
    "role.operator": ("認証局運用者", "CA operator"),
    "role.officer": ("登録担当者", "Registration officer"),
    "switch_lang": ("English", "日本語"),
    # dashboard
    "dash.title": ("ダッシュボード", "Dashboard"),
    "dash.institution": ("機関", "Institution"),
    "dash.issued": ("発行数", "Issued"),
    "dash.valid": ("有効", "Valid"),
    "dash.revoked": ("失効", "Revoked"),
    "dash.downloaded": ("ダウンロード済", "Downloaded"),
    "dash.not_downloaded": ("未ダウンロード", "Not downloaded"),
    "dash.expiring": ("30日以内に期限切れ", "Expiring within 30 days"),
    "dash.domains": ("ドメイン別", "By domain"),
    "dash.domain": ("ドメイン", "Domain"),
    "dash.chart": ("今後の有効期限(週別)", "Upcoming expiries by week"),
    "dash.chart_desc": (
        "今後{weeks}週間に有効期限を迎える証明書の数を週ごとに示します。",
        "Certificates reaching their expiry in each of the next {weeks} weeks.",
    ),
    "dash.chart_empty": (
        "この期間に有効期限を迎える証明書はありません。",
        "No certificate expires in this period.",
    ),
    "dash.week_of": ("週の始まり", "Week of"),
    "dash.count": ("件数", "Count"),
    "dash.pending": ("未処理の失効申請", "Open revocation requests"),
    "dash.overdue": ("期限超過", "overdue"),
    "dash.none": ("表示する機関がありません。", "No institution to show."),
    # TSV
    "tsv.title": ("TSV申請", "TSV upload"),
    "tsv.intro": (
        "Shift_JISまたはUTF-8のTSVファイルを選択してください。「確認」は何も登録せずに全行を検査します。",
        "Choose a TSV file (Shift_JIS or UTF-8). “Check” examines every row without storing anything.",
    ),
    "tsv.file": ("TSVファイル", "TSV file"),
    "tsv.institution": ("機関", "Institution"),
    "tsv.row_by_row": (
        "正しい行だけを申請する(誤りのある行は報告のみ)",
        "Apply the good rows only (report the bad ones)",
    ),
    "tsv.check": ("確認", "Check"),
    "tsv.apply": ("申請(発行)", "Apply (issue)"),
    "tsv.result": ("結果", "Result"),
    "tsv.ok": (
        "{rows}行すべて問題ありません(種類: {kind}、文字コード: {encoding})。",
        "All {rows} rows are good (kind: {kind}, encoding: {encoding}).",
    ),
    "tsv.errors": (
        "{n}件の誤りがあります。ファイルを修正して再度アップロードしてください。",
        "{n} error(s). Fix the file and upload it again.",
    ),
    "tsv.refused": ("申請は受け付けられませんでした。", "The application was refused."),
    "tsv.applied": ("申請を受け付けました(申請番号 {id}、状態: {status})。", "Application {id} accepted ({status})."),
    "tsv.row": ("行", "Row"),
    "tsv.column": ("列", "Column"),
    "tsv.rule": ("規則", "Rule"),
    "tsv.message": ("内容", "Message"),
    "tsv.outcome": ("結果", "Outcome"),
    "tsv.serial_or_kid": ("シリアル番号 / 鍵識別子", "Serial / key identifier"),
    "tsv.row_ok": ("完了", "done"),
    "tsv.row_failed": ("失敗", "failed"),
    "tsv.mailed": (
        "利用管理者に取得用URLをメールで送信します。",
        "Each subscriber is mailed a retrieval link.",
    ),
    "tsv.pending_enrollment": (
        "ブラウザでの鍵生成待ち(利用管理者に取得URLを送信済み)",
        "pending enrollment in the browser (link mailed to the subscriber)",
    ),
    # certificates
    "certs.title": ("証明書検索", "Certificates"),
    "certs.query": ("シリアル番号・主体者・ドメイン", "Serial, subject or domain"),
    "certs.status": ("状態", "Status"),
    "certs.any": ("すべて", "any"),
    "certs.search": ("検索", "Search"),
    "certs.serial": ("シリアル番号", "Serial"),
    "certs.subject": ("主体者", "Subject"),
    "certs.names": ("名前", "Names"),
    "certs.profile": ("種別", "Profile"),
    "certs.not_after": ("有効期限", "Not after"),
    "certs.not_before": ("有効期間の開始", "Not before"),
    "certs.none": ("該当する証明書はありません。", "No certificate matches."),
    "certs.issuer": ("発行CA", "Issuer"),
    "certs.key": ("鍵", "Key"),
    "certs.subscriber": ("利用管理者", "Subscriber"),
    "certs.officer": ("申請した登録担当者", "Applied by"),
    "certs.downloaded": ("ダウンロード", "Downloaded"),
    "certs.yes": ("済", "yes"),
    "certs.no": ("未", "not yet"),
    "certs.replaces": ("更新元", "Replaces"),
    "certs.replaced_by": ("更新先", "Replaced by"),
    "certs.revoked_at": ("失効日時", "Revoked at"),
    "certs.reason": ("失効理由", "Reason"),
    "certs.comment": ("コメント", "Comment"),
    "certs.pem": ("証明書(PEM)", "Certificate (PEM)"),
    "certs.revoke": ("この証明書を失効する", "Revoke this certificate"),
    "certs.revoke_help": (
        "失効は取り消せません。理由「unspecified (0)」にはコメントが必要です。",
        "Revocation cannot be undone. Reason “unspecified (0)” needs a comment.",
    ),
    "certs.revoke_button": ("失効する", "Revoke"),
    "certs.revoked_ok": ("証明書 {serial} を失効しました。", "Certificate {serial} has been revoked."),
    "status.valid": ("有効", "valid"),
    "status.revoked": ("失効", "revoked"),
    "status.expired": ("期限切れ", "expired"),
    "status.not-yet-valid": ("有効期間前", "not yet valid"),
    # EAB
    "eab.title": ("EAB認証情報(ACME)", "EAB credentials (ACME)"),
    "eab.intro": (
        "ACMEクライアント(certbot など)の登録に使う鍵識別子とHMACキーを発行します。"
        "HMACキーは発行時に一度だけ表示されます。",
        "Key identifiers and HMAC keys for registering ACME clients such as certbot. "
        "The HMAC key is shown once, when it is issued.",
    ),
    "eab.kid": ("鍵識別子", "Key identifier"),
    "eab.domains": ("ドメイン", "Domains"),
    "eab.domains_help": (
        "空白区切り。空欄なら機関の承認済みドメインすべて。",
        "Space separated. Empty: every approved domain of the institution.",
    ),
    "eab.days": ("有効日数(任意)", "Valid for days (optional)"),
    "eab.created": ("発行日時", "Created"),
    "eab.expires": ("有効期限", "Expires"),
    "eab.state": ("状態", "State"),
    "eab.state.unused": ("未使用", "unused"),
    "eab.state.bound": ("登録済", "bound to an account"),
    "eab.state.revoked": ("失効", "revoked"),
    "eab.issue": ("発行する", "Issue"),
    "eab.revoke": ("失効する", "Revoke"),
    "eab.none": ("EAB認証情報はありません。", "No EAB credentials."),
    "eab.new": ("新しいEAB認証情報", "New EAB credential"),
    "eab.shown_once": (
        "HMACキーはこの画面でのみ表示されます。今すぐ控えてください。",
        "This HMAC key is shown only now. Copy it before you leave this page.",
    ),
    "eab.hmac": ("HMACキー", "HMAC key"),
    "eab.certbot": ("certbot での登録", "Register with certbot"),
    "eab.revoked_ok": ("EAB認証情報 {kid} を失効しました。", "EAB credential {kid} has been revoked."),
    "eab.all_domains": ("(機関のすべて)", "(all of the institution's)"),
    # revocation requests
    "rev.title": ("未処理の失効申請", "Pending revocation requests"),
    "rev.intro": (
        "鍵の危殆化は24時間以内、その他の理由は5日以内に失効しなければなりません(BR 4.9.1.1)。",
        "Key compromise must be revoked within 24 hours, other reasons within 5 days (BR 4.9.1.1).",
    ),
    "rev.reported": ("報告日時", "Reported"),
    "rev.by": ("報告者", "Reported by"),
    "rev.deadline": ("期限", "Deadline"),
    "rev.left": ("残り時間", "Time left"),
    "rev.overdue": ("期限超過", "Overdue"),
    "rev.none": ("未処理の失効申請はありません。", "No pending revocation requests."),
    # errors and refusal
    "error.title": ("エラー", "Error"),
    "error.csrf": (
        "フォームの有効期限が切れたか、不正な送信です。ページを再読み込みしてやり直してください。",
        "The form is stale or was not sent from this portal. Reload the page and try again.",
    ),
    "error.not_found": ("見つかりません。", "Not found."),
    "error.unauthorized": ("この操作は許可されていません。", "You may not do this."),
    "refused.title": ("アクセスできません", "Access refused"),
    "refused.lead": (
        "このポータルは、kakuin が発行した登録担当者のクライアント証明書でのみ利用できます。",
        "This portal accepts only a registration officer's client certificate issued by kakuin.",
    ),
    "refused.no-certificate": (
        "クライアント証明書が提示されていません。ブラウザに登録担当者証明書(PKCS#12)をインポートしてから再度アクセスしてください。",
        "No client certificate was presented. "
        "Import your officer certificate (PKCS#12) into the browser and try again.",
    ),
    "refused.not-client-ca": (
        "提示された証明書は kakuin のクライアント認証CAが発行したものではありません。",
        "The certificate presented was not issued by kakuin's client-authentication CA.",
    ),
    "refused.expired": (
        "提示された証明書は有効期間外です。",
        "The certificate presented is outside its validity period.",
    ),
    "refused.unknown-certificate": (
        "提示された証明書は kakuin の記録にありません。",
        "kakuin has no record of the certificate presented.",
    ),
    "refused.revoked": ("提示された証明書は失効しています。", "The certificate presented has been revoked."),
    "refused.not-officer": (
        "提示された証明書は有効な登録担当者のものではありません。",
        "The certificate presented does not belong to an active registration officer.",
    ),
    "refused.help": (
        "証明書は認証局の運用者が kakuin officer add で発行します。",
        "The CA operator issues officer certificates with kakuin officer add.",
    ),
}


def negotiate(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for v in (query, cookie):
        if v in LANGS:
            return v  # type: ignore[return-value]
    best, best_q = "ja", -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGS and q > best_q:
            best, best_q = lang, q
    return best


class Translator:
    def __init__(self, lang: str, catalogue: Mapping[str, tuple[str, str]] = CATALOGUE) -> None:
        self.lang = lang if lang in LANGS else "ja"
        self._i = LANGS.index(self.lang)
        self._cat = catalogue

    def __call__(self, key: str, **params: object) -> str:
        pair = self._cat.get(key)
        if pair is None:
            return key
        text = pair[self._i]
        return text.format(**params) if params else text

    @property
    def other(self) -> str:
        return "en" if self.lang == "ja" else "ja"
