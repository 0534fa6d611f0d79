"""``log.drift``: has a feature's distribution moved between two time windows?

Both windows' summaries come from the per-bucket sketches (no rescanning),
and both statistics are computed on the sketches' common bucket grid:

* **PSI** (population stability index): the baseline's weighted deciles cut
  the values into up to 10 bins; with b_i and c_i the fractions of baseline
  and current weight in bin i (each floored at 1e-4),
  ``PSI = sum((c_i - b_i) * ln(c_i / b_i))``.  Rules of thumb: < 0.1 stable,
  0.1 to 0.25 moderate, > 0.25 large.
* **KS**: the two-sample Kolmogorov-Smirnov statistic, the largest gap between
  the two weighted CDFs.  Evaluated at bucket boundaries it is the exact KS
  statistic of the data rounded to the sketch's 1 % buckets (so it can miss
  a gap that lies entirely inside one bucket).  ``ks_pvalue`` is the
  asymptotic Kolmogorov p-value with Kish's effective sample sizes
  ``(sum w)^2 / sum w^2``.

A feature is reported ``drifted`` when ``psi >= psi_threshold`` (default
0.2), or when ``ks >= ks_threshold`` (default 0.1) and ``ks_pvalue < alpha``
(default 0.01): a large shift, or a clear and significant one.

Example::

    report = log.drift(["price", "ctr_7d"], baseline=(t0, t1), current=(t2, t3), stage="ranking")
    report.drifted           # ['price']
    report["price"].psi
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidValueError
from .inputs import to_time
from .sketch import Summary
from .stats import check_stage, numeric_kind, window

if TYPE_CHECKING:
    from .log import FeatureLog

__all__ = ["DriftReport", "FeatureDrift", "drift", "ks_pvalue", "psi_ks"]

_FLOOR = 1e-4


@dataclass(frozen=True)
class FeatureDrift:
    """PSI and KS of one feature between the baseline and the current window."""

    feature: str
    psi: float
    ks: float
    ks_pvalue: float
    drifted: bool
    baseline_count: int
    current_count: int
    baseline_mean: float
    current_mean: float
    of: str = "value"
    reason: str = ""


@dataclass(frozen=True)
class DriftReport:
    """Drift of each requested feature; ``drifted`` lists the ones that moved."""

    stage: str
    table: str | None
    baseline: tuple[float | None, float | None]
    current: tuple[float | None, float | None]
    features: list[FeatureDrift] = field(default_factory=list)
    psi_threshold: float = 0.2
    ks_threshold: float = 0.1
    alpha: float = 0.01

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def __getitem__(self, feature: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == feature:
                return f
        raise KeyError(feature)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["drifted"] = self.drifted
        return d


def ks_pvalue(d: float, n1: float, n2: float) -> float:
    """Asymptotic p-value of a two-sample KS statistic ``d`` (Numerical Recipes' Q_KS)."""
    if not (n1 > 0 and n2 > 0) or not math.isfinite(d):
        return math.nan
    ne = n1 * n2 / (n1 + n2)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    if lam < 0.2:
        return 1.0
    total, sign = 0.0, 1.0
    for k in range(1, 101):
        term = sign * 2.0 * math.exp(-2.0 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-12:
            break
        sign = -sign
    return min(max(total, 0.0), 1.0)


def _on_grid(grid: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    out = np.zeros(len(grid))
    np.add.at(out, np.searchsorted(grid, v), w)
    return np.cumsum(out) / w.sum()


def psi_ks(base: Summary, cur: Summary) -> tuple[float, float]:
    """(PSI over the baseline's deciles, KS statistic) of two summaries, on their common bucket grid."""
    vb, wb = base.points()
    vc, wc = cur.points()
    grid = np.union1d(vb, vc)
    fb, fc = _on_grid(grid, vb, wb), _on_grid(grid, vc, wc)
    ks = float(np.abs(fb - fc).max())
    cuts = np.unique(np.searchsorted(fb, np.arange(1, 10) / 10.0 - 1e-12, side="left"))
    cuts = cuts[cuts < len(grid) - 1]
    b = np.diff(np.concatenate([[0.0], fb[cuts], [1.0]]))
    c = np.diff(np.concatenate([[0.0], fc[cuts], [1.0]]))
    b, c = np.maximum(b, _FLOOR), np.maximum(c, _FLOOR)
    psi = float(np.sum((c - b) * np.log(c / b)))
    return psi, ks


def _window(w: Any, what: str) -> tuple[float | None, float | None]:
    if not isinstance(w, (tuple, list)) or len(w) != 2:
        raise InvalidValueError(f"{what} must be a (start, end) pair of times, got {w!r}")
    lo, hi = to_time(w[0], f"{what} start"), to_time(w[1], f"{what} end")
    if lo is not None and hi is not None and hi <= lo:
        raise InvalidValueError(f"{what} window ends ({hi}) before it starts ({lo})")
    return lo, hi


def drift(
    log: FeatureLog,
    features: Any = None,
    *,
    baseline: Any,
    current: Any,
    stage: str = "ranking",
    table: str | None = None,
    psi_threshold: float = 0.2,
    ks_threshold: float = 0.1,
    alpha: float = 0.01,
) -> DriftReport:
    """Compare ``features`` (a name, a list, or None for every numeric feature logged at ``stage``)
    between the ``baseline`` and ``current`` windows, each a ``(start, end)`` pair.

    Example::

        log.drift("price", baseline=(t0, t1), current=(t2, t3), stage="ranking").drifted
    """
    check_stage(stage)
    b_lo, b_hi = _window(baseline, "baseline")
    c_lo, c_hi = _window(current, "current")
    view = log._view()
    if features is None:
        names = sorted({f for t, f in view.stat_features(stage) if table is None or t == table})
    else:
        names = [features] if isinstance(features, str) else list(dict.fromkeys(features))
    B = view.index.bucket_seconds
    ba, bb, brs, bre = window(b_lo, b_hi, B)
    ca, cb, crs, cre = window(c_lo, c_hi, B)
    out: list[FeatureDrift] = []
    for name in names:
        of = numeric_kind(view, name, table)
        sb, _ = view.summary(stage, name, table, ba, bb)
        sc, _ = view.summary(stage, name, table, ca, cb)
        if sb.count == 0 or sc.count == 0:
            which = "baseline" if sb.count == 0 else "current"
            out.append(FeatureDrift(
                name, math.nan, math.nan, math.nan, False, sb.count, sc.count,
                sb.mean if sb.count else math.nan, sc.mean if sc.count else math.nan, of, f"no values in the {which} window",
            ))
            continue
        psi, ks = psi_ks(sb, sc)
        p = ks_pvalue(ks, sb.weight**2 / sb.weight2, sc.weight**2 / sc.weight2)
        reasons = []
        if psi >= psi_threshold:
            reasons.append(f"PSI {psi:.3f} >= {psi_threshold}")
        if ks >= ks_threshold and p < alpha:
            reasons.append(f"KS {ks:.3f} >= {ks_threshold} (p = {p:.2g} < {alpha})")
        out.append(FeatureDrift(name, psi, ks, p, bool(reasons), sb.count, sc.count, sb.mean, sc.mean, of, "; ".join(reasons)))
    return DriftReport(
        stage=stage, table=table, baseline=(brs, bre), current=(crs, cre), features=out,
        psi_threshold=psi_threshold, ks_threshold=ks_threshold, alpha=alpha,
    )
