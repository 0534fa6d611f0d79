"""The sidecar server: one store, many clients, over a Unix socket or loopback TCP.

Why: services in other processes or languages share one store through a
server next to them; the protocol is small enough to implement anywhere
(docs/protocol.md).

How it runs:

* One asyncio event loop does all socket I/O with plain ``asyncio.Protocol``
  callbacks (no coroutine per request).  A client may pipeline any number of
  requests on a connection.  Each takes effect after those sent before it (a
  read waits for earlier writes, a write for everything earlier), while
  consecutive reads run concurrently and may be answered out of order:
  responses carry the request ``id``.
* Short reads run on the loop itself; longer ones in a reader thread pool;
  writes on one writer thread, serialized (server/ops.py).  LMDB readers
  never wait for the writer, so reads are never stuck behind a write.
* A client that stops reading fills only its own buffer: its later requests
  wait (backpressure) and, after ``stall_timeout`` seconds, it is dropped.
  Others are unaffected.
* A frame's length is checked before anything is allocated for it; a frame
  over ``max_frame_bytes`` gets an error and the connection is closed.
  Malformed msgpack or an unknown op gets an error response and the server
  goes on.  Nothing is ever unpickled or evaluated.
* With a token, a connection's first request must be ``auth``; before that it
  gets nothing but an error (and is closed).  Tokens are compared in constant time.
* ``stop()`` (SIGTERM/SIGINT under :func:`serve`) stops accepting, answers
  every request already received, then closes the store.

Example::

    with vecstore.open("shop.vs") as store:
        serve(store, unix="/run/vecstore.sock")           # blocks until SIGTERM

    running = start_in_thread(store, unix=str(tmp / "vs.sock"))   # tests, embedding
    client = vecstore.connect(running.address)
    running.stop()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from typing import Any, Self

import vecstore
from vecstore.errors import VecstoreError
from vecstore.remote import AuthenticationError, ProtocolError

from . import ops as _ops
from . import ops_log  # noqa: F401 - registers the log.* ops
from .listen import bind_unix, is_loopback, read_token_file
from .protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER,
    PROTOCOL_VERSION,
    BadRequest,
    error_payload,
    packb,
    unpackb,
)
from .stats import Stats

__all__ = ["RunningServer", "Server", "serve", "start_in_thread"]

log = logging.getLogger("vecstore.server")

# Frames larger than this are decoded on a reader thread, not on the loop.
INLINE_DECODE_MAX = 256 << 10
# Received frames a connection may queue before the server stops reading from it.
MAX_PENDING = 64
# Reads of one connection on the reader pool at once (the rest wait their turn),
# so one client's pipeline cannot occupy every reader thread.
MAX_READS_PER_CONNECTION = 2


def _response(rid: Any, result: Any) -> bytes:
    try:
        return packb({"id": rid, "ok": True, "result": result})
    except (TypeError, ValueError, OverflowError) as e:  # a result msgpack cannot carry: a server bug
        return _error(rid, RuntimeError(f"cannot encode the result: {e}"))


def _error(rid: Any, exc: BaseException) -> bytes:
    return packb({"id": rid, "ok": False, "error": error_payload(exc)})


class _Request:
    """A request taken off the wire: its id, op, arguments, and when its frame was complete."""

    __slots__ = ("args", "name", "op", "rid", "t0")

    def __init__(self, rid: Any, name: str, op: _ops.Op | None, args: dict[str, Any], t0: float) -> None:
        self.rid, self.name, self.op, self.args, self.t0 = rid, name, op, args, t0


class _Connection(asyncio.Protocol):
    """One client connection: frames in, requests run, responses out.

    Requests start in the order they arrive.  A read starts once every
    earlier write of this connection has finished, and a write once every
    earlier request has: so each request sees the effects of those sent
    before it, while consecutive reads run concurrently and may be answered
    out of order (responses carry the request ``id``).
    """

    def __init__(self, server: Server) -> None:
        self.srv = server
        self.loop = server.loop
        self.buf = bytearray()
        # Received, not started: raw frames (bytes, arrival time) or decoded _Requests.
        self.pending: deque[Any] = deque()
        self.reads = 0  # reads of this connection running on the pool
        self.writing = False  # a write of this connection is running
        self.decoding = False  # the head frame is being decoded on a thread
        self.closing = False
        self.closing_after_pending = False
        self.lost = False
        self.read_paused = False
        self.write_paused = False
        self.authed = server.token is None
        self.session = _ops.Session(server.shared)
        self.transport: asyncio.Transport | None = None
        self.auth_timer: asyncio.TimerHandle | None = None
        self.stall_timer: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        return not (self.reads or self.writing or self.decoding)

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        srv = self.srv
        srv.stats.connections_total += 1
        srv.conns.add(self)
        if srv.stopping:
            transport.abort()
            return
        if len(srv.conns) > srv.max_connections:
            srv.stats.connections_rejected += 1
            self._fatal(None, ProtocolError(f"too many connections (at most {srv.max_connections})"))
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=4 << 20)
        if not self.authed:
            self.auth_timer = self.loop.call_later(srv.auth_timeout, self._auth_expired)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        t0 = time.perf_counter()
        self.srv.stats.bytes_in += len(data)
        buf = self.buf
        buf += data
        pos, end, limit = 0, len(buf), self.srv.max_frame_bytes
        while end - pos >= 4:
            n = int.from_bytes(buf[pos : pos + 4], "big")
            if n > limit:
                # Refused from its header alone: nothing is allocated for the body.
                self._fatal(None, ProtocolError(f"frame of {n} bytes exceeds the server's limit of {limit} bytes"))
                return
            if end - pos - 4 < n:
                break
            self.pending.append((bytes(buf[pos + 4 : pos + 4 + n]), t0))
            pos += 4 + n
        if pos:
            del buf[:pos]
        if len(self.pending) >= MAX_PENDING and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        self._pump()

    def eof_received(self) -> bool:
        # Answer what was received, then close (our side stays writable meanwhile).
        self.closing_after_pending = True
        self._maybe_close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.closing = True
        self.pending.clear()
        for timer in (self.auth_timer, self.stall_timer):
            if timer is not None:
                timer.cancel()
        self.srv.conns.discard(self)
        if self.idle:
            self.session.close()
        self.srv._conn_gone.set()

    def pause_writing(self) -> None:
        # The client is not reading: start none of its further requests until it does.
        self.write_paused = True
        if self.stall_timer is None:
            self.stall_timer = self.loop.call_later(self.srv.stall_timeout, self._stalled)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None
        self._pump()

    # -- requests --------------------------------------------------------------

    def _pump(self) -> None:
        pending = self.pending
        while pending and not (self.decoding or self.write_paused or self.closing):
            head = pending[0]
            if not isinstance(head, _Request):
                body, t0 = head
                if len(body) > INLINE_DECODE_MAX:
                    # A big body (a large put) takes milliseconds to decode: not on the loop.
                    self.decoding = True
                    fut = self.loop.run_in_executor(self.srv.read_pool, unpackb, body)
                    fut.add_done_callback(lambda f, t0=t0: self._decoded(f, t0))
                    break
                try:
                    req = self._request(unpackb(body), t0)
                except ProtocolError as e:
                    req = None
                    if self.authed:
                        self._finish(_error(None, e), "<invalid>", t0, False)
                    else:  # before authentication, anything but a valid auth is refused the same way
                        self._authenticate(None, "<invalid>", {}, t0)
                if req is None:
                    # A refused request (bad auth) may have closed the connection,
                    # which already cleared the queue.
                    if pending:
                        pending.popleft()
                    continue
                pending[0] = head = req
            o = head.op
            assert o is not None
            if o.kind == "write":
                if self.writing or self.reads:
                    break  # after every earlier request of this connection
            elif self.writing or self.reads >= MAX_READS_PER_CONNECTION:
                break  # after every earlier write; a bounded share of the reader pool
            pending.popleft()
            self._start(head)
        if self.read_paused and len(pending) < MAX_PENDING // 2 and not self.closing and self.transport:
            self.read_paused = False
            self.transport.resume_reading()
        self._maybe_close()

    def _maybe_close(self) -> None:
        if (self.closing_after_pending or self.srv.stopping) and not self.pending and self.idle and not self.closing:
            self.closing = True
            if self.transport is not None:
                self.transport.close()  # flushes buffered responses first

    def _decoded(self, fut: asyncio.Future[Any], t0: float) -> None:
        self.decoding = False
        if self.lost:
            if self.idle:
                self.session.close()
            return
        self.pending.popleft()
        exc = fut.exception()
        if exc is not None:
            if self.authed:
                self._finish(_error(None, exc), "<invalid>", t0, False)
            else:
                self._authenticate(None, "<invalid>", {}, t0)
        else:
            req = self._request(fut.result(), t0)
            if req is not None:
                self.pending.appendleft(req)
        self._pump()

    def _request(self, msg: Any, t0: float) -> _Request | None:
        """Validate a decoded message; answer it here (and return None) unless it is an op to run."""
        rid = msg.get("id") if isinstance(msg, dict) else None
        bad_id = not isinstance(rid, (int, str)) or isinstance(rid, bool)
        if bad_id:
            rid = None
        name = msg.get("op") if isinstance(msg, dict) else None
        args = msg.get("args", {}) if isinstance(msg, dict) else None
        if args is None:
            args = {}
        if not self.authed:
            if not isinstance(name, str) or not isinstance(args, dict) or bad_id:
                name, args = "<invalid>", {}
            self._authenticate(rid, name, args, t0)
            return None
        if not isinstance(name, str) or not isinstance(args, dict) or bad_id:
            # Without a usable id the client could not match the answer to the
            # request (pipelined answers may come out of order): refuse it unrun.
            err = BadRequest("a request is a map of id (an int or a string), op (a string) and args (a map)")
            self._finish(_error(rid, err), "<invalid>", t0, False)
            return None
        o = _ops.OPS.get(name)
        if o is None:
            if name == "auth":
                # Authenticated already: a second auth must still carry the right token.
                if self.srv.token is not None and not self._token_ok(args):
                    self._fatal(rid, AuthenticationError("wrong token", hint="pass token= to vecstore.connect()"))
                    return None
                self._finish(_response(rid, True), "auth", t0, True)
            else:
                self._finish(_error(rid, BadRequest(f"unknown op {name[:100]!r}")), "<invalid>", t0, False)
            return None
        try:
            _ops.check_writable(self.session, o)
        except VecstoreError as e:
            self._finish(_error(rid, e), name, t0, False)
            return None
        return _Request(rid, name, o, args, t0)

    def _start(self, req: _Request) -> None:
        o = req.op
        assert o is not None
        try:
            inline = o.inline(self.session, req.args)
        except Exception:  # noqa: BLE001 - a malformed argument: let the op itself report it
            inline = False
        if inline:
            out, ok = _run(o, self.session, req.rid, req.args)
            self._finish(out, req.name, req.t0, ok)
            return
        if o.kind == "write":
            self.writing = True
            pool = self.srv.write_pool
        else:
            self.reads += 1
            pool = self.srv.read_pool
        fut = self.loop.run_in_executor(pool, _run, o, self.session, req.rid, req.args)
        fut.add_done_callback(lambda f: self._done(f, req))

    def _done(self, fut: asyncio.Future[tuple[bytes, bool]], req: _Request) -> None:
        assert req.op is not None
        if req.op.kind == "write":
            self.writing = False
        else:
            self.reads -= 1
        if self.lost:
            if self.idle:
                self.session.close()
            return
        if fut.cancelled() or fut.exception() is not None:
            self._finish(_error(req.rid, RuntimeError("request aborted")), req.name, req.t0, False)
        else:
            out, ok = fut.result()
            self._finish(out, req.name, req.t0, ok)
        self._pump()

    def _token_ok(self, args: dict[str, Any]) -> bool:
        """Whether an auth request's ``token`` is the server's (constant-time compare)."""
        token = args.get("token")
        given = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else b""
        assert self.srv.token is not None
        return hmac.compare_digest(given, self.srv.token)

    def _authenticate(self, rid: Any, name: str, args: dict[str, Any], t0: float) -> None:
        if name == "auth" and self._token_ok(args):
            self.authed = True
            if self.auth_timer is not None:
                self.auth_timer.cancel()
                self.auth_timer = None
            self._finish(_response(rid, True), "auth", t0, True)
            return
        self.srv.stats.connections_rejected += 1
        if name == "auth":
            why = "wrong token"
        elif name == "<invalid>":
            why = "authenticate first: the first request must be a well-formed 'auth' request"
        else:
            why = f"authenticate first: send op 'auth' before {name[:50]!r}"
        self._fatal(rid, AuthenticationError(why, hint="pass token= to vecstore.connect()"))

    # -- output ----------------------------------------------------------------

    def _finish(self, body: bytes, name: str, t0: float, ok: bool) -> None:
        self.srv.stats.record(name, time.perf_counter() - t0, ok)
        self._send(body)

    def _send(self, body: bytes) -> None:
        t = self.transport
        if t is None or self.lost or t.is_closing():
            return
        self.srv.stats.bytes_out += len(body) + 4
        # Header and body in one send: two would wake the client twice.
        t.writelines((HEADER.pack(len(body)), body))

    def _fatal(self, rid: Any, exc: BaseException) -> None:
        """Send one error and close the connection (after the bytes are flushed)."""
        self._send(_error(rid, exc))
        self.closing = True
        self.pending.clear()
        if self.transport is not None:
            self.transport.close()

    def _auth_expired(self) -> None:
        self.auth_timer = None
        if not self.authed and not self.lost:
            self.srv.stats.connections_rejected += 1
            self._fatal(None, AuthenticationError("no authentication within the time limit"))

    def _stalled(self) -> None:
        self.stall_timer = None
        if self.write_paused and self.transport is not None:
            log.warning("dropping a client that has not read its responses for %.0f s", self.srv.stall_timeout)
            self.transport.abort()

    def begin_shutdown(self) -> None:
        if self.transport is not None and not self.read_paused and not self.closing:
            self.read_paused = True
            self.transport.pause_reading()
        self.buf.clear()
        self._maybe_close()


def _run(o: _ops.Op, session: _ops.Session, rid: Any, args: dict[str, Any]) -> tuple[bytes, bool]:
    """Run an op (on the loop or a worker thread) and encode its response."""
    try:
        return _response(rid, o.fn(session, args)), True
    except Exception as e:  # noqa: BLE001 - every failure becomes an error response
        return _error(rid, e), False


# -- the server -----------------------------------------------------------------


class Server:
    """A sidecar server for one open store (see the module doc).  Start with :meth:`start` in a running loop.

    ``log_flush_seconds`` sets ``store.log.flush_seconds`` (the feature log's
    background fsync; 0 turns it off); None, the default, leaves it as it is.
    ``vecstore serve`` passes 1.0.
    """

    def __init__(
        self,
        store: vecstore.Store,
        *,
        unix: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 7420,
        token: str | None = None,
        read_only: bool = False,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_connections: int = 1024,
        read_threads: int = 4,
        auth_timeout: float = 10.0,
        stall_timeout: float = 60.0,
        shutdown_grace: float = 30.0,
        log_flush_seconds: float | None = None,
    ) -> None:
        if token is not None and not token:
            raise VecstoreError("the token must not be empty")
        if unix is None and token is None and not is_loopback(host):
            raise VecstoreError(
                f"refusing to listen on non-loopback address {host!r} without a token",
                hint="pass --token-file, or bind 127.0.0.1 / a Unix socket",
            )
        if max_frame_bytes < 1024 or max_frame_bytes > (1 << 32) - 1:
            raise VecstoreError(f"max_frame_bytes must be in [1024, 2**32 - 1], got {max_frame_bytes}")
        if max_connections < 1:
            raise VecstoreError(f"max_connections must be at least 1, got {max_connections}")
        self.store = store
        self.unix = os.fspath(unix) if unix is not None else None
        self.host, self.port = host, port
        self.token = token.encode("utf-8") if token is not None else None
        self.read_only = read_only or store.readonly
        if log_flush_seconds is not None and not self.read_only:
            # Clients log through the server and cannot time its fsyncs: bound
            # what an OS crash loses to about this many seconds (0: flush() only).
            store.log.flush_seconds = log_flush_seconds or None
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections
        self.auth_timeout, self.stall_timeout, self.shutdown_grace = auth_timeout, stall_timeout, shutdown_grace
        self.stats = Stats()
        self.conns: set[_Connection] = set()
        self.stopping = False
        self.read_pool = concurrent.futures.ThreadPoolExecutor(max(1, read_threads), thread_name_prefix="vs-read")
        self.write_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vs-write")
        self.shared = _ops.SharedState(store, read_only=self.read_only, hello=self._hello, stats=self._stats)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._listeners: list[asyncio.AbstractServer] = []
        self._stopped: asyncio.Event | None = None
        self._conn_gone: asyncio.Event = None  # type: ignore[assignment]
        self.address = ""

    def _hello(self) -> dict[str, Any]:
        tables = {name: self.store.table(name).schema.to_dict() for name in self.store.tables()}
        return {
            "server": f"vecstore {vecstore.__version__}",
            "version": vecstore.__version__,
            "protocol": PROTOCOL_VERSION,
            "read_only": self.read_only,
            "max_frame_bytes": self.max_frame_bytes,
            "store": {"uuid": self.store.uuid, "seed": self.store.seed, "hash_bits": self.store.hash_bits},
            "tables": tables,
            "ops": sorted(_ops.OPS) + ["auth"],
        }

    def _stats(self) -> dict[str, Any]:
        return self.stats.report(connections=len(self.conns), read_only=self.read_only)

    async def start(self) -> None:
        """Bind and listen; ``address`` then holds the URL clients connect to."""
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._conn_gone = asyncio.Event()
        if self.unix is not None:
            sock = bind_unix(self.unix)
            srv = await self.loop.create_unix_server(lambda: _Connection(self), sock=sock)
            self.address = f"unix://{self.unix}"
        else:
            srv = await self.loop.create_server(
                lambda: _Connection(self), self.host, self.port, reuse_address=True, backlog=512
            )
            port = srv.sockets[0].getsockname()[1]
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.address = f"tcp://{host}:{port}"
        self._listeners.append(srv)
        # Build each table's Bloom filter now rather than inside a client's first may_contain.
        self.loop.run_in_executor(self.read_pool, self._warm_up)
        log.info("vecstore server listening on %s (store %s)", self.address, self.store.path)

    def _warm_up(self) -> None:
        with contextlib.suppress(VecstoreError):
            for name in self.store.tables():
                self.store.table(name).may_contain([])

    def stop(self) -> None:
        """Stop accepting, answer what was received, close (call on the loop; see :meth:`request_stop`)."""
        if self.stopping:
            return
        self.stopping = True
        self.loop.create_task(self._shutdown())

    def request_stop(self) -> None:
        """:meth:`stop` from any thread."""
        self.loop.call_soon_threadsafe(self.stop)

    async def _shutdown(self) -> None:
        for srv in self._listeners:
            srv.close()
        if self.unix is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.unix)
        for c in list(self.conns):
            c.begin_shutdown()
        deadline = self.loop.time() + self.shutdown_grace
        while self.conns and self.loop.time() < deadline:
            self._conn_gone.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._conn_gone.wait(), 0.05)
            for c in list(self.conns):
                c._maybe_close()
        for c in list(self.conns):
            if c.transport is not None:
                c.transport.abort()
        # Requests still on a thread finish before the store may close.
        await self.loop.run_in_executor(None, self._join_pools)
        assert self._stopped is not None
        self._stopped.set()

    def _join_pools(self) -> None:
        self.write_pool.shutdown(wait=True)
        self.read_pool.shutdown(wait=True)

    async def wait_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()


async def _serve_async(server: Server, *, signals: bool, started: Any = None) -> None:
    await server.start()
    if signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            server.loop.add_signal_handler(sig, server.stop)
    if started is not None:
        started(server)
    await server.wait_stopped()


def serve(
    store: vecstore.Store | str | os.PathLike[str],
    *,
    token_file: str | os.PathLike[str] | None = None,
    ready: Any = None,
    **options: Any,
) -> None:
    """Run a server until SIGTERM or SIGINT, then close the store cleanly.

    ``store`` is an open Store or a path (opened here, created when missing
    unless ``read_only=True``, and closed on exit).  ``options`` are those of
    :class:`Server`.  ``ready(server)`` is called once it listens.  This
    process's thread switch interval is lowered to 1 ms, so a thread running
    Python code (a large write) delays socket I/O by at most that.

    Example::

        serve("shop.vs", unix="/run/vecstore.sock", token_file="/etc/vecstore/token")
    """
    if token_file is not None:
        options["token"] = read_token_file(token_file)
    own = not isinstance(store, vecstore.Store)
    st = vecstore.open(store, readonly=bool(options.get("read_only"))) if own else store
    try:
        server = Server(st, **options)
        sys.setswitchinterval(0.001)
        in_main = threading.current_thread() is threading.main_thread()  # signal handlers need the main thread
        asyncio.run(_serve_async(server, signals=in_main, started=ready))
    finally:
        if own:
            st.close()


class RunningServer:
    """A server on its own thread and event loop (:func:`start_in_thread`); ``stop()`` shuts it down."""

    def __init__(self, server: Server, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread
        self.address = server.address

    def stop(self, timeout: float = 60.0) -> None:
        if self.thread.is_alive():
            self.server.request_stop()
            self.thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(store: vecstore.Store, **options: Any) -> RunningServer:
    """Start a :class:`Server` for ``store`` on a background thread; returns once it listens.

    The store stays open after ``stop()`` (the caller owns it).
    """
    server = Server(store, **options)
    started = threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(_serve_async(server, signals=False, started=lambda s: started.set()))
        except BaseException as e:  # noqa: BLE001 - handed to the starting thread
            failure.append(e)
            started.set()

    thread = threading.Thread(target=main, name="vecstore-server", daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    if not started.is_set():
        raise VecstoreError("the server did not start within 30 s")
    return RunningServer(server, thread)
