"""Where ACME's database work runs (``[database] work``): on the event loop with
SQLite by default, in the worker threads with PostgreSQL or when configured;
issuance stays in a thread when CA keys are on a PKCS#11 token."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.testclient import TestClient

from kakuin.app import create_app
from kakuin.config import load_config
from kakuin.context import Context
from kakuin.errors import ConfigError
from kakuin.http import database_work_inline
from tests.acme_fixtures import DOMAIN, INSTITUTION, Env, FakeVA
from tests.helpers import add_institution
from tests.test_acme_protocol import issue


def _cfg(work: str, url: str) -> Any:
    return SimpleNamespace(database=SimpleNamespace(work=work), database_url=url)


def test_auto_is_inline_on_sqlite_only() -> None:
    assert database_work_inline(_cfg("auto", "sqlite:////d/kakuin.db")) is True
    assert database_work_inline(_cfg("auto", "postgresql+psycopg://h/db")) is False
    assert database_work_inline(_cfg("thread", "sqlite:////d/kakuin.db")) is False
    assert database_work_inline(_cfg("inline", "postgresql+psycopg://h/db")) is True


def test_unknown_mode_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "kakuin.toml").write_text('[database]\nwork = "fast"\n')
    with pytest.raises(ConfigError, match="database.work"):
        load_config(tmp_path, env={})


@pytest.fixture(name="where")
def where_fixture() -> Iterator[Callable[[Context], list[str]]]:
    """Records the thread of each ledger read and of each certificate signed."""

    def install(ctx: Context) -> list[str]:
        seen: list[str] = []
        ledger, issuance = ctx.acme.service.ledger, ctx.issuance
        account, sign = ledger.account, issuance._sign

        def account_spy(*a: Any) -> Any:
            seen.append("ledger:" + threading.current_thread().name)
            return account(*a)

        def sign_spy(*a: Any) -> Any:
            seen.append("sign:" + threading.current_thread().name)
            return sign(*a)

        ledger.account = account_spy  # type: ignore[method-assign]
        issuance._sign = sign_spy  # type: ignore[method-assign]
        return seen

    yield install


def _order(ctx: Context) -> None:
    add_institution(ctx, INSTITUTION, (DOMAIN,))
    FakeVA(ctx).install()
    cred = ctx.acme.eab.new(INSTITUTION)
    with TestClient(create_app(ctx), base_url="http://127.0.0.1:8080") as http:
        env = Env(ctx, http, FakeVA(ctx), (cred.kid, cred.hmac_key))
        c = env.registered()
        _, pem = issue(env.client(key=c.key, kid=c.kid), ["www." + DOMAIN])
        assert "BEGIN CERTIFICATE" in pem


@pytest.mark.parametrize(
    ("work", "backend", "ledger_in_thread", "sign_in_thread"),
    [("auto", "file", False, False), ("thread", "file", True, True), ("auto", "pkcs11", False, True)],
)
def test_acme_work_runs_where_configured(
    make_ctx: Callable[..., Context], where: Callable[[Context], list[str]],
    work: str, backend: str, ledger_in_thread: bool, sign_in_thread: bool,
) -> None:
    ctx = make_ctx()
    # The configuration is frozen once loaded; set before the flow reads it.
    object.__setattr__(ctx.config.database, "work", work)
    if backend == "pkcs11":
        # Only the flow's choice is under test here: it reads the backend name
        # when it is made; the template's file keys then still sign.
        ctx.issuance, ctx.revocation, ctx.va  # noqa: B018 - made with the file backend
        object.__setattr__(ctx.config.keys, "backend", "pkcs11")
        assert ctx.acme.flow.inline_db and not ctx.acme.flow.inline_issue
        object.__setattr__(ctx.config.keys, "backend", "file")
    seen = where(ctx)
    _order(ctx)
    loop_threads = {s.split(":", 1)[1] for s in seen if not s.split(":", 1)[1].startswith("kakuin-db")}
    assert len(loop_threads) <= 1, seen  # the TestClient's event loop thread, at most
    ledger = [s for s in seen if s.startswith("ledger:")]
    signs = [s for s in seen if s.startswith("sign:")]
    assert ledger and len(signs) == 1
    assert all(s.startswith("ledger:kakuin-db") for s in ledger) is ledger_in_thread, seen
    assert any(s.startswith("ledger:kakuin-db") for s in ledger) is not (not ledger_in_thread), seen
    assert signs[0].startswith("sign:kakuin-db") is sign_in_thread, seen
