"""``log.stats``: count, mean, std, min, max and quantiles of a logged feature.

Summaries are maintained as calls are logged, one per (stage, table, feature,
time bucket), so a query merges the buckets of its window and reads no logged
row.  The window is widened to whole buckets: ``start`` rounds down and
``end`` rounds up to a multiple of ``bucket_seconds`` (one hour by default),
and the result reports the window it covers.

Rows are weighted by ``1 / sample_prob``: a retrieval candidate sampled at
1 % stands for 100 candidates, so retrieval statistics describe every
candidate retrieved, not only the sampled ones, and comparing them with the
ranking stage's shows what retrieval let through.  Scalars are summarized by
value (bools as 0/1), vectors by their L2 norm; categories and ID lists have
no numeric summary.

Example::

    s = log.stats(stage="retrieval", feature="price", start=t0, end=t1)
    s.count, s.mean, s.quantiles[0.5]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidValueError, UnknownFeatureError
from .inputs import to_time
from .sketch import ALPHA, Summary

if TYPE_CHECKING:
    from .log import FeatureLog
    from .view import View

__all__ = ["DEFAULT_QUANTILES", "LogStats", "stats"]

DEFAULT_QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
STAGES = ("retrieval", "ranking")


@dataclass(frozen=True)
class LogStats:
    """Summary of one feature at one stage over a time window.

    * ``count``: logged rows with a finite value; ``missing``: logged rows
      without one (ID not found, value never stored, NaN or infinite);
    * ``weight``: sum of ``1 / sample_prob`` over the counted rows, the
      number of candidates they stand for;
    * ``mean``, ``std`` (population, ddof = 0) and ``quantiles`` are weighted
      by ``1 / sample_prob``; ``min`` and ``max`` are exact;
    * ``quantiles`` maps q to the weighted inverted-CDF quantile, within
      ``relative_error`` (1 %) of the exact value (values below 1e-9 in
      magnitude: within 1e-9);
    * ``of``: ``"value"``, or ``"l2_norm"`` for a vector feature;
    * ``start``/``end``: the bucket-aligned window covered (None: unbounded).
    """

    stage: str
    feature: str
    table: str | None
    start: float | None
    end: float | None
    count: int
    missing: int
    weight: float
    mean: float
    std: float
    min: float
    max: float
    quantiles: dict[float, float]
    of: str = "value"
    relative_error: float = ALPHA
    buckets: int = 0
    _summary: Summary | None = field(default=None, repr=False, compare=False)

    def quantile(self, q: float) -> float:
        """Any quantile of the window, with the same error bound as ``quantiles``."""
        if self._summary is None:
            return math.nan
        return self._summary.quantile(q)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("_summary", None)
        return d


def check_stage(stage: Any, *, allow_none: bool = False) -> str | None:
    if stage is None and allow_none:
        return None
    if stage not in STAGES:
        raise InvalidValueError(f"stage must be one of {', '.join(STAGES)}" + (" or None" if allow_none else "") + f", got {stage!r}")
    return stage


def numeric_kind(view: View, feature: str, table: str | None) -> str:
    """``"value"`` or ``"l2_norm"`` for a logged feature; raises for unknown or non-numeric ones."""
    kinds = set()
    for t, feats in view.tables().items():
        if table is not None and t != table:
            continue
        for spec in feats.get(feature, []):
            kinds.add(spec["kind"])
    if not kinds:
        where = f"table {table!r}" if table is not None else "any table"
        raise UnknownFeatureError(
            f"no logged call of {where} recorded feature {feature!r}", hint="check the name, or log it with features=[...]"
        )
    if kinds <= {"scalar"}:
        return "value"
    if kinds <= {"vector"}:
        return "l2_norm"
    raise InvalidValueError(
        f"feature {feature!r} is a {'/'.join(sorted(kinds))}: statistics cover scalars (by value) and vectors (by L2 norm)",
        hint="export the log and group categories there",
    )


def window(lo: float | None, hi: float | None, bucket: int) -> tuple[float, float, float | None, float | None]:
    """``(lo, hi)`` widened to whole buckets, and the same for reporting (None where unbounded)."""
    a = -math.inf if lo is None else math.floor(lo / bucket) * bucket
    b = math.inf if hi is None else math.ceil(hi / bucket) * bucket
    if b <= a:
        b = a + bucket
    return a, b, (None if lo is None else float(a)), (None if hi is None else float(b))


def from_summary(
    s: Summary, *, stage: str, feature: str, table: str | None, start: float | None, end: float | None,
    quantiles: tuple[float, ...], of: str, buckets: int,
) -> LogStats:
    empty = s.count == 0
    return LogStats(
        stage=stage, feature=feature, table=table, start=start, end=end,
        count=s.count, missing=s.missing, weight=s.weight,
        mean=math.nan if empty else s.mean, std=math.nan if empty else s.std,
        min=math.nan if empty else s.min, max=math.nan if empty else s.max,
        quantiles={q: s.quantile(q) for q in quantiles},
        of=of, buckets=buckets, _summary=s,
    )


def stats(
    log: FeatureLog,
    *,
    stage: str,
    feature: str,
    table: str | None = None,
    start: Any = None,
    end: Any = None,
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
) -> LogStats:
    """Summary of ``feature`` at ``stage`` (``"retrieval"`` or ``"ranking"``) over ``[start, end)``.

    ``table`` narrows to one table when several log the same feature name.
    ``start``/``end`` are seconds since the epoch or datetimes (None:
    unbounded) and are widened to whole buckets.

    Example::

        log.stats(stage="ranking", feature="price").quantiles[0.5]
    """
    check_stage(stage)
    if not isinstance(feature, str):
        raise InvalidValueError(f"feature must be a feature name (str), got {feature!r}")
    qs = tuple(float(q) for q in quantiles)
    if any(not 0.0 <= q <= 1.0 for q in qs):
        raise InvalidValueError(f"quantiles must lie in [0, 1], got {quantiles!r}")
    lo, hi = to_time(start, "start"), to_time(end, "end")
    view = log._view()
    of = numeric_kind(view, feature, table)
    a, b, rs, re = window(lo, hi, view.index.bucket_seconds)
    s, buckets = view.summary(stage, feature, table, a, b)
    return from_summary(s, stage=stage, feature=feature, table=table, start=rs, end=re, quantiles=qs, of=of, buckets=len(buckets))
