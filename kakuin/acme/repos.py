"""ACME repositories: the only ACME code that writes SQL. Services own transactions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kakuin.acme.models import (
    ACMEAccount,
    ACMEAuthorization,
    ACMEChallenge,
    ACMENonce,
    ACMEOrder,
    ARIOverride,
    EABCredential,
)


class NonceRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def add(self, nonce: str, now: dt.datetime) -> None:
        self.s.add(ACMENonce(nonce=nonce, created_at=now))

    def redeem(self, nonce: str, not_before: dt.datetime) -> bool:
        """Delete the nonce; True only for the one caller whose DELETE removed it."""
        result = self.s.execute(
            delete(ACMENonce).where(ACMENonce.nonce == nonce, ACMENonce.created_at >= not_before)
        )
        return (result.rowcount or 0) == 1

    def purge(self, older_than: dt.datetime) -> int:
        result = self.s.execute(delete(ACMENonce).where(ACMENonce.created_at < older_than))
        return result.rowcount or 0


class AccountRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def by_id(self, account_id: int) -> ACMEAccount | None:
        return self.s.get(ACMEAccount, account_id)

    def by_thumbprint(self, thumbprint: str) -> ACMEAccount | None:
        return self.s.scalar(select(ACMEAccount).where(ACMEAccount.thumbprint == thumbprint))

    def add(self, account: ACMEAccount) -> bool:
        """Insert; False when the key or the EAB credential is already bound."""
        try:
            with self.s.begin_nested():
                self.s.add(account)
                self.s.flush()
        except IntegrityError:
            return False
        return True

    def count(self) -> int:
        return self.s.scalar(select(func.count()).select_from(ACMEAccount)) or 0


class OrderRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def add(self, order: ACMEOrder) -> ACMEOrder:
        self.s.add(order)
        self.s.flush()
        return order

    def by_id(self, order_id: int) -> ACMEOrder | None:
        return self.s.get(ACMEOrder, order_id)

    def of_account(
        self, account_id: int, *, before_id: int | None, limit: int
    ) -> Sequence[ACMEOrder]:
        q = select(ACMEOrder).where(ACMEOrder.account_id == account_id)
        if before_id is not None:
            q = q.where(ACMEOrder.id < before_id)
        return self.s.scalars(q.order_by(ACMEOrder.id.desc()).limit(limit)).all()

    def claim_for_finalization(self, order_id: int) -> bool:
        """pending → processing, once: the database decides which request wins."""
        result = self.s.execute(
            update(ACMEOrder)
            .where(ACMEOrder.id == order_id, ACMEOrder.status == "pending")
            .values(status="processing")
        )
        return (result.rowcount or 0) == 1

    def set(self, order_id: int, **values: object) -> None:
        self.s.execute(update(ACMEOrder).where(ACMEOrder.id == order_id).values(**values))

    def by_serial(self, serial: str) -> ACMEOrder | None:
        return self.s.scalar(
            select(ACMEOrder).where(ACMEOrder.certificate_serial == serial).limit(1)
        )

    def replacing(self, cert_id: str) -> Sequence[ACMEOrder]:
        return self.s.scalars(select(ACMEOrder).where(ACMEOrder.replaces == cert_id)).all()

    def count(self) -> int:
        return self.s.scalar(select(func.count()).select_from(ACMEOrder)) or 0


class AuthzRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def add(
        self, authz: ACMEAuthorization, challenge_types: Sequence[str], token: str
    ) -> ACMEAuthorization:
        self.s.add(authz)
        self.s.flush()
        for t in challenge_types:
            self.s.add(ACMEChallenge(authz_id=authz.id, type=t, token=token, status="pending"))
        self.s.flush()
        return authz

    def by_id(self, authz_id: int) -> ACMEAuthorization | None:
        return self.s.get(ACMEAuthorization, authz_id)

    def by_ids(self, ids: Sequence[int]) -> list[ACMEAuthorization]:
        rows = {
            a.id: a
            for a in self.s.scalars(
                select(ACMEAuthorization).where(ACMEAuthorization.id.in_(list(ids)))
            ).all()
        }
        return [rows[i] for i in ids if i in rows]

    def reusable(
        self, account_id: int, identifier: str, wildcard: bool, now: dt.datetime
    ) -> ACMEAuthorization | None:
        """Boulder reuses an account's valid, unexpired authorization for a name."""
        return self.s.scalar(
            select(ACMEAuthorization)
            .where(
                ACMEAuthorization.account_id == account_id,
                ACMEAuthorization.identifier == identifier,
                ACMEAuthorization.wildcard == wildcard,
                ACMEAuthorization.status == "valid",
                ACMEAuthorization.expires > now,
            )
            .order_by(ACMEAuthorization.expires.desc())
            .limit(1)
        )

    def valid_for(self, account_id: int, identifiers: Sequence[str], now: dt.datetime) -> set[str]:
        rows = self.s.scalars(
            select(ACMEAuthorization.identifier).where(
                ACMEAuthorization.account_id == account_id,
                ACMEAuthorization.identifier.in_(list(identifiers)),
                ACMEAuthorization.status == "valid",
                ACMEAuthorization.expires > now,
            )
        ).all()
        return set(rows)

    def challenges(self, authz_ids: Sequence[int]) -> list[ACMEChallenge]:
        return list(
            self.s.scalars(
                select(ACMEChallenge)
                .where(ACMEChallenge.authz_id.in_(list(authz_ids)))
                .order_by(ACMEChallenge.id)
            ).all()
        )

    def challenge(self, challenge_id: int) -> ACMEChallenge | None:
        return self.s.get(ACMEChallenge, challenge_id)

    def claim_challenge(self, challenge_id: int, authz_id: int) -> bool:
        """pending → processing for one challenge of a pending authorization, once."""
        busy = self.s.scalar(
            select(func.count())
            .select_from(ACMEChallenge)
            .where(ACMEChallenge.authz_id == authz_id, ACMEChallenge.status != "pending")
        )
        if busy:
            return False
        result = self.s.execute(
            update(ACMEChallenge)
            .where(ACMEChallenge.id == challenge_id, ACMEChallenge.status == "pending")
            .values(status="processing")
        )
        return (result.rowcount or 0) == 1

    def set_challenge(self, challenge_id: int, **values: object) -> None:
        self.s.execute(
            update(ACMEChallenge).where(ACMEChallenge.id == challenge_id).values(**values)
        )

    def set(self, authz_id: int, **values: object) -> None:
        self.s.execute(
            update(ACMEAuthorization).where(ACMEAuthorization.id == authz_id).values(**values)
        )


class EABRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def add(self, cred: EABCredential) -> EABCredential:
        self.s.add(cred)
        self.s.flush()
        return cred

    def by_kid(self, kid: str) -> EABCredential | None:
        return self.s.scalar(select(EABCredential).where(EABCredential.kid == kid))

    def all(self) -> Sequence[EABCredential]:
        return self.s.scalars(select(EABCredential).order_by(EABCredential.id)).all()

    def bound_account(self, cred_id: int) -> int | None:
        return self.s.scalar(select(ACMEAccount.id).where(ACMEAccount.eab_credential_id == cred_id))

    def count(self) -> int:
        return self.s.scalar(select(func.count()).select_from(EABCredential)) or 0


class ARIRepo:
    def __init__(self, s: Session) -> None:
        self.s = s

    def get(self, serial: str) -> ARIOverride | None:
        return self.s.get(ARIOverride, serial)

    def put(self, serial: str, explanation_url: str | None, now: dt.datetime) -> None:
        row = self.s.get(ARIOverride, serial)
        if row is None:
            self.s.add(ARIOverride(serial=serial, explanation_url=explanation_url, created_at=now))
        else:
            row.explanation_url, row.created_at = explanation_url, now
        self.s.flush()
