"""The feature log: what a recommender served, at both stages, and what happened next.

``store.log`` is a :class:`FeatureLog`.  The serving path calls
:meth:`~FeatureLog.retrieval` (every candidate ID and score, plus the
features of a random sample of candidates, read from the table at that
moment), :meth:`~FeatureLog.ranking` (every ranked item with its features,
and which were shown) and later :meth:`~FeatureLog.label` (clicks, buys…).
Training jobs call :meth:`~FeatureLog.export` for a Hive-partitioned Parquet
dataset with labels joined, and monitoring calls :meth:`~FeatureLog.stats`
and :meth:`~FeatureLog.drift`.  docs/feature-logging.md is the user guide.

**Durability.**  Each call writes its record to this process's segment file
with one ``writev`` before it returns, so once a call returns a process crash
(SIGKILL, OOM kill, segfault) cannot lose it.  :meth:`~FeatureLog.flush`
fsyncs: what was logged before it returns also survives an OS crash or a
power loss; what was logged after the last ``flush`` may not.  With
``flush_seconds`` set, a background thread flushes that often, so no logging
call waits for those fsyncs (see autoflush.py).  A crash in the middle of a
write leaves a torn frame that readers detect and skip.

Example::

    log = store.log
    log.retrieval("req-1", candidate_ids, scores, table="items", user="u-7",
                  source="ann", features=["price", "ctr_7d"], sample=0.01)
    log.ranking("req-1", ranked_ids, ranked_scores, table="items", shown=ranked_ids[:5])
    log.label("req-1", ranked_ids[0], "click", 1.0)
    log.flush()
    log.export("train/")
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import (
    InvalidIdError,
    InvalidValueError,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
    TableNotFoundError,
)
from .autoflush import AutoFlusher, check_flush_seconds
from .columns import (
    encode_ids,
    encode_scores,
    id_text,
    pack_objects,
    take_ids,
)
from .delta import Delta
from .frames import (
    KIND_DICT,
    KIND_HEADER,
    KIND_LABEL,
    KIND_RANKING,
    KIND_RETRIEVAL,
    KIND_SCHEMA,
    ScanResult,
    iter_frames,
    next_good_frame,
)
from .index import IndexAheadError, LogIndex
from .inputs import (
    check_context,
    check_label,
    check_request_id,
    check_sample,
    check_source,
    check_ts,
    check_user,
)
from .loginfo import LogInfo, log_info
from .plan import Plan, plan_for, sample_positions
from .segments import SegmentWriter, list_segments, scan_delta
from .view import View, add_tail, overlay_entry

if TYPE_CHECKING:
    from ..store import Store
    from ..table import Table
    from .drift import DriftReport
    from .export import ExportResult
    from .retention import PruneReport
    from .stats import LogStats

__all__ = ["FeatureLog", "LogInfo"]

_live_logs: weakref.WeakSet[FeatureLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for log in list(_live_logs):
        log._forget_writer()


os.register_at_fork(after_in_child=_after_fork_in_child)


class FeatureLog:
    """Log what a retrieval and a ranking stage served, and the outcomes, into a store.

    Get it as ``store.log`` (created on first use).  Construct one directly
    only to change the defaults:

    * ``seed``: seeds the sampler (default: fresh entropy);
    * ``bucket_seconds``: width of the time buckets statistics are kept per
      (fixed when the log's index is created; default one hour);
    * ``checkpoint_seconds``: how often, at most, a writer folds what it
      logged into the shared index (default 1 s), so other processes see it
      without rescanning;
    * ``segment_bytes`` / ``segment_seconds``: when this process starts a new
      segment file (256 MiB or one hour), which is the unit ``prune`` deletes;
    * ``flush_seconds``: flush (fsync) from a background thread that often
      (default None: only when :meth:`flush` is called); also settable later.
    """

    def __init__(
        self,
        store: Store,
        *,
        seed: int | None = None,
        bucket_seconds: int = 3600,
        checkpoint_seconds: float = 1.0,
        segment_bytes: int = 256 << 20,
        segment_seconds: float = 3600.0,
        flush_seconds: float | None = None,
    ) -> None:
        if isinstance(bucket_seconds, bool) or not isinstance(bucket_seconds, int) or bucket_seconds < 1:
            raise InvalidValueError(f"bucket_seconds must be a positive integer, got {bucket_seconds!r}")
        self._store = store
        self.path = Path(store.path) / "logs"
        self.readonly = store.readonly
        self._rng = np.random.default_rng(seed)
        self._bucket_seconds = bucket_seconds
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.segment_bytes = int(segment_bytes)
        self.segment_seconds = float(segment_seconds)
        self._lock = threading.Lock()  # writer state: the open segment and the pending delta
        self._ckpt_lock = threading.Lock()  # checkpoints apply in order; taken before _lock
        self._index_lock = threading.Lock()
        self._index: LogIndex | None = None
        self._seg: SegmentWriter | None = None
        self._delta = Delta(0, bucket_seconds=bucket_seconds)
        self._unsynced: list[int] = []  # read-only fds of rotated segments that flush() must still fsync
        self._last_ckpt = time.monotonic()
        self._recent: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._tables: dict[str, Table] = {}
        self._closed = False
        self._flush_seconds = check_flush_seconds(flush_seconds)
        self._flusher: AutoFlusher | None = None  # started by the first call logged
        self._flush_error: Exception | None = None  # a background flush's failure, for flush() to raise
        self._flush_lock = threading.Lock()  # one flush at a time; taken before _ckpt_lock
        self._closing = False
        self._appends = 0  # frames appended by this process; compared by the background flusher
        self._flushed_appends = 0
        _live_logs.add(self)

    # -- plumbing ------------------------------------------------------------

    @property
    def seg_dir(self) -> Path:
        return self.path / "segments"

    def _idx(self) -> LogIndex:
        if self._index is None:
            with self._index_lock:
                if self._index is None:
                    self._index = LogIndex(self.path / "index", readonly=self.readonly, bucket_seconds=self._bucket_seconds)
                    self._delta.bucket_seconds = self._index.bucket_seconds
        return self._index

    @property
    def bucket_seconds(self) -> int:
        """Width of the statistics' time buckets, in seconds."""
        return self._idx().bucket_seconds

    def _check_open(self, write: bool = False) -> None:
        if self._closed or self._store.closed:
            raise StoreClosedError(f"the feature log of {self._store.path} is closed", hint="open the store again")
        if write and self.readonly:
            raise ReadOnlyError(f"store at {self._store.path} is open read-only", hint="open it with readonly=False to log")

    def _forget_writer(self) -> None:
        # In a forked child: the parent owns the open segment and the pending
        # delta.  Drop both (closing our copy of the fd leaves the parent's lock).
        self._lock = threading.Lock()
        self._ckpt_lock = threading.Lock()
        self._index_lock = threading.Lock()
        if self._seg is not None:
            try:
                os.close(self._seg.fd)
            except OSError:
                pass
        for fd in self._unsynced:
            try:
                os.close(fd)
            except OSError:
                pass
        self._seg, self._unsynced = None, []
        self._delta = Delta(0, bucket_seconds=self._delta.bucket_seconds)
        # The parent's flusher thread does not exist here; the child's first call starts its own.
        self._flusher, self._flush_error, self._flush_lock = None, None, threading.Lock()
        self._appends = self._flushed_appends = 0

    def _table(self, name: Any, fresh: bool) -> Table:
        # Table objects are cached: store.table() costs a read transaction.  A
        # cached one that another process dropped (and maybe re-created) raises
        # TableNotFoundError on use, and the call is retried with fresh=True.
        if not isinstance(name, str):
            raise InvalidValueError(f"table must be a table name (str), got {name!r}")
        t = None if fresh else self._tables.get(name)
        if t is None or not t._valid:
            t = self._store.table(name)
            self._tables[name] = t
        return t

    def _read(self, t: Table, plan: Plan, ids: Any) -> tuple[list[str], list[Any], dict[str, set[int]]]:
        """Features of ``ids`` as served right now: (buffer names, buffers, category codes used)."""
        rows = t.get(ids, features=plan.get_features)
        layout = plan.layout
        # The record bytes get() read, cut to the requested features: the exact
        # stored values, which decode to exactly what get() returned.
        rec = rows._records
        names, bufs = ["rec"], [layout.cut(rec)]
        codes: dict[str, set[int]] = {}
        for f in layout.categories:
            used = set(rec[f].tolist())
            used.discard(0)  # 0: no value
            codes[f] = used
        for f in layout.idlists:
            names.append("o:" + f)
            bufs.append(pack_objects(rows[f]))
        return names, bufs, codes

    def _segment(self) -> SegmentWriter:
        """This process's open segment (created on first use); call with _lock held."""
        seg = self._seg
        if seg is None:
            seg = SegmentWriter.create(self.seg_dir, {"store": self._store.uuid})
            self._seg = seg
            self._delta = Delta(0, bucket_seconds=self._idx().bucket_seconds)
            self._delta.add_frame(KIND_HEADER, 0.0)
        return seg

    def _append(
        self, kind: int, ts: float, meta: dict[str, Any], bufs: list[Any], t: Table | None, feed: Any,
        codes: dict[str, set[int]] | None = None,
    ) -> None:
        with self._lock:
            if self._closing:  # close() began: it flushes what came before, and nothing after
                raise StoreClosedError(f"the feature log of {self._store.path} is closed", hint="open the store again")
            seg = self._segment()
            if t is not None:
                tid = t.schema.table_id
                if tid not in seg.schemas:
                    seg.append(KIND_SCHEMA, ts, {"ti": tid, "schema": t.schema.to_dict()}, [])
                    seg.schemas.add(tid)
                    self._delta.add_frame(KIND_SCHEMA, ts)
                for f, used in (codes or {}).items():
                    # Category codes are logged in the records; a segment holds
                    # each code's string once, before the first call that uses it.
                    known = seg.dicts.setdefault((tid, f), set())
                    new = used - known
                    if new:
                        fresh = sorted(new)
                        strs = t._categories(f, np.array(fresh, dtype=np.uint32)).tolist()
                        seg.append(KIND_DICT, ts, {"ti": tid, "f": f, "codes": fresh, "strs": strs}, [])
                        known.update(fresh)
                        self._delta.add_frame(KIND_DICT, ts)
            seg.append(kind, ts, meta, bufs)
            self._appends += 1
            feed(self._delta)
            now = time.monotonic()
            due = (
                now - self._last_ckpt >= self.checkpoint_seconds
                or seg.offset >= self.segment_bytes
                or now - seg.opened >= self.segment_seconds
            )
        if due:
            self._checkpoint(wait=False)
        if self._flusher is None and self._flush_seconds is not None:
            self._start_flusher()

    @property
    def flush_seconds(self) -> float | None:
        """Seconds between background :meth:`flush` calls (None: none); settable.  See autoflush.py.

        An OS crash then loses at most about that many seconds of logging,
        and no ``log.*`` call waits for those fsyncs.  Example::

            store.log.flush_seconds = 1.0
        """
        return self._flush_seconds

    @flush_seconds.setter
    def flush_seconds(self, value: float | None) -> None:
        seconds = check_flush_seconds(value)
        self._check_open()
        with self._lock:
            old, self._flusher = self._flusher, None
            self._flush_seconds = seconds
        if old is not None:
            old.stop()
        if seconds is not None and not self.readonly:
            self._start_flusher()

    def _start_flusher(self) -> None:
        with self._lock:  # two threads logging at once start one flusher; none once close() began
            if self._flusher is None and self._flush_seconds is not None and not (self._closed or self._closing):
                self._flusher = AutoFlusher(self, self._flush_seconds)

    def _background_flush(self) -> None:
        """The flusher thread's step: flush if anything was logged (or rotated) since the last flush.

        A failure is kept (the first one, until :meth:`flush` reports it) and re-raised to the thread.
        """
        if self._appends == self._flushed_appends and not self._unsynced:
            return
        with self._flush_lock:
            if self._closed or self._closing:
                return
            try:
                self._flush_locked()
            except Exception as e:
                if self._flush_error is None:
                    self._flush_error = e
                raise

    def _checkpoint(self, *, fsync: bool = False, rotate: bool = False, wait: bool = True) -> None:
        """Fold the pending delta into the index (covered = end of segment); maybe fsync, maybe rotate."""
        if not self._ckpt_lock.acquire(blocking=wait):
            return  # another thread is checkpointing right now
        try:
            with self._lock:
                seg = self._seg
                self._last_ckpt = time.monotonic()
                if seg is None:
                    return
                delta = self._delta
                delta.end = seg.offset
                if rotate or seg.offset >= self.segment_bytes or time.monotonic() - seg.opened >= self.segment_seconds:
                    rotate = True
                    self._seg = None
                self._delta = Delta(seg.offset, bucket_seconds=delta.bucket_seconds)
            try:
                if fsync:
                    seg.fsync()
                delta.fold()
                self._idx().apply(delta, seg.path)
            finally:
                if rotate:
                    if not fsync:
                        self._unsynced.append(os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC))
                        if len(self._unsynced) > 8:
                            fd = self._unsynced.pop(0)
                            os.fsync(fd)
                            os.close(fd)
                    # Drops the lock only now that the index covers all of it (or, if
                    # that failed, so that the next reader catches the index up).
                    seg.close()
        finally:
            self._ckpt_lock.release()

    # -- logging -------------------------------------------------------------

    def retrieval(
        self,
        request_id: Any,
        ids: Any,
        scores: Any,
        *,
        table: str,
        user: Any = None,
        source: str | None = None,
        features: Any = None,
        sample: float = 0.01,
        context: Any = None,
        ts: Any = None,
        rng: np.random.Generator | None = None,
    ) -> int:
        """Log a retrieval call: every candidate ID and score, and features of a random sample.

        ``sample`` is a rate (a float in (0, 1]: each candidate independently
        with that probability) or a count (an int >= 0: that many candidates,
        uniformly without replacement).  Every row records ``sample_prob``, the
        probability its features were logged, so training weights a sampled
        candidate by ``1 / sample_prob``.  ``features`` (default: all of the
        table's) are read from ``table`` now, as served.  ``context`` adds
        request-level columns.  Returns how many candidates were sampled.

        Bad input (lengths that differ, an unknown table or feature, a bad
        sample) raises before anything is written.

        Example::

            log.retrieval("req-1", ann_ids, ann_scores, table="items", user="u-7",
                          source="ann", features=["price", "ctr_7d"], sample=0.01,
                          context={"surface": "home"})
        """
        args = (request_id, ids, scores, table, user, source, features, sample, context, ts, rng)
        return self._retry_fresh(table, self._retrieval, args)

    def _retrieval(
        self, request_id: Any, ids: Any, scores: Any, table: str, user: Any, source: Any, features: Any,
        sample: Any, context: Any, ts: Any, rng: np.random.Generator | None, *, fresh: bool,
    ) -> int:
        self._check_open(write=True)
        rid = check_request_id(request_id)
        code, idbufs, n = encode_ids(ids)
        sc_code, sc = encode_scores(scores, n)
        user, source, context, when = check_user(user), check_source(source), check_context(context), check_ts(ts)
        t = self._table(table, fresh)
        plan = plan_for(t.schema, t.name, features)
        mode, value = check_sample(sample)
        gen = rng if rng is not None else self._rng
        if mode == "rate":
            k, p = int(gen.binomial(n, value)) if value < 1.0 else n, value
        else:
            k = min(int(value), n)
            p = k / n if n else 0.0
        names = [f"id{i}" for i in range(len(idbufs))] + ["sc"]
        bufs: list[Any] = [*idbufs, sc]
        layout = plan.layout
        mat = None
        codes: dict[str, set[int]] = {}
        if k:
            if k < n:
                idx = sample_positions(gen, n, k)
                more_names, more, codes = self._read(t, plan, take_ids(ids, idx))
                names.append("idx")
                bufs.append(idx.astype("<u4"))
            else:
                more_names, more, codes = self._read(t, plan, ids)
            mat = more[0]
            names += more_names
            bufs += more
        when = time.time() if when is None else when
        meta = {
            "r": rid, "u": user, "t": t.name, "ti": t.schema.table_id, "s": source, "n": n, "p": p, "k": k,
            "ik": code, "sc": sc_code, "f": plan.features, "c": context, "b": names,
        }
        weight = 1.0 / p if p > 0 else 0.0
        self._append(
            KIND_RETRIEVAL, when, meta, bufs, t,
            lambda d: d.add_call(KIND_RETRIEVAL, when, t.name, layout, mat, weight, n, context), codes,
        )
        with self._lock:
            self._recent[rid] = (user, context)
            if len(self._recent) > 10_000:
                self._recent.popitem(last=False)
        return k

    def ranking(
        self,
        request_id: Any,
        ids: Any,
        scores: Any,
        *,
        table: str,
        features: Any = None,
        positions: Any = None,
        shown: Any = None,
        user: Any = None,
        source: str | None = None,
        context: Any = None,
        ts: Any = None,
    ) -> int:
        """Log a ranking call: every ranked item with its features (default: all), as served.

        ``positions`` (default 0, 1, 2, …) are where each item was placed;
        ``shown`` names the items the user saw (a subset of ``ids``, or a bool
        mask).  ``user`` and ``context`` default to those of this process's
        retrieval call for the same request.  Returns the number of rows logged.

        Example::

            log.ranking("req-1", ranked_ids, ranked_scores, table="items", shown=ranked_ids[:5])
        """
        args = (request_id, ids, scores, table, features, positions, shown, user, source, context, ts)
        return self._retry_fresh(table, self._ranking, args)

    def _retry_fresh(self, table: str, call: Any, args: tuple[Any, ...]) -> int:
        """Run ``call``; if the cached table handle was dropped meanwhile, forget it and run once more."""
        try:
            return call(*args, fresh=False)
        except TableNotFoundError:
            if table not in self._tables:
                raise
            self._tables.pop(table, None)
            return call(*args, fresh=True)

    def _ranking(
        self, request_id: Any, ids: Any, scores: Any, table: str, features: Any, positions: Any, shown: Any,
        user: Any, source: Any, context: Any, ts: Any, *, fresh: bool,
    ) -> int:
        self._check_open(write=True)
        rid = check_request_id(request_id)
        code, idbufs, n = encode_ids(ids)
        sc_code, sc = encode_scores(scores, n)
        user, source, context, when = check_user(user), check_source(source), check_context(context), check_ts(ts)
        t = self._table(table, fresh)
        plan = plan_for(t.schema, t.name, features)
        names = [f"id{i}" for i in range(len(idbufs))] + ["sc"]
        bufs: list[Any] = [*idbufs, sc]
        if positions is not None:
            _, pos = encode_scores(positions, n, "positions")
            if not ((pos == np.rint(pos)).all() and (pos >= 0).all() and (pos < 2**31).all()):
                raise InvalidValueError("positions must be whole numbers from 0 up (slots on the page)")
            names.append("pos")
            bufs.append(pos.astype("<i4"))
        if shown is not None:
            names.append("sh")
            bufs.append(self._shown_mask(ids, shown, n).astype(np.uint8))
        if user is None or context is None:
            with self._lock:
                prior = self._recent.get(rid)
            if prior is not None:
                user = prior[0] if user is None else user
                context = prior[1] if context is None else context
        layout = plan.layout
        more_names, more, codes = self._read(t, plan, ids) if n else ([], [], {})
        names += more_names
        bufs += more
        mat = more[0] if more else None
        when = time.time() if when is None else when
        meta = {
            "r": rid, "u": user, "t": t.name, "ti": t.schema.table_id, "s": source, "n": n, "p": 1.0, "k": n,
            "ik": code, "sc": sc_code, "f": plan.features, "c": context, "b": names,
        }
        self._append(
            KIND_RANKING, when, meta, bufs, t,
            lambda d: d.add_call(KIND_RANKING, when, t.name, layout, mat, 1.0, n, context), codes,
        )
        return n

    @staticmethod
    def _shown_mask(ids: Any, shown: Any, n: int) -> np.ndarray:
        if isinstance(shown, (list, tuple)) and shown and all(isinstance(x, (bool, np.bool_)) for x in shown):
            shown = np.array(shown, dtype=bool)  # a mask as a list: bools are never IDs, so no ambiguity
        if isinstance(shown, np.ndarray) and shown.dtype == bool:
            if shown.shape != (n,):
                raise InvalidValueError(f"a shown mask needs one bool per ranked ID ({n}), got shape {shown.shape}")
            return shown
        if shown is ids:  # "every ranked item was shown", passed as the same object: nothing to look up
            return np.ones(n, dtype=bool)
        ranked = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
        want = shown.tolist() if isinstance(shown, np.ndarray) else list(shown)
        wanted = set(want)
        if not wanted <= set(ranked):
            # Maybe the same entities spelled str and bytes (one entity, as in the tables).
            def norm(x: Any) -> Any:
                return x.encode("utf-8") if isinstance(x, str) else x

            ranked = [norm(x) for x in ranked]
            wanted = {norm(x) for x in want}
            missing = wanted - set(ranked)
            if missing:
                one = next(iter(missing))
                one = next((x for x in want if norm(x) == one), one)  # as the caller spelled it
                raise InvalidValueError(
                    f"shown names {len(missing)} IDs that are not among the ranked IDs (one: {one!r})",
                    hint="shown items must be ranked too, so their features are logged",
                )
        return np.fromiter((x in wanted for x in ranked), dtype=bool, count=n)

    def label(self, request_id: Any, item: Any, name: str, value: float = 1.0, *, ts: Any = None) -> None:
        """Log an outcome for an item of a request; it may arrive before or after the request, in any order.

        Labels for requests or items the log has not seen are kept and join
        as soon as those rows are logged.  When one (request, item, name) gets
        several values, the one with the latest ``ts`` wins (ties: the later call).

        Example::

            log.label("req-1", "item-42", "click", 1.0)
        """
        self._check_open(write=True)
        rid = check_request_id(request_id)
        name, v = check_label(name, value)
        if item is None:
            raise InvalidIdError("a label needs an item ID (str, bytes or int), got None")
        item = check_user(item, "item")
        when = time.time() if ts is None else check_ts(ts)
        assert when is not None
        meta = {"r": rid, "i": item, "nm": name, "v": v, "b": []}
        text = id_text(item)
        self._append(KIND_LABEL, when, meta, [], None, lambda d: d.add_label(rid, text, name, v, when))

    def flush(self) -> None:
        """Make everything logged so far survive an OS crash or power loss (fsync), and update the index.

        Without it a process crash still loses nothing that a ``log.*`` call
        returned from; only an OS crash or power loss can lose what came after
        the last ``flush``.
        """
        if self._closed or self.readonly:
            return
        # Under the lock a background flush in progress finishes first, so its
        # fsyncs (and its failure) are this call's too.
        with self._flush_lock:
            try:
                self._flush_locked()
            finally:
                failed, self._flush_error = self._flush_error, None
        if failed is not None:
            # After a failed fsync the kernel may have dropped those pages: a
            # later fsync succeeding does not bring them back.
            raise StorageError(
                f"a background flush of the feature log failed: {failed}",
                hint="what was logged before it may not be on disk: check the disk (space, I/O errors)",
                cause=failed,
            )

    def _flush_locked(self) -> None:
        appends = self._appends  # everything appended so far is covered by the checkpoint below
        if self._seg is not None:
            self._checkpoint(fsync=True)
        with self._ckpt_lock:  # segments finished (rotated) since the last flush
            pending, self._unsynced = self._unsynced, []
        try:
            for fd in pending:
                os.fsync(fd)
        finally:
            for fd in pending:
                os.close(fd)
        self._flushed_appends = appends

    def close(self) -> None:
        """Flush, finish this process's segment and close the index.  Further calls raise StoreClosedError."""
        if self._closed:
            return
        with self._lock:
            self._closing = True  # no logging call starts a flusher from now on
            flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.stop()
        try:
            if not self.readonly and not self._store.closed:
                self.flush()
                self._checkpoint(fsync=True, rotate=True)
        finally:
            self._closed = True
            for fd in self._unsynced:
                os.close(fd)
            self._unsynced = []
            if self._seg is not None:
                self._seg.close()
                self._seg = None
            if self._index is not None:
                self._index.close()
            _live_logs.discard(self)

    # -- reading -------------------------------------------------------------

    def _view(self, _retry: bool = True) -> View:
        """Checkpoint this process, catch up dead segments, overlay live tails (see view.py)."""
        self._check_open()
        if not self.readonly:
            self._checkpoint()
        index = self._idx()
        own = self._seg.path.name if self._seg is not None else None
        segments = list_segments(self.seg_dir)
        entries = index.entries()
        tails: dict[str, Delta] = {}
        try:
            for path in segments:
                info = entries.get(path.name)
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                if path.name == own or info is not None and info.size == size:
                    continue
                if index.env is not None and not self.readonly and index.absorb(path):
                    continue
                tail, _ = scan_delta(path, info.covered if info else 0, bucket_seconds=index.bucket_seconds)
                tails[path.name] = tail
        except IndexAheadError:
            if not _retry:
                raise
            index.reset()  # an OS crash lost segment bytes the index had covered: rebuild from the segments
            return self._view(_retry=False)
        entries = index.entries()
        overlay = Delta(0, bucket_seconds=index.bucket_seconds)
        for name, tail in tails.items():
            entries[name] = overlay_entry(entries.get(name), tail)
            add_tail(overlay, tail)
        present = {p.name for p in segments}
        entries = {k: v for k, v in entries.items() if k in present}
        return View(index, [p for p in segments if p.name in entries], entries, overlay, index.watermark())

    def info(self) -> LogInfo:
        """Counts and sizes of the whole log (every process's segments)."""
        return log_info(self._view(), self.path)

    def verify(self) -> list[str]:
        """Read every frame of every segment and check it against the index; returns problems (empty: healthy).

        A torn frame at the end of a dead segment (a crash while writing) is
        not a problem: it is skipped on read and removed by ``compact()``.
        """
        view = self._view()
        problems: list[str] = []
        for path in view.segments:
            res = ScanResult()
            try:
                for _ in iter_frames(path, result=res):
                    pass
            except OSError as e:
                problems.append(f"{path.name}: unreadable: {e}")
                continue
            info = view.entries.get(path.name)
            if info is not None and info.covered > res.valid_end:
                problems.append(f"{path.name}: the index covers {info.covered} bytes but only {res.valid_end} check out")
            if res.problem is not None:
                after = next_good_frame(path, res.valid_end + 1)
                if after is not None:
                    problems.append(
                        f"{path.name}: {res.problem}; good frames follow at offset {after} and cannot be read "
                        "until `vecstore compact` (log.compact()) repairs the segment"
                    )
        return problems

    def rebuild_index(self) -> None:
        """Rebuild the derived index from the segment files (after an OS crash, or to check it)."""
        self._check_open(write=True)
        self._checkpoint()
        self._idx().reset()
        self._view()
        self._checkpoint()  # this process's own segment: apply() finds the gap and rescans it

    # -- analysis and maintenance (implemented in their own modules) ---------

    def export(self, path: str | os.PathLike[str], **kwargs: Any) -> ExportResult:
        """Write a Hive-partitioned Parquet dataset of the log (see :func:`vecstore.featurelog.export.export`)."""
        from .export import export

        return export(self, path, **kwargs)

    def stats(self, *, stage: str, feature: str, **kwargs: Any) -> LogStats:
        """Summary of one feature at one stage over a time window (see :func:`vecstore.featurelog.stats.stats`)."""
        from .stats import stats

        return stats(self, stage=stage, feature=feature, **kwargs)

    def drift(self, features: Any = None, **kwargs: Any) -> DriftReport:
        """PSI and KS between two time windows (see :func:`vecstore.featurelog.drift.drift`)."""
        from .drift import drift

        return drift(self, features, **kwargs)

    def prune(self, *, before: Any) -> PruneReport:
        """Delete what was logged before ``before`` and reclaim its space (see :mod:`.retention`)."""
        from .retention import prune

        return prune(self, before=before)

    def compact(self) -> PruneReport:
        """Catch up the index, drop torn tails and empty segments (what ``vecstore compact`` runs)."""
        from .retention import compact

        return compact(self)

    def __repr__(self) -> str:
        return f"<vecstore.FeatureLog {str(self.path)!r}{' closed' if self._closed else ''}>"

