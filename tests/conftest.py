"""Shared fixtures.

Building a CA hierarchy costs seconds (an RSA-4096 root), so one template data
directory is made per test session, with a clock in 2025 so that tests can
stand on any date of the validity schedule; each test gets its own copy.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from kakuin.clock import UTC, FixedClock
from kakuin.context import Context, init_data_dir

TEMPLATE_TIME = dt.datetime(2025, 6, 1, tzinfo=UTC)
PASSPHRASE = "test-passphrase-not-secret"


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("template") / "data"
    os.environ.setdefault("KAKUIN_CA_PASSPHRASE", PASSPHRASE)
    init_data_dir(d)
    ctx = Context.open(d, clock=FixedClock(TEMPLATE_TIME))
    ctx.hierarchy().ensure()
    ctx.db.dispose()
    return d


@pytest.fixture
def make_ctx(template_dir: Path, tmp_path: Path) -> Callable[..., Context]:
    """A fresh copy of the template data dir, opened with the given clock."""
    made: list[Context] = []

    def factory(at: dt.datetime | None = None, *, name: str = "data") -> Context:
        d = tmp_path / name
        if not d.exists():
            shutil.copytree(template_dir, d)
        ctx = Context.open(d, clock=FixedClock(at or dt.datetime.now(UTC)))
        made.append(ctx)
        return ctx

    yield factory
    for c in made:
        c.db.dispose()


@pytest.fixture
def ctx(make_ctx: Callable[..., Context]) -> Context:
    return make_ctx()
