"""The store's process-level lock: ``<store>/vecstore.lock``, held with ``flock``.

Every open :class:`~vecstore.Store` (read-only or not) holds a *shared*
``flock`` on this file until it is closed; ``vecstore compact`` takes it
*exclusively*, without waiting, so compaction only ever runs while nobody has
the store open, and an open that finds a compaction in progress waits a
little (``lock_timeout`` seconds, default :data:`DEFAULT_LOCK_TIMEOUT`, or the
``VECSTORE_LOCK_TIMEOUT`` environment variable) and then raises
:class:`~vecstore.errors.StoreBusyError`.

Properties of ``flock`` this module relies on:

* The lock belongs to an *open file description*: every :class:`DirLock`
  opens the file itself, so several Store objects in one process each hold
  their own shared lock, and a compaction in the same process conflicts with
  them exactly as one in another process would.
* A ``fork()``\\ ed child shares the parent's open file descriptions: the lock
  stays held while either process keeps its descriptor open.  So a lock is
  released only by closing the descriptor, never with ``LOCK_UN`` (which
  would release it for the parent too).  The descriptor is ``O_CLOEXEC``:
  programs started with ``exec`` do not inherit it.
* The kernel drops the lock when the holder dies: no stale lock survives a
  crash.

A read-only open of a directory where the lock file cannot be created (a
read-only file system, or no write permission) goes on without the lock.

Example::

    with DirLock.exclusive("shop.vs"):      # StoreBusyError if anyone has it open
        ...
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from .errors import StorageError, StoreBusyError

__all__ = ["DEFAULT_LOCK_TIMEOUT", "LOCK_NAME", "DirLock", "lock_holders"]

LOCK_NAME = "vecstore.lock"
DEFAULT_LOCK_TIMEOUT = 5.0
_RETRY_SECONDS = 0.05
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def default_timeout() -> float:
    """``VECSTORE_LOCK_TIMEOUT`` (seconds) if set and valid, else :data:`DEFAULT_LOCK_TIMEOUT`."""
    raw = os.environ.get("VECSTORE_LOCK_TIMEOUT")
    if raw:
        try:
            value = float(raw)
            if value >= 0:
                return value
        except ValueError:
            pass
    return DEFAULT_LOCK_TIMEOUT


def _open_lock_file(path: Path) -> int:
    """An fd on the lock file, created if need be (read-only if it exists but is not writable)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno not in _UNWRITABLE:
            raise
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # flock works on any fd


def lock_holders(directory: str | os.PathLike[str]) -> list[int]:
    """PIDs holding a ``flock`` on the directory's lock file (best effort, Linux ``/proc/locks``).

    A forked child that inherited the lock shows as its parent's PID.
    """
    try:
        st = os.stat(Path(directory) / LOCK_NAME)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = set()
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  READ  1234 08:01:56789 0 EOF" (blocked waiters carry a "->")
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        dev_ino = parts[5]
        major, minor, ino = dev_ino.split(":")
        if f"{int(major, 16):02x}:{int(minor, 16):02x}:{ino}" == want:
            try:
                pids.add(int(parts[4]))
            except ValueError:
                continue
    return sorted(pids)


class DirLock:
    """A held shared or exclusive lock on ``<directory>/vecstore.lock`` (``fd`` None: none was taken).

    Use :meth:`shared` or :meth:`exclusive`; :meth:`release` (or ``with``) closes it.
    """

    def __init__(self, path: Path, fd: int | None, exclusive: bool) -> None:
        self.path = path
        self.fd = fd
        self.exclusive_mode = exclusive

    @classmethod
    def shared(
        cls, directory: str | os.PathLike[str], *, timeout: float | None = None, readonly: bool = False
    ) -> DirLock:
        """Take the lock shared, retrying for ``timeout`` seconds while a compaction holds it.

        Raises StoreBusyError when the wait runs out.  With ``readonly=True``
        a lock file that cannot be created is skipped (the returned lock holds
        nothing); otherwise that is a StorageError.

        Example::

            lock = DirLock.shared("shop.vs", timeout=2.0)
            ...
            lock.release()
        """
        path = Path(directory) / LOCK_NAME
        try:
            fd = _open_lock_file(path)
        except OSError as e:
            if readonly and e.errno in (*_UNWRITABLE, errno.ENOENT):
                return cls(path, None, False)
            raise StorageError(
                f"cannot open the store's lock file {path}: {e.strerror}",
                hint="the store directory must be writable to open it for writing; check permissions, or open with readonly=True",
                cause=e,
            ) from e
        wait = default_timeout() if timeout is None else max(0.0, float(timeout))
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return cls(path, fd, False)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    holders = lock_holders(directory)
                    by = f" (held by pid {', '.join(map(str, holders))})" if holders else ""
                    raise StoreBusyError(
                        f"store at {directory} is being compacted{by}: waited {wait:g}s for {path.name}",
                        hint="wait for `vecstore compact` to finish and open it again, or pass a larger "
                        "lock_timeout= (or set VECSTORE_LOCK_TIMEOUT)",
                    ) from None
                time.sleep(_RETRY_SECONDS)
            except BaseException:
                os.close(fd)
                raise

    @classmethod
    def exclusive(cls, directory: str | os.PathLike[str]) -> DirLock:
        """Take the lock exclusively without waiting; StoreBusyError if anyone has the store open.

        Example::

            with DirLock.exclusive("shop.vs"):
                ...   # nobody else has the store open, and nobody can open it
        """
        path = Path(directory) / LOCK_NAME
        try:
            fd = _open_lock_file(path)
        except OSError as e:
            raise StorageError(
                f"cannot open the store's lock file {path}: {e.strerror}",
                hint="compaction rewrites the store, so its directory must be writable",
                cause=e,
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holders = [p for p in lock_holders(directory) if p != os.getpid()]
            mine = os.getpid() in lock_holders(directory)
            who = []
            if holders:
                who.append(f"pid {', '.join(map(str, holders))}")
            if mine:
                who.append("a Store object in this process")
            by = f" ({'; '.join(who)})" if who else ""
            whom = "this process" if mine and not holders else "another process"
            raise StoreBusyError(
                f"store at {directory} is open by {whom}{by}; close it (stop the server or the service) and retry, "
                "or back up the store and compact the copy",
                hint="compaction needs the store closed everywhere: `vecstore backup PATH DEST` takes a "
                "consistent copy while it is in use; `vecstore compact DEST` then compacts the copy",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, True)

    @property
    def held(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        """Close the descriptor (never ``LOCK_UN``: a forked child may share it)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()

    def __repr__(self) -> str:
        mode = "exclusive" if self.exclusive_mode else "shared"
        return f"<DirLock {str(self.path)!r} {mode}{'' if self.held else ' released'}>"
