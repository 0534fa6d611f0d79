"""The usearch HNSW index of one vector feature, derived from the table's rows.

The index is a :class:`~vecstore.derived.Derived` consumer of the change log:
it is rebuilt from the rows when no usable snapshot exists, caught up by
re-reading the current row of every key a put (that carried the vector) or
a delete names, and saved as ``index/t<table>.<feature>.s<seq>.x<xxh3>.usearch``:
the file name carries the log position and the XXH3-64 of the content, so
content and position can never disagree, and a damaged file is detected on
load (usearch files carry no checksum of their own; docs/format.md).

Known usearch behaviours this module designs around (each pinned by a test in
tests/test_search_consistency.py against the pinned usearch version):

* ``add`` of a key already present raises: an upsert is ``remove`` + ``add``.
* ``remove`` never frees memory or file space: removed vectors are counted as
  tombstones and the index is rebuilt from the rows once they pass a quarter
  of the live vectors (and by ``rebuild_index`` / ``vecstore compact``).
* ``save`` writes in place: snapshots go to a temp file, fsync, ``os.replace``.
* ``add``/``remove`` on a memory-mapped ``view`` can crash the process: a view
  is only ever searched; the first change turns it into an in-memory copy.
* one index serializes calls from Python threads: every call holds the lock;
  batch parallelism comes from ``threads=``.
* ``BatchMatches`` pads unused slots with key 0: results are sliced by counts.
* parallel ``add`` into a small graph leaves nodes unreachable: a graph grows
  from one thread until it holds ``_PARALLEL_ADD_MIN`` vectors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xxhash
from usearch.index import Index, ScalarKind

from . import changelog
from .codecs import decode_vectors
from .derived import Derived, atomic_replace, remove_orphan_temps, touched_keys
from .errors import CorruptionError, InvalidIdError
from .features import Vector
from .hashing import decode_id
from .info import IndexInfo
from .records import key_bytes
from .schema import PRESENT

if TYPE_CHECKING:
    from .table import Table

__all__ = ["USEARCH_METRIC", "VectorIndex", "file_digest", "snapshot_damage", "vectors_of"]

USEARCH_METRIC = {"cos": "cos", "l2": "l2sq", "ip": "ip"}
# Rebuild once removed-but-unreclaimed vectors pass this share of live ones
# (and this many, so small tables do not rebuild on every delete).
TOMBSTONE_RATIO = 0.25
TOMBSTONE_MIN = 256
# Bound on the key -> ID cache (cleared when it grows past it).
_ID_CACHE_MAX = 2_000_000
_ID_WARM_MAX = 100_000
# A graph smaller than this grows from one thread (see _add).
_PARALLEL_ADD_MIN = 10_000
# Rows decoded per chunk when building from a scan: bounds memory on big tables,
# and is how often a build reports progress (a few seconds of usearch work at most).
_BUILD_CHUNK = 8_192
_DIGEST = re.compile(r"\.x([0-9a-f]{16})\.usearch$")


def _add(index: Index, keys: np.ndarray, vectors: np.ndarray) -> None:
    """Add vectors: from one thread until the graph holds ``_PARALLEL_ADD_MIN``, then from all cores.

    Parallel inserts into a small graph leave nodes no search reaches (usearch
    2.26: 617 self-search misses in 300 graphs of 300 vectors, none when
    serial; tests/test_search_consistency.py), so a graph is seeded serially.
    """
    serial = max(0, min(len(keys), _PARALLEL_ADD_MIN - len(index)))
    if serial:
        index.add(keys[:serial], vectors[:serial], threads=1)
    if serial < len(keys):
        index.add(keys[serial:], vectors[serial:], threads=0)


def file_digest(path: Path) -> int:
    """XXH3-64 (seed 0) of a file's bytes."""
    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.intdigest()


def snapshot_damage(path: Path) -> str | None:
    """Why a snapshot file fails its checksum (the ``x<hex>`` of its name), or None if it passes.

    A snapshot named without a checksum (written before checksums) passes.
    """
    m = _DIGEST.search(path.name)
    if m is None:
        return None
    got = file_digest(path)
    if got != int(m.group(1), 16):
        return f"checksum mismatch (content {got:016x}, name says {m.group(1)}): the file is damaged"
    return None


