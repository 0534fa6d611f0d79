"""The LMDB environment under a store: transactions, map growth, fork safety.

Three LMDB facts shape this module:

* The memory map has a fixed size; a write that does not fit fails with
  ``MDB_MAP_FULL``.  Writes here are functions of a transaction, so on that
  error the transaction is aborted, the map doubled and the function run
  again: ``MapFullError`` never reaches a user.
* Changing the map size while any transaction of this process is open
  invalidates their pointers, so reads and writes pass a gate that a resize
  closes (:class:`_Gate`).  Another process's resize shows up as
  ``MDB_MAP_RESIZED`` when a transaction begins, and is adopted the same way.
* An LMDB environment must not be used across ``fork()``, and closing an
  inherited one in the child frees the parent's reader slots.  So the
  environment is closed just before a fork (once this process's transactions
  are done) and reopened on first use, in the parent and in the child alike.
"""

from __future__ import annotations

import os
import struct
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

import lmdb

from .errors import (
    CorruptionError,
    ReadOnlyError,
    StorageError,
    StoreClosedError,
    wrap_lmdb_error,
)

__all__ = ["Env"]

T = TypeVar("T")

DEFAULT_MAP_SIZE = 256 << 20
_live_envs: weakref.WeakSet[Env] = weakref.WeakSet()


def _before_fork() -> None:
    for env in list(_live_envs):
        env._suspend_for_fork()


def _after_fork_in_parent() -> None:
    for env in list(_live_envs):
        env._after_fork(child=False)


def _after_fork_in_child() -> None:
    for env in list(_live_envs):
        env._after_fork(child=True)


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


# LMDB 0.9's meta page (lmdb/mdb.c, MDB_meta after a 16-byte page header), in
# native byte order: magic and version, then at fixed offsets the page size
# (the free-pages DB's md_pad), the last page in use and the transaction id.
_META_MAGIC = 0xBEEFC0DE
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_META_OFFSETS = {"magic": 16, "psize": 40, "last_pg": 136, "txnid": 144}


def check_not_truncated(data_path: str) -> None:
    """Raise CorruptionError when ``data.mdb`` is shorter than its own meta page says.

    LMDB maps the file and reads pages up to the last one in use without
    checking the file's length: on a truncated file (a bad copy, a full disk
    during a restore) a read of a missing page kills the process with SIGBUS,
    which no exception handler sees.  So the length is checked here, before
    LMDB opens it.  Anything else odd about the file is left to LMDB to report.
    """
    try:
        with open(data_path, "rb") as f:
            first = f.read(4096)
            if len(first) < 152 or _U32.unpack_from(first, _META_OFFSETS["magic"])[0] != _META_MAGIC:
                return
            psize = _U32.unpack_from(first, _META_OFFSETS["psize"])[0]
            if psize < 512 or psize & (psize - 1) or psize > 1 << 16:
                return
            f.seek(psize)
            second = f.read(152)
            # The length after the metas: a writer extends the file before it
            # writes the meta that counts the new pages, never after.
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return  # missing or unreadable: LMDB says what is wrong
    metas = [first]
    if len(second) == 152 and _U32.unpack_from(second, _META_OFFSETS["magic"])[0] == _META_MAGIC:
        metas.append(second)
    # The meta page with the higher transaction id is the current one.
    meta = max(metas, key=lambda m: _U64.unpack_from(m, _META_OFFSETS["txnid"])[0])
    need = (_U64.unpack_from(meta, _META_OFFSETS["last_pg"])[0] + 1) * psize
    if size < need:
        raise CorruptionError(
            f"{data_path} is truncated: {size:,} bytes, but its last page in use ends at byte {need:,}",
            hint="restore the store from a backup (`vecstore backup` makes one); reading it would crash the process",
        )


