"""``client.log``: the store's feature log through the server, for both clients.

The methods, arguments and return types of :class:`vecstore.featurelog.FeatureLog`
(``store.log``); each call is ``store.log.<method>(...)`` run by the server
(server/ops_log.py).  Two differences follow from running elsewhere:
``retrieval(rng=...)`` cannot be sent (the server's sampler is used), and
``export(path)`` writes on the server's filesystem.

Example::

    client.log.retrieval("req-1", candidate_ids, scores, table="items", sample=0.01)
    client.log.label("req-1", candidate_ids[0], "click")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from vecstore.errors import InvalidValueError

from . import calls
from .calls import Call

if TYPE_CHECKING:
    from .aclient import AsyncClient
    from .client import Client

__all__ = ["AsyncRemoteLog", "RemoteLog"]


def _shown(shown: Any) -> Any:
    if shown is None or isinstance(shown, np.ndarray):
        return shown
    if isinstance(shown, (set, frozenset, tuple)):
        return list(shown)
    return shown


def _no_rng(rng: Any) -> None:
    if rng is not None:
        raise InvalidValueError(
            "retrieval(rng=...) cannot be sent to a server", hint="the server samples with its own generator"
        )


class _Calls:
    """The Call of each log method (shared by the sync and async classes)."""

    @staticmethod
    def retrieval(request_id: Any, ids: Any, scores: Any, kw: dict[str, Any], compact: bool) -> Call:
        return calls.log("retrieval", request_id, calls.log_ids(ids, compact), scores, **kw)

    @staticmethod
    def ranking(request_id: Any, ids: Any, scores: Any, kw: dict[str, Any], compact: bool) -> Call:
        kw["shown"] = _shown(kw.get("shown"))
        return calls.log("ranking", request_id, calls.log_ids(ids, compact), scores, **kw)


def _flush_seconds_is_the_servers(*_: Any) -> Any:
    raise InvalidValueError(
        "flush_seconds of a remote log is the server's: it cannot be read or set through a client",
        hint="start the server with `vecstore serve --log-flush-seconds S` (default 1 s), or call log.flush()",
    )


class RemoteLog:
    """``store.log`` of the server's store (sync client)."""

    # The library's log has it; here it would be set on the client object and do nothing.
    flush_seconds = property(_flush_seconds_is_the_servers, _flush_seconds_is_the_servers)

    def __init__(self, client: Client) -> None:
        self._client = client

    def _run(self, call: Call) -> Any:
        return self._client._run(call)

    def retrieval(
        self, request_id: Any, ids: Any, scores: Any, *, table: str, user: Any = None, source: str | None = None,
        features: Any = None, sample: float = 0.01, context: Any = None, ts: Any = None, rng: Any = None,
    ) -> int:
        """As :meth:`vecstore.featurelog.FeatureLog.retrieval`."""
        _no_rng(rng)
        kw = {
            "table": table, "user": user, "source": source, "features": features, "sample": sample,
            "context": context, "ts": ts,
        }
        return self._run(_Calls.retrieval(request_id, ids, scores, kw, self._client.protocol_version >= 2))

    def ranking(
        self, request_id: Any, ids: Any, scores: Any, *, table: str, features: Any = None, positions: Any = None,
        shown: Any = None, user: Any = None, source: str | None = None, context: Any = None, ts: Any = None,
    ) -> int:
        """As :meth:`vecstore.featurelog.FeatureLog.ranking`."""
        kw = {
            "table": table, "features": features, "positions": positions, "shown": shown, "user": user,
            "source": source, "context": context, "ts": ts,
        }
        return self._run(_Calls.ranking(request_id, ids, scores, kw, self._client.protocol_version >= 2))

    def label(self, request_id: Any, item: Any, name: str, value: float = 1.0, *, ts: Any = None) -> None:
        """As :meth:`vecstore.featurelog.FeatureLog.label`."""
        self._run(calls.log("label", request_id, item, name, value, ts=ts))

    def flush(self) -> None:
        self._run(calls.log("flush"))

    def info(self) -> Any:
        return self._run(calls.log("info"))

    def verify(self) -> list[str]:
        return self._run(calls.log("verify"))

    def rebuild_index(self) -> None:
        self._run(calls.log("rebuild_index"))

    def export(self, path: str | os.PathLike[str], **kwargs: Any) -> Any:
        """As :meth:`~vecstore.featurelog.FeatureLog.export`; ``path`` is on the server's filesystem."""
        return self._run(calls.log("export", os.fspath(path), **kwargs))

    def stats(self, *, stage: str, feature: str, **kwargs: Any) -> Any:
        return self._run(calls.log("stats", stage=stage, feature=feature, **kwargs))

    def drift(self, features: Any = None, **kwargs: Any) -> Any:
        return self._run(calls.log("drift", features, **kwargs))

    def prune(self, *, before: Any) -> Any:
        return self._run(calls.log("prune", before=before))

    def compact(self) -> Any:
        return self._run(calls.log("compact"))

    def __repr__(self) -> str:
        return f"<vecstore.RemoteLog at {self._client.url}>"


class AsyncRemoteLog:
    """``store.log`` of the server's store, every method awaited (asyncio client)."""

    flush_seconds = property(_flush_seconds_is_the_servers, _flush_seconds_is_the_servers)

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def _run(self, call: Call) -> Any:
        return await self._client._run(call)

    async def retrieval(
        self, request_id: Any, ids: Any, scores: Any, *, table: str, user: Any = None, source: str | None = None,
        features: Any = None, sample: float = 0.01, context: Any = None, ts: Any = None, rng: Any = None,
    ) -> int:
        _no_rng(rng)
        kw = {
            "table": table, "user": user, "source": source, "features": features, "sample": sample,
            "context": context, "ts": ts,
        }
        return await self._run(_Calls.retrieval(request_id, ids, scores, kw, self._client.protocol_version >= 2))

    async def ranking(
        self, request_id: Any, ids: Any, scores: Any, *, table: str, features: Any = None, positions: Any = None,
        shown: Any = None, user: Any = None, source: str | None = None, context: Any = None, ts: Any = None,
    ) -> int:
        kw = {
            "table": table, "features": features, "positions": positions, "shown": shown, "user": user,
            "source": source, "context": context, "ts": ts,
        }
        return await self._run(_Calls.ranking(request_id, ids, scores, kw, self._client.protocol_version >= 2))

    async def label(self, request_id: Any, item: Any, name: str, value: float = 1.0, *, ts: Any = None) -> None:
        await self._run(calls.log("label", request_id, item, name, value, ts=ts))

    async def flush(self) -> None:
        await self._run(calls.log("flush"))

    async def info(self) -> Any:
        return await self._run(calls.log("info"))

    async def verify(self) -> list[str]:
        return await self._run(calls.log("verify"))

    async def rebuild_index(self) -> None:
        await self._run(calls.log("rebuild_index"))

    async def export(self, path: str | os.PathLike[str], **kwargs: Any) -> Any:
        return await self._run(calls.log("export", os.fspath(path), **kwargs))

    async def stats(self, *, stage: str, feature: str, **kwargs: Any) -> Any:
        return await self._run(calls.log("stats", stage=stage, feature=feature, **kwargs))

    async def drift(self, features: Any = None, **kwargs: Any) -> Any:
        return await self._run(calls.log("drift", features, **kwargs))

    async def prune(self, *, before: Any) -> Any:
        return await self._run(calls.log("prune", before=before))

    async def compact(self) -> Any:
        return await self._run(calls.log("compact"))
