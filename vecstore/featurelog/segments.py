"""Segment files: one append-only file per writing process, under ``<store>/logs/segments/``.

Why one file per process: appends need no lock shared between processes and
never wait for anyone (so logging never blocks, and never takes the feature
tables' LMDB write lock), and a crash can only tear the end of the crashed
process's own file.

A writer holds an exclusive ``flock`` on its segment while it appends; the
kernel drops it when the process dies.  So another process can tell a *live*
segment (someone may still append to it) from a *dead* one (finished, or its
writer crashed): only dead segments are caught up into the index, rewritten
by ``prune`` or truncated by ``compact``.  A segment is created under a
dot-prefixed temporary name, locked, given its header frame and only then
renamed, so no process ever sees it unlocked before its writer does.

Names sort by creation time: ``<unix µs, 16 digits>-<pid>-<8 hex>.vsl``.

Example::

    w = SegmentWriter.create(logs / "segments", {"store": store.uuid})
    w.append(KIND_LABEL, time.time(), {"r": "req-1", ...}, [])
    w.fsync(); w.close()
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import StorageError
from .columns import SegmentContext
from .delta import Delta, declare, feed
from .frames import (
    KIND_DICT,
    KIND_HEADER,
    KIND_SCHEMA,
    STAGE_OF_KIND,
    Frame,
    ScanResult,
    encode_frame,
    iter_frames,
    next_good_frame,
    write_frame,
)

__all__ = ["SUFFIX", "SegmentWriter", "hold", "is_live", "list_segments", "rewrite", "scan_delta"]

SUFFIX = ".vsl"
FORMAT = 1
_DECLARATIONS = (KIND_SCHEMA, KIND_DICT)
# Appending to a file means allocating disk blocks on every write; on ext4
# that made a 40 KB append cost ~70 us against ~18 us into space reserved in
# advance.  So a writer reserves 16 MiB at a time past the end of file with
# fallocate(FALLOC_FL_KEEP_SIZE): the file's size (what readers see) does not
# change, and closing the segment truncates the reservation away.
PREALLOCATE = 16 << 20
_FALLOC_FL_KEEP_SIZE = 1


# flush() fsyncs what was appended since the previous flush: about 45 MB per
# 1,000 requests of 5,000 int candidates, which kept the caller waiting on the
# disk for 120 to 330 ms (more than 100 us per request).  So every WRITEBACK
# bytes appended, the writer asks the kernel to start writing them out
# (sync_file_range(SYNC_FILE_RANGE_WRITE), which does not wait for the disk):
# the disk then works while the caller computes, and the fsync of a flush
# finds little left to write.  Durability is unchanged: only flush() promises
# anything beyond a process crash.
WRITEBACK = 4 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _libc_fn(name: str, *argtypes: Any) -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fn = getattr(libc, name)
    except (OSError, AttributeError, TypeError):
        return None  # not Linux: appends allocate as they go, and flush() writes everything out
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return fn


_fallocate = _libc_fn("fallocate", ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_sync_file_range = _libc_fn("sync_file_range", ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)


def list_segments(seg_dir: Path) -> list[Path]:
    """Every segment file, oldest first (temporary files, dot-prefixed, are left out)."""
    try:
        names = [n for n in os.listdir(seg_dir) if n.endswith(SUFFIX) and not n.startswith(".")]
    except FileNotFoundError:
        return []
    return [seg_dir / n for n in sorted(names)]


@contextlib.contextmanager
def hold(path: Path, *, exclusive: bool = False) -> Iterator[int | None]:
    """Yield an fd holding a shared (or exclusive) flock on a *dead* segment, or None if it is live or gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def is_live(path: Path) -> bool:
    """Whether a process may still append to this segment (its writer holds the lock)."""
    if not path.exists():
        return False
    with hold(path) as fd:
        return fd is None


class SegmentWriter:
    """This process's open segment: appends frames, fsyncs, knows its size."""

    def __init__(self, path: Path, fd: int, offset: int) -> None:
        self.path = path
        self.name = path.name
        self.fd = fd
        self.offset = offset
        self.opened = time.monotonic()
        self.schemas: set[int] = set()  # table IDs whose schema frame this segment holds
        self.dicts: dict[tuple[int, str], set[int]] = {}  # category codes whose strings it holds
        self.synced_dir = False
        self.reserved = offset
        self.written_back = offset  # where the last writeback request ended

    @classmethod
    def create(cls, seg_dir: Path, header: dict[str, Any]) -> SegmentWriter:
        seg_dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns() // 1000:016d}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        tmp = seg_dir / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            meta = {"format": FORMAT, "pid": os.getpid(), "host": os.uname().nodename, "created": time.time(), **header}
            n = write_frame(fd, KIND_HEADER, time.time(), meta, [])
            os.rename(tmp, seg_dir / name)
        except OSError as e:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StorageError(f"creating log segment {name} failed: {e}", hint="check free space and permissions", cause=e) from e
        return cls(seg_dir / name, fd, n)

    def append(self, kind: int, ts: float, meta: dict[str, Any], buffers: list[Any]) -> int:
        """Write one frame; returns the new end offset.  On error the file is cut back to where it was."""
        start = self.offset
        if start >= self.reserved - (1 << 20) and _fallocate is not None:
            # Failure (no space, unsupported filesystem) is not an error here: the write reports it if it matters.
            if _fallocate(self.fd, _FALLOC_FL_KEEP_SIZE, self.reserved, PREALLOCATE) == 0:
                self.reserved += PREALLOCATE
            else:
                self.reserved = start + PREALLOCATE  # retry later, not on every call
        try:
            self.offset += write_frame(self.fd, kind, ts, meta, buffers)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, start)
            raise StorageError(
                f"writing to log segment {self.name} failed: {e}; nothing of this call was logged",
                hint="check free space on the store's disk",
                cause=e,
            ) from e
        if self.offset - self.written_back >= WRITEBACK and _sync_file_range is not None:
            # Failure only means flush() has more to write; it is not an error.
            _sync_file_range(self.fd, self.written_back, self.offset - self.written_back, _SYNC_FILE_RANGE_WRITE)
            self.written_back = self.offset
        return self.offset

    def fsync(self) -> None:
        os.fsync(self.fd)
        if not self.synced_dir:
            # The new file's directory entry must be durable too, once.
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            self.synced_dir = True

    def close(self) -> None:
        if self.fd >= 0:
            if self.reserved > self.offset:
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, self.offset)  # give back the reservation past the end
            os.close(self.fd)  # releases the flock: the segment is now dead (finished)
            self.fd = -1


