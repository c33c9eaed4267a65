"""CRL numbers on PostgreSQL: two processes publishing at once never reuse a
number, each sees its numbers increase, and the stored CRL is the newest."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest
from cryptography import x509
from sqlalchemy import create_engine, text

from kakuin.status.crl import FULL
from kakuin.store.repos import CARepo
from tests.status_helpers import kakuin, kakuin_env, tool

PG_URL = os.environ.get("KAKUIN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

WORKER = """
import json, sys
from pathlib import Path
from kakuin.context import Context
from kakuin.store.repos import CARepo
ctx = Context.open(Path(sys.argv[1]), migrate=False)
with ctx.db.session() as s:
    ca = CARepo(s).by_slug("tls-ecdsa-g1")
print("ready", flush=True)
sys.stdin.readline()
numbers = [ctx.crls.generate(ca, -1 if i % 2 else 5).number for i in range(int(sys.argv[2]))]
print(json.dumps(numbers))
"""


@pytest.fixture
def pg_database():  # type: ignore[no-untyped-def]
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"kakuin_test_{secrets.token_hex(4)}"
    try:
        with admin.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL is required at {PG_URL} (start it: pg_ctlcluster 15 main start): {exc}")
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.mark.postgres
def test_two_processes_publish_at_once(tmp_path, pg_database) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "data"
    res = kakuin(d, "init", "--data-dir", str(d), "--database-url", pg_database)
    assert res.returncode == 0, res.stderr
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(d), "40"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kakuin_env(d))
             for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()  # type: ignore[union-attr]
    for p in procs:  # start together
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    results = []
    for p in procs:
        outp, errp = p.communicate(timeout=300)
        assert p.returncode == 0, errp
        results.append(json.loads(outp.strip().splitlines()[-1]))
    for numbers in results:
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    union = results[0] + results[1]
    assert len(set(union)) == len(union) == 80  # no number used twice
    # and the stored CRLs are the newest of their scope
    from kakuin.context import Context

    ctx = Context.open(d, migrate=False)
    try:
        with ctx.db.session() as s:
            ca = CARepo(s).by_slug("tls-ecdsa-g1")
        full_der = ctx.crls.current("tls-ecdsa-g1", FULL)[3]
        number = x509.load_der_x509_crl(full_der).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        assert number == max(n for r in results for i, n in enumerate(r) if i % 2)
        # both publish the whole set at once through the CLI, too
        cli = [subprocess.Popen([tool("kakuin"), "crl", "publish"], env=kakuin_env(d), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for p in cli:
            _, e = p.communicate(timeout=300)
            assert p.returncode == 0, e
        after = ctx.crls.current("tls-ecdsa-g1", FULL)[0]
        assert after > number
        assert ca.id
    finally:
        ctx.db.dispose()


@pytest.mark.postgres
def test_ocsp_refresh_stores_and_replaces_on_postgres(tmp_path, pg_database) -> None:  # type: ignore[no-untyped-def]
    """The refresh pass stores its responses with one upsert per batch: new rows
    on the first pass, replaced rows (newer thisUpdate) when they are due."""
    import datetime as dt

    from cryptography.x509 import ocsp

    from kakuin.clock import UTC, FixedClock
    from kakuin.context import Context
    from kakuin.status.repos import OCSPRepo
    from tests.status_helpers import issue_dv

    d = tmp_path / "data"
    res = kakuin(d, "init", "--data-dir", str(d), "--database-url", pg_database)
    assert res.returncode == 0, res.stderr
    ctx = Context.open(d, clock=FixedClock(dt.datetime.now(UTC)), migrate=False)
    try:
        serials = [issue_dv(ctx, f"w{i}.example.ac.jp").serial for i in range(5)]
        assert ctx.ocsp.refresh_due(batch=2) >= 5  # three batches
        assert ctx.ocsp.refresh_due() == 0
        with ctx.db.session() as s:
            first = {sn: OCSPRepo(s).response(sn, "sha1").this_update for sn in serials}  # type: ignore[union-attr]
        ctx.clock.advance(dt.timedelta(days=3, seconds=1))  # type: ignore[attr-defined]
        assert ctx.ocsp.refresh_due(batch=2) >= 5
        with ctx.db.session() as s:
            for sn in serials:
                row = OCSPRepo(s).response(sn, "sha1")
                assert row is not None and row.this_update > first[sn] and row.status == "good"
                resp = ocsp.load_der_ocsp_response(row.der)
                assert resp.serial_number == int(sn, 16) and resp.certificate_status == ocsp.OCSPCertStatus.GOOD
    finally:
        ctx.db.dispose()
