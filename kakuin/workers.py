"""``kakuin serve --workers N``: N server processes on one port.

Each worker is a whole, stateless kakuin (``kakuin.app.factory``) on the shared
database; nonces, EAB bindings and finalization claims are decided there, so
any worker may answer any request. Each worker listens on its own socket with
SO_REUSEPORT, so the kernel spreads connections over the workers; with one
shared socket (uvicorn's ``--workers``) the first worker to wake takes a whole
burst of keep-alive connections and the others idle. This process only
supervises: it restarts a worker that dies and stops them all on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from kakuin.errors import KakuinError

log = logging.getLogger(__name__)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(data_dir: str, host: str, port: int) -> None:
    import uvicorn

    os.environ["KAKUIN_DATA_DIR"] = data_dir
    sock = _listen(host, port)
    config = uvicorn.Config("kakuin.app:factory", factory=True, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


def serve_workers(data_dir: Path, host: str, port: int, workers: int) -> None:
    """Run ``workers`` worker processes until SIGTERM or SIGINT."""
    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - Linux, BSD and macOS have it
        raise KakuinError("--workers > 1 needs SO_REUSEPORT")
    _listen(host, port).close()  # fail here, not in every worker, when the port is taken
    spawn = mp.get_context("spawn")
    stopping = False

    started: dict[int, float] = {}

    def start() -> BaseProcess:
        p = spawn.Process(target=_worker, args=(str(data_dir), host, port), name="kakuin-worker")
        p.start()
        started[id(p)] = time.monotonic()
        return p

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs = [start() for _ in range(workers)]
    try:
        while not stopping:
            time.sleep(0.2)
            for i, p in enumerate(procs):
                if not p.is_alive() and not stopping:
                    if time.monotonic() - started[id(p)] < 10:
                        raise KakuinError(f"a worker exited at start (exit code {p.exitcode}); see its error above")
                    log.error("worker %s exited with %s; starting another", p.pid, p.exitcode)
                    procs[i] = start()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
