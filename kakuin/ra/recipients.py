"""Who gets an institution's mail when a certificate names no one."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from kakuin.ra.models import Person


def officer_emails(s: Session, institution_id: int, cache: dict[int, list[str]]) -> list[str]:
    """The e-mail addresses of the institution's active registration officers,
    looked up once per institution (``cache`` is the caller's, per run)."""
    if institution_id not in cache:
        cache[institution_id] = list(
            s.scalars(
                select(Person.email).where(
                    Person.institution_id == institution_id, Person.role == "officer", Person.active.is_(True)
                )
            )
        )
    return cache[institution_id]
