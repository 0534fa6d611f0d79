"""Nearest-neighbour search over a table's vector feature: planning, exact search, rerank.

``Table.search`` and ``Table.search_by_id`` are thin wrappers over
:func:`search`.  One search runs in one LMDB read transaction with the
index's lock held: the index is caught up to exactly that snapshot, so every
hit is a row of the snapshot, with its current vector and original ID.

Plans (docs/vector-search.md):

* ``exact=True``, or a feature stored with ``index=None``: numpy over the
  stored vectors (the ground truth tests and benchmarks compare against).
* a filter (``where``/``among``) that few rows match (at most
  ``EXACT_MAX_ROWS`` rows or under ``EXACT_MAX_SELECTIVITY`` of the table):
  exact search over just the matching rows.
* otherwise HNSW: ``k * rerank`` candidates (``k`` when not reranking), over-
  sampled by 1/selectivity under a filter and widened 4x at a time until
  every query has ``k`` matching hits, falling back to exact search over the
  matching rows if widening reaches the whole table; so a filtered search
  returns ``k`` hits whenever at least ``k`` rows match.
* reranking (default for ``i8`` and ``b1`` indexes) recomputes the
  candidates' distances exactly from the stored vectors and keeps the best k.

Distances: ``cos`` is 1 - cosine similarity, ``l2`` squared Euclidean
distance, ``ip`` 1 - dot product (usearch's definitions), smaller is nearer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .errors import IdNotFoundError, InvalidValueError, UnknownFeatureError
from .features import Vector
from .filters import compile_where
from .hashing import decode_id
from .records import key_bytes
from .rows import arrow_ids
from .vector_index import vectors_of

if TYPE_CHECKING:
    from .table import Table

__all__ = ["EXACT_MAX_ROWS", "EXACT_MAX_SELECTIVITY", "SearchResult", "exact_distances", "search", "search_by_id"]

EXACT_MAX_ROWS = 2048
EXACT_MAX_SELECTIVITY = 0.01
_SCAN_CHUNK = 65_536
_DEFAULT_RERANK = {"i8": 4, "b1": 16}


@dataclass(frozen=True)
class SearchResult:
    """Hits of a search, nearest first.

    For a 1-D query, ``ids`` is a list, ``keys`` a u64 array and ``distances``
    a float32 array, each with one entry per hit.  For a 2-D batch each field
    holds one such sequence per query (``batched=True``); a query gets fewer
    than ``k`` hits only when fewer than ``k`` rows can match.

    Example::

        hits = items.search(user_vec, k=5)
        for item_id, d in zip(hits.ids, hits.distances):
            print(item_id, d)
    """

    ids: list[Any]
    keys: Any
    distances: Any
    batched: bool = False

    def __len__(self) -> int:
        return len(self.ids)

    def _flat(self) -> Iterator[tuple[int, list[Any], np.ndarray, np.ndarray]]:
        if self.batched:
            yield from zip(range(len(self.ids)), self.ids, self.keys, self.distances)
        else:
            yield 0, self.ids, self.keys, self.distances

    def to_arrow(self) -> pa.Table:
        """Columns ``query`` (batches only), ``rank``, ``id``, ``key``, ``distance``: one row per hit."""
        q, rank, ids, keys, dist = [], [], [], [], []
        for qi, i, k, d in self._flat():
            q.extend([qi] * len(i))
            rank.extend(range(len(i)))
            ids.extend(i)
            keys.append(np.asarray(k, dtype=np.uint64))
            dist.append(np.asarray(d, dtype=np.float32))
        cols = {
            "rank": pa.array(rank, type=pa.int32()),
            "id": arrow_ids(ids),
            "key": pa.array(np.concatenate(keys) if keys else np.empty(0, np.uint64)),
            "distance": pa.array(np.concatenate(dist) if dist else np.empty(0, np.float32)),
        }
        if self.batched:
            cols = {"query": pa.array(q, type=pa.int32()), **cols}
        return pa.table(cols)

    def to_pylist(self) -> list[Any]:
        """``[{"id", "key", "distance"}, ...]``; for a batch, one such list per query."""
        out = [
            [{"id": i, "key": int(k), "distance": float(d)} for i, k, d in zip(ids, keys, dist)]
            for _, ids, keys, dist in self._flat()
        ]
        return out if self.batched else out[0]


# -- validation -----------------------------------------------------------------


def _vector_feature(table: Table, feature: str | None) -> str:
    if feature is None and len(table.schema.vector_features) == 1:
        return table.schema.vector_features[0]
    vectors = list(table.schema.vector_features)
    if feature is None:
        if len(vectors) != 1:
            if not vectors:
                raise UnknownFeatureError(f"table {table.name!r} has no vector feature to search")
            raise InvalidValueError(
                f"table {table.name!r} has several vector features ({', '.join(vectors)})", hint="pass feature=... (CLI: --feature)"
            )
        return vectors[0]
    if feature not in table.schema.features:
        raise UnknownFeatureError(f"table {table.name!r} has no feature {feature!r} (vector features: {', '.join(vectors)})")
    if feature not in vectors:
        raise InvalidValueError(f"feature {feature!r} is a {table.schema.features[feature].kind}, not a vector; search needs a vector feature")
    return feature


def _queries(query: Any, spec: Vector, name: str) -> tuple[np.ndarray, bool]:
    if type(query) is np.ndarray and query.dtype == np.float32 and query.shape == (spec.dim,) and query.flags.c_contiguous:
        # The latency-bound case, one float32 vector: its largest magnitude is
        # finite and non-zero exactly when it has no NaN/inf and is not the
        # zero vector, so one reduction stands in for the checks below.
        top = float(np.abs(query).max())
        if 0.0 < top < math.inf:
            return query.reshape(1, -1), False
    try:
        q = np.asarray(query, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidValueError(f"query must be a vector of {spec.dim} numbers or a 2-D batch of them ({e})") from None
    if q.ndim not in (1, 2) or q.shape[-1] != spec.dim:
        raise InvalidValueError(
            f"feature {name!r} has dimension {spec.dim}; query has shape {q.shape}",
            hint=f"pass a vector of shape ({spec.dim},) or a batch of shape (n, {spec.dim})",
        )
    if not np.isfinite(q).all():
        raise InvalidValueError("query contains NaN or infinity")
    q2 = np.ascontiguousarray(q.reshape(-1, spec.dim))
    if spec.metric == "cos" and not q2.any(axis=1).all():
        # Cosine distance to a zero vector is undefined: every row would tie.
        raise InvalidValueError("query is the zero vector, which has no direction for cosine distance",
                                hint="pass a non-zero vector, or use a table whose vector feature has metric='l2' or 'ip'")
    return q2, q.ndim == 2


def _positive_int(name: str, v: Any, *, allow_none: bool = False, minimum: int = 1) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise InvalidValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


# -- exact search ----------------------------------------------------------------


def exact_distances(queries: np.ndarray, vectors: np.ndarray, metric: str) -> np.ndarray:
    """(queries x vectors) distance matrix with usearch's definitions, float32."""
    if metric == "cos":
        qn = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
        vn = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)
        return (1.0 - qn @ vn.T).astype(np.float32)
    if metric == "ip":
        return (1.0 - queries @ vectors.T).astype(np.float32)
    d = (queries * queries).sum(1)[:, None] + (vectors * vectors).sum(1)[None, :] - 2.0 * (queries @ vectors.T)
    return np.maximum(d, 0.0).astype(np.float32)


