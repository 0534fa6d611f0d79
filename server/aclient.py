"""The asyncio client: ``await vecstore.aconnect(url)``.

The surface of the sync client (server/client.py) with every call awaited:
``await client.table(name)``, ``await items.get(ids)``, ``async for rows in
items.scan()``; ``await items.count()`` stands in for ``len(items)``.  Both
clients build their requests and rebuild results with server/calls.py, so
they take the same arguments and return the same types.

One connection carries every concurrent call of a client: requests are
pipelined and answers matched by ``id``, so many coroutines share it without
waiting for each other's round trips.  A call past ``timeout`` raises
ServerTimeoutError (its late answer is dropped).  When the connection breaks
(a server restart), calls in flight fail, reads once retried on a fresh
connection, and the next call reconnects.

Example::

    async def main():
        async with await vecstore.aconnect("unix:///run/vecstore.sock") as client:
            items = await client.table("items")
            rows, n = await asyncio.gather(items.get(["a", "b"]), items.count())
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Self

import numpy as np

from vecstore.bloom import BloomFilter
from vecstore.errors import InvalidValueError, VecstoreError
from vecstore.features import Feature
from vecstore.hashing import hash_ids
from vecstore.info import BloomInfo, StoreInfo, TableInfo
from vecstore.remote import (
    ProtocolError,
    ServerConnectionError,
    ServerStats,
    ServerTimeoutError,
)
from vecstore.rows import Rows
from vecstore.schema import TableSchema

from . import calls
from .calls import Call
from .client import BloomSnapshot, _check_size, _pack_error, parse_url
from .protocol import HEADER, error_from_payload, new_packer, unpackb
from .remote_log import AsyncRemoteLog
from .wire import SchemaChanged

__all__ = ["AsyncClient", "AsyncRemoteTable"]


class _Lost(Exception):
    """The connection broke before the answer came."""


class _AConn:
    """One stream to the server and the calls waiting on it, keyed by request id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)
        self.dead: BaseException | None = None
        self.task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        reason: BaseException = _Lost("the server closed the connection")
        try:
            while True:
                n = int.from_bytes(await self.reader.readexactly(4), "big")
                resp = unpackb(await self.reader.readexactly(n))
                rid = resp.get("id") if isinstance(resp, dict) else None
                if rid is None:
                    # Not tied to a request (a refused frame, failed authentication):
                    # every waiting call gets it, and the server closes the connection next.
                    for fut in self.pending.values():
                        if not fut.done():
                            fut.set_result(resp if isinstance(resp, dict) else {"ok": False, "error": None})
                    continue
                fut = self.pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(resp)
        except (asyncio.IncompleteReadError, OSError, ProtocolError) as e:
            reason = _Lost(str(e) or type(e).__name__)
        finally:
            self.dead = reason
            pending, self.pending = self.pending, {}
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(reason)
            self.writer.close()

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


