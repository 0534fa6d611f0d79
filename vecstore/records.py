"""Row records in and out of LMDB values, for whole batches at once.

A table row is stored as one LMDB value: the fixed-width record (see
``schema.py``) followed by the row's original ID (a tag byte and the payload
that was hashed; docs/format.md).  These helpers turn numpy record arrays and
ID batches into such values and back without a Python operation per field,
which is what keeps ``put`` and ``get`` close to raw LMDB speed.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import CorruptionError, InvalidValueError
from .features import IdList, Scalar, Vector
from .rows import idlist_values
from .schema import TableSchema

__all__ = ["assemble_values", "check_idlist", "from_arrow", "key_bytes", "sort_keep_last", "unpack_records"]

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_SMALL_BATCH = 32


def key_bytes(keys: np.ndarray) -> list[bytes]:
    # Big-endian so LMDB's byte order is numeric key order; a void view's
    # tolist() yields bytes objects without numpy's trailing-NUL stripping.
    return keys.astype(">u8").view("V8").tolist()


def sort_keep_last(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the last occurrence of each distinct key, in ascending key order, and those keys.

    (A stable argsort keeps equal keys in input order; np.unique is several
    times slower on large u64 arrays.)
    """
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    last = np.ones(len(sk), dtype=bool)
    last[:-1] = sk[1:] != sk[:-1]
    return order[last], sk[last]


def _short_record(W: int) -> CorruptionError:
    return CorruptionError(
        f"a stored row is shorter than the table's {W}-byte record",
        hint="the store is damaged: run `vecstore verify` and restore from a backup",
    )


