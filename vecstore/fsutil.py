"""Durable file operations: fsync a file, or the directory a rename happened in.

A rename is durable only once its directory is fsynced, and a file's bytes
only once the file is; every snapshot, compaction and backup goes through these.

Example::

    os.replace(tmp, path)
    fsync_dir(path.parent)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_replace", "fsync_dir", "fsync_path"]


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync one file (or directory) by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        # Some filesystems refuse fsync on a directory; the rename stands anyway.
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def atomic_replace(write: Callable[[Path], Any], path: Path, *, final: Callable[[Path], Path] | None = None) -> Path:
    """Write a file through ``write(tmp_path)`` then fsync and rename it over ``path``.

    A crash leaves either the old file or the new one, never a torn one.  The
    temporary name (``.NAME.<random>.<pid>.tmp``, in the same directory) is
    unique per call, so two threads saving at once do not collide, and it
    carries the writer's pid so a later writer can remove a dead one's
    leftovers (``derived.remove_orphan_temps``).  ``final(tmp)``, when given,
    names the file from what was written (e.g. its checksum) instead of
    ``path``.  Returns the path written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.{os.getpid()}.tmp")
    try:
        write(tmp)
        if final is not None:
            path = final(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path
