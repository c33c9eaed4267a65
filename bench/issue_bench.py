"""Issuance throughput through the full pipeline vs the raw signing rate.

For each CA (ECDSA P-384 intermediate issuing P-256 leaves, RSA-2048
intermediate issuing RSA-2048 leaves) it measures, in one run on one machine:

- raw: the CA key signing a TBS-sized message with cryptography (the physical
  limit of issuance on this machine);
- kakuin, lint off: IssuanceService.issue() — policy checks, serial reservation
  and intent record, build, sign, store;
- kakuin, lint on: the same plus throwaway signing and pkilint;

each both one at a time (``issue``) and in batches (``issue_batch``, what TSV
files and incident re-issuance use).

Usage: .venv/bin/python bench/issue_bench.py [--n 10000] [--lint-n 2000] [--db URL]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kakuin.ca.issuer import IssueRequest
from kakuin.ca.keystore import sign_with
from kakuin.clock import UTC, FixedClock
from kakuin.context import Context, init_data_dir
from kakuin.policy.names import check_dns_name  # noqa: F401  (imported for warm-up parity)


def raw_rate(signer, seconds: float = 3.0) -> float:  # type: ignore[no-untyped-def]
    key = signer.private_key
    msg = os.urandom(700)  # a typical TBSCertificate is 600–900 bytes
    h = signer.key_type.signature_hash
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sign_with(key, msg, h)
        n += 1
    return n / (time.perf_counter() - t0)


def run_issuance(ctx: Context, leaf_keys: list, n: int, batch: int) -> float:  # type: ignore[no-untyped-def]
    """Certificates per second; batch 1 is ``issue()``, more is ``issue_batch()``."""
    from kakuin.policy.subject import parse_dn

    subject = parse_dn("CN=www.example.ac.jp,O=Example University,L=Chiyoda-ku,ST=Tokyo,C=JP")
    reqs = [
        IssueRequest(
            profile="server-dv",
            public_key=leaf_keys[i % len(leaf_keys)],
            subject=subject,
            dns_names=(f"host{i}.example.ac.jp",),
        )
        for i in range(n)
    ]
    t0 = time.perf_counter()
    if batch == 1:
        for r in reqs:
            ctx.issuance.issue(r)
    else:
        for i in range(0, n, batch):
            out = ctx.issuance.issue_batch(reqs[i : i + batch])
            assert not any(isinstance(o, Exception) for o in out), out
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000, help="certificates per run with lint off")
    ap.add_argument("--lint-n", type=int, default=10000, help="certificates per run with lint on")
    ap.add_argument("--batch", type=int, default=500, help="batch size for issue_batch()")
    ap.add_argument("--db", default="", help="database URL (default: SQLite in a temp dir)")
    args = ap.parse_args()
    os.environ.setdefault("KAKUIN_CA_PASSPHRASE", "bench-passphrase-not-secret")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "data"
        init_data_dir(d, database_url=args.db or None)
        clock = FixedClock(dt.datetime.now(UTC))
        ctx = Context.open(d, clock=clock)
        ctx.hierarchy().ensure()
        rows = []
        for label, slug, keygen in (
            ("ECDSA P-384 CA, P-256 leaves", "tls-ecdsa-g1", lambda: ec.generate_private_key(ec.SECP256R1())),
            ("RSA-2048 CA, RSA-2048 leaves", "tls-rsa-g1", lambda: rsa.generate_private_key(65537, 2048)),
        ):
            leaf_keys = [keygen().public_key() for _ in range(50)]
            with ctx.db.session() as s:
                from kakuin.store.repos import CARepo

                ca = ctx.authorities.load(s, CARepo(s).by_slug(slug))
            raw = statistics.median(raw_rate(ca.signer, 2.0) for _ in range(3))
            for lint, n in ((False, args.n), (True, args.lint_n)):
                ctx.issuance.linter = ctx.linter if lint else None
                run_issuance(ctx, leaf_keys, 50, 1)  # warm-up (lint containers, caches)
                for batch in (1, args.batch):
                    rate = run_issuance(ctx, leaf_keys, n, batch)
                    mode = "issue()" if batch == 1 else f"issue_batch({batch})"
                    rows.append((label, raw, "on" if lint else "off", mode, rate, n))
                    print(
                        f"{label}: raw {raw:,.0f}/s | lint {'on' if lint else 'off'} {mode}: {rate:,.0f}/s "
                        f"= {rate / raw:.0%} of raw (n={n})",
                        flush=True,
                    )
        ctx.db.dispose()
    print()
    print("| CA and leaves | raw signing (/s) | lint | mode | kakuin (certs/s) | of raw | n |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: |")
    for label, raw, lint, mode, rate, n in rows:
        print(f"| {label} | {raw:,.0f} | {lint} | {mode} | {rate:,.0f} | {rate / raw:.0%} | {n:,} |")


if __name__ == "__main__":
    main()
