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
from pathlib import Path

__all__ = ["fsync_dir", "fsync_path"]


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