class _Gate:
    """Many transactions at once, or one map resize: a readers-writer lock.

    It counts each thread's own open transactions, so that a thread already
    inside one may begin another (a nested read) even while a resize waits:
    the resize is waiting for that thread's outer transaction anyway, and
    making the inner one wait for the resize would deadlock.  For the same
    reason a thread inside a transaction cannot start a resize.  A
    transaction must end on the thread that began it.
    """

    def __init__(self) -> None:
        # enter/leave run around every transaction: they take the plain lock
        # (a C-level context manager) and touch the condition only when a
        # resize is waiting or under way, the only time anyone waits.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._active = 0
        self._resizing = False
        self._mine = threading.local()  # .n: this thread's open transactions

    def held(self) -> int:
        """How many transactions the calling thread has open."""
        return getattr(self._mine, "n", 0)

    def enter(self) -> None:
        mine = self._mine
        n = getattr(mine, "n", 0)
        with self._lock:
            # While this thread holds a transaction no resize can be under
            # way (it waits for every transaction to end), so go straight in.
            while self._resizing and not n:
                self._cond.wait()
            self._active += 1
        mine.n = n + 1

    def leave(self) -> None:
        self._mine.n -= 1
        with self._lock:
            self._active -= 1
            if self._active == 0 and self._resizing:
                self._cond.notify_all()

    def block(self) -> None:
        """Wait for every transaction to finish and admit no new one until unblock()."""
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._active > 0:
                self._cond.wait()

    def unblock(self) -> None:
        with self._cond:
            self._resizing = False
            self._cond.notify_all()

    @contextmanager
    def exclusive(self, action: str) -> Iterator[None]:
        """Wait until no transaction is open, then block new ones for the duration (a map resize).

        StorageError, rather than a deadlock, when the calling thread itself
        holds a transaction: LMDB cannot resize the map under an open one.
        """
        if self.held():
            raise StorageError(
                f"{action} needs every transaction of this process closed, but this thread holds one",
                hint="this is a bug in vecstore: please report it with the traceback",
            )
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._active > 0:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class _ReadTxn:
    """``with env.read() as txn``: begin, then abort and release the gate however the block ends.

    A class rather than a generator-based context manager: it runs on every
    read, and this costs a few microseconds less each time.
    """

    __slots__ = ("_env", "_txn")

    def __init__(self, env: Env) -> None:
        self._env = env

    def __enter__(self) -> lmdb.Transaction:
        self._txn = self._env._begin(False)
        return self._txn

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._txn.abort()
        finally:
            self._env._gate.leave()
        if exc is not None and isinstance(exc, lmdb.Error):
            raise wrap_lmdb_error(exc, "reading") from exc


