"""Columns of a logged call: IDs, scores and features as raw bytes, and back.

A retrieval call logs 5,000 candidates; at 2,000 calls a second there is no
room for a Python object per candidate.  So every column is stored as the
bytes of one numpy array (or one joined string), and decoded for a whole
call at once:

* **IDs** (``ENC_*``): an int64 numpy array as int32 when every ID fits
  (``i4``) else int64 (``i8``); a list of str as their UTF-8 bytes joined with
  NUL (``z``: one C-level join, no per-ID work); str IDs that contain NUL as
  UTF-8 plus u32 end offsets (``s``); anything else (bytes, Python ints, a
  mix) as each ID's stored form, tag byte + payload (docs/format.md), plus
  u32 end offsets (``x``).
* **Scores**: float32 stay float32, every other real dtype becomes float64.
* **Features** are logged *as served*: the fixed-width record bytes
  ``table.get`` read from LMDB, cut down to the presence bitmap and the
  requested features (:class:`Layout`), so f16 scalars and quantized vectors
  keep their stored width and decode exactly as ``get`` decoded them.
  Categories are logged as their u32 codes, and each code's string once per
  segment (a dictionary frame), ID lists as msgpack, so an export does not
  depend on the table still existing.

Example::

    code, bufs, n = encode_ids(["item-1", "item-2"])
    decode_ids_text(code, bufs, n)        # pyarrow string array ["item-1", "item-2"]
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..codecs import decode_vectors, f16_to_f32
from ..errors import CorruptionError, InvalidIdError, InvalidValueError
from ..features import Category, IdList, Scalar, Vector
from ..hashing import decode_id, encode_id
from ..schema import PRESENT, TableSchema

__all__ = [
    "Layout",
    "SegmentContext",
    "decode_ids_text",
    "decode_scores",
    "encode_ids",
    "encode_scores",
    "id_text",
    "layout_for",
]

ENC_I4, ENC_I8, ENC_NUL, ENC_STR, ENC_TAGGED = "i4", "i8", "z", "s", "x"
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def id_text(x: Any) -> str:
    """How an ID appears in exported columns: str as is, int in decimal, bytes as UTF-8.

    Bytes that are not valid UTF-8 keep their odd bytes as ``\\xNN`` escapes.
    """
    if isinstance(x, str):
        return x
    if isinstance(x, bytes):
        return x.decode("utf-8", "backslashreplace")
    return str(int(x))


def _offsets(parts: list[bytes]) -> np.ndarray:
    return np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))).astype("<u4")


def encode_ids(ids: Any) -> tuple[str, list[Any], int]:
    """``(code, buffers, n)`` for a batch of IDs; InvalidIdError for anything that is not an ID batch."""
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise InvalidIdError(f"an ID array must be 1-D, got shape {ids.shape}")
        if ids.dtype.kind in "iu":
            n = len(ids)
            if n == 0:
                return ENC_I4, [b""], 0
            if n <= 32:  # a ranked list: Python's min/max beat numpy's call overhead
                small = ids.tolist()
                lo, hi = min(small), max(small)
            else:
                lo, hi = int(ids.min()), int(ids.max())
            if hi > _I64_MAX:
                raise InvalidIdError(f"integer ID {hi} is outside the signed 64-bit range", hint="use a str ID")
            if _I32_MIN <= lo and hi <= _I32_MAX:
                return ENC_I4, [np.ascontiguousarray(ids, dtype="<i4")], n
            return ENC_I8, [np.ascontiguousarray(ids, dtype="<i8")], n
        if ids.dtype.kind == "S":
            raise InvalidIdError(
                "numpy bytes arrays (dtype S) drop trailing NUL bytes, so their IDs would change",
                hint="pass a list of bytes or an object array",
            )
        if ids.dtype.kind not in "UO":
            raise InvalidIdError(f"unsupported ID array dtype {ids.dtype}", hint="use an integer, str or object array")
        ids = ids.tolist()
    elif isinstance(ids, (str, bytes, int)) or not isinstance(ids, (list, tuple)):
        raise InvalidIdError(
            f"expected a batch of IDs (a list or a numpy array), got {type(ids).__name__}",
            hint="wrap a single ID in a list",
        )
    n = len(ids)
    if n == 0:
        return ENC_NUL, [b""], 0
    try:
        joined = "\x00".join(ids)
    except TypeError:
        joined = None
    if joined is not None:
        try:
            blob = joined.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidIdError(f"ID is not valid Unicode: {e}", hint="IDs must encode as UTF-8") from None
        # NUL separators only, no NUL inside an ID?  (numpy counts ~6x faster than bytes.count)
        if np.count_nonzero(np.frombuffer(blob, dtype=np.uint8) == 0) == n - 1:
            return ENC_NUL, [blob], n
        parts = [s.encode("utf-8") for s in ids]
        return ENC_STR, [b"".join(parts), _offsets(parts)], n
    enc = []
    for x in ids:
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (str, bytes, int, np.integer)):
            raise InvalidIdError(
                f"unsupported ID type {type(x).__name__}: {x!r}", hint="IDs are str, bytes or int (or a numpy integer array)"
            )
        if isinstance(x, (int, np.integer)) and not _I64_MIN <= int(x) <= _I64_MAX:
            raise InvalidIdError(f"integer ID {int(x)} is outside the signed 64-bit range", hint="use a str ID")
        try:
            enc.append(encode_id(x))
        except UnicodeEncodeError as e:
            raise InvalidIdError(f"ID is not valid Unicode: {e}", hint="IDs must encode as UTF-8") from None
    return ENC_TAGGED, [b"".join(enc), _offsets(enc)], n


def _string_array(data: bytes, ends: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(ends) + 1, dtype=np.int32)
    offsets[1:] = ends
    return pa.StringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(data))


def decode_ids_text(code: str, bufs: list[Any], n: int) -> pa.Array:
    """The IDs of an encoded batch as a pyarrow string array (see :func:`id_text`)."""
    if code in (ENC_I4, ENC_I8):
        return pc.cast(pa.array(np.frombuffer(bufs[0], dtype="<" + code)), pa.string())
    if n == 0:
        return pa.array([], type=pa.string())
    if code == ENC_NUL:
        blob = bytes(bufs[0])
        if n == 1:
            return _string_array(blob, np.array([len(blob)]))
        nul = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 0)
        ends = np.empty(n, dtype=np.int64)
        ends[:-1] = nul - np.arange(n - 1)
        ends[-1] = len(blob) - (n - 1)
        return _string_array(blob.replace(b"\x00", b""), ends)
    data, ends = bytes(bufs[0]), np.frombuffer(bufs[1], dtype="<u4")
    if code == ENC_STR:
        return _string_array(data, ends)
    starts = np.concatenate([[0], ends[:-1]]).tolist()
    return pa.array([id_text(decode_id(data[s:e])) for s, e in zip(starts, ends.tolist())], type=pa.string())


def decode_ids(code: str, bufs: list[Any], n: int) -> list[Any]:
    """The original IDs of an encoded batch, as Python objects (tests and tools)."""
    if code in (ENC_I4, ENC_I8):
        return np.frombuffer(bufs[0], dtype="<" + code).tolist()
    if code in (ENC_NUL, ENC_STR):
        return decode_ids_text(code, bufs, n).to_pylist()
    data, ends = bytes(bufs[0]), np.frombuffer(bufs[1], dtype="<u4").tolist()
    starts = [0, *ends[:-1]]
    return [decode_id(data[s:e]) for s, e in zip(starts, ends)]


def take_ids(ids: Any, idx: np.ndarray) -> Any:
    """The IDs at positions ``idx`` of a batch as given (numpy array or list)."""
    if isinstance(ids, np.ndarray):
        return ids[idx]
    return [ids[i] for i in idx.tolist()]


def encode_scores(scores: Any, n: int, what: str = "scores") -> tuple[str, np.ndarray]:
    """``("f4"|"f8", array)``: one real score per ID; InvalidValueError otherwise."""
    arr = scores if isinstance(scores, np.ndarray) else np.asarray(scores)
    if arr.ndim != 1:
        raise InvalidValueError(f"{what} must be a 1-D array of numbers, got shape {arr.shape}")
    if len(arr) != n:
        raise InvalidValueError(
            f"{what} has {len(arr)} values but there are {n} IDs", hint=f"pass one value of {what} per ID, in the same order"
        )
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        raise InvalidValueError(f"{what} must be real numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and len(arr) and not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InvalidValueError(
            f"{what} must be finite; position {bad} holds {arr[bad]}", hint="a NaN or infinite value is a bug upstream: fix it or drop the item"
        )
    if arr.dtype == np.float32:
        return "f4", np.ascontiguousarray(arr, dtype="<f4")
    return "f8", np.ascontiguousarray(arr, dtype="<f8")


def decode_scores(code: str, buf: Any) -> np.ndarray:
    return np.frombuffer(buf, dtype="<" + code).astype(np.float64)


class Layout:
    """Which bytes of a table's fixed-width record a call logs, and how to decode them.

    The logged record keeps the whole presence bitmap (its bits are numbered
    over all fixed features) and, packed after it, the record fields of the
    requested scalar, vector and category features (categories as their u32
    dictionary codes; a segment holds each code's string once, in a dictionary
    frame).  When that is every field, records are logged whole, uncopied.
    """

    def __init__(self, schema: TableSchema, features: tuple[str, ...]) -> None:
        self.schema = schema
        self.features = features
        specs = schema.features
        self.categories = [f for f in features if isinstance(specs[f], Category)]
        self.idlists = [f for f in features if isinstance(specs[f], IdList)]
        self.fixed = [f for f in features if isinstance(specs[f], (Scalar, Vector))]
        # Numeric summaries (stats, drift): scalars by value, vectors by their L2 norm.
        self.numeric = list(self.fixed)
        rd = schema.record_dtype
        names = [PRESENT]
        for f in schema.fixed_features:  # schema order, so the layout does not depend on the caller's order
            if f in self.fixed or f in self.categories:
                names.append(f)
                if f + ".scale" in rd.names:
                    names.append(f + ".scale")
        self.dtype = np.dtype([(nm, rd.fields[nm][0]) for nm in names])
        cols = [np.arange(rd.fields[nm][1], rd.fields[nm][1] + rd.fields[nm][0].itemsize) for nm in names]
        idx = np.concatenate(cols)
        self.cols: np.ndarray | None = None if len(idx) == rd.itemsize and (idx == np.arange(rd.itemsize)).all() else idx
        self._bits = {f: schema.presence_bit[f] for f in self.fixed + self.categories}

    def cut(self, records: np.ndarray) -> np.ndarray:
        """The logged bytes of a batch of full records, as a ``(k, width)`` uint8 matrix."""
        mat = records.view(np.uint8).reshape(len(records), self.schema.record_size)
        return mat if self.cols is None else np.ascontiguousarray(mat[:, self.cols])

    def records(self, buf: Any, k: int) -> np.ndarray:
        """Logged bytes back to a structured array of this layout (read-only view)."""
        return np.frombuffer(buf, dtype=self.dtype, count=k)

    def present(self, rec: np.ndarray, name: str) -> np.ndarray:
        bit = self._bits[name]
        return (rec[PRESENT][:, bit >> 3] >> (bit & 7) & 1).astype(bool)

    def values(self, rec: np.ndarray, name: str) -> np.ndarray:
        """One fixed feature as ``get`` returns it: f16 widened, vectors dequantized to float32."""
        spec = self.schema.features[name]
        col = rec[name]
        if isinstance(spec, Vector):
            scale = rec[name + ".scale"] if spec.dtype == "i8" else None
            return decode_vectors(spec, col, scale)
        if spec.dtype == "f16":
            return f16_to_f32(col)
        return col.astype(spec.value_dtype)

    def numbers(self, rec: np.ndarray, name: str) -> np.ndarray:
        """float64 numbers summarized for ``name``: the value of a scalar, the L2 norm of a vector."""
        v = self.values(rec, name)
        if v.ndim == 2:
            return np.sqrt(np.einsum("ij,ij->i", v, v, dtype=np.float64))
        return v.astype(np.float64)


_LAYOUTS: dict[tuple[int, tuple[str, ...]], tuple[TableSchema, Layout]] = {}


def layout_for(schema: TableSchema, features: tuple[str, ...]) -> Layout:
    """A cached :class:`Layout` (one per schema object and feature tuple)."""
    key = (id(schema), features)
    hit = _LAYOUTS.get(key)
    if hit is not None and hit[0] is schema:  # the schema held in the entry keeps its id from being reused
        return hit[1]
    lay = Layout(schema, features)
    if len(_LAYOUTS) > 4096:
        _LAYOUTS.clear()
    _LAYOUTS[key] = (schema, lay)
    return lay


class SegmentContext:
    """What a segment declared before a frame: table schemas and category dictionaries."""

    def __init__(self) -> None:
        self.schemas: dict[int, TableSchema] = {}
        self._dicts: dict[tuple[int, str], np.ndarray] = {}

    def add_dict(self, table_id: int, feature: str, codes: list[int], strings: list[str]) -> None:
        key = (table_id, feature)
        have = self._dicts.get(key, np.array([None], dtype=object))
        top = max(codes) if codes else 0
        if top >= len(have):
            grown = np.empty(top + 1, dtype=object)
            grown[: len(have)] = have
            have = grown
        have[np.asarray(codes, dtype=np.int64)] = strings
        self._dicts[key] = have

    def knows(self, table_id: int, feature: str, code: int) -> bool:
        """Whether a dictionary frame so far declared the string of ``code``."""
        values = self._dicts.get((table_id, feature))
        return values is not None and code < len(values) and values[code] is not None

    def strings(self, table_id: int, feature: str, codes: np.ndarray) -> list[Any]:
        """The strings of category codes (None for 0, the missing value)."""
        values = self._dicts.get((table_id, feature), np.array([None], dtype=object))
        codes = np.asarray(codes, dtype=np.int64)
        if len(codes) and int(codes.max()) >= len(values):
            raise CorruptionError(f"category code {int(codes.max())} of {feature!r} has no dictionary entry in its segment")
        return values[codes].tolist()


def pack_objects(values: Any) -> bytes:
    """Categories or ID lists of some rows as one msgpack array."""
    return msgpack.packb(values.tolist() if isinstance(values, np.ndarray) else list(values), use_bin_type=True)


def unpack_objects(buf: Any) -> list[Any]:
    return msgpack.unpackb(bytes(buf), raw=False)
