"""A throwaway PostgreSQL database per test module (helper, not a test module).

PostgreSQL is a hard requirement of the suite (CI starts it): if it cannot be
reached the tests FAIL with a clear message rather than skip."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

ADMIN_URL = os.environ.get("KAKUIN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create ``kakuin_t_<random>`` and yield its URL; drop it afterwards."""
    name = f"kakuin_t_{secrets.token_hex(6)}"
    try:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(
            f"PostgreSQL at {ADMIN_URL} is not reachable ({exc.__class__.__name__}); "
            "start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
