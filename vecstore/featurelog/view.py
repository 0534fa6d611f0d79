"""A consistent picture of the whole log for one read (stats, drift, export, info).

It is the index plus an *overlay*: what the index does not cover yet.  Dead
segments are caught up into the index before a view is built; what remains
uncovered are the live segments of other processes, whose writers fold their
last few records in at their next checkpoint (every second by default).
Those tails are scanned into memory here, so a reader sees every record that
was logged before it asked, and rescans at most a checkpoint interval of
someone else's log.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .delta import Delta, SegInfo, merge_delta
from .index import LogIndex
from .sketch import Summary

__all__ = ["View"]


class View:
    """The index and an in-memory overlay of uncovered segment tails."""

    def __init__(self, index: LogIndex, segments: list[Path], entries: dict[str, SegInfo], overlay: Delta, watermark: float) -> None:
        self.index = index
        self.segments = segments
        self.entries = entries
        self.overlay = overlay
        self.watermark = watermark
        self._labels: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
        for key, (value, ts, item) in overlay.labels.items():
            if ts < watermark:
                continue
            rid, name = key.split(b"\x00", 2)[:2]
            slot = self._labels.setdefault(rid.decode("utf-8"), {}).setdefault(item, {})
            old = slot.get(name.decode())
            if old is None or ts >= old[1]:
                slot[name.decode()] = (value, ts)

    def summary(self, stage: str, feature: str, table: str | None, lo: float, hi: float) -> tuple[Summary, list[int]]:
        """Merged summary of the buckets overlapping ``[lo, hi)`` (and later than the watermark)."""
        s, buckets = self.index.summary(stage, feature, table, lo, hi)
        B = self.index.bucket_seconds
        for (st, t, f, bucket), part in self.overlay.stats.items():
            wanted = st == stage and f == feature and (table is None or t == table)
            if wanted and lo < bucket + B and bucket < hi and bucket + B > self.watermark:
                s.merge(part)
                buckets.append(bucket)
        return s, sorted(set(buckets))

    def stat_features(self, stage: str) -> set[tuple[str, str]]:
        out = self.index.features(stage)
        out.update((t, f) for (st, t, f, _) in self.overlay.stats if st == stage)
        return out

    def labels(self, txn: Any, request_id: str) -> dict[str, dict[str, float]]:
        """``{item: {name: value}}`` of a request: the index's labels, newer overlay ones on top."""
        got = self.index.labels(txn, request_id) if txn is not None else {}
        extra = self._labels.get(request_id)
        if extra:
            for item, names in extra.items():
                slot = got.setdefault(item, {})
                for name, (value, ts) in names.items():
                    old = slot.get(name)
                    if old is None or ts >= old[1]:
                        slot[name] = (value, ts)
        return {item: {name: vt[0] for name, vt in names.items()} for item, names in got.items()}

    def label_names(self) -> set[str]:
        return self.index.label_names() | self.overlay.label_names

    def tables(self, lo: float = -math.inf, hi: float = math.inf) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """Table -> feature -> specs logged by segments whose time range meets ``[lo, hi)``."""
        merged = SegInfo()
        for info in self.entries.values():
            if info.max_ts >= lo and info.min_ts < hi:
                merged.merge(info)
        return merged.tables

    def context_types(self, lo: float = -math.inf, hi: float = math.inf) -> dict[str, str]:
        merged = SegInfo()
        for info in self.entries.values():
            if info.max_ts >= lo and info.min_ts < hi:
                merged.merge(info)
        return merged.ctx


def overlay_entry(info: SegInfo | None, delta: Delta) -> SegInfo:
    """A segment's catalog entry with an uncovered tail's additions on top (not persisted)."""
    out = SegInfo()
    if info is not None:
        out.merge(info)
        out.covered = info.covered
    out.merge(delta.info)
    out.size = delta.info.size
    return out


def add_tail(overlay: Delta, tail: Delta) -> None:
    merge_delta(overlay, tail)