class Env:
    """One LMDB environment: named sub-databases, read and write transactions."""

    def __init__(
        self,
        path: str,
        *,
        readonly: bool,
        map_size: int | None,
        sync: bool,
        max_dbs: int,
        max_readers: int,
    ) -> None:
        self.path = path
        self.readonly = readonly
        self.sync = sync
        self._opts = dict(max_dbs=max_dbs, max_readers=max_readers)
        self._initial_map_size = map_size or DEFAULT_MAP_SIZE
        self._dbs: dict[bytes, Any] = {}
        self._db_lock = threading.Lock()
        self._reopen_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._gate = _Gate()
        self._forked = False  # True: the LMDB environment was closed for a fork; reopen on use
        self._closed = False
        self.generation = 0  # bumped when a forked child reopens: cached handles are stale
        self._env = self._open()
        _live_envs.add(self)

    def _open(self) -> lmdb.Environment:
        check_not_truncated(os.path.join(self.path, "data.mdb"))
        try:
            env = lmdb.open(
                self.path,
                subdir=True,
                map_size=self._initial_map_size,
                readonly=self.readonly,
                create=not self.readonly,
                sync=self.sync,
                metasync=self.sync,
                readahead=False,
                lock=True,
                max_spare_txns=4,
                **self._opts,
            )
        except lmdb.Error as e:
            err = wrap_lmdb_error(e, f"opening LMDB environment at {self.path}")
            if "already open in this process" in str(e):
                err.hint = (
                    "a process opens a store once: share the Store you already have "
                    "(threads may use it at once), or close it first"
                )
            elif self.readonly and isinstance(e, lmdb.ReadonlyError):
                err.hint = (
                    "even a read-only open needs write access to lock.mdb (LMDB's table of readers): "
                    "make it writable for this user, or read a copy of the store"
                )
            raise err from e
        # An existing environment may already be larger than asked for.
        if env.info()["map_size"] < self._initial_map_size and not self.readonly:
            env.set_mapsize(self._initial_map_size)
        return env

    def _suspend_for_fork(self) -> None:
        # An LMDB environment must not cross fork(): closing it in the child
        # would free the parent's reader slots (py-lmdb issue #346).  So close
        # it here, once this process's transactions are done, and hold the
        # locks across the fork so no thread opens a transaction meanwhile.
        if self._closed:
            return
        self._write_lock.acquire()
        self._gate.block()
        if not self._forked:
            self._env.close()
            self._forked = True

    def _after_fork(self, *, child: bool) -> None:
        if self._closed:
            return
        if child:
            # Locks held by the forking thread, or by threads that do not exist here.
            self._db_lock = threading.Lock()
            self._reopen_lock = threading.Lock()
            self._write_lock = threading.RLock()
            self._gate = _Gate()
        else:
            self._gate.unblock()
            self._write_lock.release()

    def _reopen(self) -> None:
        names = list(self._dbs)
        self._dbs = {}
        self._env = self._open()
        # Re-open every handle now, before any transaction begins (see db()).
        for name in names:
            try:
                self._dbs[name] = self._env.open_db(name, create=False)
            except lmdb.NotFoundError:
                pass
        self.generation += 1
        self._forked = False

    @property
    def raw(self) -> lmdb.Environment:
        """The py-lmdb environment (reopened first in a forked child)."""
        if self._closed:
            raise StoreClosedError(f"store at {self.path} is closed", hint="open it again with vecstore.open()")
        if self._forked:
            with self._reopen_lock:
                if self._forked:
                    self._reopen()
        return self._env

    # -- sub-databases -------------------------------------------------------

    def db(self, name: bytes, *, create: bool = False) -> Any:
        """A named sub-database handle (cached); ``None`` if it does not exist and create is False.

        LMDB lets a transaction use only handles opened before it began, and
        closes a handle opened in a transaction that aborts.  So handles are
        opened here, in a short transaction of their own that commits, and
        callers fetch every handle they need *before* beginning the transaction
        that uses it (never while this thread holds a write transaction).
        """
        h = self._dbs.get(name)
        if h is not None:
            return h
        with self._db_lock:
            h = self._dbs.get(name)
            if h is not None:
                return h
            try:
                if self.readonly:
                    h = self._open_db_readonly(name)
                else:
                    # Not txn=None here: py-lmdb would then begin its write
                    # transaction holding the GIL, and deadlock against a thread
                    # of ours that holds LMDB's writer lock and waits for the GIL.
                    h = self.write(lambda txn: self._open_db_in(txn, name, create), action=f"opening {name.decode()}")
            except lmdb.NotFoundError:
                return None
            except lmdb.Error as e:
                raise wrap_lmdb_error(e, f"opening sub-database {name.decode()}") from e
            if h is None:
                return None
            self._dbs[name] = h
            return h

    def _open_db_readonly(self, name: bytes) -> Any:
        # txn=None: py-lmdb opens the handle in a read transaction of its own.
        # (Not one from _begin: a handle opened in our own read transaction and
        # committed fails later reads with "mdb_get: Invalid argument".)
        # Like any transaction here it goes through the gate, and when another
        # process has grown the map since, the new size is adopted and the
        # open tried again (else every later call would fail the same way).
        while True:
            env = self.raw
            self._gate.enter()
            try:
                return env.open_db(name, create=False)
            except lmdb.MapResizedError:
                pass
            finally:
                self._gate.leave()
            self._adopt_resize()

    def _open_db_in(self, txn: lmdb.Transaction, name: bytes, create: bool) -> Any:
        try:
            return self.raw.open_db(name, txn=txn, create=create)
        except lmdb.NotFoundError:
            return None

    def remember_db(self, name: bytes, handle: Any) -> None:
        """Cache a handle opened in a write transaction, once that transaction committed."""
        self._dbs[name] = handle

    def forget_dbs(self, names: list[bytes]) -> None:
        for n in names:
            self._dbs.pop(n, None)

    # -- transactions --------------------------------------------------------

    def _begin(self, write: bool) -> lmdb.Transaction:
        env = self.raw
        self._gate.enter()
        try:
            return env.begin(write=write, buffers=False)
        except lmdb.MapResizedError:
            self._gate.leave()
            self._adopt_resize()
            return self._begin(write)
        except lmdb.Error as e:
            self._gate.leave()
            raise wrap_lmdb_error(e, "beginning a transaction") from e
        except BaseException:
            self._gate.leave()
            raise

    def _adopt_resize(self) -> None:
        with self._gate.exclusive("adopting the map size another process set"):
            self._env.set_mapsize(0)

    def read(self) -> _ReadTxn:
        """A read-only transaction, as a context manager: a consistent snapshot of everything committed before it began.

        Example::

            with env.read() as txn:
                value = txn.get(key, db=env.db(b"meta"))
        """
        return _ReadTxn(self)

    def write(self, fn: Callable[[lmdb.Transaction], T], *, action: str = "writing") -> T:
        """Run ``fn(txn)`` in one write transaction and commit: all of it or none of it.

        When the map is full the transaction is rolled back, the map grown and
        ``fn`` run again from the start, so ``fn`` must only write through ``txn``.
        Any exception from ``fn`` aborts the transaction and propagates.
        """
        if self.readonly:
            raise ReadOnlyError(f"store at {self.path} is open read-only", hint="open it with readonly=False to write")
        with self._write_lock:
            while True:
                txn = self._begin(True)
                try:
                    result = fn(txn)
                    txn.commit()
                    return result
                except lmdb.MapFullError:
                    txn.abort()
                    self._gate.leave()
                    txn = None
                    self._grow()
                    continue
                except lmdb.Error as e:
                    txn.abort()
                    raise wrap_lmdb_error(e, action) from e
                except BaseException:
                    txn.abort()
                    raise
                finally:
                    if txn is not None:
                        self._gate.leave()

    def _grow(self) -> None:
        with self._gate.exclusive("growing the map"):
            size = self._env.info()["map_size"]
            # Double while small, then grow by half: amortized O(1) growth without
            # reserving absurd address space for huge stores.
            new = size * 2 if size < (64 << 30) else size + size // 2
            try:
                self._env.set_mapsize(new)
            except lmdb.Error as e:
                raise wrap_lmdb_error(e, f"growing the map to {new} bytes") from e

    # -- misc ----------------------------------------------------------------

    def _env_call(self, what: str) -> dict[str, Any]:
        # Inside the gate: mdb_env_info/stat fail with EINVAL while a resize remaps.
        env = self.raw
        self._gate.enter()
        try:
            return env.info() if what == "info" else env.stat()
        except lmdb.Error as e:
            raise wrap_lmdb_error(e, f"reading the environment {what}") from e
        finally:
            self._gate.leave()

    def last_txnid(self) -> int:
        """ID of the last committed write transaction, from any process (cheap, no transaction)."""
        return self._env_call("info")["last_txnid"]

    def info(self) -> dict[str, Any]:
        return self._env_call("info")

    def stat(self) -> dict[str, Any]:
        return self._env_call("stat")

    def page_usage(self) -> dict[str, int]:
        """Pages of ``data.mdb``: ``total`` (up to the last used page), ``in_use`` by
        B-trees (main and every named sub-database, plus the two meta pages) and
        ``free``, the difference: pages LMDB will reuse before growing the file,
        including the free list's own pages.  ``vecstore compact`` returns them.
        """
        names: list[bytes] = []
        with self.read() as txn:
            names = [bytes(k) for k in txn.cursor().iternext(keys=True, values=False)]
        handles = [(n, self.db(n)) for n in names]
        pages = 2  # the two meta pages
        with self.read() as txn:
            main = txn.stat()
            pages += main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]
            for _, h in handles:
                if h is None:
                    continue
                s = txn.stat(h)
                pages += s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]
        total = self.info()["last_pgno"] + 1
        return {"total": total, "in_use": pages, "free": max(0, total - pages)}

    def sync_to_disk(self) -> None:
        if not self.readonly:
            self.raw.sync(True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._forked:
            return  # already closed before the fork
        with self._write_lock, self._gate.exclusive("closing the store"):
            self._env.close()