class AsyncClient:
    """The asyncio twin of :class:`vecstore.server.client.Client`; create with ``await vecstore.aconnect(url)``."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 5.0) -> None:
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise InvalidValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url = url
        self.timeout = float(timeout)
        self._family, self._address = parse_url(url)
        self._token = token
        self._conn: _AConn | None = None
        self._lock: asyncio.Lock | None = None
        self._packer = new_packer()
        self._closed = False
        self.max_frame_bytes = (1 << 32) - 1  # the server's limit, from hello

    async def connect(self) -> AsyncClient:
        """Connect and read the server's hello (``vecstore.aconnect`` does this)."""
        hello = await self.call("hello")
        self.max_frame_bytes = int(hello.get("max_frame_bytes", self.max_frame_bytes))
        self.server_version: str = hello["version"]
        self.protocol_version: int = hello["protocol"]
        self.read_only: bool = hello["read_only"]
        self.seed: int = hello["store"]["seed"]
        self.hash_bits: int = hello["store"]["hash_bits"]
        self.uuid: str = hello["store"]["uuid"]
        return self

    # -- plumbing --------------------------------------------------------------

    async def _open(self, deadline: float) -> _AConn:
        delay = 0.005
        while True:
            try:
                async with asyncio.timeout(_left(deadline)):
                    if self._family == socket.AF_UNIX:
                        reader, writer = await asyncio.open_unix_connection(self._address, limit=1 << 20)
                    else:
                        reader, writer = await asyncio.open_connection(*self._address, limit=1 << 20)
                break
            except TimeoutError:
                raise ServerTimeoutError(f"connecting to {self.url} timed out after {self.timeout} s") from None
            except OSError as e:
                if time.monotonic() + delay >= deadline:
                    raise ServerConnectionError(
                        f"cannot connect to {self.url}: {e.strerror or e}", hint="is `vecstore serve` running there?"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)
        conn = _AConn(reader, writer)
        if self._token is not None:
            try:
                await self._roundtrip(conn, "auth", {"token": self._token}, deadline)
            except BaseException:
                conn.close()
                raise
        return conn

    async def _ensure(self, deadline: float) -> _AConn:
        if self._closed:
            raise ServerConnectionError("this client is closed", hint="connect again with vecstore.aconnect()")
        conn = self._conn
        if conn is not None and conn.dead is None:
            return conn
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._conn is None or self._conn.dead is not None:
                self._conn = await self._open(deadline)
            return self._conn

    async def _roundtrip(self, conn: _AConn, op: str, args: dict[str, Any], deadline: float) -> Any:
        rid = next(conn.ids)
        try:
            body = self._packer.pack({"id": rid, "op": op, "args": args})
        except (TypeError, ValueError, OverflowError) as e:
            raise _pack_error(e, args) from None
        _check_size(body, self.max_frame_bytes, op)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        conn.pending[rid] = fut
        try:
            if conn.dead is not None:  # broke since it was handed out: its reader will resolve nothing more
                raise _Lost(str(conn.dead))
            conn.writer.write(HEADER.pack(len(body)) + body)
            async with asyncio.timeout(_left(deadline)):
                if conn.writer.transport.get_write_buffer_size() > (1 << 20):
                    await conn.writer.drain()
                resp = await fut
        except TimeoutError:
            raise ServerTimeoutError(f"{op} got no answer from {self.url} within {self.timeout} s") from None
        except (OSError, RuntimeError) as e:
            raise _Lost(str(e)) from None
        finally:
            conn.pending.pop(rid, None)
        if resp.get("ok") is True:
            return resp.get("result")
        raise error_from_payload(resp.get("error"))

    async def _request(self, op: str, args: dict[str, Any], *, read: bool = True) -> Any:
        deadline = time.monotonic() + self.timeout
        for attempt in (0, 1):
            conn = await self._ensure(deadline)
            try:
                return await self._roundtrip(conn, op, args, deadline)
            except _Lost as e:
                if read and attempt == 0:
                    continue
                what = "" if read else "; it may or may not have been applied"
                raise ServerConnectionError(f"connection to {self.url} lost during {op}{what}: {e}") from None
        raise AssertionError("unreachable")

    async def _run(self, call: Call, table: AsyncRemoteTable | None = None) -> Any:
        result = await self._request(call.op, call.args, read=call.read)
        try:
            return call.decode(result)
        except SchemaChanged:
            assert table is not None
            table.schema = await self._run(calls.schema(table.name))
            return call.decode(result)

    async def call(self, op: str, **args: Any) -> Any:
        """Send a raw request and return its ``result`` (docs/protocol.md)."""
        return await self._request(op, args)

    # -- the Store surface -----------------------------------------------------

    async def table(self, name: str) -> AsyncRemoteTable:
        """The named table; TableNotFoundError if there is none."""
        return AsyncRemoteTable(self, name, await self._run(calls.schema(name)))

    async def tables(self) -> list[str]:
        return await self._run(calls.tables())

    async def create_table(
        self,
        name: str,
        features: Mapping[str, Feature],
        *,
        expected_size: int = 1_000_000,
        bloom_fpr: float = 0.01,
        exist_ok: bool = False,
    ) -> AsyncRemoteTable:
        schema = await self._run(calls.create_table(name, features, expected_size, bloom_fpr, exist_ok))
        return AsyncRemoteTable(self, name, schema)

    async def drop_table(self, name: str) -> None:
        await self._run(calls.drop_table(name))

    async def info(self) -> StoreInfo:
        return await self._run(calls.store_info())

    async def verify(self) -> list[str]:
        out: list[str] = []
        for name in await self.tables():
            out.extend(await (await self.table(name)).verify())
        return out

    async def flush(self) -> None:
        await self._run(calls.flush())

    def hash_ids(self, ids: Any) -> np.ndarray:
        return hash_ids(ids, seed=self.seed, hash_bits=self.hash_bits)

    @property
    def log(self) -> AsyncRemoteLog:
        """The store's feature log (``store.log``), every method awaited."""
        return AsyncRemoteLog(self)

    async def ping(self) -> float:
        t0 = time.perf_counter()
        await self.call("ping")
        return time.perf_counter() - t0

    async def stats(self) -> ServerStats:
        return ServerStats.from_dict(await self.call("stats"))

    async def hello(self) -> dict[str, Any]:
        return await self.call("hello")

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            try:
                await conn.writer.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<vecstore.server.AsyncClient {self.url!r}{' closed' if self._closed else ''}>"


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


