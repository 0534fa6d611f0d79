"""The end-to-end demo behind ``make demo`` and ``vecstore demo``.

Builds a store of synthetic catalog items (IDs like ``item-123``, a few scalar
and categorical features, a 64-d two-tower-like embedding stored as int8) and
exercises the storage engine the way a serving path would: a bulk load, random
batch reads, exact and Bloom membership checks, a partial update, a delete.
Every step prints what it did and how long it took.

Example::

    from vecstore.demo import run_demo
    run_demo("demo-store", n_items=20_000)
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .features import Category, IdList, Scalar, Vector
from .store import open as open_store

__all__ = ["run_demo"]

CATEGORIES = ["books", "toys", "food", "garden", "music", "sports", "beauty", "tools"]


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def run_demo(
    path: str | Path,
    *,
    n_items: int = 100_000,
    seed: int = 0,
    out: Callable[[str], Any] = print,
) -> dict[str, float]:
    """Build a demo store at ``path`` (replacing a previous demo there) and print a tour.

    Returns the figures it printed, keyed by name, so callers can check them.
    """
    path = Path(path)
    if path.exists():
        if not (path / "data.mdb").exists():
            raise FileExistsError(f"{path} exists and is not a vecstore store; pick another path")
        shutil.rmtree(path)
    rng = np.random.default_rng(seed)
    figures: dict[str, float] = {}
    with open_store(path, seed=seed) as store:
        items = store.create_table(
            "items",
            {
                "price": Scalar("f32"),
                "ctr_7d": Scalar("f16"),
                "in_stock": Scalar("bool"),
                "popularity": Scalar("u32"),
                "category": Category(),
                "also_bought": IdList(),
                "embedding": Vector(64, dtype="i8", metric="cos"),
            },
            expected_size=n_items,
            bloom_fpr=0.01,
        )
        out(f"created store {path} with table 'items' (seed {store.seed})")

        ids = [f"item-{i}" for i in range(n_items)]
        # Two-tower-like embeddings: items cluster around their category's centre.
        cat_idx = rng.integers(0, len(CATEGORIES), n_items)
        centres = rng.normal(size=(len(CATEGORIES), 64)).astype(np.float32)
        emb = centres[cat_idx] + 0.5 * rng.normal(size=(n_items, 64)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        cols = {
            "price": rng.lognormal(3, 1, n_items).astype(np.float32),
            "ctr_7d": rng.beta(2, 50, n_items),
            "in_stock": rng.random(n_items) < 0.9,
            "popularity": rng.zipf(1.5, n_items).clip(0, 2**32 - 1),
            "category": [CATEGORIES[c] for c in cat_idx],
            "also_bought": [[f"item-{j}" for j in rng.integers(0, n_items, 3)] for _ in range(n_items)],
            "embedding": emb,
        }
        t0 = time.perf_counter()
        items.put(ids, cols)
        figures["put_ms"] = _ms(t0)
        out(f"put {n_items:,} items in {figures['put_ms']:.0f} ms ({n_items / figures['put_ms'] * 1e3:,.0f} rows/s)")

        query = [ids[i] for i in rng.integers(0, n_items, 5000)]
        feats = ["price", "ctr_7d", "in_stock", "popularity", "category", "embedding"]
        items.get(query[:100], features=feats)  # warm the page cache
        t0 = time.perf_counter()
        rows = items.get(query, features=feats)
        figures["get_5000_ms"] = _ms(t0)
        out(f"get 5,000 random items (6 features, columnar) in {figures['get_5000_ms']:.2f} ms")
        out(f"  mean price {rows['price'].mean():.2f}, in stock {rows['in_stock'].mean():.1%}, "
            f"embedding {rows['embedding'].shape} {rows['embedding'].dtype}")

        sample = items.get(["item-42", "item-7", "no-such-item"], features=["price", "category", "also_bought"])
        out("three rows as Python:")
        for rec in sample.to_pylist():
            out(f"  {rec}")

        half = min(50_000, n_items)
        probe = ids[:half] + [f"ghost-{i}" for i in range(half)]
        items.may_contain(probe[:10])  # builds the filter from the rows on first use
        t0 = time.perf_counter()
        maybe = items.may_contain(probe)
        figures["may_contain_ms"] = _ms(t0)
        fp = maybe[half:].mean()
        out(f"may_contain on {2 * half:,} IDs (half absent) in {figures['may_contain_ms']:.1f} ms: "
            f"no false negatives: {bool(maybe[:half].all())}, false-positive rate {fp:.4f} (configured 0.01)")
        figures["bloom_fpr"] = float(fp)

        t0 = time.perf_counter()
        items.put(ids[:1000], {"price": cols["price"][:1000] * 0.9})
        out(f"partial update of 1,000 prices (-10%) in {_ms(t0):.1f} ms; other features kept: "
            f"category of item-0 still {items.get('item-0')['category'][0]!r}")
        deleted = items.delete(ids[-100:])
        out(f"deleted {deleted} items; table now has {len(items):,} rows")

        t0 = time.perf_counter()
        items.rebuild_index("embedding")
        figures["index_build_ms"] = _ms(t0)
        out(f"built the HNSW index over {len(items):,} embeddings in {figures['index_build_ms']:.0f} ms")
        user = emb[0] + 0.02 * rng.normal(size=64).astype(np.float32)  # a user close to item-0
        items.search(user, k=10)  # warm up
        t0 = time.perf_counter()
        for _ in range(100):
            hits = items.search(user, k=10)
        figures["search_us"] = _ms(t0) * 10
        out(f"search k=10: {figures['search_us']:.0f} us per query; nearest: {hits.ids[:3]}")
        cheap = items.search(user, k=5, where={"category": CATEGORIES[0], "price": ("<", 20.0), "in_stock": True})
        out(f"filtered search (category={CATEGORIES[0]!r}, price < 20, in stock): {cheap.ids}")
        out(f"items like item-42: {items.search_by_id('item-42', k=3).ids}")

        info = items.info()
        out(f"table bytes in LMDB: {info.lmdb_bytes / 2**20:.1f} MiB "
            f"({info.lmdb_bytes / len(items):.0f} B/row; fixed record {info.record_bytes} B)")
        for f in info.features:
            size = f"{f.bytes_per_row:4d} B/row" if f.kind != "idlist" else "variable (stored beside the row)"
            out(f"  {f.name:12s} {f.kind:9s} {f.dtype:5s} {size}")
        out(f"Bloom filter: {info.bloom.bytes / 1024:.0f} KiB, {info.bloom.num_filters} filter(s), "
            f"estimated false-positive rate {info.bloom.estimated_fpr:.4f}")
        problems = store.verify()
        out(f"verify: {'ok' if not problems else problems}")
        figures["rows"] = float(len(items))
    out(f"done: the store is in {path}/ (reopen with vecstore.open({str(path)!r}))")
    return figures
