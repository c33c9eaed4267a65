"""ACME rate limits (kakuin.acme.limits, RFC 8555 §6.6): each limit refuses at
its limit + 1 with 429 rateLimited and a Retry-After, stores nothing, and lets
the next order through once the window has slid; 0 turns a limit off; an
exempt EAB credential is not limited; an ARI renewal passes the duplicate limit."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import func, select
from starlette.testclient import TestClient

from kakuin.acme.ari import cert_id
from kakuin.acme.errors import RateLimited
from kakuin.acme.limits import LimitQuery, Limits, enforce, names_hash
from kakuin.acme.models import ACMEAccount, ACMEAuthorization, ACMEChallenge, ACMEOrder
from kakuin.acme.repos import ACMELedger
from kakuin.acme.service import ORDER_LIFETIME, PENDING_AUTHZ_LIFETIME
from kakuin.app import create_app
from kakuin.clock import UTC, FixedClock
from kakuin.config import load_config
from kakuin.context import Context
from kakuin.errors import ConfigError
from kakuin.store.db import Database
from tests.acme_client import Client
from tests.acme_fixtures import DOMAIN, INSTITUTION, Env, FakeVA
from tests.helpers import add_institution
from tests.pg import fresh_database
from tests.test_acme_protocol import issue

ERR = "urn:ietf:params:acme:error:"
HOUR = dt.timedelta(hours=1)
BIG = 10_000


class Limited:
    """Builds an Env whose kakuin.toml has the given [acme.limits]."""

    def __init__(self, make_ctx: Callable[..., Context], tmp_path: Path) -> None:
        self.make_ctx, self.tmp_path = make_ctx, tmp_path
        self.clients: list[TestClient] = []

    def __call__(self, *, exempt_registered: bool = False, **limits: int) -> tuple[Env, Client]:
        """(env, a registered client); ``exempt_registered``: its kid is in exempt_kids."""
        values = {
            "failed_validations": BIG,
            "new_orders": BIG,
            "pending_authorizations": BIG,
            "duplicate_certificates": BIG,
        }
        values.update(limits)
        at = dt.datetime.now(UTC).replace(microsecond=0)
        first = self.make_ctx(at)
        add_institution(first, INSTITUTION, (DOMAIN,))
        cred = first.acme.eab.new(INSTITUTION)
        toml = first.config.data_dir / "kakuin.toml"
        lines = ["", "[acme.limits]"] + [f"{k} = {v}" for k, v in values.items()]
        if exempt_registered:
            lines.append(f'exempt_kids = ["{cred.kid}"]')
        toml.write_text(toml.read_text() + "\n".join(lines) + "\n")
        first.db.dispose()
        ctx = self.make_ctx(at)  # the same directory, read again with the limits
        va = FakeVA(ctx)
        va.install()
        http = TestClient(create_app(ctx), base_url="http://127.0.0.1:8080")
        http.__enter__()
        self.clients.append(http)
        env = Env(ctx, http, va, (cred.kid, cred.hmac_key))
        c = env.client()
        assert c.register(env.cred).status_code == 201
        return env, c

    def close(self) -> None:
        for h in self.clients:
            h.__exit__(None, None, None)


@pytest.fixture
def limited(make_ctx: Callable[..., Context], tmp_path: Path) -> Iterator[Limited]:
    lim = Limited(make_ctx, tmp_path)
    yield lim
    lim.close()


def clock(env: Env) -> FixedClock:
    assert isinstance(env.ctx.clock, FixedClock)
    return env.ctx.clock


def rows(env: Env) -> tuple[int, int, int]:
    return env.count(ACMEOrder), env.count(ACMEAuthorization), env.count(ACMEChallenge)


def assert_limited(env: Env, r, before: tuple[int, int, int], words: str) -> int:  # type: ignore[no-untyped-def]
    """429 rateLimited naming the limit, a positive integer Retry-After, nothing stored."""
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == ERR + "rateLimited"
    assert words in body["detail"], body["detail"]
    assert "Replay-Nonce" in r.headers
    retry = r.headers["Retry-After"]
    assert retry.isdigit() and int(retry) > 0
    assert rows(env) == before
    return int(retry)


def fail_validation(env: Env, c: Client, name: str) -> None:
    env.va.validation_ok = False
    r = c.new_order([name])
    assert r.status_code == 201, r.text
    az = r.json()["authorizations"][0]
    ch = next(x for x in c.get(az).json()["challenges"] if x["type"] == "http-01")
    assert c.post(ch["url"], {}).status_code == 200
    assert c.wait(az, ("valid", "invalid"))["status"] == "invalid"
    env.va.validation_ok = True


def test_failed_validations_per_account_per_name_per_hour(limited: Limited) -> None:
    env, c = limited(failed_validations=2)
    name = "www." + DOMAIN
    fail_validation(env, c, name)
    clock(env).advance(dt.timedelta(minutes=10))
    fail_validation(env, c, name)
    before = rows(env)
    retry = assert_limited(env, c.new_order([name]), before, "failed validations per account per hostname per hour")
    assert retry == 50 * 60  # the first failure leaves the hour in 50 minutes
    assert name in c.new_order([name]).json()["detail"]
    # Per name: another name of the same account is not limited.
    assert c.new_order(["mail." + DOMAIN]).status_code == 201
    # Per account: another account may order the name.
    other = env.registered()
    assert other.new_order([name]).status_code == 201
    # The window slides: once the first failure is an hour old, one more order.
    clock(env).advance(dt.timedelta(minutes=50))
    assert c.new_order([name]).status_code == 201


def test_new_orders_per_account_per_3_hours(limited: Limited) -> None:
    env, c = limited(new_orders=3)
    for i in range(3):
        assert c.new_order([f"n{i}.{DOMAIN}"]).status_code == 201
        clock(env).advance(dt.timedelta(minutes=20))
    before = rows(env)
    retry = assert_limited(env, c.new_order(["n3." + DOMAIN]), before, "new orders per account per 3 hours")
    assert retry == 3 * 3600 - 60 * 60  # the first order (an hour ago) leaves in 2 hours
    assert env.registered().new_order(["n3." + DOMAIN]).status_code == 201  # per account
    clock(env).advance(dt.timedelta(hours=2))
    assert c.new_order(["n3." + DOMAIN]).status_code == 201
    assert c.new_order(["n4." + DOMAIN]).status_code == 429  # the second is still counted


def test_pending_authorizations_per_account(limited: Limited) -> None:
    env, c = limited(pending_authorizations=3)
    assert c.new_order([f"p0.{DOMAIN}", f"p1.{DOMAIN}"]).status_code == 201
    r = c.new_order([f"p2.{DOMAIN}"])
    assert r.status_code == 201
    before = rows(env)
    retry = assert_limited(env, c.new_order(["p3." + DOMAIN]), before, "pending authorizations per account")
    assert retry == 7 * 24 * 3600  # Boulder's pending authorization lifetime
    # Deactivating one (RFC 8555 §7.5.2) frees its place.
    assert c.post(r.json()["authorizations"][0], {"status": "deactivated"}).status_code == 200
    assert c.new_order(["p3." + DOMAIN]).status_code == 201
    assert c.new_order(["p4." + DOMAIN]).status_code == 429
    # Expired pending authorizations are not counted.
    clock(env).advance(dt.timedelta(days=7, seconds=1))
    assert c.new_order(["p4." + DOMAIN]).status_code == 201


def test_duplicate_certificates_across_accounts_and_ari_renewal(limited: Limited) -> None:
    env, c = limited(duplicate_certificates=2)
    names = ["www." + DOMAIN, DOMAIN]
    _, pem = issue(c, names)
    clock(env).advance(HOUR)
    other = env.registered()
    issue(other, list(reversed(names)))  # the same set, another account, another order
    before = rows(env)
    retry = assert_limited(
        env, other.new_order(["WWW." + DOMAIN, DOMAIN]), before, "duplicate certificates per 7 days"
    )
    assert retry == 7 * 24 * 3600 - 3600
    # Another set of names is another count.
    assert c.new_order(["www." + DOMAIN]).status_code == 201
    # An RFC 9773 renewal of the same set counts too (as at Let's Encrypt): each
    # new certificate could itself be replaced, so an exemption would loop.
    leaf = x509.load_pem_x509_certificates(pem.encode())[0]
    before = rows(env)
    assert_limited(env, c.new_order(names, replaces=cert_id(leaf)), before, "renewals included")
    # The window slides: a week after the first issuance, one more, the renewal.
    clock(env).advance(dt.timedelta(days=6, hours=23, seconds=1))
    renewal = c.new_order(names, replaces=cert_id(leaf))
    assert renewal.status_code == 201, renewal.text


def test_zero_disables_each_limit(limited: Limited) -> None:
    env, c = limited(failed_validations=0, new_orders=0, pending_authorizations=0, duplicate_certificates=0)
    name = "z." + DOMAIN
    for _ in range(3):
        fail_validation(env, c, name)
    for i in range(4):
        assert c.new_order([name, f"z{i}.{DOMAIN}"]).status_code == 201


def test_exempt_credential_is_not_limited(limited: Limited) -> None:
    env, c = limited(exempt_registered=True, new_orders=1, failed_validations=1, pending_authorizations=1)
    fail_validation(env, c, "x." + DOMAIN)
    for i in range(3):
        assert c.new_order(["x." + DOMAIN, f"x{i}.{DOMAIN}"]).status_code == 201
    # Another account (another credential) is limited as usual.
    other = env.registered()
    assert other.new_order(["y." + DOMAIN]).status_code == 201
    assert other.new_order(["y2." + DOMAIN]).status_code == 429


def test_unknown_limit_key_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "kakuin.toml").write_text("[acme.limits]\nnew_order = 5\n")
    with pytest.raises(ConfigError, match="acme.limits.new_order: unknown key"):
        load_config(tmp_path, env={})


def test_negative_limit_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "kakuin.toml").write_text("[acme.limits]\nnew_orders = -1\n")
    with pytest.raises(ConfigError, match="acme.limits.new_orders"):
        load_config(tmp_path, env={})


def test_boulder_defaults() -> None:
    lim = Limits.from_config(load_config(Path("/nonexistent"), env={}).acme.limits)
    assert (lim.failed_validations, lim.new_orders, lim.pending_authorizations, lim.duplicate_certificates) == (
        5,
        300,
        1000,
        5,
    )


def test_enforce_without_counts_passes() -> None:
    now = dt.datetime(2025, 6, 1, tzinfo=UTC)
    q = LimitQuery(Limits(1, 1, 1, 1, frozenset()), 1, ("a.example",), "h", now, dt.timedelta(days=7))
    enforce(q, [])


def test_postgres_counts_and_concurrent_orders() -> None:
    """On PostgreSQL, the counting statement runs and the account lock makes a
    per-account limit exact under concurrent newOrders (separate connections,
    as several kakuin processes have)."""
    with fresh_database() as url:
        _concurrent_orders(url)


def test_sqlite_concurrent_orders(tmp_path: Path) -> None:
    """On SQLite the count and the insert are one BEGIN IMMEDIATE transaction,
    so concurrent newOrders (threads, each on its own pooled connection) cannot
    both take the last free place."""
    for i in range(3):  # a race shows in some runs only: try a few
        _concurrent_orders(f"sqlite:///{tmp_path}/limits{i}.db")


def _ledger_order(ledger: ACMELedger, aid: int, name: str, now: dt.datetime, *, replaces: str | None = None,
                  limits: LimitQuery | None = None, recheck: Callable[..., None] | None = None) -> None:
    """One newOrder for ``name`` straight through the ledger, as ACMEService makes it."""
    ledger.new_order(
        aid,
        [(name, False)],
        {
            "status": "pending",
            "identifiers": [{"type": "dns", "value": name}],
            "not_before": None,
            "not_after": None,
            "error": None,
            "certificate_serial": None,
            "replaces": replaces,
            "created_at": now,
            "names_hash": names_hash([name]),
        },
        challenge_types=lambda _w: ("http-01",),
        token=lambda: "token",
        now=now,
        pending_lifetime=PENDING_AUTHZ_LIFETIME,
        order_lifetime=ORDER_LIFETIME,
        limits=limits,
        recheck=recheck,
    )


@contextlib.contextmanager
def _ledger(url: str) -> Iterator[tuple[Database, ACMELedger, int, dt.datetime]]:
    """A migrated database at ``url`` with one account: (db, ledger, account id, now)."""
    db = Database(url)
    try:
        db.migrate()
        now = dt.datetime.now(UTC)
        with db.session() as s:
            acct = ACMEAccount(thumbprint="t", jwk={}, contact=[], status="valid", tos_agreed=True, created_at=now)
            s.add(acct)
            s.flush()
            aid = acct.id
        yield db, ACMELedger(db.engine, db.autocommit), aid, now
    finally:
        db.dispose()


def _concurrent_orders(url: str) -> None:
    with _ledger(url) as (db, ledger, aid, now):
        limits = Limits(1, 3, BIG, 1, frozenset())

        def order(name: str) -> str:
            q = LimitQuery(limits, aid, (name,), names_hash([name]), now, ORDER_LIFETIME)
            try:
                _ledger_order(ledger, aid, name, now, limits=q)
            except RateLimited:
                return "limited"
            return "ok"

        assert order("f.example") == "ok"
        with db.session() as s:
            s.query(ACMEAuthorization).update({"status": "invalid", "validated_at": now})
        assert order("f.example") == "limited"  # failed validations
        with ThreadPoolExecutor(8) as ex:
            results = list(ex.map(order, [f"c{i}.example" for i in range(8)]))
        assert results.count("ok") == 2  # new orders: 3 in the window, exactly
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(ACMEOrder)) == 3


def test_postgres_concurrent_replacements() -> None:
    """RFC 9773 ``replaces`` on PostgreSQL: eight newOrders of one account naming
    the same certificate at once, with no rate limit in force (an exempt
    credential): the recheck under the account's lock lets exactly one in."""
    with fresh_database() as url:
        _concurrent_replacements(url)


def test_sqlite_concurrent_replacements(tmp_path: Path) -> None:
    for i in range(3):
        _concurrent_replacements(f"sqlite:///{tmp_path}/replaces{i}.db")


def _concurrent_replacements(url: str) -> None:
    from sqlalchemy.orm import Session

    from kakuin.acme.ari import check_not_replaced
    from kakuin.acme.errors import AlreadyReplaced

    with _ledger(url) as (db, ledger, aid, now):

        def recheck(conn: object) -> None:
            with Session(bind=conn) as s:  # type: ignore[call-overload]
                check_not_replaced(s, "AKI.SERIAL", now)

        def order(i: int) -> str:
            try:
                _ledger_order(ledger, aid, f"r{i}.example", now, replaces="AKI.SERIAL", recheck=recheck)
            except AlreadyReplaced:
                return "replaced"
            return "ok"

        with ThreadPoolExecutor(8) as ex:
            results = list(ex.map(order, range(8)))
        assert results.count("ok") == 1, results
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(ACMEOrder)) == 1
