"""The synchronous client: ``vecstore.connect(url)``.

``Client`` mirrors :class:`vecstore.Store` and ``client.table(name)`` returns a
:class:`RemoteTable` with the methods, arguments, return types and exceptions
of a local :class:`vecstore.Table` (tests/test_remote_parity.py runs one test
module against both).

Connections are kept and reused (a small pool, so threads can share one
client).  Before a request goes out on an idle connection, a zero-timeout
poll checks the server has not closed it (a restart): if it has, the client
reconnects first, retrying until ``timeout``.  A read whose connection breaks
before the answer is retried once on a new connection; a write is not (it
raises ServerConnectionError saying it may or may not have been applied).
A call past ``timeout`` raises ServerTimeoutError and drops its connection,
so a late answer can never be mistaken for the next one.

Example::

    with vecstore.connect("unix:///run/vecstore.sock", timeout=2.0) as client:
        items = client.table("items")
        rows = items.get(["item-1", "item-2"], features=["price"])
"""

from __future__ import annotations

import itertools
import select
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Self
from urllib.parse import urlsplit

import numpy as np

from vecstore.bloom import BloomFilter
from vecstore.errors import InvalidValueError, VecstoreError
from vecstore.featurelog.columns import encode_ids
from vecstore.features import Feature
from vecstore.hashing import hash_ids, normalize_ids
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
from .protocol import HEADER, error_from_payload, new_packer, unpackb
from .remote_log import RemoteLog
from .wire import SchemaChanged

__all__ = ["BloomSnapshot", "Client", "RemoteTable", "parse_url"]

_RECV_CHUNK = 256 << 10


