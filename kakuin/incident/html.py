"""HTML pages for the portal: an incident report and a server check.

Self-contained (no template files, inline CSS), escaped throughout; the portal
mounts them by calling ``render_report(IncidentService(ctx).report(name))`` and
``render_check(check_server(ctx, host))`` and returning the string as
``text/html; charset=utf-8``.
"""

from __future__ import annotations

from html import escape

from kakuin.incident.check import CheckResult
from kakuin.incident.report import Group, IncidentReport

_CSS = """body{font-family:system-ui,'Hiragino Sans','Noto Sans JP',sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}.pending{color:#b35c00}.replaced{color:#1a7f37}.revoked{color:#999}
.ok{color:#1a7f37}.warning{color:#b35c00}.critical{color:#c0392b;font-weight:bold}small{color:#666}"""

_T = {
    "ja": {
        "report": "インシデント報告",
        "rule": "対象の条件",
        "deadline": "失効予定日時",
        "opened": "開始",
        "status": "状態",
        "total": "対象",
        "pending": "未対応",
        "replaced": "置き換え済み",
        "revoked": "失効済み",
        "expired": "期限切れ",
        "institution": "機関",
        "officer": "登録担当者",
        "subscriber": "利用管理者",
        "serial": "シリアル番号",
        "names": "名前",
        "not_after": "有効期限",
        "state": "状態",
        "note": "備考",
        "issuer": "発行CA",
        "shortened": "再発行後の有効期限が短くなる証明書",
        "check": "サーバ証明書の確認",
        "finding": "結果",
        "action": "対応",
        "chain": "サーバが送ったチェーン",
        "replacement": "新しい中間CA",
        "short": "再発行後 {d}(現在より {n} 日短い)",
    },
    "en": {
        "report": "Incident report",
        "rule": "Rule",
        "deadline": "Revocation deadline",
        "opened": "Opened",
        "status": "Status",
        "total": "affected",
        "pending": "pending",
        "replaced": "replaced",
        "revoked": "revoked",
        "expired": "expired",
        "institution": "Institution",
        "officer": "Officer",
        "subscriber": "Subscriber",
        "serial": "Serial",
        "names": "Names",
        "not_after": "Expires",
        "state": "State",
        "note": "Note",
        "issuer": "Issuer",
        "shortened": "certificates whose reissue is shorter",
        "check": "Server check",
        "finding": "Findings",
        "action": "What to do",
        "chain": "Chain sent by the server",
        "replacement": "New intermediate",
        "short": "reissue ends {d} ({n} days earlier)",
    },
}


def _page(title: str, body: str, lang: str) -> str:
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )


def _group_table(title: str, groups: tuple[Group, ...], t: dict[str, str]) -> str:
    rows = "".join(
        f"<tr><td>{escape(g.key)}</td><td>{g.total}</td><td class=pending>{g.pending}</td>"
        f"<td class=replaced>{g.replaced}</td><td class=revoked>{g.revoked}</td>"
        f"<td class=revoked>{g.expired}</td></tr>"
        for g in groups
    )
    return (
        f"<h2>{escape(title)}</h2><table><tr><th>{escape(title)}</th><th>{t['total']}</th><th>{t['pending']}</th>"
        f"<th>{t['replaced']}</th><th>{t['revoked']}</th><th>{t['expired']}</th></tr>{rows}</table>"
    )


