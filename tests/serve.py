"""Run ``kakuin serve`` as a subprocess for end-to-end tests (a helper, not a
test module): wait until the ACME directory answers, stop it afterwards."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


@contextmanager
def kakuin_serve(data: Path, base_url: str, log_path: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``kakuin serve --data-dir DATA [args]`` with its output in ``log_path``."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kakuin", "serve", "--data-dir", str(data), *args],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"{base_url}/acme/directory", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "kakuin serve did not start"
                time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


CERTBOT = Path(sys.executable).parent / "certbot"


def run_certbot(directory: str, state: Path, email: str, *args: str) -> subprocess.CompletedProcess[str]:
    """certbot (from the virtualenv) against ``directory``, its state under ``state``."""
    cmd = [str(CERTBOT), *args, "--server", directory,
           "--config-dir", str(state / "config"), "--work-dir", str(state / "work"),
           "--logs-dir", str(state / "logs"), "--non-interactive", "--agree-tos", "-m", email]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)
