"""Store maintenance: :func:`compact`, :func:`backup` and :func:`repair`.

These are what ``vecstore compact PATH [--keep-logs DAYS]``,
``vecstore backup PATH DEST`` and ``vecstore verify PATH --repair`` run
(docs/operations.md is the guide).

* :func:`compact` rewrites ``data.mdb`` without its free pages, rebuilds the
  Bloom filters (dropping deleted IDs) and the HNSW indexes (dropping removed
  vectors), and optionally prunes the feature log.  It needs the store closed
  everywhere: it takes the store's lock (vecstore/dirlock.py) exclusively and
  raises StoreBusyError while any process, or another Store object of this
  process, has the store open.
* :func:`backup` takes a consistent copy while readers and writers keep going.
* :func:`repair` rebuilds whatever derived structure ``verify`` finds wrong.

Example::

    report = vecstore.compact("shop.vs", keep_logs_days=30)
    print(report.before.total_bytes, "->", report.after.total_bytes)
    vecstore.backup("shop.vs", "/backups/shop-2026-11-23.vs")
    with vecstore.open("shop.vs") as store:
        vecstore.repair(store).rebuilt
"""

from __future__ import annotations

import math
import numbers
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from . import changelog
from .dirlock import DirLock
from .errors import (
    CorruptionError,
    InvalidValueError,
    ReadOnlyError,
    StorageError,
    StoreNotFoundError,
)
from .featurelog.index import _acquire, _release
from .featurelog.segments import list_segments
from .fsutil import fsync_path as _fsync
from .store import Store, _live_stores

__all__ = [
    "BackupReport",
    "CompactReport",
    "RepairReport",
    "StoreSizes",
    "backup",
    "compact",
    "repair",
    "store_sizes",
]

Progress = Callable[[int, int], None]

# Leftovers of an interrupted compaction (inside the store directory and logs/index).
_TMP_PREFIX = ".compact-"
_TMP_SUFFIX = ".tmp"
_CHUNK = 8 << 20


# -- reports ------------------------------------------------------------------


@dataclass(frozen=True)
class StoreSizes:
    """Bytes a store directory holds (apparent file sizes), by part."""

    data_bytes: int  # data.mdb
    derived_bytes: int  # bloom/ and index/ snapshots
    log_bytes: int  # logs/: feature-log segments and their index
    other_bytes: int  # lock files, leftovers

    @property
    def total_bytes(self) -> int:
        return self.data_bytes + self.derived_bytes + self.log_bytes + self.other_bytes

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total_bytes": self.total_bytes}


@dataclass(frozen=True)
class CompactReport:
    """What :func:`compact` did: sizes before and after, pages freed, rows kept, time taken."""

    path: str
    before: StoreSizes
    after: StoreSizes
    page_size: int
    pages_before: int  # pages data.mdb used (its last page number + 1)
    pages_after: int
    rows: dict[str, int]  # table -> live rows (unchanged by compaction)
    rebuilt: list[str]  # derived structures rebuilt, e.g. "items: Bloom filter", "items: index of 'embedding'"
    log_pruned: dict[str, Any] | None  # PruneReport.to_dict() of the feature log's prune (keep_logs_days)
    log_compacted: dict[str, Any] | None  # PruneReport.to_dict() of the feature log's compact
    temp_dirs_removed: int  # leftovers of an interrupted compaction
    seconds: float

    @property
    def pages_freed(self) -> int:
        return self.pages_before - self.pages_after

    @property
    def bytes_reclaimed(self) -> int:
        return self.before.total_bytes - self.after.total_bytes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["before"], d["after"] = self.before.to_dict(), self.after.to_dict()
        d["pages_freed"], d["bytes_reclaimed"] = self.pages_freed, self.bytes_reclaimed
        return d


