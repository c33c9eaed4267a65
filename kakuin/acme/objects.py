"""RFC 8555 §7.1 resource objects as JSON, rendered from stored rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kakuin.acme.models import ACMEAccount, ACMEAuthorization, ACMEChallenge
from kakuin.acme.service import OrderView, authz_status
from kakuin.acme.urls import URLs
from kakuin.clock import as_utc


def ts(value: dt.datetime | None) -> str | None:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def account(urls: URLs, a: ACMEAccount) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": a.status,
        "contact": list(a.contact or []),
        "orders": urls.orders(a.id),
    }
    if a.tos_agreed:
        body["termsOfServiceAgreed"] = True
    return body


def order(urls: URLs, v: OrderView) -> dict[str, Any]:
    o = v.order
    body: dict[str, Any] = {
        "status": v.status,
        "expires": ts(o.expires),
        "identifiers": o.identifiers,
        "authorizations": [urls.authz(i) for i in o.authz_ids],
        "finalize": urls.finalize(o.id),
    }
    if o.not_before:
        body["notBefore"] = ts(o.not_before)
    if o.not_after:
        body["notAfter"] = ts(o.not_after)
    if o.replaces:
        body["replaces"] = o.replaces
    if v.status == "valid" and o.certificate_serial:
        body["certificate"] = urls.certificate(o.certificate_serial)
    if v.status == "invalid" and o.error:
        body["error"] = o.error
    return body


def challenge(urls: URLs, c: ACMEChallenge) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": c.type,
        "url": urls.challenge(c.id),
        "status": c.status,
        "token": c.token,
    }
    if c.validated_at:
        body["validated"] = ts(c.validated_at)
    if c.error:
        body["error"] = c.error
    return body


def authorization(
    urls: URLs, a: ACMEAuthorization, challenges: list[ACMEChallenge], now: dt.datetime
) -> dict[str, Any]:
    status = authz_status(a, now)
    shown = challenges
    if status == "valid":  # RFC 8555 §7.1.4: show the challenge that succeeded
        shown = [c for c in challenges if c.status == "valid"] or challenges
    body: dict[str, Any] = {
        "identifier": {"type": "dns", "value": a.identifier},
        "status": status,
        "expires": ts(a.expires),
        "challenges": [challenge(urls, c) for c in shown],
    }
    if a.wildcard:
        body["wildcard"] = True
    return body
