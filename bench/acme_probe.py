"""Where an ACME order's server CPU goes: one kakuin serve (one worker, SQLite,
lint on), one client, no concurrency. Prints server CPU (its process tree, from
/proc) per POST-as-GET of an order, per HEAD /new-nonce (the HTTP stack's
floor) and per whole order (newOrder → http-01 → finalize → download).

    .venv/bin/python bench/acme_probe.py [-n 2000] [--orders 100]

Uses bench/acme_load.py's client and http-01 responder, and BIND (tests/bind.py)
serving jp. with 300 s TTLs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.acme_load import Account, Http, free_port, start_kakuin, start_responder, tree_cpu  # noqa: E402
from tests.bind import BindServer, Zone  # noqa: E402


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2000, help="requests per probe")
    ap.add_argument("--orders", type=int, default=100)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="acme-probe-"))
    dns_port, http01 = free_port(), free_port()
    bind = BindServer(work / "bind", [Zone("jp", records=["$TTL 300", "*.bench.ac.jp. IN A 127.0.0.1"])],
                      dns_port).start()
    srv = await start_responder(http01)
    (p,), directory, creds = start_kakuin(work, dns_port, http01, None, 1, 1, True)
    try:
        async with Http(timeout=60) as http:
            acct = Account(http, directory)
            await acct.register(creds[0])
            await acct.order("warm.bench.ac.jp")
            r = await acct.post(acct.dir["newOrder"], {"identifiers": [{"type": "dns", "value": "x.bench.ac.jp"}]})
            url = r.headers["Location"]
            c0, t0 = tree_cpu(p.pid), time.perf_counter()
            for _ in range(a.n):
                await acct.post(url, None)
            cpu, wall = tree_cpu(p.pid) - c0, time.perf_counter() - t0
            print(f"POST-as-GET order   server CPU {cpu / a.n * 1e6:6.0f} µs/request   "
                  f"(wall {wall / a.n * 1e6:.0f} µs)")
            c0 = tree_cpu(p.pid)
            for _ in range(a.n):
                await http.head(acct.dir["newNonce"])
            print(f"HEAD /new-nonce     server CPU {(tree_cpu(p.pid) - c0) / a.n * 1e6:6.0f} µs/request")
            c0 = tree_cpu(p.pid)
            for i in range(a.orders):
                await acct.order(f"o{i}.bench.ac.jp")
            print(f"whole order         server CPU {(tree_cpu(p.pid) - c0) / a.orders * 1e3:6.1f} ms/order")
    finally:
        p.terminate()
        p.wait()
        bind.stop()
        srv.close()


if __name__ == "__main__":
    asyncio.run(main())
