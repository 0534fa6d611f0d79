"""What each remote method sends and how its result is rebuilt, shared by both clients.

A remote method is ``Call(op, args, decode)``: the sync client
(server/client.py) sends it and returns ``decode(result)``; the asyncio
client (server/aclient.py) awaits the same.  Keeping the builders here means
the two clients cannot disagree on arguments or return types.

``read=True`` marks calls that may be sent again on a fresh connection when
the first one broke before the answer came (a server restart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from vecstore.info import BloomInfo, StoreInfo, TableInfo
from vecstore.rows import Rows
from vecstore.schema import TableSchema, check_name

from . import wire

__all__ = ["Call", "TableLike"]


def _same(x: Any) -> Any:
    return x


@dataclass(frozen=True)
class Call:
    op: str
    args: dict[str, Any]
    decode: Callable[[Any], Any] = _same
    read: bool = True


class TableLike(Protocol):
    name: str
    schema: TableSchema
    compact_ids: bool  # the server takes large str batches in the compact form (protocol >= 2)


def _features(features: Any) -> Any:
    # Mirrors Table._resolve_features: None, one name, or any iterable of names.
    if features is None or isinstance(features, str) or not isinstance(features, Iterable):
        return features
    return list(features)


def _bools(x: Any) -> Any:
    return np.array(x) if isinstance(x, np.ndarray) else x


# -- tables ---------------------------------------------------------------------


def _ref(t: TableLike) -> dict[str, Any]:
    # The table ID binds a call to the table the object was opened on (as a local Table is bound).
    return {"table": t.name, "table_id": t.schema.table_id}


def get(t: TableLike, ids: Any, features: Any, raw: bool) -> Call:
    wire_ids, given = wire.ids_for_wire(ids, compact=t.compact_ids)
    args = {**_ref(t), "ids": wire_ids, "features": _features(features), "raw": raw, "layout": "records"}
    # t.schema is read when the result arrives: after a schema refresh the same result decodes again.
    return Call("get", args, lambda r: wire.rows_from_payload(r, t.schema, given))


def put(t: TableLike, ids: Any, columns: Any) -> Call:
    wire_ids, _ = wire.ids_for_wire(ids, compact=t.compact_ids)
    args = {**_ref(t), "ids": wire_ids, "columns": wire.columns_for_wire(columns, t.schema)}
    return Call("put", args, read=False)


def delete(t: TableLike, ids: Any) -> Call:
    return Call("delete", {**_ref(t), "ids": wire.ids_for_wire(ids, compact=t.compact_ids)[0]}, read=False)


def contains(t: TableLike, ids: Any) -> Call:
    return Call("contains", {**_ref(t), "ids": wire.ids_for_wire(ids, compact=t.compact_ids)[0]}, _bools)


def may_contain(t: TableLike, ids: Any) -> Call:
    return Call("may_contain", {**_ref(t), "ids": wire.ids_for_wire(ids, compact=t.compact_ids)[0]}, _bools)


def length(t: TableLike) -> Call:
    return Call("len", _ref(t))


def info(t: TableLike) -> Call:
    return Call("info", _ref(t), lambda r: wire.from_dict(TableInfo, r))


def verify(t: TableLike) -> Call:
    return Call("verify", _ref(t), list)


def rebuild_bloom(t: TableLike) -> Call:
    return Call("rebuild_bloom", _ref(t), lambda r: wire.from_dict(BloomInfo, r), read=False)


def bloom(t: TableLike) -> Call:
    return Call("bloom", _ref(t))


def scan_start(t: TableLike, batch_size: Any, features: Any, raw: bool) -> Call:
    args = {**_ref(t), "batch_size": batch_size, "features": _features(features), "raw": raw}
    return Call("scan", args, lambda r: scan_page(t, r))


def scan_next(t: TableLike, handle: int) -> Call:
    return Call("scan.next", {"scan": handle}, lambda r: scan_page(t, r))


def scan_close(handle: int) -> Call:
    return Call("scan.close", {"scan": handle})


def scan_page(t: TableLike, r: dict[str, Any]) -> tuple[int, Rows | None]:
    """``(handle, rows)``; rows is None once the scan is done."""
    rows = None if r["done"] else wire.rows_from_payload(r["rows"], t.schema, None)
    return r["scan"], rows


def _search_args(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in kwargs.items() if v is not None}
    if "where" in out:
        out["where"] = wire.where_for_wire(out["where"])
    if "among" in out:
        out["among"] = wire.ids_for_wire(out["among"])[0]
    return out


def _search_result(r: dict[str, Any]) -> Any:
    from vecstore.search import SearchResult  # lands with vector search

    return wire.search_from_payload(r, SearchResult)


def search(t: TableLike, query: Any, k: Any, kwargs: dict[str, Any]) -> Call:
    args = {**_ref(t), "query": query, "k": k, **_search_args(kwargs)}
    return Call("search", args, _search_result)


def search_by_id(t: TableLike, id: Any, k: Any, kwargs: dict[str, Any]) -> Call:
    wire_id, _ = wire.ids_for_wire(id)
    args = {**_ref(t), "id": wire_id, "k": k, **_search_args(kwargs)}
    return Call("search_by_id", args, _search_result)


def rebuild_index(t: TableLike, feature: str | None) -> Call:
    from vecstore.info import IndexInfo  # lands with vector search

    decode = lambda r: wire.from_dict(IndexInfo, r)
    return Call("rebuild_index", {**_ref(t), "feature": feature}, decode, read=False)


# -- store ----------------------------------------------------------------------


def tables() -> Call:
    return Call("tables", {}, list)


def schema(name: str) -> Call:
    return Call("schema", {"table": name}, wire.schema_from_payload)


def store_info() -> Call:
    return Call("store.info", {}, lambda r: wire.from_dict(StoreInfo, r))


def create_table(name: str, features: Any, expected_size: Any, bloom_fpr: Any, exist_ok: Any) -> Call:
    # The checks Store.create_table makes before touching LMDB, here, so a bad
    # spec raises the same SchemaError before anything is sent.
    check_name(name, "table")
    TableSchema(name, 0, dict(features), expected_size, bloom_fpr)
    args = {
        "name": name, "features": wire.features_for_wire(features),
        "expected_size": expected_size, "bloom_fpr": bloom_fpr, "exist_ok": exist_ok,
    }
    return Call("create_table", args, wire.schema_from_payload, read=False)


def drop_table(name: str) -> Call:
    return Call("drop_table", {"name": name}, read=False)


def flush() -> Call:
    return Call("flush", {}, read=False)


# -- feature log ----------------------------------------------------------------

# Methods whose result is a report dataclass of vecstore.featurelog, rebuilt from its plain map.
_LOG_REPORTS = {"info": "LogInfo", "export": "ExportResult", "stats": "LogStats", "drift": "DriftReport",
                "prune": "PruneReport", "compact": "PruneReport"}
_LOG_READS = ("info", "verify", "stats", "drift")


def _time(v: Any) -> Any:
    """Datetimes as seconds since the epoch (naive ones are UTC, as the log itself reads them)."""
    if isinstance(v, datetime):
        return (v.replace(tzinfo=UTC) if v.tzinfo is None else v).timestamp()
    if isinstance(v, (list, tuple)):
        return [_time(x) for x in v]
    return v


def _log_report(method: str) -> Callable[[Any], Any]:
    name = _LOG_REPORTS.get(method)
    if name is None:
        return _same

    def decode(r: Any) -> Any:
        from vecstore import featurelog  # lands with feature logging

        return wire.from_dict(getattr(featurelog, name), r)

    return decode


def log(method: str, *args: Any, **kwargs: Any) -> Call:
    """``store.log.<method>(*args, **kwargs)`` on the server."""
    # Times are keyword-only in every log method; positional arguments (IDs,
    # scores: thousands of values) are sent as they are, not walked.
    payload = {"args": list(args), "kwargs": {k: _time(v) for k, v in kwargs.items()}}
    return Call(f"log.{method}", payload, _log_report(method), read=method in _LOG_READS)


def log_ids(ids: Any, compact: bool) -> Any:
    return wire.ids_for_wire(ids, compact=compact)[0]
