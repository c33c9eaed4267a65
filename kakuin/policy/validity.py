"""Validity limits as data.

BR 6.3.2 (TLS BR 2.2.x, ballot SC-081): the maximum validity of a TLS server
certificate and the maximum reuse of domain validation shrink on a schedule by
issuance date. The schedule is the table below and nothing else; tests stand on
its boundary dates.

A "day" is 86,400 seconds and the validity period is counted inclusively
(RFC 5280 §4.1.2.5: notBefore and notAfter are both part of it), so a period of
N days is ``notAfter - notBefore + 1 s == N * 86400 s``. We aim one day under each
limit because linters warn on the limit itself.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from dataclasses import dataclass

from kakuin.errors import ValidityError

DAY = dt.timedelta(days=1)
SECOND = dt.timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class ScheduleStep:
    """From ``since`` (inclusive, UTC date of issuance) these limits apply."""

    since: dt.date
    max_validity_days: int
    dcv_reuse_days: int


# BR 6.3.2 and 4.2.1: the history (needed to judge and reissue old
# certificates, e.g. the 2020 incident's) and the schedule of SC-081v3.
TLS_SCHEDULE: tuple[ScheduleStep, ...] = (
    ScheduleStep(dt.date(1970, 1, 1), 1185, 1185),  # 39 months (BR 1.x, from 2015-04-01)
    ScheduleStep(dt.date(2018, 3, 1), 825, 825),  # ballot 193
    ScheduleStep(dt.date(2020, 9, 1), 398, 825),  # ballot SC-31 / root programs
    ScheduleStep(dt.date(2021, 10, 1), 398, 398),  # ballot SC-42: DCV reuse 398 days
    ScheduleStep(dt.date(2026, 3, 15), 200, 200),
    ScheduleStep(dt.date(2027, 3, 15), 100, 100),
    ScheduleStep(dt.date(2029, 3, 15), 47, 10),
)


def _step(at: dt.datetime, schedule: tuple[ScheduleStep, ...] = TLS_SCHEDULE) -> ScheduleStep:
    day = at.astimezone(dt.UTC).date()
    current = schedule[0]
    for step in schedule:
        if step.since <= day:
            current = step
    return current


def max_tls_validity_days(at: dt.datetime) -> int:
    """Maximum TLS server certificate validity, in days, for issuance at ``at``."""
    return _step(at).max_validity_days


def dcv_reuse_days(at: dt.datetime) -> int:
    """How long a completed domain validation may be reused, for issuance at ``at``."""
    return _step(at).dcv_reuse_days


def period_days(not_before: dt.datetime, not_after: dt.datetime) -> float:
    """Inclusive validity period in days (RFC 5280 §4.1.2.5)."""
    return (not_after - not_before + SECOND) / DAY


def not_after_for(not_before: dt.datetime, days: int) -> dt.datetime:
    """The notAfter that makes an inclusive period of exactly ``days`` days."""
    return not_before + days * DAY - SECOND


class OverLimit(enum.StrEnum):
    """What to do with a request for longer than allowed (config ``policy.over_limit``)."""

    SHORTEN = "shorten"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class ValidityDecision:
    not_before: dt.datetime
    not_after: dt.datetime
    days: int
    note: str | None = None  # set when the request was shortened


def _add_months(at: dt.datetime, months: int) -> dt.datetime:
    month_index = at.month - 1 + months
    year = at.year + month_index // 12
    month = month_index % 12 + 1
    # Clamp the day (e.g. 31 January + 1 month → 28/29 February).
    for day in (at.day, 30, 29, 28):
        try:
            return at.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise ValueError("unreachable")


def _max_after(not_before: dt.datetime, limit_days: int | None, limit_months: int | None) -> dt.datetime:
    if limit_days is not None:
        return not_after_for(not_before, limit_days)
    if limit_months is not None:
        return _add_months(not_before, limit_months) - SECOND
    raise ValueError("a profile needs a validity limit")


def decide_exact_not_after(
    *, now: dt.datetime, limit_days: int | None, limit_months: int | None, not_after: dt.datetime
) -> ValidityDecision:
    """A leaf valid from ``now`` (to the second) until exactly ``not_after``, as an
    ACME order's notAfter asks. RFC 8555 §7.4: the CA MUST NOT issue a certificate
    other than the one requested, so a notAfter beyond the limit is refused here,
    never shortened (whatever ``policy.over_limit`` says)."""
    not_before = now.replace(microsecond=0)
    if not_after.microsecond:
        raise ValidityError("the requested notAfter must be a whole second", rule="validity-precision")
    if not_after <= not_before:
        raise ValidityError("the requested notAfter is not after the issuance time", rule="validity-min")
    max_after = _max_after(not_before, limit_days, limit_months)
    if not_after > max_after:
        raise ValidityError(
            f"the requested notAfter {not_after:%Y-%m-%dT%H:%M:%SZ} is beyond the limit of "
            f"{int(period_days(not_before, max_after))} days for issuance on {now.date().isoformat()}",
            rule="validity-max",
        )
    return ValidityDecision(not_before, not_after, math.ceil(period_days(not_before, not_after)))


def decide_validity(
    *,
    now: dt.datetime,
    limit_days: int | None,
    limit_months: int | None,
    requested_days: int | None,
    default_days: int | None,
    over_limit: OverLimit,
    backdate: dt.timedelta = dt.timedelta(0),
) -> ValidityDecision:
    """Choose notBefore/notAfter for a leaf.

    ``limit_days`` is the hard maximum (the TLS schedule); ``limit_months`` is
    an alternative maximum in calendar months (client certificates). The
    default period is one day under the limit, because linters warn on the
    limit itself.
    """
    not_before = now.replace(microsecond=0) - backdate
    max_after = _max_after(not_before, limit_days, limit_months)
    max_days = int(period_days(not_before, max_after))

    if requested_days is None:
        days = default_days if default_days is not None else max_days - 1
        days = min(days, max_days - 1) if max_days > 1 else max_days
        return ValidityDecision(not_before, not_after_for(not_before, days), days)

    if requested_days < 1:
        raise ValidityError("requested validity must be at least 1 day", rule="validity-min")
    if requested_days <= max_days:
        return ValidityDecision(not_before, not_after_for(not_before, requested_days), requested_days)
    message = (
        f"requested validity {requested_days} days is over the limit of {max_days} days "
        f"for issuance on {now.date().isoformat()}"
    )
    if over_limit is OverLimit.REFUSE:
        raise ValidityError(message, rule="validity-max")
    days = max_days - 1
    return ValidityDecision(
        not_before,
        not_after_for(not_before, days),
        days,
        note=f"{message}; shortened to {days} days",
    )
