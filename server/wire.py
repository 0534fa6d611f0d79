"""Library values on the wire: Rows, reports, schemas, search results, IDs and filters.

Both sides of the protocol use this module, so what the server encodes and
what the clients rebuild cannot drift apart:

* **Rows** travel as the table's fixed-width records (one ``bin``, the same
  bytes LMDB holds, cut to the features asked for) plus ``found``, ``keys``,
  ID lists and the category strings the rows use.  The client rebuilds a real
  :class:`vecstore.Rows` over them, so decoding, defaults, ``raw=True``,
  ``present()`` and ``to_arrow()`` behave exactly as in-process.  Clients in
  other languages ask for ``layout="columns"`` instead: one decoded array per
  feature (docs/protocol.md).
* **Reports** (``TableInfo``, ``StoreInfo``...) travel as their ``to_dict()``
  and are rebuilt from their dataclass type hints.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from vecstore.features import Category
from vecstore.hashing import _bad_id
from vecstore.records import from_arrow
from vecstore.rows import Rows
from vecstore.schema import PRESENT, TableSchema

from .protocol import BadRequest, encode_str_ids

__all__ = [
    "SchemaChanged",
    "columns_for_wire",
    "from_dict",
    "ids_for_wire",
    "record_layout",
    "rows_from_payload",
    "rows_payload",
    "search_from_payload",
    "search_payload",
    "where_for_wire",
    "where_from_wire",
]


class SchemaChanged(Exception):
    """A response was encoded for another table ID than the client's cached schema (dropped and re-created)."""


# -- IDs ------------------------------------------------------------------------


def ids_for_wire(ids: Any, *, compact: bool = False) -> tuple[Any, Any]:
    """``(what to send, what Rows.ids holds)`` for IDs as a user passes them to a Table method.

    Mirrors ``vecstore.hashing.normalize_ids`` without hashing: a single ID
    stays a scalar (so results stay scalar), integer arrays go as one array,
    str/object arrays and other iterables become lists.  Everything is
    validated by the server, which raises exactly what a local table raises.
    With ``compact`` (a server of protocol 2 or later), a large all-str batch
    goes as one NUL-joined string (extension type 2).
    """
    sent, given = _ids_for_wire(ids)
    if compact and type(sent) is list:
        packed = encode_str_ids(sent)
        if packed is not None:
            return packed, given
    return sent, given


def _ids_for_wire(ids: Any) -> tuple[Any, Any]:
    if isinstance(ids, (str, bytes, int, np.integer)) and not isinstance(ids, (bool, np.bool_)):
        one = ids.item() if isinstance(ids, np.integer) else ids
        return one, [one]
    if isinstance(ids, np.ndarray):
        if ids.ndim == 1 and ids.dtype.kind in "iu":
            return ids, ids.astype(np.int64, copy=False)
        if ids.ndim == 1 and ids.dtype.kind in "UO":
            lst = ids.tolist()
            return lst, lst
        return ids, ids  # the server refuses it with the local error
    if isinstance(ids, list):
        return ids, ids
    if isinstance(ids, tuple):
        return list(ids), ids
    if isinstance(ids, (dict, set, frozenset)) or not isinstance(ids, Iterable) or isinstance(ids, bool):
        raise _bad_id(ids)
    lst = list(ids)
    return lst, lst


# -- put columns ----------------------------------------------------------------


def columns_for_wire(columns: Any, schema: TableSchema) -> Any:
    """A ``put`` columns mapping in a form msgpack carries: arrow input converted, object arrays as lists."""
    columns = from_arrow(columns, schema)
    if not isinstance(columns, Mapping):
        return columns  # the server raises the local error for a non-mapping
    out = {}
    for name, values in columns.items():
        if isinstance(values, np.ndarray) and values.dtype.kind in "OUSV":
            values = values.tolist()
        out[name] = values
    return out


