"""A test daemon run in the foreground with its output in a log file: started in
its own session, stopped with SIGTERM (SIGKILL after 5 s). Shared by the BIND
and Unbound fixtures (a helper, not a test module)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO


class LoggedDaemon:
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None
    log_path: Path
    workdir: Path

    def _launch(self, argv: list[str]) -> None:
        """Start ``argv`` in ``workdir``, then wait for ``_wait_ready``; stop on failure."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