class AsyncRemoteTable:
    """A table behind a server, every method awaited (see :class:`vecstore.server.client.RemoteTable`)."""

    def __init__(self, client: AsyncClient, name: str, schema: TableSchema) -> None:
        self._client = client
        self.name = name
        self.schema = schema
        self.compact_ids = client.protocol_version >= 2

    async def _run(self, call: Call) -> Any:
        return await self._client._run(call, self)

    @property
    def features(self) -> dict[str, Any]:
        return dict(self.schema.features)

    def __repr__(self) -> str:
        return f"<vecstore.AsyncRemoteTable {self.name!r} at {self._client.url}>"

    async def count(self) -> int:
        """The row count: ``len(table)`` of a local table."""
        return await self._run(calls.length(self))

    async def put(self, ids: Any, columns: Mapping[str, Any]) -> int:
        return await self._run(calls.put(self, ids, columns))

    async def get(self, ids: Any, features: Any = None, *, raw: bool = False) -> Rows:
        return await self._run(calls.get(self, ids, features, raw))

    async def delete(self, ids: Any) -> int:
        return await self._run(calls.delete(self, ids))

    async def contains(self, ids: Any) -> Any:
        return await self._run(calls.contains(self, ids))

    async def may_contain(self, ids: Any) -> Any:
        return await self._run(calls.may_contain(self, ids))

    async def info(self) -> TableInfo:
        return await self._run(calls.info(self))

    async def verify(self) -> list[str]:
        return await self._run(calls.verify(self))

    async def rebuild_bloom(self) -> BloomInfo:
        return await self._run(calls.rebuild_bloom(self))

    async def scan(self, batch_size: int = 10_000, features: Any = None, *, raw: bool = False) -> AsyncIterator[Rows]:
        handle = None
        try:
            handle, rows = await self._run(calls.scan_start(self, batch_size, features, raw))
            while rows is not None:
                yield rows
                handle, rows = await self._run(calls.scan_next(self, handle))
            handle = None
        finally:
            if handle is not None:
                try:
                    await self._run(calls.scan_close(handle))
                except VecstoreError:
                    pass

    async def ids(self, batch_size: int = 100_000) -> AsyncIterator[list[Any]]:
        async for rows in self.scan(batch_size=batch_size, features=[]):
            yield list(rows.ids)

    async def search(
        self,
        query: Any,
        k: int = 10,
        *,
        feature: str | None = None,
        ef: int | None = None,
        exact: bool = False,
        rerank: int | None = None,
        where: Mapping[str, Any] | None = None,
        among: Any = None,
        threads: int = 0,
    ) -> Any:
        kw = {
            "feature": feature, "ef": ef, "exact": exact, "rerank": rerank, "where": where, "among": among,
            "threads": threads,
        }
        return await self._run(calls.search(self, query, k, kw))

    async def search_by_id(self, id: Any, k: int = 10, **kwargs: Any) -> Any:
        return await self._run(calls.search_by_id(self, id, k, kwargs))

    async def rebuild_index(self, feature: str | None = None, *, progress: Any = None) -> Any:
        return await self._run(calls.rebuild_index(self, feature))

    async def bloom(self) -> BloomSnapshot:
        r = await self._run(calls.bloom(self))
        bf, _ = BloomFilter.from_bytes(r["filter"])
        return BloomSnapshot(self.name, bf, seed=self._client.seed, hash_bits=self._client.hash_bits)