def parse_url(url: str) -> tuple[int, Any]:
    """``(address family, address)`` of ``unix:///path`` or ``tcp://host:port``."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path:
            raise InvalidValueError(f"no socket path in {url!r}", hint="write unix:///run/vecstore.sock")
        return socket.AF_UNIX, path
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise InvalidValueError(f"no host and port in {url!r}", hint="write tcp://127.0.0.1:7420")
        family = socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET
        return family, (parts.hostname, port)
    raise InvalidValueError(f"unsupported server URL {url!r}", hint="use unix:///path/to/socket or tcp://host:port")


def _pack_error(exc: Exception, args: dict[str, Any]) -> VecstoreError:
    """The error a local call would raise for arguments msgpack could not carry."""
    for key in ("ids", "id", "among"):
        if key in args:
            normalize_ids(args[key], 0)  # raises the local InvalidIdError for a bad ID
    positional = args.get("args")
    if isinstance(positional, list) and len(positional) > 1 and isinstance(positional[1], (list, tuple)):
        encode_ids(positional[1])  # log.retrieval / log.ranking (request_id, ids, ...): the log's own ID check
    return InvalidValueError(f"cannot send this value: {exc}")


def _check_size(body: bytes, limit: int, op: str) -> None:
    # Refused here rather than by the server, which would close the connection
    # after the header, leaving a large write unsure whether it was applied.
    if len(body) > limit:
        raise ProtocolError(
            f"{op} request of {len(body)} bytes exceeds the server's limit of {limit} bytes; nothing was sent",
            hint="split the batch, or raise the server's --max-frame-bytes",
        )


class _Conn:
    """One socket to the server: send a frame, read a frame."""

    def __init__(self, family: int, address: Any, timeout: float) -> None:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(timeout, 1e-3))
            sock.connect(address)
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.packer = new_packer()
        self.ids = itertools.count(1)
        # Responses are read into one reusable buffer and decoded straight from
        # it (msgpack copies out what it keeps): no per-response allocation or copy.
        self.rbuf = bytearray(_RECV_CHUNK)
        self.rview = memoryview(self.rbuf)
        self.rstart = self.rend = 0
        self.poll = select.poll()
        self.poll.register(sock, select.POLLIN)
        self.closed = False

    def alive(self) -> bool:
        # An idle connection has nothing to read; readable means EOF or reset (a restart).
        return not self.closed and self.rstart == self.rend and not self.poll.poll(0)

    def send(self, body: bytes, deadline: float) -> None:
        self.sock.settimeout(_remaining(deadline))
        head = HEADER.pack(len(body))
        if len(body) < 65536:
            self.sock.sendall(head + body)
            return
        # One gathered send for header and body (no copy of a large body; one wake-up on the server).
        sent = self.sock.sendmsg([head, body])
        if sent < 4:
            self.sock.sendall(head[sent:])
            sent = 4
        if sent - 4 < len(body):
            self.sock.sendall(memoryview(body)[sent - 4 :])

    def _fill(self, deadline: float) -> None:
        if self.rend == len(self.rbuf):  # full: move the unread bytes to the front
            left = self.rend - self.rstart
            self.rbuf[:left] = self.rbuf[self.rstart : self.rend]
            self.rstart, self.rend = 0, left
        self.sock.settimeout(_remaining(deadline))
        got = self.sock.recv_into(self.rview[self.rend :])
        if not got:
            raise ConnectionResetError("the server closed the connection")
        self.rend += got

    def recv(self, deadline: float) -> Any:
        while self.rend - self.rstart < 4:
            self._fill(deadline)
        n = int.from_bytes(self.rbuf[self.rstart : self.rstart + 4], "big")
        start = self.rstart + 4
        if n <= len(self.rbuf) - 4:
            while self.rend - start < n:
                self._fill(deadline)
                start = self.rstart + 4  # _fill may have moved the bytes
            with self.rview[start : start + n] as body:
                resp = unpackb(body)
            self.rstart = start + n
            if self.rstart == self.rend:
                self.rstart = self.rend = 0
            return resp
        # Larger than the buffer: one buffer of the right size, filled in place.
        body_buf = bytearray(n)
        have = self.rend - start
        body_buf[:have] = self.rbuf[start : self.rend]
        self.rstart = self.rend = 0
        view = memoryview(body_buf)
        while have < n:
            self.sock.settimeout(_remaining(deadline))
            got = self.sock.recv_into(view[have:], min(n - have, 16 << 20))
            if not got:
                raise ConnectionResetError("the server closed the connection")
            have += got
        return unpackb(body_buf)

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


class Client:
    """A connection to a sidecar server; mirrors :class:`vecstore.Store`.  See :func:`vecstore.connect`."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 5.0) -> None:
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise InvalidValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url = url
        self.timeout = float(timeout)
        self._family, self._address = parse_url(url)
        self._token = token
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self._closed = False
        self.max_frame_bytes = (1 << 32) - 1  # the server's limit, from hello
        hello = self.call("hello")
        self.max_frame_bytes = int(hello.get("max_frame_bytes", self.max_frame_bytes))
        self.server_version: str = hello["version"]
        self.protocol_version: int = hello["protocol"]
        self.read_only: bool = hello["read_only"]
        self.seed: int = hello["store"]["seed"]
        self.hash_bits: int = hello["store"]["hash_bits"]
        self.uuid: str = hello["store"]["uuid"]

    # -- plumbing --------------------------------------------------------------

    def _connect(self, deadline: float) -> _Conn:
        delay = 0.005
        while True:
            try:
                conn = _Conn(self._family, self._address, _remaining(deadline))
                break
            except TimeoutError:
                raise ServerTimeoutError(f"connecting to {self.url} timed out after {self.timeout} s") from None
            except OSError as e:
                # Not up yet (restarting): try again until the deadline.
                if time.monotonic() + delay >= deadline:
                    raise ServerConnectionError(
                        f"cannot connect to {self.url}: {e.strerror or e}", hint="is `vecstore serve` running there?"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        if self._token is not None:
            try:
                self._roundtrip(conn, "auth", {"token": self._token}, deadline)
            except VecstoreError:  # AuthenticationError (a PermissionError, so before OSError)
                conn.close()
                raise
            except TimeoutError:
                conn.close()
                raise ServerTimeoutError(f"authenticating to {self.url} timed out after {self.timeout} s") from None
            except OSError as e:
                conn.close()
                raise ServerConnectionError(f"connection to {self.url} lost while authenticating: {e}") from None
            except BaseException:
                conn.close()
                raise
        return conn

    def _checkout(self, deadline: float) -> _Conn:
        if self._closed:
            raise ServerConnectionError("this client is closed", hint="connect again with vecstore.connect()")
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if conn.alive():
                    return conn
                conn.close()
        return self._connect(deadline)

    def _checkin(self, conn: _Conn) -> None:
        if conn.closed:
            return
        with self._lock:
            if self._closed or len(self._idle) >= 8:
                conn.close()
            else:
                self._idle.append(conn)

    def _encode(self, conn: _Conn, op: str, args: dict[str, Any]) -> tuple[int, bytes]:
        """A request's id and body; the local error (nothing sent) for arguments that cannot travel."""
        rid = next(conn.ids)
        try:
            body = conn.packer.pack({"id": rid, "op": op, "args": args})
        except (TypeError, ValueError, OverflowError) as e:
            raise _pack_error(e, args) from None
        _check_size(body, self.max_frame_bytes, op)
        return rid, body

    def _exchange(self, conn: _Conn, rid: int, body: bytes, deadline: float) -> dict[str, Any]:
        """Send one request on ``conn`` and return its response map (OSError: the connection broke)."""
        conn.send(body, deadline)
        resp = conn.recv(deadline)
        if not isinstance(resp, dict) or resp.get("id") not in (rid, None):
            raise ProtocolError(f"unexpected response to request {rid}: {resp!r:.200}")
        return resp

    def _roundtrip(self, conn: _Conn, op: str, args: dict[str, Any], deadline: float) -> Any:
        resp = self._exchange(conn, *self._encode(conn, op, args), deadline)
        if resp.get("ok") is True:
            return resp.get("result")
        raise error_from_payload(resp.get("error"))

    def _request(self, op: str, args: dict[str, Any], *, read: bool = True, conn: _Conn | None = None) -> Any:
        deadline = time.monotonic() + self.timeout
        own = conn is None
        for attempt in (0, 1):
            c = self._checkout(deadline) if own else conn
            assert c is not None
            try:
                rid, body = self._encode(c, op, args)
            except BaseException:
                if own:
                    self._checkin(c)  # nothing was sent: the connection is as good as before
                raise
            try:
                resp = self._exchange(c, rid, body, deadline)
            except TimeoutError:  # socket.timeout
                c.close()
                raise ServerTimeoutError(f"{op} got no answer from {self.url} within {self.timeout} s") from None
            except OSError as e:
                c.close()
                if read and own and attempt == 0:
                    continue  # broke before the answer (a restart): once more on a fresh connection
                what = "" if read else "; it may or may not have been applied"
                raise ServerConnectionError(f"connection to {self.url} lost during {op}{what}: {e}") from None
            except BaseException:  # a malformed response, an interrupt: the stream is out of step
                c.close()
                raise
            if resp.get("ok") is True:
                if own:
                    self._checkin(c)
                return resp.get("result")
            if resp.get("id") is None:
                c.close()  # not tied to the request (refused frame or authentication): the server closes it
            elif own:
                self._checkin(c)
            raise error_from_payload(resp.get("error"))
        raise AssertionError("unreachable")

    def _run(self, call: Call, table: RemoteTable | None = None, conn: _Conn | None = None) -> Any:
        result = self._request(call.op, call.args, read=call.read, conn=conn)
        try:
            return call.decode(result)
        except SchemaChanged:
            assert table is not None
            # The table was dropped and re-created: adopt its new schema, decode again.
            table.schema = self._run(calls.schema(table.name))
            return call.decode(result)

    def call(self, op: str, **args: Any) -> Any:
        """Send a raw request and return its ``result`` (the escape hatch; see docs/protocol.md)."""
        return self._request(op, args)

    # -- the Store surface -----------------------------------------------------

    def table(self, name: str) -> RemoteTable:
        """The named table; TableNotFoundError if there is none."""
        return RemoteTable(self, name, self._run(calls.schema(name)))

    def __getitem__(self, name: str) -> RemoteTable:
        return self.table(name)

    def __contains__(self, name: object) -> bool:
        return name in self.tables()

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables())

    def tables(self) -> list[str]:
        """Names of all tables, sorted."""
        return self._run(calls.tables())

    def create_table(
        self,
        name: str,
        features: Mapping[str, Feature],
        *,
        expected_size: int = 1_000_000,
        bloom_fpr: float = 0.01,
        exist_ok: bool = False,
    ) -> RemoteTable:
        """As :meth:`vecstore.Store.create_table`."""
        schema = self._run(calls.create_table(name, features, expected_size, bloom_fpr, exist_ok))
        return RemoteTable(self, name, schema)

    def drop_table(self, name: str) -> None:
        """As :meth:`vecstore.Store.drop_table`."""
        self._run(calls.drop_table(name))

    def info(self) -> StoreInfo:
        """As :meth:`vecstore.Store.info` (``path`` is the server's)."""
        return self._run(calls.store_info())

    def verify(self) -> list[str]:
        """As :meth:`vecstore.Store.verify`."""
        return [p for name in self.tables() for p in self.table(name).verify()]

    def flush(self) -> None:
        """As :meth:`vecstore.Store.flush`."""
        self._run(calls.flush())

    def hash_ids(self, ids: Any) -> np.ndarray:
        """The u64 keys the store uses for ``ids`` (computed here, with the store's seed)."""
        return hash_ids(ids, seed=self.seed, hash_bits=self.hash_bits)

    @property
    def log(self) -> RemoteLog:
        """The store's feature log (``store.log``), through the server."""
        return RemoteLog(self)

    # -- the server ------------------------------------------------------------

    def ping(self) -> float:
        """Round-trip time of an empty request, in seconds."""
        t0 = time.perf_counter()
        self.call("ping")
        return time.perf_counter() - t0

    def stats(self) -> ServerStats:
        """The server's counters and per-op latency percentiles."""
        return ServerStats.from_dict(self.call("stats"))

    def hello(self) -> dict[str, Any]:
        """Server and protocol versions, store identity, and every table's schema."""
        return self.call("hello")

    def close(self) -> None:
        """Close every connection; later calls raise ServerConnectionError."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<vecstore.server.Client {self.url!r}{' closed' if self._closed else ''}>"


class RemoteTable:
    """A table behind a server: the methods of :class:`vecstore.Table`, over the wire."""

    def __init__(self, client: Client, name: str, schema: TableSchema) -> None:
        self._client = client
        self.name = name
        self.schema = schema
        self.compact_ids = client.protocol_version >= 2

    def _run(self, call: Call) -> Any:
        return self._client._run(call, self)

    @property
    def features(self) -> dict[str, Any]:
        return dict(self.schema.features)

    def __repr__(self) -> str:
        return f"<vecstore.RemoteTable {self.name!r} at {self._client.url} features={list(self.schema.features)}>"

    def __len__(self) -> int:
        return self._run(calls.length(self))

    def put(self, ids: Any, columns: Mapping[str, Any]) -> int:
        """As :meth:`vecstore.Table.put`."""
        return self._run(calls.put(self, ids, columns))

    def get(self, ids: Any, features: Any = None, *, raw: bool = False) -> Rows:
        """As :meth:`vecstore.Table.get`."""
        return self._run(calls.get(self, ids, features, raw))

    def delete(self, ids: Any) -> int:
        """As :meth:`vecstore.Table.delete`."""
        return self._run(calls.delete(self, ids))

    def contains(self, ids: Any) -> Any:
        """As :meth:`vecstore.Table.contains`."""
        return self._run(calls.contains(self, ids))

    def may_contain(self, ids: Any) -> Any:
        """As :meth:`vecstore.Table.may_contain` (the server's filter, always current)."""
        return self._run(calls.may_contain(self, ids))

    def info(self) -> TableInfo:
        """As :meth:`vecstore.Table.info`."""
        return self._run(calls.info(self))

    def verify(self) -> list[str]:
        """As :meth:`vecstore.Table.verify`."""
        return self._run(calls.verify(self))

    def rebuild_bloom(self) -> BloomInfo:
        """As :meth:`vecstore.Table.rebuild_bloom`."""
        return self._run(calls.rebuild_bloom(self))

    def scan(self, batch_size: int = 10_000, features: Any = None, *, raw: bool = False) -> Iterator[Rows]:
        """As :meth:`vecstore.Table.scan`: each batch is read in its own short transaction on the server."""
        client = self._client
        conn = client._checkout(time.monotonic() + client.timeout)  # a scan lives on one connection
        handle = None
        try:
            handle, rows = client._run(calls.scan_start(self, batch_size, features, raw), self, conn)
            while rows is not None:
                yield rows
                handle, rows = client._run(calls.scan_next(self, handle), self, conn)
            handle = None
        finally:
            if handle is not None:
                try:
                    client._run(calls.scan_close(handle), self, conn)
                except VecstoreError:
                    conn.close()
            client._checkin(conn)

    def ids(self, batch_size: int = 100_000) -> Iterator[list[Any]]:
        """As :meth:`vecstore.Table.ids`."""
        for rows in self.scan(batch_size=batch_size, features=[]):
            yield list(rows.ids)

    def search(
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
        """As :meth:`vecstore.Table.search`."""
        kw = {
            "feature": feature, "ef": ef, "exact": exact, "rerank": rerank, "where": where, "among": among,
            "threads": threads,
        }
        return self._run(calls.search(self, query, k, kw))

    def search_by_id(self, id: Any, k: int = 10, **kwargs: Any) -> Any:
        """As :meth:`vecstore.Table.search_by_id`."""
        return self._run(calls.search_by_id(self, id, k, kwargs))

    def rebuild_index(self, feature: str | None = None, *, progress: Any = None) -> Any:
        """As :meth:`vecstore.Table.rebuild_index` (``progress`` is not reported over the wire)."""
        return self._run(calls.rebuild_index(self, feature))

    def bloom(self) -> BloomSnapshot:
        """A copy of the table's Bloom filter, to skip requests for IDs that are surely absent.

        It is a snapshot: rows written after it may test absent.  Fetch a new
        one as often as staleness matters (it is one request of the filter's size).
        """
        r = self._run(calls.bloom(self))
        bf, _ = BloomFilter.from_bytes(r["filter"])
        return BloomSnapshot(self.name, bf, seed=self._client.seed, hash_bits=self._client.hash_bits)


class BloomSnapshot:
    """A table's Bloom filter copied to the client: ``may_contain`` with no request at all."""

    def __init__(self, table: str, bloom: BloomFilter, *, seed: int, hash_bits: int) -> None:
        self.table = table
        self.filter = bloom
        self._seed = seed
        self._hash_bits = hash_bits
        self.fetched = time.time()

    def may_contain(self, ids: Any) -> Any:
        """False: surely absent when the snapshot was taken; True: probably present.  A bool for one ID."""
        batch = normalize_ids(ids, self._seed, self._hash_bits)
        out = self.filter.may_contain(batch.keys)
        return bool(out[0]) if batch.scalar else out

    def __repr__(self) -> str:
        return f"<BloomSnapshot of {self.table!r}: {self.filter.count} keys>"
