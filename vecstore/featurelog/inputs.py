"""Validation of what callers pass to the log, before anything is written.

Every check raises a :class:`~vecstore.errors.VecstoreError` subclass that
names the argument and what would be accepted, so a bad call logs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..errors import InvalidIdError, InvalidValueError
from ..schema import check_name

__all__ = [
    "check_context",
    "check_label",
    "check_request_id",
    "check_sample",
    "check_source",
    "check_ts",
    "check_user",
    "to_time",
]

MAX_REQUEST_ID_BYTES = 256
MAX_CONTEXT_KEYS = 64
_I64 = (-(1 << 63), (1 << 63) - 1)
_GOOD_KEYS: set[str] = set()  # context keys and label names (<= 64 chars) already validated: the same few come every call


def check_request_id(request_id: Any) -> str:
    """A request ID: a non-empty str (an int is turned into its decimal string)."""
    if isinstance(request_id, (int, np.integer)) and not isinstance(request_id, (bool, np.bool_)):
        request_id = str(int(request_id))
    if not isinstance(request_id, str) or not request_id:
        raise InvalidValueError(f"request_id must be a non-empty str (or an int), got {request_id!r}")
    try:
        size = len(request_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValueError("request_id is not valid Unicode") from None
    if size > MAX_REQUEST_ID_BYTES or "\x00" in request_id:
        raise InvalidValueError(
            f"request_id must be at most {MAX_REQUEST_ID_BYTES} UTF-8 bytes without NUL characters, got {size} bytes",
            hint="use a UUID or a short unique string",
        )
    return request_id


def check_user(user: Any, what: str = "user") -> Any:
    """A user (or item) ID: str, bytes or int in the signed 64-bit range; None passes."""
    if user is None or isinstance(user, (str, bytes)):
        if isinstance(user, str):
            try:
                user.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidIdError(f"{what} ID is not valid Unicode") from None
        return user
    if isinstance(user, (int, np.integer)) and not isinstance(user, (bool, np.bool_)):
        v = int(user)
        if _I64[0] <= v <= _I64[1]:
            return v
    raise InvalidIdError(f"{what} must be a str, bytes or int ID, got {user!r}")


def check_source(source: Any) -> str | None:
    if source is None or isinstance(source, str):
        return source
    raise InvalidValueError(f"source must be a str (e.g. 'ann') or None, got {source!r}")


def check_sample(sample: Any) -> tuple[str, float]:
    """``("rate", p)`` for a float in (0, 1], ``("count", k)`` for an int >= 0.

    The type decides: ``1`` samples one candidate, ``1.0`` samples all of them.
    """
    if isinstance(sample, (bool, np.bool_)):
        raise InvalidValueError(f"sample must be a rate in (0, 1] or a count >= 0, got {sample!r}")
    if isinstance(sample, (int, np.integer)):
        if sample < 0:
            raise InvalidValueError(f"sample count must be >= 0, got {int(sample)}", hint="a float in (0, 1] samples a fraction")
        return "count", int(sample)
    if isinstance(sample, (float, np.floating)):
        if not 0.0 < float(sample) <= 1.0:
            raise InvalidValueError(
                f"sample rate must be in (0, 1], got {float(sample)!r}", hint="an int samples a fixed count (0 for none)"
            )
        return "rate", float(sample)
    raise InvalidValueError(f"sample must be a float rate in (0, 1] or an int count >= 0, got {sample!r}")


def check_context(context: Any) -> dict[str, Any] | None:
    """Request context: a mapping of name -> str, int, float, bool or None (each becomes a ``ctx_<name>`` column)."""
    if context is None:
        return None
    if not isinstance(context, Mapping):
        raise InvalidValueError(f"context must be a mapping of name -> value, got {type(context).__name__}")
    if len(context) > MAX_CONTEXT_KEYS:
        raise InvalidValueError(f"context has {len(context)} keys; at most {MAX_CONTEXT_KEYS} are logged")
    out: dict[str, Any] = {}
    for k, v in context.items():
        if k not in _GOOD_KEYS:
            check_name(k, "context key")
            if len(_GOOD_KEYS) < 4096 and len(k) <= 64:
                _GOOD_KEYS.add(k)
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, int) and not isinstance(v, bool) and not _I64[0] <= v <= _I64[1]:
            raise InvalidValueError(f"context[{k!r}] = {v} is outside the signed 64-bit range")
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise InvalidValueError(f"context[{k!r}] must be a str, int, float, bool or None, got {type(v).__name__}")
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidValueError(f"context[{k!r}] is not valid Unicode") from None
        out[k] = v
    return out


def check_ts(ts: Any) -> float | None:
    """An explicit event time (seconds since the epoch, or a datetime), or None for now."""
    if ts is None:
        return None
    t = to_time(ts, "ts")
    assert t is not None
    return t


def to_time(t: Any, what: str) -> float | None:
    """A float of seconds since the epoch from a number or a datetime (naive datetimes are UTC)."""
    if t is None:
        return None
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        return t.timestamp()
    if isinstance(t, (int, float, np.integer, np.floating)) and not isinstance(t, (bool, np.bool_)):
        v = float(t)
        if math.isfinite(v):
            return v
    raise InvalidValueError(f"{what} must be seconds since the epoch (a finite number) or a datetime, got {t!r}")


def check_label(name: Any, value: Any) -> tuple[str, float]:
    """A label name (a feature-style name, at most 64 characters) and a finite real value."""
    if name not in _GOOD_KEYS:
        check_name(name, "label")
        if len(name) > 64:
            raise InvalidValueError(f"label name {name!r} is longer than 64 characters")
    if len(_GOOD_KEYS) < 4096:
        _GOOD_KEYS.add(name)
    if isinstance(value, (bool, np.bool_)):
        return name, float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if math.isfinite(v):
            return name, v
    raise InvalidValueError(f"label {name!r}: value must be a finite number (or a bool), got {value!r}")
