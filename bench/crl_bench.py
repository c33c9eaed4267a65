"""CRL generation at scale: kakuin vs ``openssl ca -gencrl`` over the same entries.

    .venv/bin/python bench/crl_bench.py [--sizes 100000 1000000] [--keep DIR]

For each size: a fresh data dir (dev hierarchy), N revoked certificates of
tls-rsa-g1 (RSA-2048) inserted into its database, and an openssl CA directory
with an index.txt holding the same serials, revocation times and reasons and
the same CA certificate and key. kakuin's run (``CRLService.generate``: read from
the database, encode, lint a sample, sign, store) and openssl's
(``openssl ca -gencrl``: read index.txt, build, sort, sign, write PEM) each run
in a child process; peak memory is that child's ru_maxrss (kakuin) or
``/usr/bin/time -v`` (openssl). Both CRLs are checked with ``openssl crl -verify``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PASSPHRASE = "bench-passphrase-not-secret"
REASONS = [0, 1, 3, 4, 5]  # openssl ca knows no privilegeWithdrawn
OPENSSL_REASON = {0: "unspecified", 1: "keyCompromise", 3: "affiliationChanged", 4: "superseded",
                  5: "cessationOfOperation", 9: "privilegeWithdrawn"}


def make_dir(base: Path) -> Path:
    from kakuin.clock import UTC, FixedClock
    from kakuin.context import Context, init_data_dir

    d = base / "data"
    init_data_dir(d)
    ctx = Context.open(d, clock=FixedClock(dt.datetime.now(UTC) - dt.timedelta(days=30)))
    ctx.hierarchy().ensure()
    ctx.db.dispose()
    return d


def populate(d: Path, n: int, ossl: Path) -> None:
    """N revoked certificates in the database, and the same in openssl's index.txt."""
    from cryptography.hazmat.primitives import serialization
    from sqlalchemy import insert

    from kakuin.ca.issuer import random_serial
    from kakuin.context import Context
    from kakuin.store.models import Certificate
    from kakuin.store.repos import CARepo

    ctx = Context.open(d)
    with ctx.db.session() as s:
        ca = CARepo(s).by_slug("tls-rsa-g1")
    rng = random.Random(4)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    lines = []
    batch = []
    for i in range(n):
        serial = format(random_serial(), "x")
        revoked = now - dt.timedelta(seconds=rng.randrange(1, 90 * 86400))
        not_after = now + dt.timedelta(days=rng.randrange(1, 390))
        reason = REASONS[i % len(REASONS)]
        batch.append(dict(serial=serial, issuer_id=ca.id, profile="server-dv", state="issued", subject="CN=x",
                          sans="", spki_sha256=f"{i:064x}", key_type="P-256",
                          not_before=not_after - dt.timedelta(days=397),
                          not_after=not_after, crl_shard=i % 16, requested_by="bench", reserved_at=revoked,
                          revoked_at=revoked, revocation_reason=reason))
        rev = revoked.strftime("%y%m%d%H%M%SZ") + ("" if reason == 0 else "," + OPENSSL_REASON[reason])
        hexs = serial.upper()
        hexs = "0" + hexs if len(hexs) % 2 else hexs
        lines.append(f"R\t{not_after:%y%m%d%H%M%SZ}\t{rev}\t{hexs}\tunknown\t/CN=x{i}\n")
        if len(batch) == 50_000:
            with ctx.db.session() as s:
                s.execute(insert(Certificate), batch)
            batch = []
    if batch:
        with ctx.db.session() as s:
            s.execute(insert(Certificate), batch)
    ossl.mkdir(parents=True, exist_ok=True)
    (ossl / "index.txt").write_text("".join(lines))
    (ossl / "index.txt.attr").write_text("unique_subject = no\n")
    (ossl / "crlnumber").write_text("01\n")
    (ossl / "ca.pem").write_bytes(__import__("cryptography.x509", fromlist=["x"]).load_der_x509_certificate(ca.der)
                                  .public_bytes(serialization.Encoding.PEM))
    key = ctx.keys.signer(__import__("kakuin.ca.keystore", fromlist=["KeyRef"]).KeyRef(
        ca.key_backend, ca.key_label, __import__("kakuin.ca.keystore", fromlist=["KeyType"]).KeyType(ca.key_type)))
    pk = key.private_key
    assert pk is not None
    (ossl / "ca.key").write_bytes(pk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    (ossl / "ca.cnf").write_text(f"""[ca]
default_ca = CA_default
[CA_default]
dir = {ossl}
database = $dir/index.txt
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_crl_days = 7
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
""")
    ctx.db.dispose()


def _vm_hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def kakuin_child(d: Path) -> None:
    """Runs in its own process: one full CRL of tls-rsa-g1, timed."""
    from kakuin.context import Context
    from kakuin.status.crl import FULL
    from kakuin.store.repos import CARepo

    ctx = Context.open(d)
    with ctx.db.session() as s:
        ca = CARepo(s).by_slug("tls-rsa-g1")
    ctx.authorities.load(ctx.db._sessions(), ca)  # key loaded (scrypt/PBKDF2) outside the timing
    from kakuin.ca.issuer import throwaway_key
    from kakuin.ca.keystore import KeyType

    throwaway_key(KeyType(ca.key_type))
    # A running service has its pkilint container built (~150 ms once per
    # process): warm it with an empty CRL of another issuer.
    with ctx.db.session() as s:
        ctx.crls.generate(CARepo(s).by_slug("tls-ecdsa-g1"), FULL)
    # ru_maxrss after fork+exec can carry the parent's high-water mark: reset
    # this process's VmHWM (Linux: clear_refs 5) and read it from /proc.
    Path("/proc/self/clear_refs").write_text("5")
    rss0 = _vm_hwm_kb()
    t = time.perf_counter()
    built = ctx.crls.generate(ca, FULL)
    secs = time.perf_counter() - t
    rss = _vm_hwm_kb()
    (d / "kakuin.crl").write_bytes(built.der)
    print(json.dumps({"seconds": secs, "entries": built.entries, "bytes": len(built.der),
                      "peak_rss_mb": rss / 1024, "rss_before_mb": rss0 / 1024}))


def run_kakuin(d: Path) -> dict:
    env = dict(os.environ, KAKUIN_CA_PASSPHRASE=PASSPHRASE)
    res = subprocess.run([sys.executable, __file__, "--child", str(d)], capture_output=True, text=True, env=env)
    if res.returncode:
        raise SystemExit(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_openssl(ossl: Path) -> dict:
    time_bin = shutil.which("time") or "/usr/bin/time"
    t = time.perf_counter()
    res = subprocess.run([time_bin, "-v", "openssl", "ca", "-gencrl", "-config", str(ossl / "ca.cnf"),
                          "-out", str(ossl / "crl.pem"), "-batch"], capture_output=True, text=True)
    secs = time.perf_counter() - t
    if res.returncode:
        raise SystemExit(res.stderr)
    rss = next(int(line.split(":")[1]) for line in res.stderr.splitlines() if "Maximum resident" in line)
    return {"seconds": secs, "peak_rss_mb": rss / 1024, "bytes": (ossl / "crl.pem").stat().st_size}


def verify(crl: Path, ca: Path, inform: str) -> int:
    res = subprocess.run(["openssl", "crl", "-inform", inform, "-in", str(crl), "-CAfile", str(ca), "-verify",
                          "-noout"], capture_output=True, text=True)
    assert "verify OK" in res.stdout + res.stderr, res.stdout + res.stderr
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--child")
    ap.add_argument("--keep")
    args = ap.parse_args()
    os.environ.setdefault("KAKUIN_CA_PASSPHRASE", PASSPHRASE)
    if args.child:
        kakuin_child(Path(args.child))
        return
    print(f"openssl: {subprocess.run(['openssl', 'version'], capture_output=True, text=True).stdout.strip()}")
    print(f"load average before the run: {os.getloadavg()[0]:.1f} (2 cores; figures are only meaningful near 0)")
    print("| entries | kakuin s | kakuin peak RSS MB | openssl s | openssl peak RSS MB | kakuin DER MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        base = Path(tempfile.mkdtemp(prefix=f"crlbench{n}-", dir=args.keep))
        d = make_dir(base)
        populate(d, n, base / "openssl")
        k = run_kakuin(d)
        o = run_openssl(base / "openssl")
        assert k["entries"] == n
        verify(d / "kakuin.crl", base / "openssl" / "ca.pem", "DER")
        verify(base / "openssl" / "crl.pem", base / "openssl" / "ca.pem", "PEM")
        print(f"| {n:,} | {k['seconds']:.2f} | {k['peak_rss_mb']:.0f} (before: {k['rss_before_mb']:.0f}) | "
              f"{o['seconds']:.2f} | {o['peak_rss_mb']:.0f} | {k['bytes'] / 1e6:.1f} |", flush=True)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
