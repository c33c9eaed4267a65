"""Engine, sessions and migrations."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, event, exc, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_connection.cursor()
    # WAL lets readers run beside one writer; NORMAL sync is durable across
    # application crashes (the pipeline's concern) and fast.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


# A pooled server connection idle longer than this is pinged before use.
PING_IF_IDLE = 10.0


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Pessimistic disconnect handling for connections that sat idle (where a
    server restart or a firewall timeout leaves them dead), without a round
    trip on every checkout as ``pool_pre_ping`` makes: a busy server checks
    connections out many times a second. A dead one is replaced by the pool."""
    now = time.monotonic()
    last = record.info.get("checked_in", now)
    if now - last > PING_IF_IDLE:
        try:
            cur = dbapi_connection.cursor()
            cur.execute("SELECT 1")
            cur.close()
            dbapi_connection.rollback()
        except Exception as e:
            raise exc.DisconnectionError() from e


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


# PostgreSQL: how long a statement may wait for a row or table lock, and how
# long a session may sit idle inside a transaction, before the server ends it.
# Nothing in kakuin holds a lock for more than a moment; without these a lock
# left by a stuck client (or a bug) would hang every request that needs the
# row, silently and for ever. With them the waiter fails with an error that
# names the wait (SQLite's equivalent is busy_timeout, 10 s, above).
PG_LOCK_TIMEOUT_MS = 30_000
PG_IDLE_IN_TRANSACTION_MS = 300_000


class Database:
    def __init__(self, url: str, *, echo: bool = False, lock_timeout_ms: int = PG_LOCK_TIMEOUT_MS) -> None:
        self.url = url
        self._echo, self._lock_timeout_ms = echo, lock_timeout_ms
        self.engine: Engine = self._create_engine()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _create_engine(self, **extra: object) -> Engine:
        url = self.url
        kwargs: dict[str, object] = {"echo": self._echo, "pool_use_lifo": True, **extra}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        else:
            kwargs.update(pool_size=10, max_overflow=20)
            if url.startswith("postgresql"):
                # Added to the URL's own libpq options (e.g. -csearch_path=…), which
                # connect_args would otherwise replace; the URL's come last and win.
                own = make_url(url).query.get("options", "")
                own = " ".join(own) if isinstance(own, tuple) else own
                kwargs["connect_args"] = {
                    "options": f"-c lock_timeout={int(self._lock_timeout_ms)} "
                    f"-c idle_in_transaction_session_timeout={PG_IDLE_IN_TRANSACTION_MS} {own}".strip()
                }
        engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            event.listen(engine.pool, "checkout", _ping_if_idle)
            event.listen(engine.pool, "checkin", _checked_in)
        return engine

    @cached_property
    def autocommit(self) -> Engine:
        """Connections in autocommit mode: reads without a transaction, and writes
        of one statement. On SQLite this is an engine (a pool) of its own, set to
        autocommit when each connection is made. Switching a pooled connection
        per checkout instead (``execution_options(isolation_level=…)``) makes
        SQLAlchemy restore the level on checkin with ``PRAGMA read_uncommitted``,
        and SQLite expires every prepared statement of a connection when a flag
        pragma runs: each statement was parsed again on every use (a profile of
        ``kakuin serve`` found SQLite's parser among its heaviest frames; a
        checkout and a primary-key SELECT cost 30 µs instead of 11). On
        PostgreSQL the switch is a client-side flag of psycopg; SQLAlchemy's
        bookkeeping around it costs ~30 µs per checkout (bench/RESULTS.md, fifth
        session), but a pool of its own would double the connections each
        process may hold, so the one pool serves both."""
        if not self.is_sqlite:
            return self.engine.execution_options(isolation_level="AUTOCOMMIT")
        return self._create_engine(isolation_level="AUTOCOMMIT")

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            # Capabilities add their tables in their own revisions off 0001; "heads"
            # upgrades every branch until a merge revision joins them.
            command.upgrade(cfg, "heads")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commit on success, roll back on any error."""
        s = self._sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()
        if "autocommit" in self.__dict__ and self.is_sqlite:
            self.autocommit.dispose()
