"""MPIC latency: what corroboration by five remote perspectives adds to an ACME order.

    .venv/bin/python bench/mpic_bench.py -n 40 -c 1

In one run: five ``kakuin perspective serve`` processes on 127.0.0.11–15, each
resolving through its own BIND (tests/perspectives.py), and two ``kakuin serve``
processes on copies of one data directory — one with ``[mpic]`` enabled, one
without — on the same BIND, with the same http-01 responder and the same client
(bench/acme_load.py). Orders alternate between the two in rounds, so both see the
same machine load. An order is newOrder → http-01 → finalize (CAA) → download;
with MPIC, the http-01 check and the CAA check each run on the primary and the
five perspectives in parallel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from acme_load import Account, free_port, kakuin_cli, responder, wait_port  # noqa: E402

from tests.perspectives import start_fleet  # noqa: E402

BIN = Path(sys.executable).parent
DOMAIN = "loopback.ac.jp"


def start(data: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = int(json.loads((data / "port.json").read_text())["port"])
    proc = subprocess.Popen([str(BIN / "kakuin"), "serve", "--data-dir", str(data)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_port(port, proc, "kakuin serve")
    return proc, f"http://127.0.0.1:{port}/acme/directory"


def prepare(work: Path, fleet, env: dict[str, str], clients: int) -> dict[str, tuple[Path, list]]:  # type: ignore[no-untyped-def]
    base = work / "base"
    kakuin_cli(base, "init", env=env)
    kakuin_cli(base, "institution", "add", "Bench University", "--domain", DOMAIN, env=env)
    out = {}
    for label in ("without MPIC", "with MPIC"):
        data = work / label.replace(" ", "-")
        shutil.copytree(base, data)
        port = free_port()
        cfg = data / "kakuin.toml"
        text = cfg.read_text().replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"', 1)
        text = text.replace('base_url = "http://127.0.0.1:8080"', f'base_url = "http://127.0.0.1:{port}"', 1)
        text += (f'\n[va]\nresolver = "{fleet.dns.resolver_for("primary")}"\nhttp01_port = {fleet.http01_port}\n'
                 "timeout_seconds = 5\ndnssec = false\nallow_private_targets = true\n")
        if label == "with MPIC":
            text += fleet.mpic_toml()
        cfg.write_text(text)
        (data / "port.json").write_text(json.dumps({"port": port}))
        creds = [json.loads(kakuin_cli(data, "eab", "new", "--institution", "Bench University", "--json",
                                       env=env)) for _ in range(clients)]
        out[label] = (data, [(c["kid"], c["hmac_key"]) for c in creds])
    return out


async def run(directories: dict[str, tuple[str, list]], n: int, c: int, rounds: int) -> dict[str, list[float]]:
    server = await asyncio.start_server(responder, "127.0.0.1", FLEET.http01_port)
    lat: dict[str, list[float]] = {k: [] for k in directories}
    async with server, httpx.AsyncClient(timeout=120) as http:
        accounts = {}
        for label, (directory, creds) in directories.items():
            accounts[label] = [Account(http, directory) for _ in range(c)]
            await asyncio.gather(*(a.register(creds[i]) for i, a in enumerate(accounts[label])))
        tag = uuid.uuid4().hex[:6]
        per_round = max(1, n // rounds)
        for r in range(rounds):
            for label in directories:
                queue = [f"o{r}-{i}-{tag}.bench.{DOMAIN}" for i in range(per_round)]

                async def worker(a: Account, label: str = label, queue: list[str] = queue) -> None:
                    while queue:
                        lat[label].append(await a.order(queue.pop()))

                await asyncio.gather(*(worker(a) for a in accounts[label]))
    return lat


def main() -> None:
    global FLEET
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=40, help="orders per configuration")
    ap.add_argument("-c", type=int, default=1, help="concurrent clients")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    env = dict(os.environ, KAKUIN_CA_PASSPHRASE="bench-passphrase-not-secret")
    work = Path(tempfile.mkdtemp(prefix="mpic-bench-"))
    fleet_gen = start_fleet(work / "fleet")
    FLEET = next(fleet_gen)
    procs = []
    try:
        FLEET.dns.change("all", "add", f"*.bench.{DOMAIN}", "A", "127.0.0.1")
        prepared = prepare(work, FLEET, env, args.c)
        directories = {}
        for label, (data, creds) in prepared.items():
            proc, directory = start(data, env)
            procs.append(proc)
            directories[label] = (directory, creds)
        lat = asyncio.run(run(directories, args.n, args.c, args.rounds))
        p = {}
        for label, values in lat.items():
            values.sort()
            p[label] = (statistics.median(values), values[int(0.95 * (len(values) - 1))])
            print(f"{label:14s} p50 {p[label][0] * 1000:6.0f} ms   p95 {p[label][1] * 1000:6.0f} ms   "
                  f"({len(values)} orders, {args.c} client(s))", flush=True)
        added = (p["with MPIC"][0] - p["without MPIC"][0], p["with MPIC"][1] - p["without MPIC"][1])
        print(f"{'MPIC adds':14s} p50 {added[0] * 1000:6.0f} ms   p95 {added[1] * 1000:6.0f} ms", flush=True)
        metrics = httpx.get(directories["with MPIC"][0].replace("/acme/directory", "/metrics")).text
        for line in metrics.splitlines():
            if line.startswith("mpic_latency_seconds_sum") or line.startswith("mpic_latency_seconds_count"):
                print("  " + line)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        try:
            next(fleet_gen)
        except StopIteration:
            pass
        shutil.rmtree(work, ignore_errors=True)


FLEET = None  # set in main(): the perspectives and their BINDs
if __name__ == "__main__":
    main()