# -- rows -----------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _layout(record_dtype: np.dtype, features: tuple[str, ...]) -> tuple[tuple[str, ...], np.dtype]:
    """The record fields that carry ``features`` and their packed dtype (the whole record when all are read).

    Fields: the presence bitmap, then each fixed feature's fields in record
    order (an ``i8`` vector has two: its codes and ``<name>.scale``).
    """
    wanted = set(features)
    fields = tuple(
        f for f in record_dtype.names
        if f == PRESENT or f in wanted or (f.endswith(".scale") and f[: -len(".scale")] in wanted)
    )
    if fields == record_dtype.names:
        return fields, record_dtype
    return fields, np.dtype([(f, record_dtype.fields[f][0]) for f in fields])


def record_layout(schema: TableSchema, features: list[str]) -> tuple[tuple[str, ...], np.dtype]:
    return _layout(schema.record_dtype, tuple(features))


def rows_payload(rows: Rows, *, table_id: int, layout: str, with_ids: bool = False) -> dict[str, Any]:
    """Encode a Rows (server side).  ``layout``: ``records`` (Python client) or ``columns`` (any language)."""
    schema: TableSchema = rows._schema
    out: dict[str, Any] = {
        "table_id": table_id,
        "n": len(rows),
        "features": list(rows.features),
        "raw": bool(rows._raw),
    }
    if with_ids:
        out["ids"] = rows.ids.tolist() if isinstance(rows.ids, np.ndarray) else list(rows.ids)
    if layout == "columns":
        out["found"], out["keys"] = rows.found, rows.keys
        cols: dict[str, Any] = {}
        for name in rows.features:
            value = rows.raw(name) if rows._raw else rows[name]
            if isinstance(value, tuple):
                value = list(value)
            elif value.dtype.kind == "O":
                value = value.tolist()
            cols[name] = value
        out["columns"] = cols
        out["present"] = {name: rows.present(name) for name in rows.features}
        return out
    if layout != "records":
        raise BadRequest(f"unknown layout {layout!r}: use 'columns' or 'records'")
    records = rows._records
    fields, dtype = record_layout(schema, rows.features)
    if dtype is not schema.record_dtype:
        sub = np.empty(len(records), dtype=dtype)
        for f in fields:
            sub[f] = records[f]
        records = sub
    records = np.ascontiguousarray(records)
    # Fixed dtypes in this layout, so plain bytes (cheaper than array extensions both ways).
    out["found"] = np.asarray(rows.found, dtype=np.bool_).tobytes()
    out["keys"] = np.asarray(rows.keys, dtype="<u8").tobytes()
    out["records"] = memoryview(records.view(np.uint8).reshape(-1)) if len(records) else b""
    out["var"] = {f: rows._var[f] for f in rows.features if f in rows._var}
    cats = {}
    for name in rows.features:
        if isinstance(schema.features[name], Category):
            codes = np.unique(np.where(rows.present(name), records[name], 0))
            cats[name] = {"codes": codes, "values": rows._categories(name, codes).tolist()}
    out["categories"] = cats
    return out


def rows_from_payload(p: dict[str, Any], schema: TableSchema, ids: Any) -> Rows:
    """Rebuild a real Rows from a ``records`` payload (client side); ``ids`` is what Rows.ids holds."""
    if p["table_id"] != schema.table_id:
        raise SchemaChanged(p["table_id"])
    features = p["features"]
    _, dtype = record_layout(schema, features)
    records = np.frombuffer(p["records"], dtype=dtype) if p["n"] else np.zeros(0, dtype=dtype)
    # Copies: arrays handed to users are writable, as in-process (the records stay read-only inside Rows).
    found = np.frombuffer(p["found"], dtype=np.bool_).copy()
    keys = np.frombuffer(p["keys"], dtype="<u8").astype(np.uint64)
    cats = p.get("categories") or {}
    decoded = {name: (c["codes"], np.array(c["values"], dtype=object)) for name, c in cats.items()}

    def categories(name: str, codes: np.ndarray) -> np.ndarray:
        known, values = decoded[name]
        out = np.empty(len(codes), dtype=object)
        if len(codes):
            out[:] = values[np.searchsorted(known, codes)]
        return out

    return Rows(
        schema, p["ids"] if ids is None else ids, keys, found, records, p.get("var", {}), features,
        raw=p["raw"], categories=categories,
    )


