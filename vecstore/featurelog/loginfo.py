"""``log.info()``: what the whole log holds, summed from a view's catalog entries (no segment is read)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .frames import KIND_LABEL, KIND_RANKING, KIND_RETRIEVAL
from .segments import is_live
from .view import View

__all__ = ["LogInfo", "log_info"]


@dataclass(frozen=True)
class LogInfo:
    """What the log holds: segments, bytes, calls and rows per stage, labels, time range."""

    path: str
    segments: int
    live_segments: int
    bytes: int
    retrieval_calls: int
    ranking_calls: int
    labels_logged: int
    rows: dict[str, int] = field(default_factory=dict)
    distinct_labels: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    pruned_before: float | None = None
    index_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def log_info(view: View, path: Path) -> LogInfo:
    """Totals over every segment of ``view`` (the log at ``path``)."""
    calls: dict[int, int] = {}
    rows: dict[str, int] = {}
    lo, hi = math.inf, -math.inf
    size = 0
    for seg in view.segments:
        e = view.entries[seg.name]
        for kind, c in e.records.items():
            calls[kind] = calls.get(kind, 0) + c
        for st, c in e.rows.items():
            rows[st] = rows.get(st, 0) + c
        lo, hi = min(lo, e.min_ts), max(hi, e.max_ts)
        size += e.size
    idx_file = path / "index" / "data.mdb"
    wm = view.watermark
    return LogInfo(
        path=str(path),
        segments=len(view.segments),
        live_segments=sum(1 for p in view.segments if is_live(p)),
        bytes=size,
        retrieval_calls=calls.get(KIND_RETRIEVAL, 0),
        ranking_calls=calls.get(KIND_RANKING, 0),
        labels_logged=calls.get(KIND_LABEL, 0),
        rows=rows,
        distinct_labels=view.index.count_labels() + len(view.overlay.labels),
        first_ts=lo if math.isfinite(lo) else None,
        last_ts=hi if math.isfinite(hi) else None,
        pruned_before=wm if math.isfinite(wm) else None,
        index_bytes=idx_file.stat().st_size if idx_file.exists() else 0,
    )
