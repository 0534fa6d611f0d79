"""Retention and housekeeping: ``log.prune(before=t)`` and ``log.compact()``.

``prune`` raises the log's *watermark* to ``t`` (nothing older is exported or
summarized from then on, even where it still sits on disk), then reclaims
space:

* a dead segment whose every record is older than ``t`` is deleted;
* a dead segment that straddles ``t`` is rewritten without its older records
  (frames are copied byte for byte, fsynced, and renamed over the original in
  the same index transaction that updates its entry);
* statistics buckets that end at or before ``t`` and labels older than ``t``
  are deleted from the index.  A bucket that straddles ``t`` is kept whole.

This process's own segment is finished first so it can be pruned too.  A
segment another process is still appending to is left alone and reported as
``segments_busy``; its old records stay hidden behind the watermark until a
later ``prune`` or ``compact`` after that process moves on to a new segment.

``compact`` (what ``vecstore compact`` runs) catches the index up on every
dead segment, cuts torn tails left by crashes, deletes segments without any
record and leftover temporary files.

Example::

    report = log.prune(before=time.time() - 30 * 86400)    # keep 30 days
    report.bytes_reclaimed
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidValueError
from .columns import SegmentContext, layout_for
from .delta import SegInfo
from .frames import (
    KIND_DICT,
    KIND_LABEL,
    KIND_SCHEMA,
    STAGE_OF_KIND,
    Frame,
    ScanResult,
    iter_frames,
    next_good_frame,
)
from .inputs import to_time
from .segments import hold, list_segments, rewrite, scan_delta

if TYPE_CHECKING:
    from .log import FeatureLog

__all__ = ["PruneReport", "compact", "prune"]

_EVENT_KINDS = (*STAGE_OF_KIND, KIND_LABEL)


@dataclass(frozen=True)
class PruneReport:
    """What ``prune`` or ``compact`` removed, and the log's size before and after."""

    before: float | None
    segments_removed: int
    segments_rewritten: int
    segments_busy: int
    records_removed: int
    torn_bytes_dropped: int
    stats_buckets_removed: int
    labels_removed: int
    bytes_before: int
    bytes_after: int
    segments_repaired: int = 0  # compact: segments damaged in the middle, rewritten without the damage
    damaged_bytes_dropped: int = 0  # compact: bytes of those that did not check out

    @property
    def bytes_reclaimed(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bytes_reclaimed"] = self.bytes_reclaimed
        return d


def _size(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


def _damage(seg: Path, info: SegInfo, size: int) -> tuple[int, bool, bool] | None:
    """Where a dead segment stops checking out: ``(offset, inside the indexed part, good frames after it)``.

    Past ``covered`` is what failed when the index caught up (a torn tail or
    damage); before it, a frame that fails now changed after it was indexed
    (bit rot), which only reading every checksum finds.  None: all is well.
    """
    res = ScanResult()
    for _ in iter_frames(seg, stop=info.covered, result=res):
        pass
    if res.problem is not None and res.valid_end < info.covered:
        at, indexed = res.valid_end, True
    elif size > info.covered:
        at, indexed = info.covered, False
    else:
        return None
    return at, indexed, next_good_frame(seg, at + 1) is not None


def _events(info: SegInfo) -> int:
    return sum(info.records.get(k, 0) for k in _EVENT_KINDS)


def _info_of(path: Path, bucket_seconds: int) -> SegInfo:
    delta, res = scan_delta(path, 0, bucket_seconds=bucket_seconds)
    info = delta.info
    info.covered, info.size = res.valid_end, res.size
    return info


def prune(log: FeatureLog, *, before: Any) -> PruneReport:
    """Delete everything logged before ``before`` (seconds since the epoch, or a datetime)."""
    t = to_time(before, "before")
    if t is None:
        raise InvalidValueError("prune needs before=<time>", hint="for example before=time.time() - 30 * 86400")
    log._check_open(write=True)
    log._checkpoint(rotate=True)  # finish our own segment, so it is dead and prunable
    view = log._view()
    index = view.index
    bytes_before = _size(view.segments)
    buckets, labels = index.prune(t)
    removed = rewritten = busy = dropped = 0
    for seg in view.segments:
        info = view.entries[seg.name]
        if info.min_ts >= t and _events(info):
            continue
        with hold(seg, exclusive=True) as fd:
            if fd is None:
                busy += 1
                continue
            if info.max_ts < t:
                index.set_entry(seg.name, None, unlink=seg)
                removed += 1
                dropped += _events(info)
                continue
            bad = _damage(seg, info, os.fstat(fd).st_size)
            if bad is not None and (bad[1] or bad[2]):
                # Damaged in the middle (or in what the index had read): a
                # rewrite would stop at the damage and lose what follows it,
                # and the index would keep counting it.  compact() repairs it.
                busy += 1
                continue
            tmp, n, _, _ = rewrite(seg, keep=lambda f: f.kind not in _EVENT_KINDS or f.ts >= t)
            index.set_entry(seg.name, _info_of(tmp, index.bucket_seconds), rename=(tmp, seg))
            rewritten += 1
            dropped += n
    return PruneReport(
        before=t, segments_removed=removed, segments_rewritten=rewritten, segments_busy=busy,
        records_removed=dropped, torn_bytes_dropped=0, stats_buckets_removed=buckets, labels_removed=labels,
        bytes_before=bytes_before, bytes_after=_size(list_segments(log.seg_dir)),
    )


def _redeclarer(log: FeatureLog) -> Any:
    """The ``redeclare`` of a repair: lost schema and dictionary frames, rebuilt from the store.

    A table's schema never changes under its table ID and its category codes
    are never reassigned, so what the store holds now is what the lost frames
    said.  A call of a table that no longer exists cannot be decoded: None.
    """
    store = log._store

    def table_of(ti: int) -> Any:
        for name in store.tables():
            t = store.table(name)
            if t.schema.table_id == ti:
                return t
        return None

    def redeclare(frame: Frame, ctx: SegmentContext) -> list[tuple[int, float, dict[str, Any]]] | None:
        meta, bufs = frame.parts()
        ti, out = meta["ti"], []
        t = None
        if ti not in ctx.schemas:
            t = table_of(ti)
            if t is None:
                return None
            out.append((KIND_SCHEMA, frame.ts, {"ti": ti, "schema": t.schema.to_dict()}))
            ctx_schema = t.schema
        else:
            ctx_schema = ctx.schemas[ti]
        layout = layout_for(ctx_schema, tuple(meta["f"]))
        if layout.categories and meta["k"]:
            rec = layout.records(bufs["rec"], meta["k"])
            for f in layout.categories:
                codes = np.unique(rec[f][layout.present(rec, f)]).tolist()
                lost = [c for c in codes if not ctx.knows(ti, f, c)]
                if lost:
                    t = t or table_of(ti)
                    if t is None:
                        return None
                    strs = t._categories(f, np.array(lost, dtype=np.uint32)).tolist()
                    out.append((KIND_DICT, frame.ts, {"ti": ti, "f": f, "codes": lost, "strs": strs}))
        return out

    return redeclare


def compact(log: FeatureLog) -> PruneReport:
    """Catch up the index, cut torn tails, repair damaged segments, drop empty ones and stale temporary files.

    A segment damaged in the middle (good frames after a bad one) is rewritten
    with every frame that checks out; only the bytes that do not are dropped.
    Every dead segment is read through with its checksums, so damage in what
    the index had already read is found too (the index is then rebuilt).
    """
    log._check_open(write=True)
    view = log._view()
    index = view.index
    bytes_before = _size(view.segments)
    own = log._seg.path.name if log._seg is not None else None
    removed = torn = repaired = damaged = 0
    redeclare = _redeclarer(log)
    rebuild = False
    for seg in view.segments:
        if seg.name == own:
            continue
        info = view.entries[seg.name]
        salvaged = False
        with hold(seg, exclusive=True) as fd:
            if fd is None:
                continue
            st = os.fstat(fd)
            size = st.st_size
            bad = _damage(seg, info, size)
            at, indexed, good_after = bad if bad is not None else (size, False, False)
            # Good frames after damage: even with no record counted yet (the
            # damage came first) the segment is repaired, never deleted.
            if not _events(info) and not good_after:
                index.set_entry(seg.name, None, unlink=seg)
                removed += 1
                continue
            if st.st_blocks * 512 > size + (1 << 20):
                os.truncate(seg, size)  # a crashed writer's space reserved past the end (see segments.py)
            if bad is None:
                continue
            if good_after:
                # Keep every frame that checks out, stepping over the damage.
                # The copy keeps the offsets before it, so an entry whose
                # indexed part is intact stays valid and the catch-up below
                # reads only the rest.
                tmp, _, _, lost = rewrite(seg, lambda f: True, step_over_damage=True, redeclare=redeclare)
                repaired += 1
                damaged += lost
            else:
                os.truncate(seg, at)  # nothing good after it: cut it off
                lost, tmp = size - at, None
                if indexed:
                    damaged += lost
                else:
                    torn += lost  # a torn tail (a crash while appending)
            if not indexed:
                info.size = info.covered  # not the file's size: a catch-up scans on from `covered`
            index.set_entry(seg.name, info, rename=(tmp, seg) if tmp is not None else None)
            # Bit rot in what the index had read: it counted what is lost, so it is rebuilt.
            rebuild = rebuild or indexed
            salvaged = tmp is not None and not indexed
        if salvaged:
            index.absorb(seg)  # fold the recovered frames' statistics and labels into the index
    if rebuild:
        log.rebuild_index()
    cutoff = time.time() - 3600
    for p in log.seg_dir.glob(".*"):
        # Leftovers of a crash while creating or rewriting a segment.  A file
        # still being created is locked by its creator; a rewrite is recent.
        with hold(p, exclusive=True) as fd:
            if fd is not None and (p.name.endswith(".tmp") or p.stat().st_mtime < cutoff):
                p.unlink(missing_ok=True)
    wm = view.watermark
    return PruneReport(
        before=wm if math.isfinite(wm) else None, segments_removed=removed, segments_rewritten=0, segments_busy=0,
        records_removed=0, torn_bytes_dropped=torn, stats_buckets_removed=0, labels_removed=0,
        bytes_before=bytes_before, bytes_after=_size(list_segments(log.seg_dir)),
        segments_repaired=repaired, damaged_bytes_dropped=damaged,
    )
