"""One reusable msgpack Packer per thread, for code that packs small maps very often.

``msgpack.packb`` builds a new Packer on every call; on the feature log's
serving path (one frame per logging call) and for every server response that
cost shows.  A Packer is not thread-safe, so each thread gets its own, made
by the factory on its first use.  A failed pack resets it, so a half-written
buffer never leaks into the next call.

Example::

    pack = ThreadPacker(lambda: msgpack.Packer(use_bin_type=True)).pack
    body = pack({"op": "ping"})
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgpack

__all__ = ["ThreadPacker"]


class ThreadPacker:
    """``pack(obj)`` with this thread's Packer from ``factory``."""

    def __init__(self, factory: Callable[[], msgpack.Packer]) -> None:
        self._factory = factory
        self._local = threading.local()

    def pack(self, obj: Any) -> bytes:
        p = getattr(self._local, "p", None)
        if p is None:
            p = self._local.p = self._factory()
        try:
            return p.pack(obj)
        except BaseException:
            p.reset()
            raise
