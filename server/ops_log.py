"""Feature-log ops: ``log.<method>`` calls ``store.log.<method>(*args, **kwargs)`` on the server.

Why a table of names rather than one op per method: every method of
:class:`vecstore.featurelog.FeatureLog` takes plain values and returns a
report dataclass, so one forwarding function serves them all; only where a
call runs and whether a read-only server refuses it differ.

Arguments travel as ``{"args": [...], "kwargs": {...}}``; times as seconds
since the epoch (clients convert datetimes); reports as plain maps
(:func:`plain`) that the Python client rebuilds into the same dataclasses.
``export`` writes its Parquet files on the server's filesystem, at the path
given, as the server's user.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vecstore.remote import UnsupportedOperationError

from .ops import OPS, Session, op
from .protocol import BadRequest

__all__ = ["LOG_METHODS", "plain"]

# method -> (where it runs, whether a read-only server refuses it, whether it may run on the loop)
LOG_METHODS: dict[str, tuple[str, bool, bool]] = {
    "retrieval": ("read", True, False),  # reads sampled rows' features, appends to this process's segment
    "ranking": ("read", True, False),
    "label": ("read", True, True),  # one small append
    "flush": ("write", True, False),
    "rebuild_index": ("write", True, False),
    "prune": ("write", True, False),
    "compact": ("write", True, False),
    "export": ("read", True, False),  # writes files (on the server's filesystem)
    "info": ("read", False, False),
    "verify": ("read", False, False),
    "stats": ("read", False, False),
    "drift": ("read", False, False),
}


def plain(v: Any) -> Any:
    """A report as msgpack-friendly values: dataclasses as maps, tuples as arrays, map keys as strings.

    A float key such as a quantile ``0.5`` becomes ``"0.5"``; a pyarrow
    schema its IPC serialization; another object with ``to_bytes()`` (the
    quantile sketch behind ``LogStats.quantile``) its bytes.  The client turns
    them back using the dataclass's type hints (server/wire.py ``from_dict``).
    """
    if v is None or isinstance(v, (bool, int, float, str, bytes, np.generic, np.ndarray)):
        return v
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {k if isinstance(k, str) else repr(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if type(v).__name__ == "Schema" and hasattr(v, "serialize"):  # pyarrow.Schema
        return v.serialize().to_pybytes()
    if callable(getattr(v, "to_bytes", None)):
        return v.to_bytes()
    return v


def _forward(method: str) -> Any:
    def run(s: Session, a: dict[str, Any]) -> Any:
        log = getattr(s.store, "log", None)
        fn = getattr(log, method, None) if log is not None else None
        if fn is None:
            raise UnsupportedOperationError(f"log.{method} is not available in this build of vecstore")
        args, kwargs = a.get("args") or [], a.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise BadRequest("log ops take 'args' (an array) and 'kwargs' (a map)")
        if "rng" in kwargs:
            # A numpy Generator cannot travel; the server's own stream draws the sample.
            raise BadRequest("argument 'rng' cannot be sent to a server", hint="leave rng out over the wire")
        return plain(fn(*args, **kwargs))

    return run


def _register() -> None:
    for method, (kind, mutates, inline) in LOG_METHODS.items():
        name = f"log.{method}"
        if name not in OPS:
            op(name, kind, inline=(lambda s, a: True) if inline else (lambda s, a: False), mutates=mutates)(
                _forward(method)
            )


_register()
