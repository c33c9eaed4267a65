"""The ACME resource URLs, built from server.base_url in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class URLs:
    base: str  # server.base_url, no trailing slash

    @property
    def root(self) -> str:
        return f"{self.base}/acme"

    @property
    def directory(self) -> str:
        return f"{self.root}/directory"

    @property
    def new_nonce(self) -> str:
        return f"{self.root}/new-nonce"

    @property
    def new_account(self) -> str:
        return f"{self.root}/new-account"

    @property
    def new_order(self) -> str:
        return f"{self.root}/new-order"

    @property
    def revoke_cert(self) -> str:
        return f"{self.root}/revoke-cert"

    @property
    def key_change(self) -> str:
        return f"{self.root}/key-change"

    @property
    def renewal_info(self) -> str:
        return f"{self.root}/renewal-info"

    def account(self, account_id: int) -> str:
        return f"{self.root}/acct/{account_id}"

    def account_id(self, url: str) -> int | None:
        prefix = f"{self.root}/acct/"
        tail = url[len(prefix) :] if url.startswith(prefix) else ""
        return int(tail) if tail.isdigit() and len(tail) < 19 else None

    def orders(self, account_id: int) -> str:
        return f"{self.root}/acct/{account_id}/orders"

    def order(self, order_id: int) -> str:
        return f"{self.root}/order/{order_id}"

    def finalize(self, order_id: int) -> str:
        return f"{self.root}/order/{order_id}/finalize"

    def authz(self, authz_id: int) -> str:
        return f"{self.root}/authz/{authz_id}"

    def challenge(self, challenge_id: int) -> str:
        return f"{self.root}/chall/{challenge_id}"

    def certificate(self, serial: str, alternate: int = 0) -> str:
        return f"{self.root}/cert/{serial}" + (f"/{alternate}" if alternate else "")

    def ca_certificate(self, slug: str) -> str:
        return f"{self.base}/ca/{slug}.der"