def read_context(path: Path, upto: int) -> SegmentContext:
    """The table schemas and category dictionaries a segment declares before offset ``upto``."""
    ctx = SegmentContext()
    for frame in iter_frames(path, stop=upto, load=lambda kind, ts, off: kind in _DECLARATIONS):
        if frame.kind in _DECLARATIONS:
            declare(ctx, frame)
    return ctx


def scan_frames(
    path: Path, start: int, result: ScanResult, load: Callable[[int, float, int], bool] | None = None, stop: int | None = None
) -> Iterator[tuple[Frame, SegmentContext]]:
    """Frames from ``start`` on, with what the segment declared so far (including before ``start``)."""
    ctx = read_context(path, start) if start else SegmentContext()

    def want(kind: int, ts: float, off: int) -> bool:
        return kind in _DECLARATIONS or load is None or load(kind, ts, off)

    for frame in iter_frames(path, start=start, stop=stop, load=want, result=result):
        if frame.kind in _DECLARATIONS:
            declare(ctx, frame)
        yield frame, ctx


def scan_delta(path: Path, start: int, *, bucket_seconds: int, stop: int | None = None) -> tuple[Delta, ScanResult]:
    """What the frames of a segment from offset ``start`` (to ``stop``) add to the index (the recovery path)."""
    delta = Delta(start, bucket_seconds=bucket_seconds)
    res = ScanResult()
    for frame, ctx in scan_frames(path, start, res, stop=stop):
        feed(delta, frame, ctx)
    delta.fold()
    delta.end = res.valid_end
    delta.info.size = res.size
    return delta, res


# What a repair asks for a call frame after damage, given what the copy has
# declared so far: the schema and dictionary frames (kind, ts, meta) to write
# before it, or None when it cannot be decoded any more (its table is gone).
Redeclare = Callable[[Frame, SegmentContext], "list[tuple[int, float, dict[str, Any]]] | None"]


def rewrite(
    path: Path, keep: Callable[[Frame], bool], *, step_over_damage: bool = False, redeclare: Redeclare | None = None
) -> tuple[Path, int, int, int]:
    """Copy the frames ``keep`` accepts (and every header, schema and dictionary frame) to a file beside ``path``.

    Frames are copied byte for byte and in order, so their checksums still
    hold.  The copy stops at the first frame that fails its checks, unless
    ``step_over_damage``: then it goes on from the next frame that passes them
    (found by its magic and verified by its checksum, so a false match is not
    taken); what follows the last good frame is a torn tail either way.  The
    damage may have taken schema or dictionary frames that later calls need:
    after it, ``redeclare`` writes them again before each call that lacks
    them, or drops the call (counted as dropped).
    Returns ``(temporary path, frames dropped, new size, damaged bytes
    stepped over)``; the caller renames it over the original once the index
    agrees.
    """
    tmp = path.parent / f".{path.name}.rewrite"
    dropped = skipped = 0
    ctx = SegmentContext()  # what the copy declares, for redeclare
    after_damage = False
    with open(tmp, "wb") as out, open(path, "rb") as src:
        pos: int | None = 0
        while pos is not None:
            res = ScanResult()
            for frame in iter_frames(path, start=pos, result=res):
                if frame.kind == KIND_HEADER or frame.kind in _DECLARATIONS or keep(frame):
                    if frame.kind in _DECLARATIONS:
                        declare(ctx, frame)
                    elif after_damage and redeclare is not None and frame.kind in STAGE_OF_KIND:
                        missing = redeclare(frame, ctx)
                        if missing is None:
                            dropped += 1
                            continue
                        for kind, ts, meta in missing:
                            head, *payload = (bytes(memoryview(p).cast("B")) for p in encode_frame(kind, ts, meta, []))
                            out.write(head + b"".join(payload))
                            declare(ctx, Frame(0, 0, kind, ts, b"".join(payload)))
                    src.seek(frame.offset)
                    out.write(src.read(frame.end - frame.offset))
                else:
                    dropped += 1
            damaged = step_over_damage and res.problem is not None
            pos = next_good_frame(path, res.valid_end + 1) if damaged else None
            if pos is not None:
                skipped += pos - res.valid_end
            after_damage = after_damage or pos is not None
        out.flush()
        os.fsync(out.fileno())
        size = out.tell()
    return tmp, dropped, size, skipped