# -- reports --------------------------------------------------------------------


def _key(tp: Any, k: Any) -> Any:
    # Map keys travel as strings (a quantile 0.5 as "0.5"); the type hint says what they were.
    if tp is float and isinstance(k, str):
        return float(k)
    if tp is int and isinstance(k, str):
        return int(k)
    return k


def _convert(tp: Any, v: Any) -> Any:
    if v is None:
        return None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(v, dict):
        return from_dict(tp, v)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        return _convert(real[0], v) if len(real) == 1 else v
    if origin is list and isinstance(v, list):
        return [_convert(args[0] if args else Any, x) for x in v]
    if origin is tuple and isinstance(v, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], x) for x in v)
        return tuple(_convert(a, x) for a, x in zip(args, v)) if len(args) == len(v) else tuple(v)
    if origin is dict and isinstance(v, dict):
        kt, vt = args if len(args) == 2 else (Any, Any)
        return {_key(kt, k): _convert(vt, x) for k, x in v.items()}
    if tp is pa.Schema and isinstance(v, (bytes, bytearray)):
        return pa.ipc.read_schema(pa.py_buffer(v))
    if isinstance(tp, type) and tp not in (int, bytes) and isinstance(v, bytes) and hasattr(tp, "from_bytes"):
        return tp.from_bytes(v)  # an object the server sent as its to_bytes() (server/ops_log.py plain)
    return v


def from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Rebuild a report dataclass (``TableInfo``, ``LogStats``...) from its plain map, nested ones included.

    Keys the class does not know (a newer server) are ignored.
    """
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation names something only a type checker imports
        hints = {}
    kwargs = {f.name: _convert(hints.get(f.name, Any), d[f.name]) for f in dataclasses.fields(cls) if f.name in d}
    return cls(**kwargs)


def schema_payload(schema: TableSchema) -> dict[str, Any]:
    return schema.to_dict()


def schema_from_payload(d: Any) -> TableSchema:
    if not isinstance(d, dict):
        raise BadRequest("malformed schema")
    d = dict(d)
    d["features"] = [tuple(x) for x in d["features"]]
    return TableSchema.from_dict(d)


def features_for_wire(features: Mapping[str, Any]) -> Any:
    if not isinstance(features, Mapping):
        return features
    return [[n, s.to_dict() if hasattr(s, "to_dict") else s] for n, s in features.items()]


# -- search ---------------------------------------------------------------------


def search_payload(res: Any) -> dict[str, Any]:
    return {"ids": res.ids, "keys": res.keys, "distances": res.distances, "batched": bool(res.batched)}


def search_from_payload(p: dict[str, Any], cls: type) -> Any:
    if p["batched"]:
        keys, dists = [np.array(k) for k in p["keys"]], [np.array(d) for d in p["distances"]]
        return cls(list(p["ids"]), keys, dists, batched=True)
    return cls(list(p["ids"]), np.array(p["keys"]), np.array(p["distances"]))


def where_for_wire(where: Any) -> Any:
    """``where=`` in its explicit form, as msgpack turns tuples into lists: each condition ``[op, value...]``."""
    if not isinstance(where, Mapping):
        return where
    out = {}
    for name, cond in where.items():
        if isinstance(cond, (set, frozenset, list)):
            cond = ("in", list(cond))
        elif not isinstance(cond, tuple):
            cond = ("==", cond)
        out[name] = [list(c) if isinstance(c, (set, frozenset)) else c for c in cond]
    return out


def where_from_wire(where: Any) -> Any:
    if not isinstance(where, dict):
        return where
    return {name: tuple(c) if isinstance(c, list) else c for name, c in where.items()}

