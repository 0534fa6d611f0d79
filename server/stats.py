"""The server's counters and per-op latency percentiles (what the ``stats`` op reports)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import vecstore

from .protocol import PROTOCOL_VERSION

__all__ = ["Stats"]

# Latencies kept per op for its percentiles: the most recent requests.
_LATENCY_WINDOW = 4096


class _OpStats:
    __slots__ = ("errors", "lat", "pos", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.lat = np.zeros(_LATENCY_WINDOW, dtype=np.float64)
        self.pos = 0


class Stats:
    """Counters and a window of recent latencies per op; touched only on the event loop."""

    def __init__(self) -> None:
        self.started = time.time()
        self.ops: dict[str, _OpStats] = {}
        self.requests = self.errors = 0
        self.bytes_in = self.bytes_out = 0
        self.connections_total = self.connections_rejected = 0

    def record(self, op: str, seconds: float, ok: bool) -> None:
        s = self.ops.get(op)
        if s is None:
            s = self.ops[op] = _OpStats()
        s.requests += 1
        s.lat[s.pos % _LATENCY_WINDOW] = seconds
        s.pos += 1
        self.requests += 1
        if not ok:
            s.errors += 1
            self.errors += 1

    def report(self, *, connections: int, read_only: bool) -> dict[str, Any]:
        ops = {}
        for name, s in sorted(self.ops.items()):
            lat = s.lat[: min(s.pos, _LATENCY_WINDOW)] * 1e6
            p50, p90, p99 = (float(x) for x in np.percentile(lat, [50, 90, 99])) if len(lat) else (0.0, 0.0, 0.0)
            ops[name] = {
                "op": name, "requests": s.requests, "errors": s.errors,
                "p50_us": p50, "p90_us": p90, "p99_us": p99, "max_us": float(lat.max()) if len(lat) else 0.0,
            }
        return {
            "server": f"vecstore {vecstore.__version__}",
            "protocol": PROTOCOL_VERSION,
            "uptime_s": time.time() - self.started,
            "read_only": read_only,
            "connections": connections,
            "connections_total": self.connections_total,
            "connections_rejected": self.connections_rejected,
            "requests": self.requests,
            "errors": self.errors,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "ops": ops,
        }
