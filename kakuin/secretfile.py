"""Random secrets kept in the data directory (``secrets/``), made on first use.

Several processes may start together on a new data directory (``kakuin serve
--workers N``): each must end with the same secret, and none may read one still
being written.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from pathlib import Path

from kakuin.errors import KakuinError

__all__ = ["installation_secret"]


def installation_secret(path: Path, size: int = 32) -> bytes:
    """The secret in ``path`` (base64, mode 0600), made of ``size`` random bytes
    if there is none yet."""
    if not path.exists():
        _create_secret(path, size)
    return _read_secret(path)


def _create_secret(path: Path, size: int) -> None:
    """Make the secret, whole or not at all: it is written to a file
    of its own first and then linked into place, so that a process starting at
    the same moment never reads a secret still being written (with an O_EXCL
    create and then a write, it could read an empty file), and the first link
    wins for every process."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(secrets.token_bytes(size)) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: its secret is everyone's
        except OSError:
            # A file system without hard links: create it in place, exclusively;
            # a process that finds it still empty waits for it (``_read_secret``).
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(tmp.read_bytes())
    finally:
        tmp.unlink()


def _read_secret(path: Path) -> bytes:
    for _ in range(100):  # up to ~5 s for a secret being written in place (above)
        data = path.read_bytes().strip()
        if data:
            return base64.b64decode(data)
        time.sleep(0.05)
    raise KakuinError(f"{path} is empty: remove it and start kakuin again")
