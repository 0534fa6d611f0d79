"""The op table: what each request ``op`` does, and where the server runs it.

Each op is a function ``fn(session, args) -> result`` registered with a kind:

* ``meta``: answered on the event loop at once (``ping``, ``hello``, ``stats``, ``scan.close``).
* ``read``: runs in the reader thread pool, or right on the event loop when
  its ``inline`` test says it is short (a ``get`` of a few thousand IDs costs
  less than handing it to a thread).  LMDB readers never wait for the
  writer, so a read is never stuck behind a write.
* ``write``: runs on the single writer thread, so writes are serialized in
  arrival order and never occupy a reader.  Read operations that hold one
  LMDB transaction for long (``verify``) also run there, so they cannot
  overlap a map resize of this server's writes (a resize waits for every
  open transaction and holds new ones back meanwhile).

Adding an op is a few lines::

    @op("len", "read", inline=always)
    def _len(s: Session, a: dict) -> int:
        return s.call_table(a, len)

Results are plain msgpack values and numpy arrays (see server/wire.py);
exceptions become error responses (server/protocol.py).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

import vecstore
from vecstore.bloom import BloomFilter
from vecstore.errors import ReadOnlyError, TableNotFoundError
from vecstore.remote import UnsupportedOperationError

from . import wire
from .protocol import BadRequest

__all__ = ["OPS", "Op", "Session", "SharedState", "op"]

# A read of at most this many IDs runs on the event loop (about 1 ms of work).
INLINE_MAX_IDS = 4096
# Open scans one connection may hold (each is a generator of short transactions).
MAX_SCANS = 16


@dataclass(frozen=True)
class Op:
    name: str
    fn: Callable[[Session, dict[str, Any]], Any]
    kind: str  # where it runs: "meta" (the loop), "read" (loop or reader pool), "write" (the writer thread)
    inline: Callable[[Session, dict[str, Any]], bool]
    mutates: bool  # refused by a read-only server


OPS: dict[str, Op] = {}


def never(s: Session, a: dict[str, Any]) -> bool:
    return False


def always(s: Session, a: dict[str, Any]) -> bool:
    return True


def few_ids(s: Session, a: dict[str, Any]) -> bool:
    ids = a.get("ids")
    return not isinstance(ids, (list, tuple, np.ndarray)) or len(ids) <= INLINE_MAX_IDS


def op(
    name: str, kind: str, *, inline: Callable[[Session, dict[str, Any]], bool] = never, mutates: bool | None = None
) -> Callable[..., Any]:
    """Register ``fn`` as the handler of request op ``name`` (``mutates`` defaults to ``kind == "write"``)."""
    assert kind in ("meta", "read", "write")

    def register(fn: Callable[[Session, dict[str, Any]], Any]) -> Callable[[Session, dict[str, Any]], Any]:
        changes = kind == "write" if mutates is None else mutates
        OPS[name] = Op(name, fn, kind, always if kind == "meta" else inline, changes)
        return fn

    return register


class SharedState:
    """What every connection's ops share: the store, the server's settings and its reports."""

    def __init__(
        self,
        store: vecstore.Store,
        *,
        read_only: bool,
        hello: Callable[[], dict[str, Any]],
        stats: Callable[[], dict[str, Any]],
    ) -> None:
        self.store = store
        self.read_only = read_only or store.readonly
        self.hello = hello
        self.stats = stats
        # Table objects by name, so a request costs no extra store lookup.
        self.tables: dict[str, vecstore.Table] = {}


class Session:
    """Per-connection state handed to every op: the shared state and this connection's open scans."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.store = shared.store
        self.scans: dict[int, tuple[Iterator[Any], int]] = {}
        self._scan_ids = itertools.count(1)

    def table(self, a: dict[str, Any]) -> vecstore.Table:
        # store.table() notices drops and re-creations by any process (one cheap read).
        return self.store.table(arg(a, "table", str))

    def call_table(self, a: dict[str, Any], fn: Callable[[vecstore.Table], Any]) -> Any:
        """``fn(table)`` for the request's ``table`` (and ``table_id``, when given).

        With ``table_id`` the call is bound to that incarnation of the table,
        as a local Table object is: once dropped, it raises TableNotFoundError
        even if a table of that name was created again.  Without it (clients
        that only know names) the call goes to whatever table has the name.
        """
        name = arg(a, "table", str)
        want = arg(a, "table_id", int, None)
        tables = self.shared.tables
        t = tables.get(name)
        for attempt in (0, 1):
            if t is None:
                t = self.store.table(name)  # notices drops and re-creations by any process
                tables[name] = t
            if want is not None and t.schema.table_id != want:
                if attempt == 0:
                    t = None  # perhaps a stale cache entry: look again
                    continue
                raise TableNotFoundError(f"table {name!r} was dropped", hint="reopen it with store.table(name)")
            try:
                # A cached Table checks on every call that it still exists (one
                # cheap read), so the cache never serves a dropped table.
                return fn(t)
            except TableNotFoundError:
                tables.pop(name, None)
                if attempt:
                    raise
                t = None  # dropped (and maybe re-created) since it was cached: look again
        raise AssertionError("unreachable")

    def close(self) -> None:
        # A scan is a generator of short transactions: dropping it leaves nothing open.
        self.scans.clear()


