"""Identifier rules for dNSName and rfc822Name SANs (BR 7.1.2.7.12, RFC 5280 §4.2.1.6)."""

from __future__ import annotations

import ipaddress
import re

import idna

from kakuin.errors import NameRuleError

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # UPKI: only - _ @ . as symbols


def check_dns_name(name: str) -> None:
    """A fully-qualified, lowercase LDH name, optionally with a leading ``*.``."""
    if name != name.lower():
        raise NameRuleError(f"DNS name {name!r} must be lowercase", rule="dns-case")
    if len(name) > 253 or not name:
        raise NameRuleError(f"DNS name {name!r} has a bad length", rule="dns-length")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise NameRuleError(f"{name!r} is an IP address, not a DNS name", rule="dns-ip")
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            raise NameRuleError(f"wildcard {name!r} is too broad", rule="dns-wildcard")
    if len(labels) < 2:
        raise NameRuleError(f"DNS name {name!r} is not fully qualified", rule="dns-fqdn")
    for label in labels:
        if not _LABEL.fullmatch(label):  # fullmatch: "$" would also match before a final newline
            raise NameRuleError(f"DNS name {name!r} has an invalid label {label!r}", rule="dns-label")
        if label[2:4] == "--" and not label.startswith("xn--"):
            raise NameRuleError(f"DNS name {name!r}: reserved label {label!r}", rule="dns-label")
        if label.startswith("xn--"):
            _check_a_label(name, label)
    if labels[-1].isdigit():
        raise NameRuleError(f"DNS name {name!r} has a numeric TLD", rule="dns-label")


def _check_a_label(name: str, label: str) -> None:
    """An xn-- label must be a valid IDNA 2008 A-label, in its one canonical form
    (BR 7.1.4.2.x / RFC 5890; pkilint refuses the certificate otherwise, and
    Boulder refuses the identifier at newOrder)."""
    try:
        ok = idna.encode(idna.decode(label)).decode("ascii") == label
    except (idna.IDNAError, UnicodeError, ValueError):
        ok = False
    if not ok:
        raise NameRuleError(f"DNS name {name!r} has an invalid A-label {label!r}", rule="dns-idna")


def base_domain_of(name: str) -> str:
    return name[2:] if name.startswith("*.") else name


def check_within(name: str, domains: list[str]) -> None:
    """The name must be one of ``domains`` or below one of them."""
    n = base_domain_of(name)
    for d in domains:
        d = d.lower().rstrip(".")
        if n == d or n.endswith("." + d):
            return
    raise NameRuleError(
        f"{name} is not within the institution's registered domains ({', '.join(domains)})",
        rule="domain-not-registered",
    )


def check_email(address: str) -> None:
    local, at, domain = address.rpartition("@")
    if not at or not _EMAIL_LOCAL.fullmatch(local) or ".." in local:
        raise NameRuleError(f"mailbox {address!r} is not a valid address", rule="email-syntax")
    check_dns_name(domain.lower())
    if domain != domain.lower():
        raise NameRuleError(f"mailbox {address!r}: write the domain in lowercase", rule="email-syntax")
