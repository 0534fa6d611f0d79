"""The wire protocol: length-prefixed msgpack frames with a numpy array extension.

A frame is a 4-byte big-endian body length, then a msgpack body.  Requests
are maps ``{"id", "op", "args"}``; responses ``{"id", "ok": true, "result"}``
or ``{"id", "ok": false, "error": {"type", "message", "hint"}}``.  Numpy
arrays travel as msgpack extension type 1 (:func:`encode_ndarray`) and are
decoded with one ``np.frombuffer``: no work per element.  docs/protocol.md is
the full specification, with a byte-level example.

Decoding is strict on purpose: only plain msgpack types and our extension
are accepted, map keys must be strings, and nothing is ever unpickled or
evaluated, so a hostile frame can at worst earn an error response.

Example::

    >>> body = packb({"id": 1, "op": "ping", "args": {}})
    >>> frame(body)[:4]
    b'\\x00\\x00\\x00\\x13'
    >>> unpackb(body)["op"]
    'ping'
"""

from __future__ import annotations

import builtins
import re
import struct
from typing import Any

import msgpack
import numpy as np

import vecstore
from vecstore import errors as _errors
from vecstore import remote as _remote
from vecstore.errors import IdCollisionError, VecstoreError
from vecstore.hashing import Utf8Ids
from vecstore.packing import ThreadPacker
from vecstore.remote import ProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "EXT_NDARRAY",
    "EXT_STR_IDS",
    "HEADER",
    "PROTOCOL_VERSION",
    "BadRequest",
    "decode_ndarray",
    "decode_str_ids",
    "encode_ndarray",
    "encode_str_ids",
    "error_from_payload",
    "error_payload",
    "frame",
    "new_packer",
    "packb",
    "unpackb",
]

# 2 added extension type 2 (a batch of str IDs); everything of version 1 is unchanged.
PROTOCOL_VERSION = 2
EXT_NDARRAY = 1
EXT_STR_IDS = 2
# Smaller str batches go as plain msgpack arrays: the extension pays only in bulk.
STR_IDS_MIN = 32
HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME_BYTES = 64 << 20

# dtype strings an array may carry: byte order, kind, item size.  Booleans,
# integers, floats and fixed-width bytes/unicode; never objects or records.
_DTYPE = re.compile(r"^[<>|=][biufSU][0-9]{1,3}$")
_MAX_NDIM = 32
# Item sizes per kind that mean the same in every language (docs/protocol.md);
# S and U take any width.
_ITEM_SIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8)}
_SHAPE = struct.Struct(">Q")


class BadRequest(ProtocolError):
    """A request the server cannot act on: not a map, unknown op, missing or mistyped argument."""


# -- numpy arrays ---------------------------------------------------------------


def _data_offset(dtype_len: int, ndim: int) -> int:
    # Zero padding puts the data at a multiple of 8 bytes into the payload, so
    # the array a receiver maps over it is aligned (usearch, for one, refuses
    # unaligned query vectors, and unaligned numpy arithmetic is slower).
    return (2 + dtype_len + 8 * ndim + 7) & ~7


def encode_ndarray(a: np.ndarray) -> msgpack.ExtType:
    """Extension type 1: ``u8 len, dtype str, u8 ndim, ndim x u64 BE shape, zero pad to 8, raw C-order bytes``."""
    dt = a.dtype
    if dt.kind not in "biufSU" or dt.fields is not None:
        raise TypeError(f"arrays of dtype {dt} cannot be sent (numbers, bool, bytes and str only)")
    if dt.itemsize not in _ITEM_SIZES.get(dt.kind, (dt.itemsize,)):
        raise TypeError(f"arrays of dtype {dt} cannot be sent (not a portable item size)")
    if a.ndim > _MAX_NDIM:
        raise TypeError(f"arrays of more than {_MAX_NDIM} dimensions cannot be sent")
    head = _HEADS.get((dt.str, a.shape))
    if head is None:
        code = dt.str.encode("ascii")
        head = bytes((len(code),)) + code + bytes((a.ndim,)) + b"".join(_SHAPE.pack(s) for s in a.shape)
        head += bytes(_data_offset(len(code), a.ndim) - len(head))
        if len(_HEADS) < 4096:  # a handful of (dtype, shape) pairs recur: batch sizes, vector widths
            _HEADS[(dt.str, a.shape)] = head
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return msgpack.ExtType(EXT_NDARRAY, b"".join((head, a.reshape(-1).view(np.uint8))))