def render_report(report: IncidentReport, lang: str = "ja") -> str:
    t = _T["ja" if lang == "ja" else "en"]
    i = report.incident
    tot = report.totals
    summary = i.summary_ja if lang == "ja" else i.summary_en
    head = (
        f"<h1>{t['report']}: {escape(i.name)}</h1>"
        + (f"<p>{escape(summary)}</p>" if summary else "")
        + f"<table><tr><th>{t['rule']}</th><td>{escape(i.rule_text)}</td></tr>"
        f"<tr><th>{t['opened']}</th><td>{i.opened_at:%Y-%m-%d %H:%M} UTC</td></tr>"
        f"<tr><th>{t['deadline']}</th><td>{i.deadline:%Y-%m-%d %H:%M} UTC</td></tr>"
        f"<tr><th>{t['replacement']}</th><td>{escape(i.replacement or '-')}</td></tr>"
        f"<tr><th>{t['status']}</th><td>{escape(i.status)}</td></tr></table>"
        f"<p><b>{tot.total}</b> {t['total']} · <span class=pending>{tot.pending} {t['pending']}</span> · "
        f"<span class=replaced>{tot.replaced} {t['replaced']}</span> · "
        f"<span class=revoked>{tot.revoked} {t['revoked']}</span> · {report.shortened} {t['shortened']}</p>"
    )
    groups = (
        _group_table(t["institution"], report.by_institution, t)
        + _group_table(t["officer"], report.by_officer, t)
        + _group_table(t["subscriber"], report.by_subscriber, t)
    )
    rows = []
    for c in report.certificates:
        note = ""
        if c.shortened_days > 0 and c.reissue_not_after is not None:
            note = t["short"].format(d=f"{c.reissue_not_after:%Y-%m-%d}", n=c.shortened_days)
        rows.append(
            f"<tr><td><code>{escape(c.serial)}</code></td><td>{escape(c.names or c.subject)}</td>"
            f"<td>{escape(c.institution)}</td><td>{escape(c.subscriber)}</td><td>{escape(c.issuer)}</td>"
            f"<td>{c.not_after:%Y-%m-%d}</td><td class={c.state}>{t[c.state]}"
            f"{' → ' + escape(c.replaced_by) if c.replaced_by else ''}</td><td>{escape(note)}</td></tr>"
        )
    certs = (
        f"<h2>{t['serial']}</h2><table><tr><th>{t['serial']}</th><th>{t['names']}</th><th>{t['institution']}</th>"
        f"<th>{t['subscriber']}</th><th>{t['issuer']}</th><th>{t['not_after']}</th><th>{t['state']}</th>"
        f"<th>{t['note']}</th></tr>{''.join(rows)}</table>"
        f"<p><small>{report.generated_at:%Y-%m-%d %H:%M:%S} UTC</small></p>"
    )
    return _page(f"{t['report']}: {i.name}", head + groups + certs, lang)


def render_check(result: CheckResult, lang: str = "ja") -> str:
    t = _T["ja" if lang == "ja" else "en"]
    ja = lang == "ja"
    items = "".join(f"<li class={f.severity}>{escape(f.ja if ja else f.en)}</li>" for f in result.findings)
    actions = list(dict.fromkeys(a for f in result.findings if (a := (f.action_ja if ja else f.action_en))))
    act = f"<h2>{t['action']}</h2><ul>{''.join(f'<li>{escape(a)}</li>' for a in actions)}</ul>" if actions else ""
    chain = "".join(
        f"<tr><td>{n}</td><td>{escape(c.subject)}</td><td>{escape(c.issuer)}</td>"
        f"<td>{c.not_after:%Y-%m-%d}</td><td>{escape(c.ca or '')}</td></tr>"
        for n, c in enumerate(result.chain)
    )
    body = (
        f"<h1>{t['check']}: {escape(result.host)}:{result.port}</h1>"
        f"<p class={result.severity}>{escape(result.severity.upper())}</p>"
        f"<h2>{t['finding']}</h2><ul>{items}</ul>{act}"
        f"<h2>{t['chain']}</h2><table><tr><th>#</th><th>subject</th><th>issuer</th><th>{t['not_after']}</th>"
        f"<th>CA</th></tr>{chain}</table>"
        f"<p><small>{result.checked_at:%Y-%m-%d %H:%M:%S} UTC</small></p>"
    )
    return _page(f"{t['check']}: {result.host}", body, lang)
