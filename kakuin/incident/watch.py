"""Expiry watch (PRODUCT.md §17): certificates nearing expiry that nobody has
renewed. Automated renewal fails silently (a changed firewall, a cron job that
no longer runs, an account whose EAB was revoked), so kakuin looks from its own
side: a certificate without a successor (``progress.successors``: RA renewal,
ACME ``replaces``, or any newer certificate for the same names and
institution) that expires within the window is reported, and its holders get
one digest a day.

``run_expiry_watch`` is what cron (``kakuin watch expiry``) or a worker calls;
``expiry_metrics`` / ``metrics_text`` are the numbers for GET /metrics.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from kakuin.clock import as_utc
from kakuin.incident.progress import successors
from kakuin.notify.compose import DigestItem, build_digest
from kakuin.notify.outbox import enqueue
from kakuin.ra.models import OutboxMail
from kakuin.ra.recipients import officer_emails
from kakuin.store.models import Certificate

if TYPE_CHECKING:
    from kakuin.context import Context

KIND = "expiry-watch"
WINDOWS = (7, 30)


@dataclass(frozen=True, slots=True)
class Expiring:
    serial: str
    subject: str
    names: str
    profile: str
    source: str
    institution_id: int | None
    not_after: dt.datetime
    days_left: int
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WatchResult:
    checked_at: dt.datetime
    window_days: int
    expiring: tuple[Expiring, ...]
    mails: int


def find_expiring(ctx: Context, days: int = 30) -> list[Expiring]:
    """Valid, unrevoked certificates expiring within ``days`` that have no successor."""
    from kakuin.incident.report import _holders

    now = ctx.clock.now()
    horizon = now + dt.timedelta(days=days)
    with ctx.db.session() as s:
        rows = list(
            s.scalars(
                select(Certificate)
                .where(
                    Certificate.state == "issued",
                    Certificate.revoked_at.is_(None),
                    Certificate.not_after > now,
                    Certificate.not_after <= horizon,
                    Certificate.profile != "ocsp-responder",
                    ~Certificate.requested_by.in_(("kakuin portal", "ocsp-responder")),
                )
                .order_by(Certificate.not_after)
            )
        )
        done = successors(s, rows)
        left = [c for c in rows if c.serial not in done]
        holders = _holders(s, left)
        officers: dict[int | None, list[str]] = {}
        out = []
        for c in left:
            inst, source, officer, subscriber = holders[c.serial]
            to = {a for v in (subscriber, officer) for a in (v or "").split(", ") if "@" in a}
            if not to and inst is not None:
                to = set(officer_emails(s, inst, officers))
            na = as_utc(c.not_after)
            out.append(
                Expiring(
                    c.serial,
                    c.subject,
                    c.sans,
                    c.profile,
                    source,
                    inst,
                    na,
                    (na - now) // dt.timedelta(days=1),
                    tuple(sorted(to)),
                )
            )
    return out


def run_expiry_watch(ctx: Context, days: int = 30, *, alert: bool = True) -> WatchResult:
    """Find what is expiring without a successor and queue one digest per
    recipient for today (re-running the same day queues nothing twice)."""
    now = ctx.clock.now()
    found = find_expiring(ctx, days)
    mails = 0
    if alert and found:
        by: dict[str, list[DigestItem]] = defaultdict(list)
        for e in found:
            item = DigestItem(
                f"- シリアル番号: {e.serial}\n    名前: {e.names or e.subject}\n    有効期限: {e.not_after:%Y-%m-%d}"
                f"(残り {e.days_left} 日)\n    後継の証明書: なし",
                f"- Serial: {e.serial}\n    Names: {e.names or e.subject}\n    Expires: {e.not_after:%Y-%m-%d} "
                f"({e.days_left} days left)\n    Successor: none",
            )
            for r in e.recipients:
                by[r].append(item)
        intro = (
            "下記の証明書は有効期限が近づいていますが、まだ更新されていません。"
            "自動更新(certbot 等)を使っている場合は、更新が失敗していないか"
            "(certbot renew --dry-run、cron/systemd タイマー、ファイアウォール)を確認してください。",
            "The certificates below expire soon and have not been renewed. If renewal is automated (certbot …), "
            "check that it still works (certbot renew --dry-run, the cron job or systemd timer, firewalls).",
        )
        m = ctx.config.mail
        with ctx.db.session() as s:
            for to, items in sorted(by.items()):
                for mail in build_digest(
                    to,
                    KIND,
                    now.date().isoformat(),
                    "[kakuin] 証明書が更新されていません / Certificates not renewed",
                    intro,
                    items,
                    max_bytes=m.max_message_bytes,
                    sender=m.sender,
                    at=now,
                ):
                    mails += enqueue(s, mail, sender=m.sender, now=now)
    return WatchResult(now, days, tuple(found), mails)


def expiry_metrics(ctx: Context, windows: Sequence[int] = WINDOWS) -> dict[str, float]:
    """Numbers for GET /metrics: gauges of certificates expiring without a successor
    per window, and the counter of expiry-watch alert mails queued so far."""
    longest = find_expiring(ctx, max(windows))
    now = ctx.clock.now()
    out: dict[str, float] = {}
    for w in windows:
        horizon = now + dt.timedelta(days=w)
        out[f'kakuin_certificates_expiring_without_successor{{within="{w}d"}}'] = float(
            sum(1 for e in longest if e.not_after <= horizon)
        )
    with ctx.db.session() as s:
        out["kakuin_expiry_watch_alerts_total"] = float(
            s.scalar(select(func.count()).select_from(OutboxMail).where(OutboxMail.kind == KIND)) or 0
        )
    return out


def metrics_text(ctx: Context) -> str:
    """The same numbers in the Prometheus text format."""
    m = expiry_metrics(ctx)
    lines = [
        "# HELP kakuin_certificates_expiring_without_successor Valid certificates expiring within the "
        "window that have no successor.",
        "# TYPE kakuin_certificates_expiring_without_successor gauge",
    ]
    lines += [f"{k} {v:g}" for k, v in m.items() if k.startswith("kakuin_certificates_expiring")]
    lines += [
        "# HELP kakuin_expiry_watch_alerts_total Expiry-watch alert mails queued.",
        "# TYPE kakuin_expiry_watch_alerts_total counter",
        f"kakuin_expiry_watch_alerts_total {m['kakuin_expiry_watch_alerts_total']:g}",
    ]
    return "\n".join(lines) + "\n"
