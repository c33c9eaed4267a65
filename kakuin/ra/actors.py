"""Who is acting. Every RA service method takes an ``Actor``: the CA operator
(any institution) or a registration officer (only their own institution)."""

from __future__ import annotations

from dataclasses import dataclass

from kakuin.errors import Unauthorized


@dataclass(frozen=True, slots=True)
class Actor:
    name: str  # recorded with every decision: "operator:cli", "officer:alice@example.ac.jp"
    institution_id: int | None = None  # None: the CA operator

    @classmethod
    def operator(cls, name: str = "operator:cli") -> Actor:
        return cls(name if name.startswith("operator:") else f"operator:{name}")

    @property
    def is_operator(self) -> bool:
        return self.institution_id is None

    def require_operator(self, what: str) -> None:
        if not self.is_operator:
            raise Unauthorized(f"only the CA operator may {what} (この操作は認証局の運用者のみ行えます)")

    def require_institution(self, institution_id: int, name: str = "") -> None:
        """Officers act only for their own institution."""
        if self.institution_id is not None and self.institution_id != institution_id:
            raise Unauthorized(
                f"officers act only for their own institution, not {name or institution_id} "
                "(登録担当者は自機関の申請のみ行えます)"
            )