@dataclass(frozen=True)
class BackupReport:
    """What :func:`backup` copied: the state it holds (rows and change-log head per table) and its size."""

    path: str
    dest: str
    tables: dict[str, dict[str, int]]  # table -> {"rows": n, "seq": change-log head in the copy}
    snapshot_files: int  # Bloom and HNSW snapshots copied (caught up from the change log on open)
    log_files: int  # feature-log segments copied (0 with logs=False)
    log_index: bool  # whether the feature log's index was copied (else rebuilt from the segments on use)
    sizes: StoreSizes  # of the backup
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sizes"] = self.sizes.to_dict()
        return d


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair` found and rebuilt; ``problems_after`` empty means healthy."""

    path: str
    problems_before: list[str]
    rebuilt: list[str]
    problems_after: list[str]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems_after

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# -- files ----------------------------------------------------------------------


def store_sizes(path: str | os.PathLike[str]) -> StoreSizes:
    """Bytes under a store directory by part (see :class:`StoreSizes`).

    Example::

        vecstore.maintenance.store_sizes("shop.vs").total_bytes
    """
    root = Path(path)
    parts = {"data": 0, "derived": 0, "logs": 0, "other": 0}
    for dirpath, _, files in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        top = rel[0] if rel else ""
        for name in files:
            try:
                size = os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
            if not rel and name == "data.mdb":
                parts["data"] += size
            elif top in ("bloom", "index"):
                parts["derived"] += size
            elif top == "logs":
                parts["logs"] += size
            else:
                parts["other"] += size
    return StoreSizes(parts["data"], parts["derived"], parts["logs"], parts["other"])


def _remove_temps(*folders: Path) -> int:
    n = 0
    for folder in folders:
        if folder.is_dir():
            for p in folder.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                n += 1
    return n


def _copy_file(src: Path, dst: Path, limit: int | None = None) -> int:
    """Copy ``src`` (its first ``limit`` bytes) to ``dst`` and fsync; bytes copied, -1 if src vanished.

    The source is read through one descriptor, so a file renamed over it
    meanwhile (an atomic snapshot save) is copied whole, old or new.
    """
    try:
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return -1
    with open(fd, "rb") as fin, open(dst, "wb") as fout:
        left = os.fstat(fin.fileno()).st_size if limit is None else limit
        done = 0
        while left > 0:
            chunk = fin.read(min(_CHUNK, left))
            if not chunk:
                break
            fout.write(chunk)
            done += len(chunk)
            left -= len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return done


# -- LMDB environments ---------------------------------------------------------------


def _env_census(directory: Path) -> tuple[int, int, dict[bytes, int]]:
    """(pages used, page size, entries per named sub-database) of a closed environment."""
    env = lmdb.open(str(directory), subdir=True, readonly=True, lock=False, max_dbs=1, create=False)
    try:
        with env.begin() as txn:
            names = list(txn.cursor().iternext(keys=True, values=False))
    finally:
        env.close()
    env = lmdb.open(str(directory), subdir=True, readonly=True, lock=False, max_dbs=len(names) + 2, create=False)
    try:
        info, psize = env.info(), env.stat()["psize"]
        counts: dict[bytes, int] = {}
        with env.begin() as txn:
            counts[b""] = txn.stat()["entries"]
            for name in names:
                try:
                    counts[name] = txn.stat(env.open_db(name, txn=txn, create=False))["entries"]
                except lmdb.Error:
                    counts[name] = -1  # a main-database key that is not a sub-database
        return info["last_pgno"] + 1, psize, counts
    finally:
        env.close()


def _compact_env(directory: Path) -> tuple[int, int, int]:
    """Rewrite ``directory/data.mdb`` without free pages; (pages before, pages after, page size).

    The caller guarantees nobody has the environment open (the exclusive
    store lock).  The copy is written to a temp directory beside it, fsynced
    and checked (same sub-databases, same entry counts) before it replaces
    ``data.mdb`` with one ``rename``; ``lock.mdb`` is deleted (LMDB recreates
    it), the directory fsynced.  A crash at any point leaves the old file or
    the new one, plus a temp directory the next compaction removes.
    """
    pages_before, psize, counts = _env_census(directory)
    tmp = directory / f"{_TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}"
    tmp.mkdir()
    try:
        env = lmdb.open(str(directory), subdir=True, readonly=True, lock=False, max_dbs=1, create=False)
        try:
            env.copy(str(tmp), compact=True)
        finally:
            env.close()
        _fsync(tmp / "data.mdb")
        pages_after, _, copied = _env_census(tmp)
        if copied != counts:
            raise CorruptionError(
                f"the compacted copy of {directory / 'data.mdb'} does not hold the same entries; the store was left as it was"
            )
        os.replace(tmp / "data.mdb", directory / "data.mdb")
        (directory / "lock.mdb").unlink(missing_ok=True)
        _fsync(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return pages_before, pages_after, psize


def _steps(progress: Progress | None, total: int) -> Callable[[], None]:
    done = [0]

    def step() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    return step


# -- compact -----------------------------------------------------------------------


def compact(
    path: str | os.PathLike[str], *, keep_logs_days: float | None = None, progress: Progress | None = None
) -> CompactReport:
    """Compact a closed store: rewrite ``data.mdb`` without free pages, rebuild derived files.

    Steps, all under the store's lock taken exclusively (StoreBusyError, and
    nothing touched, while any process or another Store object of this
    process has the store open; stop the server or service first, or back the
    store up and compact the copy):

    1. remove temp directories left by an interrupted compaction;
    2. with ``keep_logs_days``, prune the feature log to its last N days; then
       compact the log (catch up its index, cut torn tails, repair segments
       damaged in the middle, drop empty segments);
    3. rebuild every Bloom filter without deleted IDs and every HNSW index
       that holds removed vectors (others are caught up), and save them (which
       also trims the change logs);
    4. copy the LMDB environment compacted (``mdb_env_copy2`` with
       ``MDB_CP_COMPACT``), fsync, check it and swap it in atomically; the same
       for the feature log's index.

    A crash at any step leaves a valid store.  The compacted copy restarts
    LMDB's transaction IDs at 1; nothing on disk depends on them (derived
    snapshots record change-log seqs, which the copy keeps), and no process can
    hold state from before, since nobody has the store open.

    ``progress(done, total)`` is called after each step (units: steps).

    Example::

        report = vecstore.compact("shop.vs", keep_logs_days=30)
        report.before.data_bytes, report.after.data_bytes, report.pages_freed
    """
    t0 = time.monotonic()
    root = Path(path)
    if not (root / "data.mdb").is_file():
        raise StoreNotFoundError(f"no store at {root}", hint="compact takes the path of an existing store")
    if keep_logs_days is not None and (
        isinstance(keep_logs_days, bool)
        or not isinstance(keep_logs_days, numbers.Real)
        or not (math.isfinite(keep_logs_days) and keep_logs_days >= 0)
    ):
        raise InvalidValueError(f"keep_logs_days must be a number of days >= 0, got {keep_logs_days!r}")
    log_dir, log_index = root / "logs", root / "logs" / "index"
    with DirLock.exclusive(root):
        temps = _remove_temps(root, log_index)
        before = store_sizes(root)
        rows: dict[str, int] = {}
        rebuilt: list[str] = []
        pruned = compacted = None
        store = Store(root, create=False, _locked=True)
        try:
            tables = [store.table(n) for n in store.tables()]
            total = 1 + bool(log_dir.is_dir()) + sum(1 + len(t._indexes) for t in tables) + 1
            step = _steps(progress, total)
            if log_dir.is_dir():
                log = store.log
                if keep_logs_days is not None:
                    pruned = log.prune(before=time.time() - float(keep_logs_days) * 86400).to_dict()
                compacted = log.compact().to_dict()
                step()
            for t in tables:
                rows[t.name] = len(t)
                t.rebuild_bloom()
                rebuilt.append(f"{t.name}: Bloom filter")
                step()
                for feature, vi in t._indexes.items():
                    vi.sync()
                    if vi.tombstones or vi.load_problem:
                        t.rebuild_index(feature)
                        rebuilt.append(f"{t.name}: index of {feature!r}")
                    else:
                        # Nothing removed: the graph is as compact as a rebuild would
                        # make it (and rebuilding is the slow part of compaction).
                        vi.persist(force=True)
                    step()
        finally:
            store.close()
        pages_before, pages_after, psize = _compact_env(root)
        step()
        if (log_index / "data.mdb").is_file():
            _compact_env(log_index)
        step()
        after = store_sizes(root)
    return CompactReport(
        path=str(root), before=before, after=after, page_size=psize, pages_before=pages_before,
        pages_after=pages_after, rows=rows, rebuilt=rebuilt, log_pruned=pruned, log_compacted=compacted,
        temp_dirs_removed=temps, seconds=time.monotonic() - t0,
    )


# -- backup ------------------------------------------------------------------------


def _check_dest(dest: Path, root: Path) -> None:
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise InvalidValueError(
            f"backup destination {dest} already exists and is not an empty directory",
            hint="pick a new path (the backup creates it) or empty the directory",
        )
    d, r = os.path.realpath(dest), os.path.realpath(root)
    if d == r or d.startswith(r + os.sep):
        raise InvalidValueError(f"backup destination {dest} is inside the store {root}", hint="back up to another path")


def _live_store(root: Path) -> Store | None:
    """A Store of this process open on ``root`` (its environment is reused: LMDB wants one per process)."""
    real = os.path.realpath(root)
    for s in list(_live_stores):
        if not s.closed and os.path.realpath(s.path) == real:
            return s
    return None


def _copy_log_index(src: Path, dst: Path) -> bool:
    """Copy the feature log's LMDB index in one read transaction; False if there is none."""
    if not (src / "data.mdb").is_file():
        return False
    try:
        env = _acquire(src, not os.access(src, os.W_OK))
    except StorageError:
        env = _acquire(src, True)  # open read-only in this process already
    try:
        dst.mkdir(parents=True)
        with env.read() as txn:
            env.raw.copy(str(dst), compact=True, txn=txn)
    finally:
        _release(src)
    _fsync(dst / "data.mdb")
    return True


def _copy_lmdb(store: Store, dst: Path) -> dict[str, dict[str, int]]:
    """Copy the store's environment in one read transaction; rows and change-log head per table in it."""
    env = store._env
    store._refresh()  # decodes every schema record first: a damaged one is a CorruptionError, not a crash here
    schemas_db = env.db(b"schemas")
    handles: dict[int, tuple[Any, Any]] = {}
    with env.read() as txn:
        for _, raw in txn.cursor(db=schemas_db):
            tid = msgpack.unpackb(raw)["table_id"]
            handles[tid] = (b"t%d.rows" % tid, b"t%d.log" % tid)
    handles = {tid: (env.db(r), env.db(lg)) for tid, (r, lg) in handles.items()}  # opened before the txn (Env.db)
    tables: dict[str, dict[str, int]] = {}
    with env.read() as txn:
        for name, raw in txn.cursor(db=schemas_db):
            h = handles.get(msgpack.unpackb(raw)["table_id"])
            if h is not None and h[0] is not None and h[1] is not None:
                tables[name.decode()] = {"rows": txn.stat(h[0])["entries"], "seq": changelog.head(txn, h[1])}
        try:
            env.raw.copy(str(dst), compact=True, txn=txn)
        except lmdb.Error as e:
            raise StorageError(f"copying {store.path / 'data.mdb'} failed: {e}", hint="check free space at the destination", cause=e) from e
    _fsync(dst / "data.mdb")
    return tables


def backup(
    path: str | os.PathLike[str] | Store,
    dest: str | os.PathLike[str],
    *,
    logs: bool = True,
    progress: Progress | None = None,
) -> BackupReport:
    """Write a consistent copy of a store to ``dest`` while it stays in use.

    ``dest`` must not exist or be an empty directory; the copy is written to
    a temp directory beside it and renamed to ``dest`` at the end, so ``dest``
    only ever holds a complete backup.  ``path`` may be an open Store (a
    server's), whose LMDB environment is then reused.

    * **Rows, schemas, change logs**: one LMDB read transaction copies the
      whole environment, compacted: the state of one commit, every table at
      the same point, while writers (threads or processes) go on.
    * **Bloom and HNSW snapshots** are copied *before* it, so none is newer
      than the data; on open each catches up from the change log, or is
      rebuilt from the rows when the log was trimmed past it.
    * **Feature log** (``logs=True``): its LMDB index is copied in one read
      transaction, then every segment up to its length at that moment.  A
      frame being appended meanwhile may be cut: it is a torn tail, which
      readers skip and ``compact`` removes; the index catches up on the rest.

    Takes the store's lock shared, so a compaction cannot run meanwhile (one
    running makes it wait, then raise StoreBusyError).  ``progress(done,
    total)`` reports bytes (the total is an estimate).

    Example::

        report = vecstore.backup("shop.vs", "/backups/shop.vs")
        report.tables   # {"items": {"rows": 1000, "seq": 42}}
    """
    t0 = time.monotonic()
    given = path if isinstance(path, Store) else None
    root = Path(given.path if given is not None else path)
    if not (root / "data.mdb").is_file():
        raise StoreNotFoundError(f"no store at {root}", hint="backup takes the path of an existing store")
    dest = Path(dest)
    _check_dest(dest, root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.backup-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    with DirLock.shared(root, readonly=True):
        store = given or _live_store(root)
        own = store is None
        if store is None:
            store = Store(root, create=False, readonly=True)
        try:
            snaps = [p for d in ("bloom", "index") if (root / d).is_dir() for p in sorted((root / d).iterdir())
                     if p.is_file() and not p.name.startswith(".")]
            segs = list_segments(root / "logs" / "segments") if logs else []

            def size(p: Path) -> int:
                try:
                    return p.stat().st_size
                except FileNotFoundError:
                    return 0

            info = store._env.info()
            total = sum(map(size, snaps + segs)) + (info["last_pgno"] + 1) * store._env.stat()["psize"]
            done = 0

            def advance(n: int, last: bool = False) -> None:
                nonlocal done, total
                done += max(n, 0)
                total = done if last else max(total, done)
                if progress is not None:
                    progress(done, total)

            tmp.mkdir()
            n_snaps = n_segs = 0
            for p in snaps:  # 1. derived snapshots, older than (or as old as) the data copied below
                (tmp / p.parent.name).mkdir(exist_ok=True)
                n = _copy_file(p, tmp / p.parent.name / p.name)
                n_snaps += n >= 0
                advance(n)
            has_index = False
            if logs and (root / "logs").is_dir():  # 2. the log's index, then its segments (append-only)
                has_index = _copy_log_index(root / "logs" / "index", tmp / "logs" / "index")
                (tmp / "logs" / "segments").mkdir(parents=True, exist_ok=True)
                for seg in segs:
                    n = _copy_file(seg, tmp / "logs" / "segments" / seg.name, limit=size(seg))
                    n_segs += n >= 0
                    advance(n)
            tables = _copy_lmdb(store, tmp)  # 3. rows: one read transaction
            advance((tmp / "data.mdb").stat().st_size, last=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if own:
                store.close()
    try:
        for dirpath, _, _ in os.walk(tmp):
            _fsync(Path(dirpath))
        if dest.exists():
            dest.rmdir()  # empty (checked above); fails if something was written there meanwhile
        os.rename(tmp, dest)
        _fsync(dest.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InvalidValueError(f"cannot move the backup into {dest}: {e}", hint="pick a new, empty destination") from e
    return BackupReport(
        path=str(root), dest=str(dest), tables=tables, snapshot_files=n_snaps, log_files=n_segs,
        log_index=has_index, sizes=store_sizes(dest), seconds=time.monotonic() - t0,
    )


# -- repair ------------------------------------------------------------------------


def repair(store: Store | str | os.PathLike[str], *, progress: Progress | None = None) -> RepairReport:
    """Verify every table (and the feature log) and rebuild what is wrong.

    A table whose ``verify()`` reports anything gets its Bloom filter and every
    vector index rebuilt from its rows and saved (replacing damaged snapshot
    files); a feature log whose ``verify()`` reports anything gets its index
    rebuilt from the segments.  Then everything is verified again:
    ``problems_after`` lists what rebuilding cannot fix (rows that do not
    decode, damaged segments): restore those from a backup.  Takes an open
    Store or a path (opened and closed here).  ``progress(done, total)``
    counts tables (and the log).

    Example::

        with vecstore.open("shop.vs") as store:
            report = vecstore.repair(store)
            assert report.ok, report.problems_after
    """
    t0 = time.monotonic()
    own = not isinstance(store, Store)
    s = Store(store, create=False) if own else store  # type: ignore[arg-type]
    try:
        if s.readonly:
            raise ReadOnlyError(f"store at {s.path} is open read-only", hint="repair rebuilds files: open it writable")
        names = s.tables()
        has_log = (s.path / "logs" / "segments").is_dir()
        step = _steps(progress, len(names) + has_log)
        before: list[str] = []
        rebuilt: list[str] = []
        for name in names:
            t = s.table(name)
            found = t.verify()
            if found:
                before.extend(found)
                t.rebuild_bloom()
                rebuilt.append(f"{name}: Bloom filter")
                for feature in t._indexes:
                    t.rebuild_index(feature)
                    rebuilt.append(f"{name}: index of {feature!r}")
            step()
        if has_log:
            found = [f"feature log: {p}" for p in s.log.verify()]
            if found:
                before.extend(found)
                s.log.rebuild_index()
                rebuilt.append("feature log index")
            step()
        after = s.verify() + ([f"feature log: {p}" for p in s.log.verify()] if has_log else [])
    finally:
        if own:
            s.close()
    return RepairReport(
        path=str(s.path), problems_before=before, rebuilt=rebuilt, problems_after=after,
        seconds=time.monotonic() - t0,
    )