_HEADS: dict[tuple[str, tuple[int, ...]], bytes] = {}


def decode_ndarray(data: bytes) -> np.ndarray:
    """Inverse of :func:`encode_ndarray`: a read-only view of ``data`` (no copy); ProtocolError if malformed.

    (An unaligned view, which only a foreign encoder's missing padding can
    cause, is copied.)
    """
    try:
        n = data[0]
        off = _data_offset(n, data[1 + n])
        known = _PARSED.get(data[:off])
        if known is None:
            known = _parse_head(data, n, off)
        dt, shape, count = known
        if count * dt.itemsize != len(data) - off:
            raise ValueError(f"shape {shape} of {dt.str} needs {count * dt.itemsize} bytes, got {len(data) - off}")
        if count == 0:
            return np.empty(shape, dtype=dt)
        out = np.frombuffer(data, dtype=dt, count=count, offset=off).reshape(shape)
        if dt.kind == "b" and np.frombuffer(data, dtype=np.uint8, count=count, offset=off).max() > 1:
            raise ValueError("a bool element is neither 0 nor 1")
        return out if out.flags.aligned else out.copy()
    except (IndexError, struct.error):
        raise ProtocolError("malformed ndarray extension: the payload is shorter than its header says") from None
    except (ValueError, TypeError, OverflowError, MemoryError, UnicodeDecodeError) as e:
        raise ProtocolError(f"malformed ndarray extension: {e}"[:300]) from None


def _parse_head(data: bytes, n: int, off: int) -> tuple[np.dtype, tuple[int, ...], int]:
    dts = data[1 : 1 + n].decode("ascii")
    if not _DTYPE.match(dts):
        raise ValueError(f"dtype {dts!r} is not allowed")
    dt = np.dtype(dts)
    if dt.itemsize not in _ITEM_SIZES.get(dt.kind, (dt.itemsize,)):
        # e.g. "<f16" would decode as the platform's long double, not IEEE binary128.
        raise ValueError(f"dtype {dts!r} is not allowed (kind {dt.kind!r} takes item sizes {_ITEM_SIZES[dt.kind]})")
    ndim = data[1 + n]
    if ndim > _MAX_NDIM:
        raise ValueError(f"{ndim} dimensions")
    shape = tuple(_SHAPE.unpack_from(data, 2 + n + 8 * i)[0] for i in range(ndim))
    if any(data[2 + n + 8 * ndim : off]):
        raise ValueError("nonzero padding: the data must start at a multiple of 8 bytes into the payload, after zero bytes")
    count = 1
    for s in shape:
        count *= s
    if dt.itemsize == 0:
        raise ValueError(f"dtype {dts!r} has no size")
    parsed = (dt, shape, count)
    if len(_PARSED) < 4096:  # headers recur (batch sizes, vector widths); bounded against hostile variety
        _PARSED[bytes(data[:off])] = parsed
    return parsed


_PARSED: dict[bytes, tuple[np.dtype, tuple[int, ...], int]] = {}


# -- str ID batches -------------------------------------------------------------


def encode_str_ids(ids: list[Any] | tuple[Any, ...]) -> msgpack.ExtType | None:
    """Extension type 2 for a batch of at least ``STR_IDS_MIN`` str IDs: their UTF-8 bytes joined by NUL.

    None when the batch does not qualify (a non-str, an ID that contains NUL
    or does not encode, too few IDs): send it as a msgpack array instead.
    One C-level join and encode cost a fraction of packing a thousand strs
    one by one, and the server splits the payload just as cheaply.
    """
    if len(ids) < STR_IDS_MIN:
        return None
    try:
        data = "\0".join(ids).encode("utf-8")
    except (TypeError, UnicodeEncodeError):
        return None
    if data.count(0) != len(ids) - 1:  # an ID with a NUL inside would split in two
        return None
    return msgpack.ExtType(EXT_STR_IDS, data)


