"""What the VA may connect to: public Internet targets only.

A CA's validation must not be turned against its own network (SSRF): a name
that resolves to a loopback, private, link-local (169.254.169.254, the cloud
metadata service) or otherwise reserved address, or a redirect to a
special-use name, is refused before any connection (Boulder's VA drops
reserved addresses the same way). ``[va] allow_private_targets`` (and a
perspective's ``--allow-private-targets``) lifts this for tests and for the
development setup of ``kakuin run``, where everything is on loopback.
"""

from __future__ import annotations

import ipaddress

__all__ = ["NON_PUBLIC_SUFFIXES", "dial_order", "non_public_reason"]

# RFC 6761 / RFC 6762 / RFC 8375 / RFC 9476 special-use names, and .internal
# (ICANN, 2024), .example and .arpa: none is a public Internet name.
NON_PUBLIC_SUFFIXES = ("localhost", "local", "test", "invalid", "example", "internal", "home.arpa",
                       "alt", "onion", "arpa")


def non_public_reason(target: str) -> str | None:
    """Why ``target`` (a name or an address) is not a public Internet target, or None."""
    try:
        ip = ipaddress.ip_address(target.strip("[]"))
    except ValueError:
        name = target.rstrip(".").lower()
        if "." not in name:
            return f"{target} is a single-label name"
        for suffix in NON_PUBLIC_SUFFIXES:
            if name == suffix or name.endswith("." + suffix):
                return f"{target} is under the special-use name .{suffix}"
        return None
    if not ip.is_global:
        return f"{target} is not a public address"
    return None


def dial_order(addresses: list[str]) -> list[str]:
    """The addresses a validation connects to, in order: the first IPv6 one, then
    the first IPv4 one (Boulder's VA; it falls back only when it cannot connect)."""
    return [a for a in addresses if ":" in a][:1] + [a for a in addresses if ":" not in a][:1]
