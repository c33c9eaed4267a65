"""http-01 validation (RFC 8555 §8.3), with Boulder's rules for redirects.

The VA resolves the name itself (through the VA resolver, never the system's
search path), connects to the resolved address with ``Host: <domain>``, and
follows at most 10 redirects, only to http/https URLs on ports 80/443 (or the
configured challenge ports) whose host is a DNS name. The body is read up to
``MAX_BODY`` octets; the trimmed body must equal the key authorization. Each
request is its own connection to the address (``kakuin.va.httpfetch``); an https
hop sends the host as SNI and does not verify the certificate.
Every address lookup must be DNSSEC-trustworthy (``kakuin.va.dnssec.checked_addresses``,
BR 3.2.2.4, issue #8); the statuses are recorded per host.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

from kakuin.policy.dnssec import worst
from kakuin.va import httpfetch
from kakuin.va.dnssec import AddressRefused, checked_addresses
from kakuin.va.targets import dial_order, non_public_reason

if TYPE_CHECKING:
    from kakuin.va import ValidationAuthority, ValidationRecord
    from kakuin.va.resolver import Resolver

MAX_REDIRECTS = 10  # Boulder: maxRedirect
DEADLINE_TIMEOUTS = 3  # the whole validation: this many connection timeouts
MAX_BODY = 8192  # RFC 8555 §8.3 bodies are ~90 octets; Boulder reads a few KB at most
METHOD = "http-01"


# What httpx sent as it is (WHATWG percent-encode sets): the rest is %-encoded as
# UTF-8, existing %xx escapes are kept.
_PATH_SAFE = "".join(chr(i) for i in range(0x21, 0x7F) if chr(i) not in '"#<>?`{}')
_QUERY_SAFE = "".join(chr(i) for i in range(0x21, 0x7F) if chr(i) not in '"#<>')


class _Refused(Exception):
    def __init__(self, problem: str, error: str) -> None:
        super().__init__(error)
        self.problem = problem
        self.error = error


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


async def _addresses(va: ValidationAuthority, host: str, resolver: Resolver | None,
                     seen: list[dict]) -> list[str]:
    try:
        checked = await checked_addresses(va, host, resolver)
    except AddressRefused as exc:  # SERVFAIL, timeout, REFUSED, bogus, unproven …
        seen.append({"host": host, "status": exc.dnssec, "lookups": exc.evidence})
        raise _Refused("dns", f"DNS problem looking up A/AAAA for {host}: {exc.reason}"
                       ) from None
    if checked.dnssec is not None:
        seen.append({"host": host, "status": checked.dnssec, "lookups": checked.evidence})
    addrs = checked.addresses
    if not addrs:
        raise _Refused("dns", f"DNS problem: no A or AAAA records found for {host}")
    return dial_order(addrs)


async def validate_http01(
    va: ValidationAuthority, domain: str, token: str, key_authorization: str,
    *, resolver: Resolver | None = None,
) -> ValidationRecord:
    """``resolver`` defaults to the VA's own; a remote perspective (issue #6) passes its own."""
    seen: list[dict] = []  # DNSSEC status of each host's address lookups
    port = va.config.http01_port
    # BR "Authorized Ports": 80 and 443, whatever the scheme (as Boulder); the
    # configured challenge ports stand in for them on a test machine.
    ports = {80, 443, port, va.config.tlsalpn01_port}
    allowed = {"http": ports, "https": ports}
    url = (
        f"http://{domain}"
        + (f":{port}" if port != 80 else "")
        + f"/.well-known/acme-challenge/{token}"
    )
    hops: list[dict[str, object]] = []
    timeout = va.config.timeout_seconds
    try:
        # One deadline for the whole validation (as Boulder's context), so that a
        # chain of slow redirects or silent addresses cannot hold the VA for long.
        async with asyncio.timeout(timeout * DEADLINE_TIMEOUTS):
            return await _follow(va, domain, url, key_authorization, allowed, hops, seen, resolver)
    except TimeoutError:
        return va.record(
            METHOD, domain, ok=False, observed=_observed(hops, seen), problem="connection",
            error=f"{url}: the validation took longer than {timeout * DEADLINE_TIMEOUTS:g} s",
            dnssec=_status(seen),
        )