def decode_str_ids(data: bytes) -> Utf8Ids:
    """Inverse of :func:`encode_str_ids`: the IDs as a list of str (with their UTF-8 bytes kept for hashing)."""
    try:
        return Utf8Ids.from_joined(bytes(data))
    except UnicodeDecodeError as e:
        raise ProtocolError(f"malformed str IDs extension: not UTF-8 ({e.reason} at byte {e.start})") from None


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_NDARRAY:
        return decode_ndarray(data)
    if code == EXT_STR_IDS:
        return decode_str_ids(data)
    raise ProtocolError(f"unknown msgpack extension type {code}")


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return encode_ndarray(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot send a value of type {type(obj).__name__}: {obj!r:.80}")


def new_packer() -> msgpack.Packer:
    """A Packer for our bodies (not thread-safe: one per connection or thread)."""
    return msgpack.Packer(default=_default, use_bin_type=True, datetime=False, autoreset=True)


_packer = ThreadPacker(new_packer)


def packb(obj: Any) -> bytes:
    """One msgpack body (arrays as extension 1), with this thread's Packer."""
    return _packer.pack(obj)


def unpackb(body: Any) -> Any:
    """Decode one body strictly; ProtocolError for anything that is not valid msgpack of our types."""
    try:
        return msgpack.unpackb(body, raw=False, ext_hook=_ext_hook, strict_map_key=True, use_list=True)
    except ProtocolError:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, msgpack.UnpackException, RecursionError) as e:
        # ExtraData, FormatError, StackError and out-of-data are ValueError subclasses.
        raise ProtocolError(f"malformed msgpack body: {_unpack_problem(e)}"[:300]) from None


def _unpack_problem(e: BaseException) -> str:
    """What msgpack's terse exception means, in words a client author can act on."""
    text = str(e)
    if isinstance(e, msgpack.FormatError):
        return "a byte that starts no msgpack value (0xc1, or a reserved type)"
    if isinstance(e, msgpack.ExtraData):
        return "bytes left over after the first value: a frame holds exactly one msgpack value"
    if "incomplete input" in text or "exceeds max_" in text:
        return "truncated: the body ends before the values it announces (check the frame length)"
    if isinstance(e, (RecursionError, msgpack.StackError)):
        return "nested too deeply"
    return f"{type(e).__name__}: {text}"


def frame(body: bytes) -> bytes:
    """``body`` with its 4-byte big-endian length in front."""
    return HEADER.pack(len(body)) + body


# -- errors ---------------------------------------------------------------------

# Built-in exceptions a library call raises for misuse (e.g. a wrong argument
# type), recreated as themselves on the client so remote and local match.
_BUILTIN_ERRORS = ("TypeError", "ValueError", "KeyError", "IndexError", "LookupError", "OverflowError")


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The ``error`` map of a failed response.

    ``type`` is the exception's class name; ``bases`` lists its VecstoreError
    ancestors, most specific first, so an older client that lacks a new class
    still raises the nearest one it knows.
    """
    if isinstance(exc, VecstoreError):
        bases = [c.__name__ for c in type(exc).__mro__[1:] if isinstance(c, type) and issubclass(c, VecstoreError)]
        out: dict[str, Any] = {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint, "bases": bases}
        if isinstance(exc, IdCollisionError):
            out["details"] = {
                "key": exc.key, "existing_id": exc.existing_id, "new_id": exc.new_id, "table": exc.table,
            }
        return out
    name = type(exc).__name__
    if name in _BUILTIN_ERRORS and type(exc) is getattr(builtins, name):
        return {"type": name, "message": str(exc.args[0]) if exc.args else "", "hint": None, "bases": []}
    hint = "this is a server bug: please report it"
    return {"type": "InternalError", "message": f"{name}: {exc}"[:2000], "hint": hint, "bases": []}


def _error_class(name: Any) -> type[Exception] | None:
    if not isinstance(name, str):
        return None
    for space in (_errors, _remote, vecstore):
        cls = getattr(space, name, None)
        if isinstance(cls, type) and issubclass(cls, VecstoreError):
            return cls
    return None


def error_from_payload(err: Any) -> Exception:
    """The exception a client raises for a response's ``error`` map (unknown types: RemoteError)."""
    if not isinstance(err, dict):
        return ProtocolError(f"malformed error response: {err!r:.200}")
    name, message, hint = err.get("type"), str(err.get("message", "")), err.get("hint")
    hint = hint if isinstance(hint, str) else None
    if name in _BUILTIN_ERRORS:
        return getattr(builtins, name)(message)
    if name == "IdCollisionError" and isinstance(err.get("details"), dict):
        d = err["details"]
        try:
            return IdCollisionError(int(d["key"]), d["existing_id"], d["new_id"], table=str(d["table"]))
        except (KeyError, TypeError, ValueError):
            pass
    for candidate in [name, *(err.get("bases") or [])]:
        cls = _error_class(candidate)
        if cls is IdCollisionError:
            continue  # needs its details; fall through to a base
        if cls is not None:
            return cls(message, hint=hint)
    return _remote.RemoteError(f"server error {name}: {message}", hint=hint)
