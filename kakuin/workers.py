"""``kakuin serve --workers N``: N server processes on one port.

Each worker is a whole, stateless kakuin (``kakuin.app.factory``) on the shared
database; nonces, EAB bindings and finalization claims are decided there, so
any worker may answer any request. Each worker listens on its own socket with
SO_REUSEPORT, so the kernel spreads connections over the workers; with one
shared socket (uvicorn's ``--workers``) the first worker to wake takes a whole
burst of keep-alive connections and the others idle. This process only
supervises: it restarts a worker that dies and stops them all on SIGTERM/SIGINT.
With ``[server] ocsp_port`` each worker also runs the lean OCSP listener, on its
own SO_REUSEPORT socket of that port. ``serve_app`` is also the single-process
``kakuin serve``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing as mp
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
import uvloop

from kakuin.errors import KakuinError

if TYPE_CHECKING:
    from kakuin.context import Context
    from kakuin.status.ocsp_server import OCSPServer

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


def uvicorn_config(app: Any, **kwargs: Any) -> uvicorn.Config:
    """uvloop and httptools named, not "auto" (a missing one fails at start instead
    of falling back to asyncio and h11, at a third of the rate), and no access
    log (issue #4: OCSP is served at tens of thousands of requests a second)."""
    return uvicorn.Config(app, loop="uvloop", http="httptools", access_log=False, log_level="warning", **kwargs)


class _Server(uvicorn.Server):
    """uvicorn's server; its shutdown (SIGTERM, SIGINT) also closes the lean OCSP
    listener, letting answers in flight go out, before uvicorn re-raises the
    signal that stopped it."""

    ocsp: OCSPServer | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.ocsp is not None:
            await self.ocsp.close()
        await super().shutdown(sockets=sockets)


def serve_app(ctx: Context, host: str, port: int, ocsp_port: int = 0, *, reuse_port: bool = False) -> None:
    """Serve the app of ``ctx`` on host:port and, when ``ocsp_port`` is set, the
    lean OCSP listener (``status.ocsp_server``) on host:ocsp_port, in one event
    loop until SIGTERM or SIGINT. Both answer OCSP from the same ``ctx.ocsp``."""
    from kakuin.app import create_app
    from kakuin.status.http import warm
    from kakuin.status.ocsp_front import OCSPFront
    from kakuin.status.ocsp_server import OCSPServer

    config = uvicorn_config(create_app(ctx), host=host, port=port)
    server = _Server(config)
    try:
        warm(ctx)
    except Exception:  # the first requests will load what failed here, and say why
        log.exception("loading the CAs and the linter before serving failed")
    # What is loaded now lives as long as the process (modules, keys, the
    # linter's ~200k objects): keep it out of the cyclic collector's full
    # passes, which otherwise scanned it all (~100 ms) in the middle of requests.
    gc.collect()
    gc.freeze()

    async def main() -> None:
        if ocsp_port:
            server.ocsp = OCSPServer(OCSPFront(ctx.ocsp, ctx.clock))
            await server.ocsp.start(_listen(host, ocsp_port))
        try:
            await server.serve(sockets=[_listen(host, port)] if reuse_port else None)
        finally:
            if server.ocsp is not None:
                await server.ocsp.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def _worker(data_dir: str, host: str, port: int, ocsp_port: int) -> None:
    from kakuin.context import Context

    os.environ["KAKUIN_DATA_DIR"] = data_dir
    serve_app(Context.open(Path(data_dir), migrate=False), host, port, ocsp_port, reuse_port=True)


def serve_workers(data_dir: Path, host: str, port: int, workers: int, ocsp_port: int = 0) -> None:
    """Run ``workers`` worker processes until SIGTERM or SIGINT."""
    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - Linux, BSD and macOS have it
        raise KakuinError("--workers > 1 needs SO_REUSEPORT")
    _listen(host, port).close()  # fail here, not in every worker, when the port is taken
    if ocsp_port:
        _listen(host, ocsp_port).close()
    spawn = mp.get_context("spawn")
    stopping = False

    started: dict[int, float] = {}

    def start() -> BaseProcess:
        p = spawn.Process(target=_worker, args=(str(data_dir), host, port, ocsp_port), name="kakuin-worker")
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