def vectors_of(spec: Vector, name: str, records: np.ndarray, bit: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 vectors of a record batch and the mask of rows that hold one."""
    present = (records[PRESENT][:, bit >> 3] >> (bit & 7) & 1).astype(bool)
    scale = records[name + ".scale"] if spec.dtype == "i8" else None
    return decode_vectors(spec, records[name], scale), present


class VectorIndex(Derived):
    """HNSW index of ``table``'s vector feature ``feature``."""

    save_on_close = False  # a big index costs a full write; a short replay on open is cheaper

    def __init__(self, table: Table, feature: str) -> None:
        super().__init__(table)
        self.feature = feature
        self.name = f"index:{feature}"
        spec = table.schema.features[feature]
        assert isinstance(spec, Vector) and spec.index is not None
        self.spec = spec
        self.hnsw = spec.index
        self.dtype = self.hnsw.dtype or spec.dtype
        self.metric = "hamming" if self.dtype == "b1" else USEARCH_METRIC[spec.metric]
        self.index: Index | None = None
        # key -> original ID of rows search returned, valid for the snapshot the
        # index reflects (entries are dropped for every key a change touches):
        # spares the row read per hit that otherwise dominates a search's overhead.
        self.ids: dict[int, Any] = {}
        self.view = False
        self.view_path: Path | None = None
        self.tombstones = 0
        self.bit = table.schema.presence_bit[feature]
        self.feature_bit = table.schema.feature_index[feature]
        self._prefix = f"t{table.schema.table_id}.{feature}."
        self._pattern = re.compile(re.escape(self._prefix) + r"s(\d+)(?:\.x[0-9a-f]{16})?\.usearch$")

    # -- files ---------------------------------------------------------------

    @property
    def folder(self) -> Path:
        return self.table._store.path / "index"

    def snapshots(self) -> list[tuple[int, Path]]:
        """Snapshot files of this index, newest first, as (seq, path)."""
        out = []
        if self.folder.is_dir():
            for p in self.folder.iterdir():
                m = self._pattern.match(p.name)
                if m:
                    out.append((int(m.group(1)), p))
        return sorted(out, reverse=True)

    def remove_files(self) -> None:
        for _, p in self.snapshots():
            p.unlink(missing_ok=True)

    # -- building ------------------------------------------------------------

    def new_index(self) -> Index:
        return Index(
            ndim=self.spec.dim,
            metric=self.metric,
            dtype=self.dtype,
            connectivity=self.hnsw.connectivity,
            expansion_add=self.hnsw.expansion_add,
            expansion_search=self.hnsw.expansion_search,
        )

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        """What the index takes for float32 vectors: packed sign bits for a b1 index."""
        if self.dtype == "b1":
            return np.packbits(vectors > 0, axis=-1)
        return vectors

    def _load(self, txn: Any, head: int, first: int) -> bool:
        if self.folder.is_dir() and not self.table._store.readonly:
            remove_orphan_temps(self.folder, self._prefix)
        for seq, path in self.snapshots():
            if not self.usable(seq, head, first):
                continue
            try:
                damage = snapshot_damage(path)
                if damage is not None:
                    raise CorruptionError(damage)
                meta = Index.metadata(str(path))
                if meta is None or meta["dimensions"] != self.spec.dim:
                    raise CorruptionError(f"{path.name} does not match the feature's dimension")
                view = self.table._store.readonly
                index = Index.restore(str(path), view=view)
                if index is None:
                    raise CorruptionError(f"{path.name} is not a usearch index")
            except FileNotFoundError:
                continue  # replaced by a newer snapshot meanwhile
            except (CorruptionError, RuntimeError, ValueError, OSError) as e:
                self.load_problem = f"index snapshot {path.name} was unreadable and was rebuilt from the rows ({e})"
                continue
            self.index, self.view, self.view_path = index, view, path if view else None
            self._warm_ids(txn)
            self.tombstones = int(meta.get("count_deleted", 0))
            self.seq, self.saved_seq, self.unsaved = seq, seq, 0
            return True
        return False

    def _rebuild(self, txn: Any, head: int, progress: Callable[[int, int], None] | None = None) -> None:
        index = self.new_index()
        total = txn.stat(self.table._db("rows"))["entries"]
        done = 0
        W = self.table.schema.record_size
        dtype = self.table.schema.record_dtype
        cur = txn.cursor(self.table._db("rows"))
        keys: list[bytes] = []
        vals: list[bytes] = []

        def flush() -> None:
            nonlocal done
            if not keys:
                return
            k = np.frombuffer(b"".join(keys), dtype=">u8").astype(np.uint64)
            rec = np.frombuffer(b"".join(v[:W] for v in vals), dtype=dtype)
            vecs, present = vectors_of(self.spec, self.feature, rec, self.bit)
            if present.any():
                _add(index, k[present], self.prepare(vecs[present]))
            done += len(keys)
            keys.clear()
            vals.clear()
            if progress is not None:
                progress(done, total)

        for k, v in cur:
            keys.append(k)
            vals.append(v)
            if len(keys) == _BUILD_CHUNK:
                flush()
        flush()
        self.index, self.view, self.view_path = index, False, None
        self._warm_ids(txn)
        self.tombstones = 0
        self.unsaved = len(index) or 1

    def _warm_ids(self, txn: Any) -> None:
        """Fill the key -> ID cache from every row, for tables small enough that this is cheap.

        Up to ``_ID_WARM_MAX`` rows one cursor pass (about 1 us a row) spares
        searches the row reads of cache misses, which otherwise cost a single
        query tens of microseconds until the hits it returns have all been seen.
        """
        self.ids = {}
        rows_db = self.table._db("rows")
        if txn.stat(rows_db)["entries"] > _ID_WARM_MAX:
            return
        W = self.table.schema.record_size
        ids: dict[int, Any] = {}
        for k, v in txn.cursor(rows_db):
            try:
                ids[int.from_bytes(k, "big")] = decode_id(v[W:])
            except (InvalidIdError, UnicodeDecodeError, IndexError):
                # A damaged stored ID: left out, so a search that returns the
                # row reads it (and fails) then; verify() reports it.
                continue
        self.ids = ids

    def _writable(self) -> Index:
        """The index, turned from a memory-mapped view into an in-memory copy first if need be."""
        assert self.index is not None
        if self.view:
            self.index = self.index.copy()
            self.view, self.view_path = False, None
        return self.index

    def _apply(self, txn: Any, entries: list[changelog.LogEntry]) -> None:
        keys = touched_keys(entries, [self.feature_bit])
        if len(keys) == 0:
            return
        index = self._writable()
        if len(self.ids) > _ID_CACHE_MAX:
            self.ids = {}
        else:
            pop = self.ids.pop
            for k in keys.tolist():
                pop(k, None)
        cur = txn.cursor(self.table._db("rows"))
        vals = list(map(cur.get, key_bytes(keys)))
        found = np.fromiter(map(bool, vals), dtype=bool, count=len(vals))
        W = self.table.schema.record_size
        rec = np.frombuffer(b"".join(v[:W] for v in vals if v), dtype=self.table.schema.record_dtype)
        vecs, present = vectors_of(self.spec, self.feature, rec, self.bit)
        live_keys = keys[found][present]
        had = index.contains(keys)
        if np.any(had):
            index.remove(keys[had])
            self.tombstones += int(np.count_nonzero(had))
        if len(live_keys):
            _add(index, live_keys, self.prepare(vecs[present]))
        self.unsaved += len(keys)
        if self.tombstones > max(TOMBSTONE_MIN, TOMBSTONE_RATIO * len(index)):
            self._rebuild(txn, changelog.head(txn, self.table._db("log")))

    def _wants_save(self) -> bool:
        size = len(self.index) if self.index is not None else 0
        return self.unsaved > max(10_000, size // 10) or self.seq - max(self.saved_seq, 0) >= 16 * 1024

    def _save(self, seq: int) -> None:
        assert self.index is not None
        index = self.index
        if self.view and self.view_path is not None and any(p == self.view_path for s, p in self.snapshots() if s == seq):
            return
        # Write to a temp file, checksum it, fsync, rename to the name that
        # carries seq and checksum, fsync the directory (a crash leaves the old
        # snapshot or the new one, never a torn one).
        stem = f"{self._prefix}s{seq:012d}"
        path = atomic_replace(
            lambda tmp: index.save(str(tmp)),
            self.folder / f"{stem}.usearch",
            final=lambda tmp: self.folder / f"{stem}.x{file_digest(tmp):016x}.usearch",
        )
        for _, old in self.snapshots():
            if old != path:
                old.unlink(missing_ok=True)  # a process viewing it keeps its mapping (POSIX)

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Rebuild from the rows now (drops tombstones) and persist."""
        table = self.table
        table._open()
        with self.lock, table._env.read() as txn:
            table._check_valid(txn)
            log = table._db("log")
            self._rebuild(txn, changelog.head(txn, log), progress)
            self.seq, self.saved_seq, self.txnid, self.ready = changelog.head(txn, log), -1, txn.id(), True
        self.persist(force=True)

    def verify(self) -> list[str]:
        """Compare the index with the rows of one snapshot: missing, extra and differing vectors."""
        table = self.table
        where = f"{table.name}: index of {self.feature!r}"
        table._open()
        with self.lock, table._env.read() as txn:
            table._check_valid(txn)
            self.sync_in(txn)
            assert self.index is not None
            W = table.schema.record_size
            kb: list[bytes] = []
            recs: list[bytes] = []
            for k, v in txn.cursor(table._db("rows")):
                kb.append(k)
                recs.append(v[:W])
            keys = np.frombuffer(b"".join(kb), dtype=">u8").astype(np.uint64)
            rec = np.frombuffer(b"".join(recs), dtype=table.schema.record_dtype)
            vecs, present = vectors_of(self.spec, self.feature, rec, self.bit)
            keys, vecs = keys[present], vecs[present]
            indexed = np.sort(np.asarray(self.index.keys, dtype=np.uint64))
            problems = []
            missing = np.setdiff1d(keys, indexed, assume_unique=True)
            extra = np.setdiff1d(indexed, keys, assume_unique=True)
            if len(missing):
                problems.append(f"{where} misses {len(missing)} stored vectors (e.g. key {int(missing[0]):#x})")
            if len(extra):
                problems.append(f"{where} holds {len(extra)} keys with no stored vector (deleted rows?)")
            both = np.isin(keys, indexed, assume_unique=True)
            if both.any():
                got = self.index.get(keys[both], dtype=np.uint8 if self.dtype == "b1" else np.float32)
                got = np.stack(got) if isinstance(got, tuple) else np.asarray(got).reshape(int(both.sum()), -1)
                want = vecs[both]
                if self.dtype == "b1":
                    differ = (got != self.prepare(want)).any(axis=1)
                else:
                    dot = (got * want).sum(1)
                    n_got, n_want = np.linalg.norm(got, axis=1), np.linalg.norm(want, axis=1)
                    differ = dot < 0.98 * n_got * n_want
                    if self.spec.metric in ("ip", "l2") and self.dtype != "i8":
                        # There a vector's length matters too (an i8 index keeps only directions).
                        differ |= np.abs(n_got - n_want) > 0.02 * n_want + 1e-6
                if differ.any():
                    problems.append(f"{where} holds a different vector than the row for {int(differ.sum())} keys")
        return problems

    # -- search --------------------------------------------------------------

    def search(self, queries: np.ndarray, count: int, ef: int | None, threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw usearch search; (keys, distances, counts), padding sliced off by the caller via counts.

        The caller holds ``self.lock`` (usearch serializes threads anyway, and
        the index must not change while the same search reads rows).
        """
        assert self.index is not None
        index = self.index
        if len(index) == 0:
            b = len(queries)
            return np.zeros((b, 0), np.uint64), np.zeros((b, 0), np.float32), np.zeros(b, np.int64)
        old = index.expansion_search
        want = max(ef or old, count)
        if want != old:
            index.expansion_search = want
        # One query gains nothing from a thread pool and pays for waking it
        # (measured 2-4x slower with threads=0 on a loaded 2-core machine).
        threads = threads if len(queries) > 1 else 1
        prepared = self.prepare(queries)
        try:
            compiled = getattr(index, "_compiled", None)
            if compiled is not None:
                # The compiled call usearch's Index.search wraps: the same search,
                # minus the wrapper's per-call checks and result objects, which
                # are a measurable share of a ~100 us single query.  Pinned by
                # tests/test_search_consistency.py against the public call.
                keys, dists, counts = compiled.search_many(
                    prepared, count=count, exact=False, threads=threads, dtype=ScalarKind.Unknown
                )[:3]
                return keys, dists, counts
            m = index.search(prepared, count, threads=threads)
        finally:
            if want != old:
                index.expansion_search = old
        b = len(queries)
        keys, dists = np.asarray(m.keys).reshape(b, -1), np.asarray(m.distances).reshape(b, -1)
        # A one-row batch comes back as Matches (no counts): its keys are exactly the hits.
        counts = np.asarray(m.counts).reshape(-1) if hasattr(m, "counts") else np.array([keys.shape[1]])
        return keys, dists, counts

    def info(self, head: int) -> IndexInfo:
        snaps = self.snapshots()
        file_bytes = snaps[0][1].stat().st_size if snaps else 0
        if self.ready and self.index is not None:
            vectors, tomb, mem, seq = len(self.index), self.tombstones, int(self.index.memory_usage), self.seq
        elif snaps:
            meta = Index.metadata(str(snaps[0][1])) or {}
            vectors, tomb, mem, seq = int(meta.get("count_present", -1)), int(meta.get("count_deleted", -1)), 0, snaps[0][0]
        else:
            vectors, tomb, mem, seq = -1, -1, 0, 0
        return IndexInfo(
            feature=self.feature,
            dtype=self.dtype,
            metric=self.spec.metric,
            connectivity=self.hnsw.connectivity,
            expansion_add=self.hnsw.expansion_add,
            expansion_search=self.hnsw.expansion_search,
            loaded=self.ready,
            view=self.view,
            vectors=vectors,
            tombstones=tomb,
            memory_bytes=mem,
            file_bytes=file_bytes,
            seq=seq,
            behind=max(0, head - seq),
        )

