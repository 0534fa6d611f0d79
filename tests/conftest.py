"""Shared fixtures: every store lives under tmp_path; randomness is seeded."""

from __future__ import annotations

import numpy as np
import pytest

import vecstore

SCHEMA = {
    "price": vecstore.Scalar("f32"),
    "ctr_7d": vecstore.Scalar("f16"),
    "in_stock": vecstore.Scalar("bool"),
    "clicks": vecstore.Scalar("i64"),
    "category": vecstore.Category(),
    "recent": vecstore.IdList(),
    "embedding": vecstore.Vector(16, dtype="i8", metric="cos"),
}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def store(tmp_path):
    s = vecstore.open(tmp_path / "shop.vs", seed=1234)
    yield s
    s.close()


@pytest.fixture
def items(store):
    return store.create_table("items", SCHEMA, expected_size=10_000)


@pytest.fixture
def shop_store(tmp_path, rng):
    """A store whose ``items`` table holds 500 rows of SCHEMA (the feature-log tests' shop)."""
    store = vecstore.open(tmp_path / "shop.vs", seed=1234)
    ids, cols = sample_columns(rng, 500)
    store.create_table("items", SCHEMA, expected_size=10_000).put(ids, cols)
    yield store
    store.close()


@pytest.fixture
def shop(shop_store):
    """``(store, items)`` of :func:`shop_store`."""
    return shop_store, shop_store.table("items")


@pytest.fixture
def filled(store, rng):
    """``(store, ids, cols)``: the ``store`` fixture with 100 rows of SCHEMA in ``items``."""
    t = store.create_table("items", SCHEMA, expected_size=10_000)
    ids, cols = sample_columns(rng, 100)
    t.put(ids, cols)
    return store, ids, cols


def catalog_features(dim: int, vector_dtype: str = "f32") -> dict:
    """The items schema the CLI tests share: a price, a category, tags and an embedding."""
    return {
        "price": vecstore.Scalar("f32"),
        "category": vecstore.Category(),
        "tags": vecstore.IdList(),
        "embedding": vecstore.Vector(dim, dtype=vector_dtype),
    }


def sample_columns(rng: np.random.Generator, n: int, offset: int = 0) -> tuple[list[str], dict]:
    """n item IDs with values for every feature of SCHEMA."""
    ids = [f"item-{i}" for i in range(offset, offset + n)]
    cols = {
        "price": rng.uniform(1, 100, n).astype(np.float32),
        "ctr_7d": rng.uniform(0, 1, n),
        "in_stock": rng.random(n) < 0.5,
        "clicks": rng.integers(0, 10_000, n),
        "category": [["books", "toys", "food"][i % 3] for i in range(n)],
        "recent": [[f"item-{j}" for j in range(i % 4)] for i in range(n)],
        "embedding": rng.normal(size=(n, 16)).astype(np.float32),
    }
    return ids, cols


def snapshot(table) -> list[dict]:
    """Every row of a table as plain Python, for before/after comparisons."""
    out = []
    for rows in table.scan(batch_size=1000):
        out.extend(rows.to_pylist())
    return out