def unpack_records(vals: list[bytes | None], order: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Decode stored values (record + ID suffix, in sorted-key order) into input-order records.

    The values are joined whole into one buffer (one C-level pass, no slice
    object per row).  When every value has the same length that buffer is a
    byte matrix whose rows are scattered to input order; otherwise a stride-1
    view of it as ``W``-byte items lets one numpy gather pick every record.
    A stored value shorter than the record raises :class:`CorruptionError`.
    """
    n = len(vals)
    W = dtype.itemsize
    if n <= _SMALL_BATCH:
        # A few rows (a ranking stage's reads): plain Python beats the dozen
        # numpy calls below, whose fixed cost dominates at this size.
        rows: list[bytes | None] = [None] * n
        for j, i in enumerate(order.tolist()):
            rows[i] = vals[j]
        zero = bytes(W)
        if any(v is not None and len(v) < W for v in rows):
            raise _short_record(W)
        body = bytearray(b"".join(zero if v is None else v[:W] for v in rows))
        found = np.fromiter((v is not None for v in rows), dtype=bool, count=n)
        return found, np.frombuffer(body, dtype=dtype)
    missing = vals.count(None)
    stored = vals if not missing else [v for v in vals if v is not None]
    m = len(stored)
    if not m:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=dtype)
    lengths = None
    if m <= 256:  # a set of a few lengths is cheaper than three numpy calls
        sizes = set(map(len, stored))
        shortest, one_length = min(sizes), len(sizes) == 1
    else:
        lengths = np.fromiter(map(len, stored), dtype=np.int64, count=m)
        shortest = int(lengths.min())
        one_length = shortest == lengths.max()
    if shortest < W:
        # The gathers below would read into the next row: refuse instead.
        raise _short_record(W)
    blob = np.frombuffer(b"".join(stored), dtype=np.uint8)
    # Stored value j (in sorted-key order) belongs at input position dest[j].
    dest = order if not missing else order[np.fromiter(map(bool, vals), dtype=bool, count=n)]
    if one_length:
        # Every stored ID has the same length (int IDs, or str IDs of one
        # length): the values are the rows of one byte matrix, scattered to
        # input order with a memcpy per row (the generic void-item gather
        # below is several times slower).
        recs = blob.reshape(m, len(blob) // m)[:, :W]
        out = np.zeros((n, W), dtype=np.uint8) if missing else np.empty((n, W), dtype=np.uint8)
        out[dest] = recs
        out = out.view(f"V{W}").ravel()
    else:
        if lengths is None:
            lengths = np.fromiter(map(len, stored), dtype=np.int64, count=m)
        starts = np.zeros(m, dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        # Element i of this view is the W bytes starting at byte i of the blob.
        windows = np.ndarray(shape=(len(blob) - W + 1,), dtype=f"V{W}", buffer=blob, strides=(1,))
        out = np.zeros(n, dtype=f"V{W}") if missing else np.empty(n, dtype=f"V{W}")
        out[dest] = windows[starts]
    if missing:
        found = np.zeros(n, dtype=bool)
        found[dest] = True
    else:
        found = np.ones(n, dtype=bool)
    return found, out.view(dtype)


def assemble_values(
    rec: np.ndarray, sel: np.ndarray, id_parts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
) -> list[bytes]:
    """LMDB values ``record + tag + ID payload`` for rows ``sel`` of a batch, in ``sel`` order.

    Rows whose IDs have the same length form one byte matrix, turned into
    bytes objects by a single ``tolist()``: no per-row concatenation.
    """
    tags, payload, starts, lengths = id_parts
    m, W = rec.shape
    lens, st, tg = lengths[sel], starts[sel], tags[sel]
    groups: list[tuple[np.ndarray, list[bytes]]] = []
    distinct = np.unique(lens).tolist()
    for length in distinct:
        if len(distinct) > 1:
            rows = np.flatnonzero(lens == length)
            mat = np.empty((len(rows), W + 1 + length), dtype=np.uint8)
            mat[:, :W] = np.take(rec, rows, axis=0)
            mat[:, W] = tg[rows]
            first = st[rows]
        else:  # one ID length (the common case): no gather of the records at all
            rows = np.arange(m)
            mat = np.empty((m, W + 1 + length), dtype=np.uint8)
            mat[:, :W] = rec
            mat[:, W] = tg
            first = st
        if length:
            mat[:, W + 1 :] = payload[first[:, None] + np.arange(length)]
        groups.append((rows, mat.view(f"V{W + 1 + length}").ravel().tolist()))
    if len(groups) == 1:
        return groups[0][1]
    order = np.concatenate([g[0] for g in groups])
    flat = [v for _, vals in groups for v in vals]
    inverse = np.empty(m, dtype=np.intp)
    inverse[order] = np.arange(m)
    return list(itemgetter(*inverse.tolist())(flat))


def provided(field: str, pmask: np.ndarray, schema: TableSchema) -> bool:
    """Whether the feature owning record field ``field`` is among the put's features (``pmask``)."""
    bit = schema.presence_bit[field.split(".")[0]]
    return bool(pmask[bit >> 3] >> (bit & 7) & 1)


def check_idlist(name: str, spec: IdList, value: Any, row: int) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise InvalidValueError(f"feature {name!r} (IdList) needs a list of IDs at row {row}, got {value!r}")
    for x in value:
        if isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidValueError(f"feature {name!r} (IdList): row {row} holds an ID that is not valid Unicode") from None
        ok = isinstance(x, (str, bytes)) or (
            isinstance(x, int) and not isinstance(x, bool) and _INT64_MIN <= x <= _INT64_MAX
        )
        if not ok:
            raise InvalidValueError(
                f"feature {name!r} (IdList): row {row} holds {x!r}; list items must be str, bytes or 64-bit int IDs"
            )
    if spec.max_len is not None and len(value) > spec.max_len:
        raise InvalidValueError(f"feature {name!r}: row {row} has {len(value)} IDs, more than max_len={spec.max_len}")
    return list(value)


def from_arrow(columns: Any, schema: TableSchema) -> Any:
    """Columns given as pyarrow (a Table, RecordBatch, or a mapping holding arrays) as numpy/lists.

    What ``Rows.to_arrow()`` produces goes back in: an ``id`` column is
    ignored, vectors come as fixed-size lists, nulls become NaN in float
    scalars and None (clear) in categories and ID lists.  Nulls in integer or
    bool scalars and in vectors cannot be represented and raise.
    """
    if isinstance(columns, (pa.Table, pa.RecordBatch)):
        columns = {name: columns.column(name) for name in columns.column_names if name != "id"}
    elif not isinstance(columns, dict) or not any(isinstance(v, (pa.Array, pa.ChunkedArray)) for v in columns.values()):
        return columns
    out: dict[str, Any] = {}
    for name, col in columns.items():
        if not isinstance(col, (pa.Array, pa.ChunkedArray)):
            out[name] = col
            continue
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        spec = schema.features.get(name)
        if isinstance(spec, Vector):
            if col.null_count or not pa.types.is_fixed_size_list(col.type) and not pa.types.is_list(col.type):
                raise InvalidValueError(f"feature {name!r}: vectors need a list column without nulls, got {col.type}")
            flat = col.flatten().to_numpy(zero_copy_only=False)
            out[name] = flat.reshape(len(col), -1) if len(col) else flat.reshape(0, spec.dim)
        elif isinstance(spec, Scalar) and col.null_count:
            if spec.storage_dtype.kind != "f":
                raise InvalidValueError(f"feature {name!r} ({spec.dtype}) has {col.null_count} nulls; integers cannot be missing per row")
            out[name] = col.to_numpy(zero_copy_only=False).astype(np.float64)
        elif isinstance(spec, Scalar):
            out[name] = col.to_numpy(zero_copy_only=False)
        elif isinstance(spec, IdList):
            # (ID lists mixing ints and strings, from Rows.to_arrow or export_table, are un-mixed.)
            out[name] = idlist_values(col)
        else:  # Category, IdList, or unknown (reported by the caller)
            out[name] = col.to_pylist()
    return out