def _topk(dist: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` per row of ``dist`` (ties broken by key, for determinism): (keys, distances)."""
    n = dist.shape[1]
    if n > k:
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (len(dist), n))
    d = np.take_along_axis(dist, part, axis=1)
    kk = keys[part] if keys.ndim == 1 else np.take_along_axis(keys, np.ascontiguousarray(part), axis=1)
    order = np.lexsort((kk, d), axis=1)
    return np.take_along_axis(kk, order, axis=1), np.take_along_axis(d, order, axis=1)


def _read(
    table: Table, txn: Any, keys: np.ndarray, spec: Vector, name: str, vectors: bool, *, want_ids: bool = True
) -> tuple[np.ndarray, list[Any], np.ndarray | None]:
    """Rows of distinct ``keys``: (found mask, IDs of found rows, their vectors or None; NaN rows lack one)."""
    W = table.schema.record_size
    vals = list(map(txn.cursor(table._db("rows")).get, key_bytes(keys)))
    found = np.fromiter(map(bool, vals), dtype=bool, count=len(vals))
    hit = [v for v in vals if v] if not found.all() else vals
    ids = [decode_id(v[W:]) for v in hit] if want_ids else []
    if not vectors:
        return found, ids, None
    rec = np.frombuffer(b"".join(v[:W] for v in hit), dtype=table.schema.record_dtype)
    vecs, present = vectors_of(spec, name, rec, table.schema.presence_bit[name])
    vecs[~present] = np.nan
    return found, ids, vecs


def _exact_over(q: np.ndarray, keys: np.ndarray, vecs: np.ndarray, metric: str, k: int, exclude: int | None) -> tuple[np.ndarray, np.ndarray]:
    ok = ~np.isnan(vecs[:, 0]) if len(vecs) else np.zeros(0, dtype=bool)
    if exclude is not None:
        ok &= keys != exclude
    keys, vecs = keys[ok], vecs[ok]
    if len(keys) == 0:
        return np.zeros((len(q), 0), np.uint64), np.zeros((len(q), 0), np.float32)
    return _topk(exact_distances(q, vecs, metric), keys, k)


def _exact_scan(table: Table, txn: Any, q: np.ndarray, spec: Vector, name: str, k: int, exclude: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over every stored vector, a chunk of rows at a time (bounded memory)."""
    W = table.schema.record_size
    best_k = np.zeros((len(q), 0), np.uint64)
    best_d = np.zeros((len(q), 0), np.float32)
    kb: list[bytes] = []
    vals: list[bytes] = []

    def merge() -> None:
        nonlocal best_k, best_d
        keys = np.frombuffer(b"".join(kb), dtype=">u8").astype(np.uint64)
        rec = np.frombuffer(b"".join(vals), dtype=table.schema.record_dtype)
        vecs, present = vectors_of(spec, name, rec, table.schema.presence_bit[name])
        vecs[~present] = np.nan
        ck, cd = _exact_over(q, keys, vecs, spec.metric, k, exclude)
        allk, alld = np.concatenate([best_k, ck], axis=1), np.concatenate([best_d, cd], axis=1)
        order = np.lexsort((allk, alld), axis=1)[:, :k]
        best_k, best_d = np.take_along_axis(allk, order, axis=1), np.take_along_axis(alld, order, axis=1)
        kb.clear()
        vals.clear()

    for key, v in txn.cursor(table._db("rows")):
        kb.append(key)
        vals.append(v[:W])
        if len(kb) == _SCAN_CHUNK:
            merge()
    if kb:
        merge()
    return best_k, best_d


# -- the planner -------------------------------------------------------------------


def _rows_to_hits(
    table: Table, txn: Any, keys: np.ndarray, dists: np.ndarray, counts: np.ndarray, cache: dict[int, Any] | None = None
) -> tuple[list[list[Any]], list[np.ndarray], list[np.ndarray]]:
    """Attach original IDs to per-query hit keys (row b holds ``counts[b]`` valid hits).

    ``cache`` (the index's key -> ID map, valid for the snapshot the index is
    synced to) spares the row reads of IDs seen before; misses are read and added.
    """
    W = table.schema.record_size
    get = txn.cursor(table._db("rows")).get
    out_ids, out_keys, out_d = [], [], []
    for b in range(len(keys)):
        kk, dd = keys[b, : counts[b]], dists[b, : counts[b]].astype(np.float32, copy=False)
        klist = kk.tolist()
        ids = [cache.get(x) for x in klist] if cache is not None else [None] * len(klist)
        if None in ids:
            vals = list(map(get, key_bytes(kk)))
            if None in vals:  # defensive: the index is synced to this snapshot, so every hit has a row
                keep = np.fromiter(map(bool, vals), dtype=bool, count=len(vals))
                kk, dd, vals = kk[keep], dd[keep], [v for v in vals if v]
                klist = kk.tolist()
            ids = [decode_id(v[W:]) for v in vals]
            if cache is not None:
                cache.update(zip(klist, ids))
        out_ids.append(ids)
        out_keys.append(kk)
        out_d.append(dd)
    return out_ids, out_keys, out_d


def _fast_search(table: Table, vi: Any, q: np.ndarray, k: int, ef: int | None, threads: int) -> Any:
    """Unfiltered search without a transaction, when nothing was committed since the index's sync.

    The index then reflects the newest snapshot exactly and the ID cache is
    valid for it.  IDs the cache lacks are read in a transaction on that same
    snapshot (not by searching again); a commit meanwhile falls back to the
    full path (returns None).
    """
    env = table._env
    with vi.lock:
        if not (vi.ready and table._valid and not env._closed) or k >= len(vi.index) or env.last_txnid() != vi.txnid:
            return None
        rk, rd, rc = vi.search(q, k, ef, threads)
        cache = vi.ids
        out_ids, out_keys, out_d = [], [], []
        for b in range(len(q)):
            kk = rk[b, : rc[b]]
            ids = list(map(cache.get, kk.tolist()))
            if None in ids:
                with env.read() as txn:
                    if txn.id() != vi.txnid:
                        return None  # a commit landed since the check: the full path handles it
                    return _rows_to_hits(table, txn, rk, rd, rc, cache)
            out_ids.append(ids)
            out_keys.append(kk)
            out_d.append(rd[b, : rc[b]].astype(np.float32, copy=False))
        return out_ids, out_keys, out_d


def _rerank(table: Table, txn: Any, q: np.ndarray, spec: Vector, name: str, keys: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact distances for each query's candidates from the stored vectors; keep the best k."""
    if len(q) == 1:
        # One query (the latency-bound case): its candidates are distinct already.
        cand = keys[0, : counts[0]]
        found, _, vecs = _read(table, txn, cand, spec, name, True, want_ids=False)
        assert vecs is not None
        cand = cand[found]
        ok = ~np.isnan(vecs[:, 0])
        cand, vecs = cand[ok], vecs[ok]
        d = exact_distances(q, vecs, spec.metric)[0]
        order = np.lexsort((cand, d))[:k]
        n = len(order)
        return cand[order][None, :], d[order][None, :], np.array([n])
    valid = np.arange(keys.shape[1])[None, :] < counts[:, None]
    uniq = np.unique(keys[valid])
    found, _, vecs = _read(table, txn, uniq, spec, name, True, want_ids=False)
    assert vecs is not None
    full = np.full((len(uniq) + 1, spec.dim), np.nan, dtype=np.float32)  # last row: padding slots
    full[:-1][found] = vecs
    if spec.metric == "cos":
        full /= np.maximum(np.linalg.norm(full, axis=1, keepdims=True), 1e-30)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    idx = np.where(valid, np.searchsorted(uniq, keys), len(uniq))
    out_d = np.empty(keys.shape, np.float32)
    for lo in range(0, len(q), 256):  # bounds the (queries, candidates, dim) gather
        v = full[idx[lo : lo + 256]]
        qq = q[lo : lo + 256]
        dot = np.einsum("bcd,bd->bc", v, qq)
        if spec.metric == "l2":
            d = (v * v).sum(2) + (qq * qq).sum(1)[:, None] - 2 * dot
        else:
            d = 1.0 - dot
        out_d[lo : lo + 256] = d
    out_d[np.isnan(out_d)] = np.inf
    if spec.metric == "l2":
        np.maximum(out_d, 0, out=out_d)
    kk, dd = _topk(out_d, keys, min(k, keys.shape[1]))
    return kk, dd, np.minimum((dd < np.inf).sum(1), k)


def _filtered(keys: np.ndarray, counts: np.ndarray, allowed: np.ndarray | None, exclude: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Mask of usable hits: within counts, in ``allowed`` (sorted) and not ``exclude``."""
    ok = np.arange(keys.shape[1])[None, :] < counts[:, None]
    if allowed is not None:
        pos = np.minimum(np.searchsorted(allowed, keys), max(len(allowed) - 1, 0))
        ok &= allowed[pos] == keys if len(allowed) else False
    if exclude is not None:
        ok &= keys != exclude
    return ok, ok.sum(1)


def _compact(keys: np.ndarray, dists: np.ndarray, ok: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move each row's usable hits to the front (order kept) and cut to ``width``."""
    order = np.argsort(~ok, axis=1, kind="stable")
    kk, dd = np.take_along_axis(keys, order, axis=1)[:, :width], np.take_along_axis(dists, order, axis=1)[:, :width]
    return kk, dd, np.minimum(ok.sum(1), width)


def search(
    table: Table,
    query: Any,
    k: int = 10,
    *,
    feature: str | None = None,
    ef: int | None = None,
    exact: bool = False,
    rerank: int | None = None,
    where: Any = None,
    among: Any = None,
    threads: int = 0,
    exclude: int | None = None,
) -> SearchResult:
    """See :meth:`vecstore.Table.search`."""
    name = _vector_feature(table, feature)
    spec = table.schema.features[name]
    assert isinstance(spec, Vector)
    q, batched = _queries(query, spec, name)
    k = _positive_int("k", k)  # type: ignore[assignment]
    ef = _positive_int("ef", ef, allow_none=True)
    rerank = _positive_int("rerank", rerank, allow_none=True, minimum=0)
    threads = _positive_int("threads", threads, minimum=0)  # type: ignore[assignment]
    clauses = compile_where(where, table)
    among_keys = None
    if among is not None:
        if isinstance(among, (set, frozenset)):
            among = list(among)  # an allow-list as a set is natural; order does not matter here
        among_keys = np.unique(table._ids(among).keys)
    vi = table._index(name) if spec.index is not None else None
    if rerank is None:
        # An i8/b1 index compares an i8/b1-quantized query with its own codes;
        # the exact distance to the stored vector (dequantized) is sharper even
        # when the storage codec is the same, and near-ties are what it reorders.
        rerank = _DEFAULT_RERANK.get(vi.dtype, 0) if vi is not None else 0
    if vi is not None and vi.dtype == "b1":
        rerank = max(rerank, 1)  # Hamming counts are not the feature's metric: always report exact distances
    if len(q) == 0:
        return SearchResult([], [], [], batched=True)
    if vi is not None and not (exact or clauses or among_keys is not None or exclude is not None or rerank):
        fast = _fast_search(table, vi, q, k, ef, threads)
        if fast is not None:
            ids, keys, dists = fast
            return SearchResult(ids, keys, dists, batched=True) if batched else SearchResult(ids[0], keys[0], dists[0])
    table._open()
    lock = vi.lock if vi is not None else contextlib.nullcontext()
    with lock, table._env.read() as txn:
        table._check_valid(txn)
        allowed = None
        if clauses:
            fc = table._filter_state
            with fc.lock:
                fc.sync_in(txn)
                allowed = fc.match(clauses)
        if among_keys is not None:
            allowed = among_keys if allowed is None else np.intersect1d(allowed, among_keys, assume_unique=True)
        total = txn.stat(table._db("rows"))["entries"]
        # An index search over everything would be approximate and no faster.
        use_exact = exact or vi is None or (allowed is None and k * max(rerank, 1) >= total)
        if allowed is not None and not use_exact:
            use_exact = len(allowed) <= EXACT_MAX_ROWS or len(allowed) < EXACT_MAX_SELECTIVITY * total
        if use_exact:
            if allowed is None:
                hk, hd = _exact_scan(table, txn, q, spec, name, k, exclude)
            else:
                found, _, vecs = _read(table, txn, allowed, spec, name, True)
                assert vecs is not None
                hk, hd = _exact_over(q, allowed[found], vecs, spec.metric, k, exclude)
            counts = np.full(len(q), hk.shape[1], np.int64)
            cache = None
        else:
            assert vi is not None
            vi.sync_in(txn)
            hk, hd, counts = _hnsw(table, txn, vi, q, spec, name, k, ef, rerank, allowed, exclude, threads)
            cache = vi.ids
        ids, keys, dists = _rows_to_hits(table, txn, hk, hd, counts, cache)
    if batched:
        return SearchResult(ids, keys, dists, batched=True)
    return SearchResult(ids[0], keys[0], dists[0])


def _hnsw(
    table: Table, txn: Any, vi: Any, q: np.ndarray, spec: Vector, name: str, k: int, ef: int | None,
    rerank: int, allowed: np.ndarray | None, exclude: int | None, threads: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = len(vi.index)
    if size == 0:
        return np.zeros((len(q), 0), np.uint64), np.zeros((len(q), 0), np.float32), np.zeros(len(q), np.int64)
    need = (k + (exclude is not None)) * max(rerank, 1)
    if rerank and ef is None:
        # A quantized graph navigates less precisely: a beam three times the
        # candidate count keeps the candidates worth reranking (on the 384-d
        # embeddings: i8 recall@10 0.9752 at 2x, 0.9852 at 3x; benchmarks.md).
        ef = max(vi.hnsw.expansion_search, 3 * need)
    if allowed is None and exclude is None:
        # The common case: one index call; padding sliced off by counts.
        rk, rd, rc = vi.search(q, min(need, size), ef, threads)
        if rerank:
            return _rerank(table, txn, q, spec, name, rk, rc, k)
        return rk[:, :k], rd[:, :k], np.minimum(rc, k)
    count = need
    if allowed is not None:
        # Oversample by 1/selectivity, and widen the beam (by its square root:
        # the extra candidates need not all be as good as the first ones).
        boost = size / max(len(allowed), 1)
        count = math.ceil(need * 1.5 * boost)
        ef = min(4096, math.ceil((ef or vi.hnsw.expansion_search) * math.sqrt(boost)))
    count = min(count, size)
    keys = np.zeros((len(q), 0), np.uint64)
    dists = np.zeros((len(q), 0), np.float32)
    ok = np.zeros((len(q), 0), dtype=bool)
    todo = np.arange(len(q))
    while True:
        rk, rd, rc = vi.search(q[todo], count, ef, threads)
        rok, got = _filtered(rk, rc, allowed, exclude)
        if keys.shape[1] < rk.shape[1]:
            pad = rk.shape[1] - keys.shape[1]
            keys = np.pad(keys, ((0, 0), (0, pad)))
            dists = np.pad(dists, ((0, 0), (0, pad)), constant_values=np.inf)
            ok = np.pad(ok, ((0, 0), (0, pad)))
        keys[todo, : rk.shape[1]], dists[todo, : rk.shape[1]], ok[todo, : rk.shape[1]] = rk, rd, rok
        short = todo[got < k]
        if len(short) == 0 or count >= size:
            break
        todo, count = short, min(size, count * 4)
    kk, dd, cc = _compact(keys, dists, ok, need)
    short = np.flatnonzero(cc < k)
    if allowed is not None and len(short):
        # Widening reached the whole index and still misses matches (HNSW is
        # approximate): finish those queries exactly over the matching rows.
        found, _, vecs = _read(table, txn, allowed, spec, name, True)
        assert vecs is not None
        ek, ed = _exact_over(q[short], allowed[found], vecs, spec.metric, need, exclude)
        kk[short], dd[short] = 0, np.inf
        kk[short, : ek.shape[1]], dd[short, : ek.shape[1]], cc[short] = ek, ed, ek.shape[1]
    if rerank:
        return _rerank(table, txn, q, spec, name, kk, cc, k)
    return kk[:, :k], dd[:, :k], np.minimum(cc, k)


def search_by_id(table: Table, id: Any, k: int = 10, *, feature: str | None = None, **kwargs: Any) -> SearchResult:
    """See :meth:`vecstore.Table.search_by_id`."""
    name = _vector_feature(table, feature)
    batch = table._ids(id)
    if not batch.scalar:
        raise InvalidValueError("search_by_id takes one ID", hint="use search() with a batch of vectors for several")
    rows = table.get(id, features=[name])
    if not rows.found[0]:
        raise IdNotFoundError(f"table {table.name!r} has no row with ID {id!r}")
    if not rows.present(name)[0]:
        raise InvalidValueError(f"row {id!r} of table {table.name!r} has no {name!r} vector to search with")
    vec = rows[name][0]
    spec = table.schema.features[name]
    if isinstance(spec, Vector) and spec.metric == "cos" and not np.any(vec):
        raise InvalidValueError(
            f"row {id!r} of table {table.name!r} has the zero vector, which has no direction for cosine search",
            hint="store a non-zero vector for it, or search with another row or vector",
        )
    return search(table, vec, k, feature=name, exclude=int(batch.keys[0]), **kwargs)

