"""The sidecar server (``vecstore.server``): one store shared by many processes over a local socket.

``vecstore serve PATH --unix /run/vecstore.sock`` (or ``python -m
vecstore.server``) runs :func:`serve`; ``vecstore.connect(url)`` and
``vecstore.aconnect(url)`` return the clients in :mod:`.client` and
:mod:`.aclient`.  The wire protocol (length-prefixed msgpack frames, numpy
arrays as an extension type) is in :mod:`.protocol` and docs/protocol.md;
the ops the server answers are in :mod:`.ops`.

This package may use sockets and asyncio; the library (``vecstore``) never does.

Example::

    import vecstore
    from vecstore.server import start_in_thread

    with vecstore.open("shop.vs") as store, start_in_thread(store, unix="/tmp/vs.sock") as running:
        client = vecstore.connect(running.address)
        print(client.tables())
"""

from .protocol import PROTOCOL_VERSION
from .server import RunningServer, Server, serve, start_in_thread

__all__ = ["PROTOCOL_VERSION", "RunningServer", "Server", "serve", "start_in_thread"]
