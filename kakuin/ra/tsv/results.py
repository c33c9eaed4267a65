"""Per-row outcomes of applying a TSV file (shared by the server, client and
revocation paths)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from kakuin.ca.issuer import Issued
from kakuin.errors import KakuinError
from kakuin.ra.tsv.check import ClientRow, ServerRow
from kakuin.ra.tsv.messages import policy_message
from kakuin.ra.tsv.parse import RowError

R = TypeVar("R", ServerRow, ClientRow)


@dataclass(frozen=True, slots=True)
class RowResult:
    row: int
    ok: bool
    serial: str | None = None  # issued, renewed or revoked
    kid: str | None = None  # EAB credential made
    enrollment: int | None = None  # in the browser: waiting for the subscriber's CSR (nothing issued yet)
    errors: tuple[RowError, ...] = ()


def split_issued(rows: list[R], outcomes: list[Issued | KakuinError]) -> tuple[list[tuple[R, Issued]], list[RowResult]]:
    """(row, certificate) for the rows issued; a failed RowResult for the others."""
    good, failed = [], []
    for row, out in zip(rows, outcomes, strict=True):
        if isinstance(out, KakuinError):
            failed.append(RowResult(row.row, False, errors=(policy_message(row.row, None, out),)))
        else:
            good.append((row, out))
    return good, failed
