"""The ``[mpic]`` configuration section: remote network perspectives and the quorum.

Parsed here (pydantic, frozen) and compiled into a running ``CorroboratingVA`` by
``kakuin.va.mpic``. A quorum the BR forbid fails at load, naming ``mpic.perspectives``.

::

    [mpic]
    enabled = true
    required_remote = 5          # BR 3.2.2.9: at least 5 from 2026-12-15
    # allowed_failures = 1       # default: the BR 3.2.2.9 quorum table
    timeout_seconds = 10

    [[mpic.perspectives]]
    name = "tokyo-1"
    url = "https://tokyo-1.mpic.example.ac.jp"
    key_file = "secrets/mpic-tokyo-1.key"   # or key_env = "KAKUIN_MPIC_TOKYO_1"
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["MPICConfig", "PerspectiveSpec", "br_allowed_failures", "load_key"]


def br_allowed_failures(remote: int) -> int:
    """BR 3.2.2.9, Table "Quorum Requirements":

    | # of Distinct Remote Network Perspectives Used | # of Allowed non-Corroborations |
    | 2-5 | 1 |
    | 6+  | 2 |

    With fewer than two remote perspectives the table says nothing; we allow none.
    """
    if remote < 2:
        return 0
    return 1 if remote <= 5 else 2


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerspectiveSpec(_Model):
    """One remote network perspective: where it listens and the shared HMAC key."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    url: str
    key_file: str | None = None  # relative paths are under the data directory
    key_env: str | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _one_key(self) -> PerspectiveSpec:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError(f"perspective {self.name}: give exactly one of key_file or key_env")
        return self


class MPICConfig(_Model):
    enabled: bool = False
    perspectives: tuple[PerspectiveSpec, ...] = ()
    # BR 3.2.2.9: from 2026-12-15, at least five remote perspectives.
    required_remote: int = Field(default=5, ge=1, le=64)
    # None: the BR quorum table for the number of perspectives configured.
    allowed_failures: int | None = Field(default=None, ge=0)
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _quorum(self) -> MPICConfig:
        names = [p.name for p in self.perspectives]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"mpic.perspectives: duplicate name(s) {', '.join(dupes)}")
        if not self.enabled:
            return self
        n = len(self.perspectives)
        if n < self.required_remote:
            raise ValueError(
                f"mpic.perspectives: {n} configured, but the quorum needs at least "
                f"{self.required_remote} remote perspectives (mpic.required_remote; BR 3.2.2.9)"
            )
        if self.allowed_failures is not None and self.allowed_failures > br_allowed_failures(n):
            raise ValueError(
                f"mpic.allowed_failures = {self.allowed_failures} is more than BR 3.2.2.9 allows "
                f"for {n} remote perspectives ({br_allowed_failures(n)})"
            )
        return self

    @property
    def max_failures(self) -> int:
        """Remote perspectives that may fail to corroborate, out of those configured."""
        if self.allowed_failures is not None:
            return self.allowed_failures
        return br_allowed_failures(len(self.perspectives))


def load_key(spec: PerspectiveSpec, data_dir: Path, env: dict[str, str] | None = None) -> bytes:
    """The shared key of ``spec``: the file's (stripped) contents or the variable's value."""
    from kakuin.errors import ConfigError

    if spec.key_env is not None:
        value = (os.environ if env is None else env).get(spec.key_env, "")
        if not value.strip():
            raise ConfigError(f"mpic.perspectives {spec.name}: ${spec.key_env} is not set")
        return value.strip().encode()
    path = Path(spec.key_file or "")
    path = path if path.is_absolute() else data_dir / path
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"mpic.perspectives {spec.name}: cannot read key_file {path}: {exc}") from None
    if len(key) < 32:
        raise ConfigError(f"mpic.perspectives {spec.name}: key in {path} is shorter than 32 bytes")
    return key
