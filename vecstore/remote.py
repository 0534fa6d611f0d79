"""Using a store through the sidecar server: ``vecstore.connect`` and ``vecstore.aconnect``.

Why: services in other processes (or other languages) share one store through
a sidecar (``vecstore serve``) next to them.  Switching a service from the
embedded library to the sidecar is one line::

    store = vecstore.open("shop.vs")                          # embedded
    store = vecstore.connect("unix:///run/vecstore.sock")     # sidecar

``client.table("items")`` then has the same methods, arguments, return types
and exceptions as a local :class:`vecstore.Table`.

The clients live in ``vecstore.server`` (the library itself opens no socket);
this module only holds what a user imports from ``vecstore``: the two connect
functions, the errors a remote call adds, and the server's statistics report.

Example::

    with vecstore.connect("tcp://127.0.0.1:7420", token=os.environ["VS_TOKEN"]) as client:
        rows = client.table("items").get(["item-1", "item-2"], features=["price"])
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import VecstoreError

__all__ = [
    "AuthenticationError",
    "OpStats",
    "ProtocolError",
    "RemoteError",
    "ServerConnectionError",
    "ServerStats",
    "ServerTimeoutError",
    "UnsupportedOperationError",
    "aconnect",
    "connect",
]


class RemoteError(VecstoreError):
    """Base class of the errors only a remote store raises (connection, protocol, auth).

    Errors of the operation itself (``InvalidIdError``, ``TableNotFoundError``...)
    arrive as the same classes a local store raises.
    """


class ServerConnectionError(RemoteError, ConnectionError):
    """The server cannot be reached, or the connection broke during a call.

    A read is retried once on a fresh connection before this is raised; for a
    write that was sent, the message says it may or may not have been applied.
    """


class ServerTimeoutError(RemoteError, TimeoutError):
    """No answer within the client's ``timeout``; the connection is dropped and the next call reconnects."""


class ProtocolError(RemoteError):
    """The server could not understand a request: malformed frame, unknown op, bad arguments, frame too large."""


class AuthenticationError(RemoteError, PermissionError):
    """The server requires a token and none, or a wrong one, was given."""


class UnsupportedOperationError(RemoteError, NotImplementedError):
    """The server knows the op but this build of vecstore does not offer it."""


@dataclass(frozen=True)
class OpStats:
    """One op's counters and latency percentiles (microseconds, over its last 4,096 requests).

    Latency is measured inside the server: from a request's frame being
    complete to its response being handed to the socket.
    """

    op: str
    requests: int
    errors: int
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float


@dataclass(frozen=True)
class ServerStats:
    """What a server has done since it started: ``client.stats()``."""

    server: str
    protocol: int
    uptime_s: float
    read_only: bool
    connections: int  # open now
    connections_total: int
    connections_rejected: int  # over --max-connections, or failed authentication
    requests: int
    errors: int
    bytes_in: int
    bytes_out: int
    ops: dict[str, OpStats] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServerStats:
        ops = {name: OpStats(**o) for name, o in d.get("ops", {}).items()}
        return cls(**{**d, "ops": ops})


def connect(url: str, *, token: str | None = None, timeout: float = 5.0) -> Any:
    """Connect to a sidecar server; returns a client that mirrors :class:`vecstore.Store`.

    ``url`` is ``unix:///path/to/socket`` or ``tcp://host:port``.  ``token`` is
    the server's shared secret when it was started with ``--token-file``.
    ``timeout`` (seconds) bounds connecting and each call; a call past it
    raises :class:`ServerTimeoutError`.  Connections are reused, and
    re-established when the server restarts.

    Example::

        client = vecstore.connect("unix:///run/vecstore.sock")
        items = client.table("items")
        items.put(["a"], {"price": [1.0]})
        client.close()
    """
    # Imported here: the library layer never imports socket code (tests/test_packaging.py).
    mod = importlib.import_module("vecstore.server.client")
    return mod.Client(url, token=token, timeout=timeout)


async def aconnect(url: str, *, token: str | None = None, timeout: float = 5.0) -> Any:
    """The asyncio twin of :func:`connect`: every method of the client and its tables is awaited.

    Example::

        client = await vecstore.aconnect("unix:///run/vecstore.sock")
        items = await client.table("items")
        rows = await items.get(["a", "b"])
        await client.close()
    """
    mod = importlib.import_module("vecstore.server.aclient")
    client = mod.AsyncClient(url, token=token, timeout=timeout)
    await client.connect()
    return client