async def _follow(va: ValidationAuthority, domain: str, url: str, key_authorization: str,
                  allowed: dict[str, set[int]], hops: list[dict[str, object]], seen: list[dict],
                  resolver: Resolver | None) -> ValidationRecord:
    timeout = va.config.timeout_seconds
    try:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                parts = urlsplit(url)
                scheme, host = parts.scheme, (parts.hostname or "")
                hop_port = parts.port if parts.port is not None else (443 if scheme == "https" else 80)
            except ValueError as exc:  # a port out of range or not a number, a bad IPv6 literal
                raise _Refused("connection", f"redirect to {url!r}: not a valid URL ({exc})") from None
            if scheme not in allowed:
                raise _Refused(
                    "connection", f"redirect to {url}: only http and https are allowed"
                )
            if hop_port not in allowed[scheme]:
                raise _Refused(
                    "connection", f"redirect to {url}: port {hop_port} is not allowed"
                )
            if not host or _is_ip(host):
                raise _Refused("connection", f"redirect to {url}: the host must be a DNS name")
            if not va.config.allow_private_targets and (why := non_public_reason(host)):
                raise _Refused("connection", f"redirect to {url}: {why}")
            addrs = await _addresses(va, host, resolver, seen)
            target = quote(parts.path or "/", safe=_PATH_SAFE) + (
                "?" + quote(parts.query, safe=_QUERY_SAFE) if parts.query else "")
            headers = [
                ("Host", host if hop_port in (80, 443) else f"{host}:{hop_port}"),
                ("User-Agent", "kakuin-va/1"),
                ("Accept", "*/*"),
                ("Accept-Encoding", "gzip, deflate"),  # as httpx offered (httpfetch decodes)
            ]
            resp, addr, last_exc = None, None, None
            for addr in addrs:  # one connection per address tried, as Boulder's VA
                try:
                    resp = await httpfetch.get(
                        addr, hop_port, target, headers, timeout=timeout,
                        sni=host if scheme == "https" else None, source=va.config.source_address)
                    break
                except (httpfetch.ConnectError, httpfetch.ConnectTimeout) as exc:
                    last_exc = exc  # Boulder: only a failure to connect falls back
            if resp is None:
                raise _Refused(
                    "connection",
                    f"{host} ({', '.join(addrs)}) port {hop_port}: "
                    f"{type(last_exc).__name__}: {last_exc}",
                )
            try:
                hops.append({"url": url, "address": addr, "status": resp.status_code})
                location = resp.first_header("location")
                # BR 3.2.2.4.19: only 301, 302, 307 and 308 redirects are followed.
                if resp.status_code in (301, 302, 307, 308) and location is not None:
                    try:
                        url = urljoin(url, location)
                    except ValueError as exc:
                        raise _Refused("connection", f"redirect to {location!r}: not a valid URL ({exc})") from None
                    continue
                try:
                    body = await resp.read_body(MAX_BODY)
                except httpfetch.BodyTooLarge:
                    raise _Refused("unauthorized", f"{url}: response body is too large") from None
            finally:
                resp.close()
            if resp.status_code != 200:
                raise _Refused(
                    "unauthorized", f"{url}: invalid response status {resp.status_code}"
                )
            # RFC 8555 §8.3: whitespace at the end of the body is ignored (only there).
            got = body.decode("utf-8", "replace").rstrip()
            if got != key_authorization:
                raise _Refused(
                    "unauthorized",
                    f"{url}: the key authorization file did not match (got {got[:100]!r})",
                )
            return va.record(METHOD, domain, ok=True, observed=_observed(hops, seen),
                             dnssec=_status(seen))
        raise _Refused("connection", f"too many redirects (more than {MAX_REDIRECTS})")
    except _Refused as r:
        return va.record(
            METHOD, domain, ok=False, observed=_observed(hops, seen), error=r.error,
            problem=r.problem, dnssec=_status(seen)
        )
    except httpfetch.FetchError as exc:
        return va.record(
            METHOD,
            domain,
            ok=False,
            observed=_observed(hops, seen),
            error=f"{url}: {type(exc).__name__}: {exc}",
            problem="connection",
            dnssec=_status(seen),
        )


def _status(seen: list[dict]) -> str | None:
    return worst(s["status"] for s in seen)


def _observed(hops: list[dict[str, object]], seen: list[dict]) -> dict:
    return {"hops": hops, "dnssec": seen} if seen else {"hops": hops}