_MISSING = object()


def required(a: dict[str, Any], key: str) -> Any:
    """Argument ``key`` of a request, of any type (the library checks it); BadRequest when missing."""
    v = a.get(key, _MISSING)
    if v is _MISSING:
        raise BadRequest(f"missing argument {key!r}")
    return v


def arg(a: dict[str, Any], key: str, types: Any, default: Any = _MISSING) -> Any:
    """Argument ``key`` of a request, checked against ``types``; BadRequest when missing or mistyped."""
    v = a.get(key, _MISSING)
    if v is _MISSING or (v is None and default is None):
        if default is _MISSING:
            raise BadRequest(f"missing argument {key!r}")
        return default
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
        raise BadRequest(f"argument {key!r} has the wrong type ({type(v).__name__})")
    return v


# -- meta -----------------------------------------------------------------------


@op("ping", "meta")
def _ping(s: Session, a: dict[str, Any]) -> str:
    return "pong"


@op("hello", "meta")
def _hello(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    return s.shared.hello()


@op("stats", "meta")
def _stats(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    return s.shared.stats()


# -- store ----------------------------------------------------------------------


@op("tables", "read", inline=always)
def _tables(s: Session, a: dict[str, Any]) -> list[str]:
    return s.store.tables()


@op("schema", "read", inline=always)
def _schema(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    # (store.table() itself answers a name that is not a string, as it does locally.)
    return wire.schema_payload(s.store.table(required(a, "table")).schema)


@op("store.info", "read")
def _store_info(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    return s.store.info().to_dict()


@op("create_table", "write")
def _create_table(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    features = arg(a, "features", (list, dict))
    if isinstance(features, list):
        try:
            features = {n: vecstore.features.feature_from_dict(spec) for n, spec in features}
        except (TypeError, ValueError, AttributeError) as e:
            raise BadRequest(f"argument 'features' must be a list of [name, spec] pairs: {e}") from None
    # Values the library validates itself pass through untouched, so a remote
    # call raises exactly the error a local one does.
    t = s.store.create_table(
        required(a, "name"),
        features,
        expected_size=a.get("expected_size", 1_000_000),
        bloom_fpr=a.get("bloom_fpr", 0.01),
        exist_ok=a.get("exist_ok", False),
    )
    return wire.schema_payload(t.schema)


@op("drop_table", "write")
def _drop_table(s: Session, a: dict[str, Any]) -> None:
    s.store.drop_table(required(a, "name"))


@op("flush", "write")
def _flush(s: Session, a: dict[str, Any]) -> None:
    s.store.flush()


# -- tables ---------------------------------------------------------------------


@op("len", "read", inline=always)
def _len(s: Session, a: dict[str, Any]) -> int:
    return s.call_table(a, len)


@op("get", "read", inline=few_ids)
def _get(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    def run(t: vecstore.Table) -> dict[str, Any]:
        rows = t.get(required(a, "ids"), a.get("features"), raw=a.get("raw", False))
        return wire.rows_payload(rows, table_id=t.schema.table_id, layout=arg(a, "layout", str, "columns"))

    return s.call_table(a, run)


@op("put", "write")
def _put(s: Session, a: dict[str, Any]) -> int:
    return s.call_table(a, lambda t: t.put(required(a, "ids"), required(a, "columns")))


@op("delete", "write")
def _delete(s: Session, a: dict[str, Any]) -> int:
    return s.call_table(a, lambda t: t.delete(required(a, "ids")))


@op("contains", "read", inline=few_ids)
def _contains(s: Session, a: dict[str, Any]) -> Any:
    return s.call_table(a, lambda t: t.contains(required(a, "ids")))


@op("may_contain", "read", inline=few_ids)
def _may_contain(s: Session, a: dict[str, Any]) -> Any:
    return s.call_table(a, lambda t: t.may_contain(required(a, "ids")))


@op("info", "read")
def _info(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    return s.call_table(a, lambda t: t.info().to_dict())


@op("verify", "write", mutates=False)  # one long read transaction: kept off the reader pool (module doc)
def _verify(s: Session, a: dict[str, Any]) -> list[str]:
    return s.call_table(a, lambda t: t.verify())


@op("rebuild_bloom", "write")
def _rebuild_bloom(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    return dataclasses.asdict(s.call_table(a, lambda t: t.rebuild_bloom()))


@op("bloom", "read")
def _bloom(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    def run(t: vecstore.Table) -> dict[str, Any]:
        # The table's own filter, caught up to the newest commit (what may_contain uses).
        bf: BloomFilter = t._sync_bloom()
        meta = {"table_id": t.schema.table_id, "store_uuid": s.store.uuid}
        return {"table_id": t.schema.table_id, "filter": bf.to_bytes(meta)}

    return s.call_table(a, run)


# -- scans ----------------------------------------------------------------------


def _scan_batch(s: Session, handle: int) -> dict[str, Any]:
    it, table_id = s.scans[handle]
    rows = next(it, None)
    if rows is None:
        del s.scans[handle]
        return {"scan": handle, "done": True, "rows": None}
    payload = wire.rows_payload(rows, table_id=table_id, layout="records", with_ids=True)
    return {"scan": handle, "done": False, "rows": payload}


@op("scan", "read")
def _scan(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    """Start a scan; returns its handle and first batch.  ``scan.next`` continues it."""
    if len(s.scans) >= MAX_SCANS:
        raise BadRequest(f"too many open scans on this connection (at most {MAX_SCANS}): close some with scan.close")
    def start(t: vecstore.Table) -> tuple[Any, Any, int]:
        it = t.scan(a.get("batch_size", 10_000), a.get("features"), raw=a.get("raw", False))
        # The first batch now: bad arguments raise here, as at a local scan's first next().
        return it, next(it, None), t.schema.table_id

    it, first, table_id = s.call_table(a, start)
    handle = next(s._scan_ids)
    if first is None:
        return {"scan": handle, "done": True, "rows": None}
    s.scans[handle] = (itertools.chain([first], it), table_id)
    return _scan_batch(s, handle)


@op("scan.next", "read")
def _scan_next(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    handle = arg(a, "scan", int)
    if handle not in s.scans:
        raise BadRequest(f"no open scan {handle} on this connection")
    return _scan_batch(s, handle)


@op("scan.close", "meta")
def _scan_close(s: Session, a: dict[str, Any]) -> None:
    s.scans.pop(arg(a, "scan", int), None)


# -- vector search --------------------------------------------------------------


def _table_method(t: vecstore.Table, name: str) -> Any:
    fn = getattr(t, name, None)
    if fn is None:
        raise UnsupportedOperationError(f"{name} is not available in this build of vecstore {vecstore.__version__}")
    return fn


def _search_kwargs(a: dict[str, Any]) -> dict[str, Any]:
    kw = {k: a[k] for k in ("feature", "ef", "exact", "rerank", "among", "threads") if a.get(k) is not None}
    if a.get("where") is not None:
        kw["where"] = wire.where_from_wire(a["where"])
    return kw


def _search_is_short(s: Session, a: dict[str, Any]) -> bool:
    """One unfiltered approximate query on an index that already reflects the newest commit.

    That is a few hundred microseconds of work, cheaper to run on the loop
    than to hand to a thread.  Anything else (exact search, filters, a batch,
    an index that must first catch up with writes) goes to the reader pool.
    """
    if a.get("exact") or a.get("where") is not None or a.get("among") is not None:
        return False
    q = a.get("query")
    if "query" in a and not (isinstance(q, np.ndarray) and q.ndim == 1):
        return False
    t = s.shared.tables.get(a.get("table"))  # type: ignore[arg-type]
    indexes = getattr(t, "_indexes", None)
    if not indexes:
        return False
    feature = a.get("feature")
    vi = indexes.get(feature) if feature is not None else next(iter(indexes.values())) if len(indexes) == 1 else None
    # The test vecstore.search uses for its own transaction-free path.
    return bool(vi is not None and getattr(vi, "ready", False) and getattr(vi, "txnid", None) == t._env.last_txnid())


@op("search", "read", inline=_search_is_short)
def _search(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    def run(t: vecstore.Table) -> dict[str, Any]:
        res = _table_method(t, "search")(required(a, "query"), a.get("k", 10), **_search_kwargs(a))
        return wire.search_payload(res)

    return s.call_table(a, run)


@op("search_by_id", "read", inline=_search_is_short)
def _search_by_id(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    def run(t: vecstore.Table) -> dict[str, Any]:
        res = _table_method(t, "search_by_id")(required(a, "id"), a.get("k", 10), **_search_kwargs(a))
        return wire.search_payload(res)

    return s.call_table(a, run)


@op("rebuild_index", "write")
def _rebuild_index(s: Session, a: dict[str, Any]) -> dict[str, Any]:
    return s.call_table(a, lambda t: dataclasses.asdict(_table_method(t, "rebuild_index")(a.get("feature"))))


def check_writable(s: Session, o: Op) -> None:
    if o.mutates and s.shared.read_only:
        raise ReadOnlyError(
            f"this server is read-only: {o.name} is refused", hint="start it without --read-only to write"
        )
