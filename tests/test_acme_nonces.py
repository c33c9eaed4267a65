"""Nonces are single-use across processes: two contexts on one database (as two
`kakuin serve` processes would be) share them, and the database, not memory,
decides which redemption wins. Also on PostgreSQL (tests/pg.py: KAKUIN_TEST_PG_URL or the local default)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text

from kakuin.acme.repos import NonceRepo
from kakuin.context import Context


def _redeem_race(a: Context, b: Context) -> None:
    nonce = a.acme.service.new_nonce()
    results: list[bool] = []

    def redeem(c: Context) -> None:
        with c.db.session() as s:
            results.append(NonceRepo(s).redeem(nonce, c.clock.now().replace(year=2000)))

    threads = [threading.Thread(target=redeem, args=(c,)) for c in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_nonce_single_use_across_contexts(make_ctx: Callable[..., Context]) -> None:
    a = make_ctx()
    b = Context.open(a.config.data_dir, clock=a.clock)
    try:
        _redeem_race(a, b)
        # A nonce from one process is good in the other, once.
        n = a.acme.service.new_nonce()
        with b.db.session() as s:
            assert NonceRepo(s).redeem(n, b.clock.now().replace(year=2000))
        with a.db.session() as s:
            assert not NonceRepo(s).redeem(n, a.clock.now().replace(year=2000))
    finally:
        b.db.dispose()


@pytest.mark.postgres
def test_nonce_single_use_on_postgresql(make_ctx: Callable[..., Context]) -> None:
    from tests.pg import ADMIN_URL

    url = ADMIN_URL
    schema = f"t_nonce_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    base = make_ctx()
    try:
        os.environ["KAKUIN_DATABASE_URL"] = scoped
        a = Context.open(base.config.data_dir, clock=base.clock)
        b = Context.open(base.config.data_dir, clock=base.clock)
        try:
            _redeem_race(a, b)
        finally:
            a.db.dispose()
            b.db.dispose()
    finally:
        os.environ.pop("KAKUIN_DATABASE_URL", None)
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


