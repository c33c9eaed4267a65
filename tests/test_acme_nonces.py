"""Nonces are single-use across processes: two contexts on one database (as two
`kakuin serve` processes would be) accept each other's nonces (one installation
secret), and the database, not memory, decides which redemption wins. Forged,
altered, expired and future nonces are refused before the database is asked.
Also on PostgreSQL (tests/pg.py: KAKUIN_TEST_PG_URL or the local default)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text

from kakuin.context import Context


def _redeem_race(a: Context, b: Context) -> None:
    nonce = a.acme.service.new_nonce()
    results: list[bool] = []

    def redeem(c: Context) -> None:
        results.append(c.acme.service.redeem_nonce(nonce))

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
        assert b.acme.service.redeem_nonce(n)
        assert not a.acme.service.redeem_nonce(n)
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




def test_nonce_forged_altered_expired(make_ctx: Callable[..., Context]) -> None:
    import base64
    import datetime as dt

    from sqlalchemy import func, select

    from kakuin.acme.models import ACMENonce
    from kakuin.acme.nonces import NonceMint
    from kakuin.acme.service import NONCE_LIFETIME

    c = make_ctx()
    svc = c.acme.service
    now = c.clock.now()
    other = NonceMint(b"k" * 32, NONCE_LIFETIME).mint(now)  # another installation's key
    good = svc.new_nonce()
    raw = bytearray(base64.urlsafe_b64decode(good + "="))
    raw[3] ^= 1  # the issue time moved: the MAC no longer matches
    altered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    old = svc.nonces.mint(now - NONCE_LIFETIME - dt.timedelta(seconds=1))
    future = svc.nonces.mint(now + dt.timedelta(minutes=5))
    for bad in (other, altered, old, future, "", "x" * 43, good + "A", "!" * 43):
        assert not svc.redeem_nonce(bad), bad
    with c.db.session() as s:  # refused before the database was asked
        assert s.scalar(select(func.count()).select_from(ACMENonce)) == 0
    assert svc.redeem_nonce(good)
    assert not svc.redeem_nonce(good)


def test_nonce_spelling_and_purge_under_clock_skew(make_ctx: Callable[..., Context],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """One nonce, one spelling; and a row is kept as long as any process within the
    tolerated skew could still take its nonce for fresh (the row holds the mint time)."""
    import base64
    import datetime as dt

    from kakuin.acme.nonces import MAX_SKEW
    from kakuin.acme.service import NONCE_LIFETIME

    c = make_ctx()
    svc = c.acme.service
    good = svc.new_nonce()
    last = good[-1]
    # The 43rd character carries 2 spare bits: another letter decodes to the same bytes.
    twin = good[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(last) ^ 1)]
    assert base64.urlsafe_b64decode(twin + "=") == base64.urlsafe_b64decode(good + "=")
    plus = good.replace("-", "+").replace("_", "/")
    for variant in {twin, plus} - {good}:
        assert not svc.redeem_nonce(variant), variant
    # A process 45 s fast mints; this one redeems at once and purges an hour later.
    now = c.clock.now()
    fast = svc.nonces.mint(now + dt.timedelta(seconds=45))
    assert svc.redeem_nonce(fast)
    later = now + NONCE_LIFETIME + dt.timedelta(seconds=10)
    c.clock.set(later)  # type: ignore[attr-defined]
    import kakuin.acme.service as service_module

    monkeypatch.setattr(service_module.secrets, "randbelow", lambda n: 0)  # this redemption purges
    assert svc.redeem_nonce(svc.new_nonce())
    assert MAX_SKEW.total_seconds() == 60
    assert svc.nonces.genuine(fast, later)  # still within its lifetime here…
    assert not svc.redeem_nonce(fast)  # …so its row must still be there


@pytest.mark.postgres
def test_one_challenge_per_authorization_on_postgresql(make_ctx: Callable[..., Context],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes claiming two different challenges of one authorization at the
    same moment: exactly one validation starts (the authorization row is locked
    first; each UPDATE alone would see its own snapshot and both would win)."""
    from starlette.testclient import TestClient

    from kakuin.app import create_app
    from tests.acme_client import Client
    from tests.helpers import add_institution
    from tests.pg import fresh_database

    base = make_ctx()
    with fresh_database() as url:
        monkeypatch.setenv("KAKUIN_DATABASE_URL", url)
        a = Context.open(base.config.data_dir, clock=base.clock)
        b = Context.open(base.config.data_dir, clock=base.clock)
        try:
            add_institution(a, "Example University", ("example.ac.jp",))
            cred = a.acme.eab.new("Example University")
            with TestClient(create_app(a), base_url="http://127.0.0.1:8080") as http:
                c = Client(http, "http://127.0.0.1:8080/acme/directory")
                assert c.register((cred.kid, cred.hmac_key)).status_code == 201
                wins = 0
                for i in range(20):
                    r = c.new_order([f"race{i}.example.ac.jp"])
                    az = c.get(r.json()["authorizations"][0]).json()
                    aid = int(r.json()["authorizations"][0].rsplit("/", 1)[1])
                    cids = [int(ch["url"].rsplit("/", 1)[1]) for ch in az["challenges"]][:2]
                    results: list[bool] = []
                    barrier = threading.Barrier(2)

                    def claim(ctx: Context, cid: int, aid: int = aid, barrier: threading.Barrier = barrier,
                              results: list[bool] = results) -> None:
                        barrier.wait()
                        results.append(ctx.acme.service.ledger.claim_challenge(cid, aid))

                    threads = [threading.Thread(target=claim, args=(ctx, cid))
                               for ctx, cid in zip((a, b), cids, strict=True)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    assert sorted(results) == [False, True], (i, results)
                    wins += 1
                assert wins == 20
        finally:
            a.db.dispose()
            b.db.dispose()


def _keyring_nonce_key(data_dir: str, barrier: object, out: object) -> None:
    from pathlib import Path

    from kakuin.acme.eab import EABKeyring

    barrier.wait()  # type: ignore[attr-defined]
    try:
        out.put(EABKeyring.for_data_dir(Path(data_dir), env={}).nonce_key.hex())  # type: ignore[attr-defined]
    except Exception as exc:  # reported to the test, which fails on it
        out.put(f"error: {exc}")  # type: ignore[attr-defined]


@pytest.mark.parametrize("hard_links", [True, False])
def test_processes_starting_together_share_one_installation_secret(tmp_path, monkeypatch,  # type: ignore[no-untyped-def]
                                                                    hard_links: bool) -> None:
    """The first `kakuin serve` workers start at the same moment on a new data
    directory: each must end with the same secret (else one's nonces and sealed
    EAB keys mean nothing to the other), and none may read it half-written. Also
    on a file system without hard links (os.link refused)."""
    import multiprocessing as mp
    import stat

    if not hard_links:
        def no_link(*_a: object, **_kw: object) -> None:
            raise PermissionError("hard links are not supported here")

        monkeypatch.setattr(os, "link", no_link)  # the forked processes inherit it

    ctx = mp.get_context("fork")
    for round_ in range(5):
        d = tmp_path / f"data{round_}"
        d.mkdir()
        barrier, out = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_keyring_nonce_key, args=(str(d), barrier, out)) for _ in range(6)]
        for p in procs:
            p.start()
        keys = [out.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert not [k for k in keys if k.startswith("error")], keys
        assert len(set(keys)) == 1, keys
        secret = d / "secrets" / "eab-secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert [f.name for f in secret.parent.iterdir()] == ["eab-secret"]  # no temporary file left
