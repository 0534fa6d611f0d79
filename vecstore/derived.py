"""Structures derived from a table's rows, kept current by replaying its change log.

LMDB is the single source of truth.  The Bloom filter, the HNSW index of
each vector feature and the in-memory filter columns are *derived*: each
remembers the change-log position (``seq``) it reflects, and any process
brings it up to date by replaying the entries after that position, whoever
wrote them.  A persisted snapshot records its ``seq`` too, so a crash between
an LMDB commit and the save of a derived file costs a replay, never a wrong
answer.  Replaying is idempotent: each consumer re-reads the *current* row of
every key an entry names, so applying an entry twice changes nothing.

Protocol (shared by every consumer, implemented once in :class:`Derived`):

1. ``sync()``: if the LMDB snapshot moved since the last sync, open a read
   transaction; if the state is missing or the log no longer holds the entries
   after ``seq`` (trimmed by a writer), ``_load`` a snapshot file or
   ``_rebuild`` from the rows; then ``_apply`` the entries after ``seq``.
2. ``persist()``: save a snapshot at ``seq`` (atomically: temp file, fsync,
   rename) and record ``seq`` under the meta key ``consumer:<table>:<name>``.
   The change log is trimmed up to the smallest recorded ``seq`` of the
   table's persistent consumers, so it only holds what some snapshot lacks.

Example (internal)::

    bloom = table._bloom_state.sync().bloom
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import changelog
from .bloom import BloomFilter
from .errors import CorruptionError
from .fsutil import atomic_replace

if TYPE_CHECKING:
    from .table import Table

__all__ = ["LOG_SOFT_LIMIT", "BloomState", "Derived", "atomic_replace", "remove_orphan_temps", "touched_keys"]

# Change-log entries a writer lets accumulate before it brings every consumer
# up to date and persists it (which lets the log be trimmed), even if nothing
# asked for the derived state.
LOG_SOFT_LIMIT = 1024


def touched_keys(entries: list[changelog.LogEntry], feature_bits: list[int] | None = None) -> np.ndarray:
    """Sorted distinct keys of ``entries``: every delete, and puts that carried one of ``feature_bits``.

    ``feature_bits=None`` takes every put.
    """
    parts = []
    for e in entries:
        if e.op == changelog.OP_PUT and feature_bits is not None:
            mask = e.feature_mask
            if not any(i >> 3 < len(mask) and mask[i >> 3] >> (i & 7) & 1 for i in feature_bits):
                continue
        parts.append(e.keys)
    if not parts:
        return np.empty(0, dtype=np.uint64)
    return np.unique(np.concatenate(parts).astype(np.uint64))


def remove_orphan_temps(folder: Path, prefix: str) -> None:
    """Delete temp files under ``folder`` left by dead processes (crashed mid-save).

    A temp name ends in ``.<pid>.tmp``; one whose process is gone is removed.
    One without a pid (written by an older version) is removed once it is an
    hour old, by when no save can still be writing it.
    """
    for tmp in folder.glob(f".{prefix}*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, IndexError):
            with contextlib.suppress(OSError):
                if time.time() - tmp.stat().st_mtime > 3600:
                    tmp.unlink()
        except PermissionError:
            continue


class Derived:
    """One derived structure of one table (subclasses fill in the hooks).

    ``persistent`` consumers save snapshots and hold back log trimming until
    they have; in-memory ones (filter columns) rebuild when they fall behind.
    """

    name = ""
    persistent = True
    # Save whatever is new when the store closes (cheap snapshots), or only
    # when ``_wants_save`` says the replay it spares is worth the write.
    save_on_close = True

    def __init__(self, table: Table) -> None:
        self.table = table
        self.lock = threading.RLock()
        self.ready = False
        self.seq = 0
        self.saved_seq = -1
        self.txnid = -1
        self.unsaved = 0
        self.load_problem: str | None = None

    # -- hooks ---------------------------------------------------------------

    def _load(self, txn: Any, head: int, first: int) -> bool:
        """Adopt a persisted snapshot usable at this log state; set ``seq``; False if none."""
        return False

    def _rebuild(self, txn: Any, head: int) -> None:
        """Build from the rows of ``txn``'s snapshot (``seq`` becomes ``head``)."""
        raise NotImplementedError

    def _apply(self, txn: Any, entries: list[changelog.LogEntry]) -> None:
        """Absorb change-log entries, reading current rows from ``txn``."""
        raise NotImplementedError

    def _save(self, seq: int) -> None:
        """Write a snapshot reflecting ``seq`` (atomically)."""
        raise NotImplementedError

    def _wants_save(self) -> bool:
        return self.seq - max(self.saved_seq, 0) >= LOG_SOFT_LIMIT

    def remove_files(self) -> None:
        """Delete this consumer's snapshot files (the table was dropped)."""

    def reset_locks(self) -> None:
        self.lock = threading.RLock()

    # -- protocol ------------------------------------------------------------

    @staticmethod
    def usable(seq: int, head: int, first: int) -> bool:
        """Whether a snapshot at ``seq`` can be caught up from a log holding ``first..head``."""
        return 0 <= seq <= head and (seq >= first - 1 or seq == head)

    def sync(self) -> Derived:
        """Bring this process's state up to the newest commit (cheap when nothing changed)."""
        env = self.table._env
        if self.ready and env.last_txnid() == self.txnid:
            return self
        self.table._open()
        with self.lock, env.read() as txn:
            self.table._check_valid(txn)
            self.sync_in(txn)
        return self

    def sync_in(self, txn: Any) -> None:
        """Bring the state up to ``txn``'s snapshot; the caller holds ``self.lock``."""
        # Record the snapshot this transaction reads, not env's last txnid: a
        # commit can show in the meta page before a new reader sees it.
        txnid = txn.id()
        if self.ready and txnid == self.txnid:
            return
        log = self.table._db("log")
        head, first = changelog.head(txn, log), changelog.first(txn, log)
        stale = not self.ready or self.seq > head or (first > self.seq + 1 and self.seq < head)
        if stale:
            self.ready = False
            if not self._load(txn, head, first):
                self._rebuild(txn, head)
                self.seq, self.saved_seq = head, -1
            self.ready = True
        if self.seq < head:
            self._apply(txn, list(changelog.entries(txn, log, self.seq)))
            self.seq = head
        self.txnid = txnid

    def persist(self, *, force: bool = False) -> None:
        """Save a snapshot (if there is something new and it is worth it) and let the log be trimmed."""
        table = self.table
        if not self.persistent or table._store.readonly or not table._valid or not self.ready:
            return
        with self.lock:
            if self.saved_seq == self.seq or not (force or self._wants_save()):
                return
            seq = self.seq
            self._save(seq)
            self.saved_seq = seq
            self.unsaved = 0
            self.load_problem = None  # a sound snapshot replaced the damaged one
        table._record_consumer(self.consumer_key, seq)

    @property
    def consumer_key(self) -> bytes:
        return b"consumer:%d:%s" % (self.table.schema.table_id, self.name.encode())


