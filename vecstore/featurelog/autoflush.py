"""A background thread that calls ``log.flush()`` every few seconds.

A service that logs on its request path should not pay for an fsync there:
an fsync waits for the disk (tens to hundreds of milliseconds for a second of
5,000-candidate requests), and while it waits the request waits too.  With
``FeatureLog(store, flush_seconds=1.0)`` (or ``store.log.flush_seconds = 1.0``)
this thread does the flushing instead, so no logging call waits for an fsync, and
an OS crash or power loss loses at most about ``flush_seconds`` of logging
plus the duration of one fsync.  A process crash still loses nothing that a
``log.*`` call returned from: every call is in the kernel before it returns.

The thread holds only a weak reference to its log, flushes only when
something was logged since the last flush, and stops when the log (or its
store) closes.  A flush that fails (a full disk, an I/O error) is kept and
raised by the next ``log.flush()``: after a failed fsync the kernel may have dropped the data,
so the caller must hear about it rather than see a later fsync succeed.

Example::

    log = vecstore.FeatureLog(store, flush_seconds=0.5)
    log.retrieval("req-1", ids, scores, table="items", sample=0.01)
    # ... at most ~0.5 s later the call is on disk, without a flush() here
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import InvalidValueError

if TYPE_CHECKING:
    from .log import FeatureLog

__all__ = ["AutoFlusher", "check_flush_seconds"]

_log = logging.getLogger("vecstore.featurelog")


# Shorter than this, an idle thread spins for nothing; longer than a day is
# no bound on what a crash loses (and overflows the timer at ~1e10 s).
MIN_SECONDS, MAX_SECONDS = 0.01, 86400.0


def check_flush_seconds(value: Any) -> float | None:
    """``value`` as a number of seconds in [0.01, 86400], or None (no background flush)."""
    if value is None:
        return None
    if (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        or not MIN_SECONDS <= value <= MAX_SECONDS
    ):
        raise InvalidValueError(
            f"flush_seconds must be a number of seconds from {MIN_SECONDS:g} to {MAX_SECONDS:g}, got {value!r}",
            hint="None turns background flushing off (vecstore serve: --log-flush-seconds 0)",
        )
    return float(value)


class AutoFlusher:
    """The daemon thread behind ``FeatureLog.flush_seconds``; one per log and process."""

    def __init__(self, log: FeatureLog, seconds: float) -> None:
        self.seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(weakref.ref(log),), name="vecstore-log-flush", daemon=True
        )
        self._thread.start()

    def _run(self, ref: weakref.ref[FeatureLog]) -> None:
        while not self._stop.wait(self.seconds):
            log = ref()
            if log is None or log._closed or log._closing or log._store.closed:
                return
            reported = log._flush_error is not None
            try:
                log._background_flush()
            except Exception as e:  # noqa: BLE001 - kept by the log for the next flush() to raise
                # Once per failure reported to the user: the thread retries every tick.
                (_log.debug if reported else _log.error)("background flush of the feature log at %s failed: %s", log.path, e)
            del log  # no strong reference while waiting: the log may be collected

    def stop(self) -> None:
        """Stop the thread; waits for a flush in progress to finish."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
