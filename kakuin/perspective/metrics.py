"""Prometheus text exposition (format 0.0.4) for MPIC counters and latencies.

Small on purpose: counters and one histogram family, in memory, per process,
thread-safe. ``render()`` is what ``GET /metrics`` serves.
"""

from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; checks across the Internet take tens to hundreds of milliseconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    esc = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in labels)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(labels, esc, strict=True)) + "}"


class Metrics:
    def __init__(self, prefix: str = "mpic") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._counts: dict[tuple[tuple[str, str], ...], int] = defaultdict(int)
        self._hist: dict[tuple[tuple[str, str], ...], list[float]] = {}

    def count(self, **labels: str) -> None:
        """``<prefix>_checks_total{labels}`` += 1."""
        with self._lock:
            self._counts[tuple(sorted(labels.items()))] += 1

    def observe(self, seconds: float, **labels: str) -> None:
        """One sample of ``<prefix>_latency_seconds{labels}``."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            h = self._hist.setdefault(key, [0.0] * (len(BUCKETS) + 2))  # buckets…, sum, count
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    h[i] += 1
            h[-2] += seconds
            h[-1] += 1

    def counts(self) -> dict[tuple[tuple[str, str], ...], int]:
        with self._lock:
            return dict(self._counts)

    def render(self) -> str:
        p = self.prefix
        lines = [f"# HELP {p}_checks_total Checks by perspective and result.",
                 f"# TYPE {p}_checks_total counter"]
        with self._lock:
            for key, n in sorted(self._counts.items()):
                lines.append(f"{p}_checks_total{_labels(key)} {n}")
            lines += [f"# HELP {p}_latency_seconds Time for one check, by perspective.",
                      f"# TYPE {p}_latency_seconds histogram"]
            for key, h in sorted(self._hist.items()):
                for i, bound in enumerate(BUCKETS):
                    lines.append(f"{p}_latency_seconds_bucket{_labels(key + (('le', f'{bound:g}'),))} "
                                 f"{h[i]:g}")
                lines.append(f"{p}_latency_seconds_bucket{_labels(key + (('le', '+Inf'),))} {h[-1]:g}")
                lines.append(f"{p}_latency_seconds_sum{_labels(key)} {h[-2]:.6f}")
                lines.append(f"{p}_latency_seconds_count{_labels(key)} {h[-1]:g}")
        return "\n".join(lines) + "\n"
