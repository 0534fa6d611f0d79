"""The log's index: an LMDB environment under ``<store>/logs/index/``, derived from the segments.

It holds what must not be recomputed by rescanning the segments:

* ``stats``: one :class:`~.sketch.Summary` per (stage, table, feature, time
  bucket), the sum of every logged row's contribution;
* ``labels``: the newest value of each (request, label name, item), so an
  export joins outcomes with one range read per request and bounded memory;
* ``segments``: per segment file, how far the index covers it (``covered``,
  a frame boundary) and a catalog of what it holds (time range, row counts,
  the tables, features and context keys it logged);
* ``meta``: the format, the time bucket width, the retention watermark and
  the set of label names.

The segments are the source of truth.  Each writer folds what it appended
into the index at its checkpoints, in one write transaction that also moves
its segment's ``covered`` offset; a dead segment whose writer stopped before
covering it all is caught up by whoever reads next (:meth:`LogIndex.absorb`).
Covered ranges are never counted twice: the offset and the statistics change
in the same transaction.  The index is its own LMDB environment, so updating
it never takes the feature tables' write lock, and it is opened with
``sync=False``: it is derived, and :meth:`LogIndex.reset` plus catch-up
rebuild it from the segments.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

import msgpack

from ..env import Env
from ..errors import StorageError
from .delta import Delta, SegInfo
from .segments import hold, scan_delta
from .sketch import Summary

__all__ = ["IndexAheadError", "LogIndex"]

INDEX_FORMAT = 1
_DBS = (b"meta", b"segments", b"stats", b"labels")
_K_FORMAT = b"format"
_K_WATERMARK = b"pruned_before"
_K_LABEL_NAMES = b"label_names"
_BIAS = 1 << 63


class IndexAheadError(Exception):
    """The index covers more of a segment than the file holds (an OS crash lost the segment's tail)."""


def stats_key(stage: str, table: str, feature: str, bucket: int) -> bytes:
    return f"{stage}\x00{table}\x00{feature}\x00".encode() + (bucket + _BIAS).to_bytes(8, "big")


def parse_stats_key(k: bytes) -> tuple[str, str, str, int]:
    stage, table, feature = k[:-9].decode().split("\x00")
    return stage, table, feature, int.from_bytes(k[-8:], "big") - _BIAS


# LMDB refuses to open one environment twice in a process, so every FeatureLog
# of a process on the same store shares one Env, closed with the last of them.
_shared: dict[str, list[Any]] = {}
_shared_lock = threading.Lock()


def _reset_lock_in_child() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()  # another thread may have held it at fork time


os.register_at_fork(after_in_child=_reset_lock_in_child)


def _acquire(path: Path, readonly: bool) -> Env:
    key = os.path.realpath(path)
    with _shared_lock:
        hit = _shared.get(key)
        if hit is not None and not hit[0]._closed:
            if hit[0].readonly and not readonly:
                raise StorageError(
                    f"the feature log index at {path} is already open read-only in this process",
                    hint="close the read-only store before opening it for writing",
                )
            hit[1] += 1
            return hit[0]
        env = Env(key, readonly=readonly, map_size=32 << 20, sync=False, max_dbs=8, max_readers=126)
        _shared[key] = [env, 1]
        return env


def _release(path: Path) -> None:
    key = os.path.realpath(path)
    with _shared_lock:
        hit = _shared.get(key)
        if hit is None:
            return
        hit[1] -= 1
        if hit[1] <= 0:
            del _shared[key]
            hit[0].close()


class LogIndex:
    """Open (or create) the index of the log under ``path``."""

    def __init__(self, path: Path, *, readonly: bool, bucket_seconds: int) -> None:
        self.path = path
        self.readonly = readonly
        self.bucket_seconds = bucket_seconds
        self.env: Env | None = None
        if readonly and not (path / "data.mdb").exists():
            return  # nothing indexed yet: readers scan the segments instead
        path.mkdir(parents=True, exist_ok=True)
        self.env = _acquire(path, readonly)
        for name in _DBS:
            self.env.db(name, create=not readonly)
        if self._db(b"meta") is None:
            return
        with self.env.read() as txn:
            fmt = txn.get(_K_FORMAT, db=self._db(b"meta"))
        if fmt is None and not readonly:
            want = msgpack.packb({"version": INDEX_FORMAT, "bucket_seconds": bucket_seconds})

            def init(txn: Any) -> None:
                if txn.get(_K_FORMAT, db=self._db(b"meta")) is None:
                    txn.put(_K_FORMAT, want, db=self._db(b"meta"))

            self.env.write(init, action="creating the feature log index")
            with self.env.read() as txn:
                fmt = txn.get(_K_FORMAT, db=self._db(b"meta"))
        if fmt is not None:
            self.bucket_seconds = int(msgpack.unpackb(fmt)["bucket_seconds"])

    def _db(self, name: bytes) -> Any:
        assert self.env is not None
        return self.env.db(name)

    def close(self) -> None:
        if self.env is not None:
            _release(self.path)
            self.env = None

    # -- reads ---------------------------------------------------------------

    def watermark(self) -> float:
        """Records before this time were pruned (-inf when never)."""
        if self.env is None or self._db(b"meta") is None:
            return -math.inf
        with self.env.read() as txn:
            return self._watermark(txn)

    def _watermark(self, txn: Any) -> float:
        raw = txn.get(_K_WATERMARK, db=self._db(b"meta"))
        return msgpack.unpackb(raw) if raw else -math.inf

    def entries(self) -> dict[str, SegInfo]:
        if self.env is None or self._db(b"segments") is None:
            return {}
        with self.env.read() as txn:
            return {k.decode(): SegInfo.from_dict(msgpack.unpackb(v, strict_map_key=False)) for k, v in txn.cursor(db=self._db(b"segments"))}

    def label_names(self) -> set[str]:
        if self.env is None or self._db(b"meta") is None:
            return set()
        with self.env.read() as txn:
            raw = txn.get(_K_LABEL_NAMES, db=self._db(b"meta"))
        return set(msgpack.unpackb(raw)) if raw else set()

    def summary(self, stage: str, feature: str, table: str | None, lo: float, hi: float) -> tuple[Summary, list[int]]:
        """The merged summary of the buckets that overlap ``[lo, hi)``, and those buckets."""
        out = Summary()
        buckets: list[int] = []
        if self.env is None or self._db(b"stats") is None:
            return out, buckets
        prefix = f"{stage}\x00".encode() + (f"{table}\x00{feature}\x00".encode() if table is not None else b"")
        B = self.bucket_seconds
        with self.env.read() as txn:
            cur = txn.cursor(db=self._db(b"stats"))
            if not cur.set_range(prefix):
                return out, buckets
            for k, v in cur:
                if not k.startswith(prefix):
                    break
                _, _, f, bucket = parse_stats_key(k)
                if f == feature and bucket < hi and bucket + B > lo:
                    out.merge(Summary.from_bytes(v))
                    buckets.append(bucket)
        return out, buckets

    def features(self, stage: str) -> set[tuple[str, str]]:
        """(table, feature) pairs that have statistics at ``stage``."""
        out: set[tuple[str, str]] = set()
        if self.env is None or self._db(b"stats") is None:
            return out
        prefix = f"{stage}\x00".encode()
        with self.env.read() as txn:
            cur = txn.cursor(db=self._db(b"stats"))
            if cur.set_range(prefix):
                for k in cur.iternext(keys=True, values=False):
                    if not k.startswith(prefix):
                        break
                    _, t, f, _ = parse_stats_key(k)
                    out.add((t, f))
        return out

    def labels(self, txn: Any, request_id: str) -> dict[str, dict[str, tuple[float, float]]]:
        """``{item: {label name: (value, ts)}}`` of one request, read in ``txn`` (a read transaction of :attr:`env`)."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        prefix = request_id.encode("utf-8") + b"\x00"
        cur = txn.cursor(db=self._db(b"labels"))
        if not cur.set_range(prefix):
            return out
        for k, v in cur:
            if not k.startswith(prefix):
                break
            name = k[len(prefix) :].split(b"\x00", 1)[0].decode()
            value, ts, item = msgpack.unpackb(v)
            out.setdefault(item, {})[name] = (value, ts)
        return out

    def count_labels(self) -> int:
        if self.env is None or self._db(b"labels") is None:
            return 0
        with self.env.read() as txn:
            return txn.stat(self._db(b"labels"))["entries"]

    # -- writes --------------------------------------------------------------

    def _merge(self, txn: Any, delta: Delta, info: SegInfo) -> None:
        """Fold ``delta`` into the index within ``txn`` (statistics, labels, catalog)."""
        wm = self._watermark(txn)
        B = self.bucket_seconds
        stats_db, labels_db, meta_db = self._db(b"stats"), self._db(b"labels"), self._db(b"meta")
        for (stage, table, feature, bucket), s in delta.stats.items():
            if bucket + B <= wm:
                continue  # a whole bucket before the retention watermark: already pruned
            k = stats_key(stage, table, feature, bucket)
            old = txn.get(k, db=stats_db)
            if old is not None:
                s = Summary.from_bytes(old).merge(s)
            txn.put(k, s.to_bytes(), db=stats_db)
        for k, (value, ts, item) in delta.labels.items():
            if ts < wm:
                continue
            old = txn.get(k, db=labels_db)
            if old is not None and msgpack.unpackb(old)[1] > ts:
                continue  # the newest outcome wins; a tie goes to the later write
            txn.put(k, msgpack.packb([value, ts, item]), db=labels_db)
        if delta.label_names:
            raw = txn.get(_K_LABEL_NAMES, db=meta_db)
            names = set(msgpack.unpackb(raw)) if raw else set()
            if not delta.label_names <= names:
                txn.put(_K_LABEL_NAMES, msgpack.packb(sorted(names | delta.label_names)), db=meta_db)
        info.merge(delta.info)

    def _entry(self, txn: Any, name: str) -> SegInfo | None:
        raw = txn.get(name.encode(), db=self._db(b"segments"))
        return SegInfo.from_dict(msgpack.unpackb(raw, strict_map_key=False)) if raw else None

    def _put_entry(self, txn: Any, name: str, info: SegInfo) -> None:
        txn.put(name.encode(), msgpack.packb(info.to_dict()), db=self._db(b"segments"))

    def apply(self, delta: Delta, path: Path) -> None:
        """Fold the owner's pending ``delta`` of segment ``path`` in; covered becomes ``delta.end``.

        If the index covers less than ``delta.start`` (it was reset meanwhile),
        the owner scans the gap itself first: it is the only process that may,
        because the segment is live.
        """
        assert self.env is not None
        name = path.name

        def fn(txn: Any) -> None:
            info = self._entry(txn, name) or SegInfo()
            if info.covered > delta.start:
                return  # already covered (never count twice)
            if info.covered < delta.start:
                gap, _ = scan_delta(path, info.covered, bucket_seconds=self.bucket_seconds, stop=delta.start)
                self._merge(txn, gap, info)
            self._merge(txn, delta, info)
            info.covered = delta.end
            info.size = max(delta.end, info.size)
            self._put_entry(txn, name, info)

        self.env.write(fn, action="updating the feature log index")

    def absorb(self, path: Path) -> bool:
        """Catch the index up on a dead segment; False if the segment is live (or gone).

        Raises IndexAheadError when the index claims more of the file than
        exists, which only an OS crash between a checkpoint and the data
        reaching the disk can cause: the caller then rebuilds the index.
        """
        assert self.env is not None
        name = path.name
        with hold(path) as fd:
            if fd is None:
                return False

            def fn(txn: Any) -> None:
                info = self._entry(txn, name)
                size = os.fstat(fd).st_size
                if info is not None and info.size == size:
                    return
                covered = info.covered if info is not None else 0
                if covered > size:
                    raise IndexAheadError(f"index covers {covered} bytes of {name}, the file holds {size}")
                delta, res = scan_delta(path, covered, bucket_seconds=self.bucket_seconds)
                info = info or SegInfo()
                self._merge(txn, delta, info)
                info.covered, info.size = res.valid_end, res.size
                self._put_entry(txn, name, info)

            self.env.write(fn, action=f"catching up the feature log index on {name}")
        return True

    def set_entry(self, name: str, info: SegInfo | None, *, rename: tuple[Path, Path] | None = None, unlink: Path | None = None) -> None:
        """Replace (or drop) a segment's entry, renaming or deleting its file in the same transaction."""
        assert self.env is not None

        def fn(txn: Any) -> None:
            if info is None:
                txn.delete(name.encode(), db=self._db(b"segments"))
            else:
                self._put_entry(txn, name, info)
            # File changes inside the transaction: another process's catch-up of
            # this segment waits for the write lock, then sees file and entry agree.
            if rename is not None and rename[0].exists():
                os.replace(rename[0], rename[1])
            if unlink is not None:
                unlink.unlink(missing_ok=True)

        self.env.write(fn, action=f"updating the feature log index entry of {name}")

    def prune(self, before: float) -> tuple[int, int]:
        """Raise the watermark to ``before``; drop whole buckets and labels older.  Returns (buckets, labels) removed."""
        assert self.env is not None
        B = self.bucket_seconds
        removed = [0, 0]

        def fn(txn: Any) -> None:
            removed[:] = [0, 0]
            meta = self._db(b"meta")
            wm = max(self._watermark(txn), before)
            txn.put(_K_WATERMARK, msgpack.packb(wm), db=meta)
            cur = txn.cursor(db=self._db(b"stats"))
            dead = [k for k in cur.iternext(keys=True, values=False) if parse_stats_key(k)[3] + B <= wm]
            for k in dead:
                txn.delete(k, db=self._db(b"stats"))
            cur = txn.cursor(db=self._db(b"labels"))
            old = [k for k, v in cur if msgpack.unpackb(v)[1] < wm]
            for k in old:
                txn.delete(k, db=self._db(b"labels"))
            removed[:] = [len(dead), len(old)]

        self.env.write(fn, action="pruning the feature log index")
        return removed[0], removed[1]

    def reset(self) -> None:
        """Empty every derived table (keeps the format and the retention watermark)."""
        assert self.env is not None

        def fn(txn: Any) -> None:
            for name in (b"segments", b"stats", b"labels"):
                txn.drop(self._db(name), delete=False)
            txn.delete(_K_LABEL_NAMES, db=self._db(b"meta"))

        self.env.write(fn, action="resetting the feature log index")
