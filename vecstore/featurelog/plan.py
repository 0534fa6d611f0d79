"""What a logging call reads from its table: the features resolved once, and the sampled rows.

These run once per call in the serving path, so each avoids a cost that
showed in profiles of a 5,000-candidate retrieval (see docs/feature-logging.md,
"Performance"):

* :func:`plan_for` resolves a ``features=`` argument once per (table schema,
  features) instead of on every call;
* :func:`sample_positions` draws a small sample with one ``Generator.random``
  call where ``Generator.choice`` costs 13 to 17 µs for 50 of 5,000.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnknownFeatureError
from ..schema import TableSchema
from .columns import Layout, layout_for

__all__ = ["Plan", "plan_for", "sample_positions"]


class Plan:
    """A call's resolved features: the tuple logged, what ``get`` is asked for, and the record layout."""

    __slots__ = ("features", "get_features", "layout")

    def __init__(self, schema: TableSchema, features: tuple[str, ...]) -> None:
        self.features = features
        # None asks get() for every feature without checking each name again.
        self.get_features: list[str] | None = None if features == tuple(schema.features) else list(features)
        self.layout: Layout = layout_for(schema, features)


_PLANS: dict[tuple[int, Any], tuple[TableSchema, Plan]] = {}


def _resolve(schema: TableSchema, table: str, features: Any) -> tuple[str, ...]:
    if features is None:
        return tuple(schema.features)
    if isinstance(features, str):
        features = [features]
    out = tuple(dict.fromkeys(features))
    for f in out:
        if f not in schema.features:
            raise UnknownFeatureError(f"table {table!r} has no feature {f!r} (features: {', '.join(schema.features)})")
    return out


def plan_for(schema: TableSchema, table: str, features: Any) -> Plan:
    """The cached :class:`Plan` of ``features`` (None: all, a name, or a list of names) on ``schema``."""
    if features is None or isinstance(features, str):
        key: Any = features
    elif isinstance(features, (list, tuple)) and all(isinstance(f, str) for f in features):
        key = tuple(features)
    else:
        return Plan(schema, _resolve(schema, table, features))  # unusual input: resolved (and checked) every time
    hit = _PLANS.get((id(schema), key))
    if hit is not None and hit[0] is schema:  # the schema held in the entry keeps its id from being reused
        return hit[1]
    plan = Plan(schema, _resolve(schema, table, features))  # raises before anything is cached
    if len(_PLANS) > 4096:
        _PLANS.clear()
    _PLANS[(id(schema), key)] = (schema, plan)
    return plan


def sample_positions(gen: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``k`` distinct positions of ``range(n)``, every ``k``-subset equally likely, ascending (int64).

    A small sample draws ``k`` i.i.d. uniform positions and starts over if
    any repeats: given that none does, every ``k``-subset is equally likely.
    With ``k * k <= 2 * n`` a draw is kept with probability above
    ``exp(-k * k / 2n) >= 0.37`` (0.78 for 50 of 5,000).  ``floor(u * n)`` of a
    float64 ``u`` in [0, 1) is uniform on ``range(n)`` up to 2**-53.
    """
    if k * k > 2 * n:
        return np.sort(gen.choice(n, k, replace=False))
    while True:
        s = (gen.random(k) * n).astype(np.int64)
        s.sort()
        if s[-1] < n and not (s[1:] == s[:-1]).any():  # (u * n can round up to n)
            return s