def catch_up(table: Table, progress: Callable[[int, int], None] | None = None) -> None:
    """Bring a table's vector indexes and Bloom filter up to date with its rows and save them.

    Derived structures otherwise catch up lazily, on the first search or
    membership check; after a bulk load that first search would build a whole
    HNSW index (and a read-only process could not even keep it).  A bulk
    loader ends with this so the next process starts warm.  ``progress(done,
    total)`` follows an index built from scratch.

    Example::

        catch_up(store.table("items"))
    """
    for vi in table._indexes.values():
        if not vi.ready and not vi.snapshots():
            vi.rebuild(progress)  # with progress; it saves the snapshot itself
        else:
            vi.sync()
            vi.persist(force=True)
    bloom = table._bloom_state
    bloom.sync()
    bloom.persist(force=True)


class BloomState(Derived):
    """The table's Bloom filter: built from row keys, grown by put entries, never shrunk by deletes."""

    name = "bloom"

    def __init__(self, table: Table) -> None:
        super().__init__(table)
        self.bloom: BloomFilter | None = None

    @property
    def path(self) -> Path:
        return self.table._store.path / "bloom" / f"t{self.table.schema.table_id}.bloom"

    def _load(self, txn: Any, head: int, first: int) -> bool:
        try:
            bloom, meta = BloomFilter.load(self.path)
        except FileNotFoundError:
            return False
        except CorruptionError as e:
            self.load_problem = f"Bloom snapshot {self.path.name} was unreadable and was rebuilt from the rows ({e.message})"
            return False
        seq = int(meta.get("seq", -1))
        store = self.table._store
        if not (
            meta.get("store_uuid") == store.uuid
            and meta.get("table_id") == self.table.schema.table_id
            and self.usable(seq, head, first)
        ):
            return False
        self.bloom, self.seq, self.saved_seq, self.unsaved = bloom, seq, seq, 0
        return True

    def _rebuild(self, txn: Any, head: int) -> None:
        keys = np.frombuffer(
            b"".join(txn.cursor(self.table._db("rows")).iternext(keys=True, values=False)), dtype=">u8"
        ).astype(np.uint64)
        schema = self.table.schema
        bloom = BloomFilter(capacity=max(schema.expected_size, len(keys) + len(keys) // 2), fpr=schema.bloom_fpr)
        bloom.add(keys)
        self.bloom, self.unsaved = bloom, len(keys)

    def _apply(self, txn: Any, entries: list[changelog.LogEntry]) -> None:
        assert self.bloom is not None
        for entry in entries:
            if entry.op == changelog.OP_PUT:
                self.unsaved += self.bloom.add(entry.keys)

    def _wants_save(self) -> bool:
        assert self.bloom is not None
        return self.unsaved > max(100_000, self.bloom.count // 20) or super()._wants_save()

    def _save(self, seq: int) -> None:
        assert self.bloom is not None
        schema, store = self.table.schema, self.table._store
        if self.path.parent.is_dir():
            remove_orphan_temps(self.path.parent, self.path.name)  # left by a process that died mid-save
        self.bloom.save(self.path, {"seq": seq, "table_id": schema.table_id, "store_uuid": store.uuid})

    def remove_files(self) -> None:
        self.path.unlink(missing_ok=True)

    def rebuild(self) -> None:
        """Forget the snapshot and rebuild from the rows (drops deleted IDs), then persist."""
        table = self.table
        table._open()
        with self.lock, table._env.read() as txn:
            table._check_valid(txn)
            self.path.unlink(missing_ok=True)
            self.ready = False
            self.sync_in(txn)
        self.persist(force=True)

