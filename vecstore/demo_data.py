"""The synthetic world behind the demo: items, users, and how users really click.

A two-tower recommender's world in miniature.  Each of 12 categories is an
*interest cluster* with a centre in a 32-d space.  Every item has a hidden
"true" vector near its category's centre and a hidden quality; every user has
a hidden taste vector mixing one or two categories and a price sensitivity.
What the store holds is what a trained model would serve: embeddings that are
*noisy* copies of the true vectors (an imperfect two-tower model), and
features (price, popularity, 7-day CTR) that are noisy proxies of quality.

:class:`ClickModel` decides clicks from the *true* vectors, quality, price
and position, so the logged training data carries a signal that the served
embeddings and features only partly capture, which is what a next model
would learn.

Example::

    world = make_world(np.random.default_rng(0), n_items=10_000, n_users=1_000)
    world.items.columns["embedding"].shape   # (10000, 32)
    world.clicks.prob(user_row=3, item_rows=np.arange(5), positions=np.arange(5))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CATEGORIES", "DIM", "SEGMENTS", "ClickModel", "Entities", "World", "make_world"]

DIM = 32
CATEGORIES = [
    "books", "toys", "food", "garden", "music", "sports",
    "beauty", "tools", "games", "kitchen", "outdoor", "pets",
]
SEGMENTS = ["new", "casual", "regular", "loyal"]

# How far the served (model) embeddings are from the true vectors: the
# two-tower model's error.  0 would make retrieval perfect.
MODEL_NOISE = 0.35


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Entities:
    """IDs, the feature columns the store holds, and the hidden truth the click model uses."""

    ids: list[str]
    columns: dict[str, Any]
    truth: np.ndarray  # true vectors, (n, DIM), unit length
    cat: np.ndarray  # category index per row (items: own; users: favourite)


@dataclass
class ClickModel:
    """P(click) of a shown item: examined at its position, then clicked if attractive.

    ``attractive = sigmoid(bias + affinity * <user taste, item truth> + quality_w * quality
    - price_w * sensitivity * log(price / median price))`` and the chance of
    examining position p is ``1 / (p + 1) ** position_decay`` (position bias).
    """

    user_truth: np.ndarray
    user_sensitivity: np.ndarray
    item_truth: np.ndarray
    item_quality: np.ndarray
    item_log_rel_price: np.ndarray
    bias: float = -3.9
    affinity: float = 4.0
    quality_w: float = 0.7
    price_w: float = 0.8
    position_decay: float = 0.7

    def prob(self, user_row: int, item_rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        logit = (
            self.bias
            + self.affinity * (self.item_truth[item_rows] @ self.user_truth[user_row])
            + self.quality_w * self.item_quality[item_rows]
            - self.price_w * self.user_sensitivity[user_row] * self.item_log_rel_price[item_rows]
        )
        examine = 1.0 / (np.asarray(positions, dtype=np.float64) + 1.0) ** self.position_decay
        return examine / (1.0 + np.exp(-logit))


@dataclass
class World:
    items: Entities
    users: Entities
    clicks: ClickModel

    def item_rows(self, ids: list[str]) -> np.ndarray:
        """Row numbers of item IDs like ``item-123`` (the demo's IDs encode them)."""
        return np.fromiter((int(i[5:]) for i in ids), dtype=np.int64, count=len(ids))


def make_world(rng: np.random.Generator, n_items: int, n_users: int) -> World:
    """Synthetic catalog and users (see the module docstring); deterministic for a given ``rng``."""
    n_cat = len(CATEGORIES)
    centres = _unit(rng.normal(size=(n_cat, DIM)))

    # Items: category, true vector near its centre, hidden quality.
    cat = rng.integers(0, n_cat, n_items)
    truth = _unit(centres[cat] + 0.55 * rng.normal(size=(n_items, DIM)))
    quality = rng.normal(size=n_items)
    served = _unit(truth + MODEL_NOISE * rng.normal(size=(n_items, DIM)))
    cat_price = np.exp(rng.uniform(2.0, 4.5, n_cat))  # each category has its own price level
    price = (cat_price[cat] * rng.lognormal(0.0, 0.6, n_items)).astype(np.float32).round(2)
    popularity = np.exp(4.0 + 1.1 * quality + rng.normal(0.0, 1.0, n_items)).astype(np.uint32)
    ctr_7d = np.clip(0.03 * np.exp(0.5 * quality + 0.4 * rng.normal(size=n_items)), 0.0, 1.0)
    items = Entities(
        ids=[f"item-{i}" for i in range(n_items)],
        columns={
            "category": [CATEGORIES[c] for c in cat],
            "price": price,
            "popularity": popularity,
            "ctr_7d": ctr_7d,
            "in_stock": rng.random(n_items) < 0.95,
            "embedding": served,
        },
        truth=truth,
        cat=cat,
    )

    # Users: taste = a favourite category, often blended with a second one.
    fav = rng.integers(0, n_cat, n_users)
    second = rng.integers(0, n_cat, n_users)
    blend = rng.uniform(0.0, 0.8, n_users)[:, None] * (rng.random(n_users) < 0.6)[:, None]
    taste = _unit(centres[fav] + blend * centres[second] + 0.45 * rng.normal(size=(n_users, DIM)))
    sensitivity = rng.beta(2.0, 2.0, n_users)
    seg = rng.choice(len(SEGMENTS), n_users, p=[0.15, 0.4, 0.3, 0.15])
    users = Entities(
        ids=[f"user-{i}" for i in range(n_users)],
        columns={
            "segment": [SEGMENTS[s] for s in seg],
            "fav_category": [CATEGORIES[c] for c in fav],
            "price_sensitivity": sensitivity,
            "sessions_7d": rng.poisson(1.0 + 3.0 * seg).astype(np.uint16),
            "embedding": _unit(taste + MODEL_NOISE * rng.normal(size=(n_users, DIM))),
        },
        truth=taste,
        cat=fav,
    )
    clicks = ClickModel(
        user_truth=taste,
        user_sensitivity=sensitivity,
        item_truth=truth,
        item_quality=quality,
        item_log_rel_price=np.log(price / np.median(price)),
    )
    return World(items=items, users=users, clicks=clicks)
