"""OCSP responder throughput and latency: kakuin vs ``openssl ocsp -port``.

    .venv/bin/python bench/ocsp_bench.py [--duration 10] [--workers 1 2] [--rounds 3]

One data dir (dev hierarchy), one RSA certificate from tls-rsa-g1, its
delegated responder (RSA-2048) pre-signed. openssl serves the same certificate
from an index.txt with the same responder certificate and key
(``-rsigner/-rkey``, ``-multi 2``); kakuin runs as deployed, ``kakuin serve
--workers N --ocsp-port P``, and is measured on both of its OCSP faces: ``/ocsp``
on the main port (uvicorn with httptools and uvloop, no access log, the raw
ASGI handler ahead of Starlette's router) and the lean listener on port P
(``kakuin.status.ocsp_server``). ``wrk`` (one thread, loopback) POSTs the same
fixed nonce-less request (and GETs it, for kakuin) from a Lua script:

- saturation: 32 connections as fast as they go (requests/s, p50, p99);
- ~1,000 req/s: 10 connections that each wait 10 ms between requests (wrk's
  ``delay()`` hook; plain wrk has no ``-R``), p50/p99 at that load.

With ``--rounds N`` everything is measured N times in turn and a last table
gives the medians and each kakuin row's ratio to openssl's saturated rate of
the same round (median and lowest).

All on a 2-core machine: wrk takes one core, so the servers share the other.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PASSPHRASE = "bench-passphrase-not-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"port {port} never opened")


def setup(base: Path) -> dict[str, Path]:
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509 import ocsp

    from kakuin.ca.issuer import IssueRequest
    from kakuin.ca.keystore import KeyRef, KeyType
    from kakuin.context import Context, init_data_dir
    from kakuin.status.http import refresh_once
    from kakuin.status.repos import OCSPRepo
    from tests.helpers import ov_name

    d = base / "data"
    init_data_dir(d)
    ctx = Context.open(d)
    ctx.hierarchy().ensure()
    key = rsa.generate_private_key(65537, 2048)
    issued = ctx.issuance.issue(
        IssueRequest(
            profile="server-dv",
            public_key=key.public_key(),
            subject=ov_name(cn="bench.example.ac.jp"),
            dns_names=("bench.example.ac.jp",),
        )
    )
    assert issued.issuer_slug == "tls-rsa-g1"
    refresh_once(ctx)
    leaf, inter = issued.certificate, issued.chain[0]
    pem = serialization.Encoding.PEM
    files = {
        "leaf": base / "leaf.pem",
        "inter": base / "inter.pem",
        "resp": base / "resp.pem",
        "rkey": base / "resp.key",
        "index": base / "index.txt",
        "req": base / "req.der",
        "data": d,
    }
    files["leaf"].write_bytes(leaf.public_bytes(pem))
    files["inter"].write_bytes(inter.public_bytes(pem))
    with ctx.db.session() as s:
        ca_id = next(
            r.issuer_id
            for r in OCSPRepo(s).responders()
            if r.issuer_id == ctx.ocsp.responders.current(r.issuer_id).issuer.id
            and ctx.ocsp.responders.current(r.issuer_id).issuer.slug == "tls-rsa-g1"
        )
        row = OCSPRepo(s).current_responder(ca_id)
    assert row is not None
    files["resp"].write_bytes(
        row.der and __import__("cryptography.x509", fromlist=["x"]).load_der_x509_certificate(row.der).public_bytes(pem)
    )
    signer = ctx.keys.signer(KeyRef(row.key_backend, row.key_label, KeyType(row.key_type)))
    assert signer.private_key is not None
    files["rkey"].write_bytes(
        signer.private_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    serial = format(leaf.serial_number, "X")
    serial = "0" + serial if len(serial) % 2 else serial
    exp = leaf.not_valid_after_utc.astimezone(dt.UTC).strftime("%y%m%d%H%M%SZ")
    files["index"].write_text(f"V\t{exp}\t\t{serial}\tunknown\t/CN=bench.example.ac.jp\n")
    (base / "index.txt.attr").write_text("unique_subject = no\n")
    files["req"].write_bytes(
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, inter, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    ctx.db.dispose()
    return files


def lua(base: Path, req: Path, *, method: str, delay_ms: int = 0) -> Path:
    name = base / f"{method.lower()}-{delay_ms}.lua"
    body = [f'local f = io.open("{req}", "rb"); local body = f:read("*a"); f:close()']
    if method == "POST":
        body += ['wrk.method = "POST"', "wrk.body = body", 'wrk.headers["Content-Type"] = "application/ocsp-request"']
    else:
        b64 = base64.b64encode(req.read_bytes()).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        body += [f'wrk.path = "/ocsp/{b64}"']
    if delay_ms:
        body += [f"function delay() return {delay_ms} end"]
    name.write_text("\n".join(body) + "\n")
    return name


def wrk(url: str, script: Path, conns: int, duration: int) -> dict[str, float | str]:
    res = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
    )
    out = res.stdout

    def lat(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors:.*|Non-2xx.*", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": lat("50"),
        "p99": lat("99"),
        "errors": errors.group(0) if errors else "",
    }


def check(url: str, files: dict[str, Path]) -> None:
    res = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            str(files["inter"]),
            "-cert",
            str(files["leaf"]),
            "-url",
            url,
            "-VAfile",
            str(files["resp"]),
            "-no_nonce",
        ],
        capture_output=True,
        text=True,
    )
    assert ": good" in res.stdout, res.stdout + res.stderr


def openssl_cmd(files: dict[str, Path], port: int, *extra: str) -> list[str]:
    return [
        "openssl",
        "ocsp",
        "-index",
        str(files["index"]),
        "-port",
        str(port),
        "-rsigner",
        str(files["resp"]),
        "-rkey",
        str(files["rkey"]),
        "-CA",
        str(files["inter"]),
        "-nmin",
        "60",
        *extra,
    ]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=1, help="repeat everything; the summary gives medians")
    args = ap.parse_args()
    os.environ.setdefault("KAKUIN_CA_PASSPHRASE", PASSPHRASE)
    assert shutil.which("wrk"), "wrk is required (apt-get install wrk)"
    base = Path(tempfile.mkdtemp(prefix="ocspbench-"))
    files = setup(base)
    procs: list[subprocess.Popen] = []
    loads = (("saturated, 32 conns", 32, 0), ("~1,000 req/s (10 conns x 10 ms)", 10, 10))
    results: dict[tuple[str, str], list[dict[str, float | str]]] = {}
    print(f"load average before the run: {os.getloadavg()[0]:.1f} (2 cores; figures are only meaningful near 0)")
    print("| round | server | load | req/s | p50 ms | p99 ms | errors |")
    print("|---:|---|---|---:|---:|---:|---|")

    def row(rnd: int, name: str, load: str, r: dict[str, float | str]) -> None:
        results.setdefault((name, load), []).append(r)
        print(
            f"| {rnd} | {name} | {load} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} |",
            flush=True,
        )

    try:
        port = free_port()
        p = subprocess.Popen(
            openssl_cmd(files, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0
        )
        time.sleep(1.0)
        check(f"http://127.0.0.1:{port}", files)  # same answer as kakuin's
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        for rnd in range(1, args.rounds + 1):
            # OpenSSL 3.0's responder spins at 100% CPU once a client drops a
            # connection (as wrk does at the end of a run), so each run gets a
            # fresh `openssl ocsp` process; its best of several connection counts.
            for load, conns, delay in loads:
                best: dict[str, float | str] = {"rps": 0.0}
                for c in (1, 2, 4, 8, 32) if not delay else (conns,):
                    port = free_port()
                    p = subprocess.Popen(
                        openssl_cmd(files, port, "-multi", "2", "-timeout", "2"),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        process_group=0,
                    )
                    # no probe connection: a closed connection is what makes it spin
                    time.sleep(1.0)
                    r = wrk(
                        f"http://127.0.0.1:{port}/",
                        lua(base, files["req"], method="POST", delay_ms=delay),
                        c,
                        args.duration,
                    )
                    r["errors"] = f"{c} conns; {r['errors']}"
                    # -multi forks children that keep spinning after the parent dies (openssl
                    # sets its own process group, so a new session would make it exit):
                    # kill the whole process group, or they eat the CPU of later runs.
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    if float(r["rps"]) >= float(best["rps"]):
                        best = r
                row(rnd, "openssl ocsp -multi 2", load, best)
            for w in args.workers:
                port, lean_port = free_port(), free_port()
                # `kakuin serve --workers N`: one socket per worker (SO_REUSEPORT), so
                # keep-alive connections spread over the workers; with uvicorn's own
                # --workers one shared socket let a single worker take them all.
                # --ocsp-port: each worker also runs the lean OCSP listener.
                env = dict(os.environ, KAKUIN_DATA_DIR=str(files["data"]), KAKUIN_LISTEN=f"127.0.0.1:{port}")
                p = subprocess.Popen(
                    [sys.executable, "-m", "kakuin", "serve", "--workers", str(w), "--ocsp-port", str(lean_port)],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                procs.append(p)
                wait_port(port, p)
                wait_port(lean_port, p)
                time.sleep(2)
                for name, url in (
                    (f"kakuin serve --workers {w}, /ocsp on listen", f"http://127.0.0.1:{port}/ocsp"),
                    (f"kakuin serve --workers {w}, --ocsp-port", f"http://127.0.0.1:{lean_port}/ocsp"),
                ):
                    check(url, files)
                    for method in ("POST", "GET"):
                        wrk(url, lua(base, files["req"], method=method), 4, 2)  # warm up
                        for load, conns, delay in loads:
                            r = wrk(url, lua(base, files["req"], method=method, delay_ms=delay), conns, args.duration)
                            row(rnd, f"{name} ({method})", load, r)
                p.terminate()
                p.wait(10)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(base, ignore_errors=True)

    # Medians over the rounds; the ratio is to openssl's saturated rate of the same round.
    ref = [float(r["rps"]) for r in results[("openssl ocsp -multi 2", loads[0][0])]]
    print(f"\nmedians of {args.rounds} round(s); ratio: kakuin / openssl saturated, same round (median, lowest)")
    print("| server | load | req/s | p50 ms | p99 ms | ratio (median, lowest) |")
    print("|---|---|---:|---:|---:|---:|")
    for (name, load), rs in results.items():
        rps = [float(r["rps"]) for r in rs]
        ratios = [a / b for a, b in zip(rps, ref, strict=False) if b] if load == loads[0][0] else []
        ratio = f"{median(ratios):.1f}x, {min(ratios):.1f}x" if ratios and not name.startswith("openssl") else ""
        print(
            f"| {name} | {load} | {median(rps):,.0f} | {median([float(r['p50']) for r in rs]):.2f} | "
            f"{median([float(r['p99']) for r in rs]):.2f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
