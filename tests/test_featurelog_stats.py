"""Feature log: sampling and 1/p weights, statistics against numpy, the quantile sketch, drift."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.dataset as ds
import pytest

import vecstore
from vecstore.featurelog import segments as segments_module
from vecstore.featurelog.drift import ks_pvalue, psi_ks
from vecstore.featurelog.sketch import ALPHA, MIN_ABS, Summary

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC, an hour boundary
QS = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)



def exported(log, path, **kw) -> dict[str, np.ndarray]:
    tbl = ds.dataset(log.export(path, **kw), format="parquet", partitioning="hive").to_table()
    return {name: tbl[name].to_numpy(zero_copy_only=False) for name in tbl.column_names}


def within(est: float, exact: float) -> bool:
    """The sketch's documented bound: 1 % relative, or 1e-9 absolute below 1e-9."""
    return abs(est - exact) <= ALPHA * abs(exact) * (1 + 1e-9) + (MIN_ABS if abs(exact) < MIN_ABS else 0.0)


# -- sampling ------------------------------------------------------------------


def test_rate_sampling_fraction_and_sample_prob(shop, tmp_path):
    store, _ = shop
    log = vecstore.FeatureLog(store, seed=0)
    rng = np.random.default_rng(0)
    n, calls, p = 2000, 60, 0.05
    got = 0
    for r in range(calls):
        cands = [f"item-{i}" for i in rng.integers(0, 500, n)]
        got += log.retrieval(f"r{r}", cands, rng.random(n), table="items", features=["price"], sample=p, ts=T0 + r)
    N = n * calls
    assert abs(got - N * p) < 5 * math.sqrt(N * p * (1 - p))  # Bernoulli(p) per candidate
    cols = exported(log, tmp_path / "out")
    assert len(cols["item"]) == N
    assert (cols["sample_prob"] == p).all()
    assert cols["sampled"].sum() == got
    # Features exactly on the sampled rows (every candidate exists in the table).
    assert np.array_equal(~np.isnan(cols["price"].astype(float)), cols["sampled"])
    # Uniform over positions: each tenth of the candidate lists gets a tenth of the samples.
    per_tenth = np.bincount(cols["position"][cols["sampled"]] * 10 // n, minlength=10)
    expect = N * p / 10
    assert (np.abs(per_tenth - expect) < 5 * math.sqrt(expect)).all()


def test_count_sampling_and_inverse_probability_weights(shop, tmp_path):
    store, items = shop
    log = vecstore.FeatureLog(store, seed=0)
    rng = np.random.default_rng(0)
    k = 20
    sizes = rng.integers(40, 400, 120)
    true_prices = []
    for r, n in enumerate(sizes):
        cands = [f"item-{i}" for i in rng.integers(0, 500, n)]
        assert log.retrieval(f"r{r}", cands, rng.random(n), table="items", features=["price"], sample=k, ts=T0 + r) == k
        true_prices.append(items.get(cands, features=["price"])["price"])
    cols = exported(log, tmp_path / "out")
    sampled = cols["sampled"]
    for r, n in enumerate(sizes):
        mine = cols["request_id"] == f"r{r}"
        assert sampled[mine].sum() == k
        assert np.allclose(cols["sample_prob"][mine], k / n)
    # Weighting sampled rows by 1 / sample_prob estimates the whole candidate population.
    w = 1.0 / cols["sample_prob"][sampled]
    x = cols["price"][sampled].astype(np.float64)
    everything = np.concatenate(true_prices).astype(np.float64)
    assert abs(w.sum() - len(everything)) < 0.05 * len(everything)
    assert abs(np.average(x, weights=w) - everything.mean()) < 0.05 * everything.mean()
    # The stats of the retrieval stage are that same weighted estimate.
    st = log.stats(stage="retrieval", feature="price")
    assert st.count == sampled.sum() and st.weight == pytest.approx(w.sum())
    assert st.mean == pytest.approx(np.average(x, weights=w), rel=1e-9)


def test_each_position_is_sampled_with_probability_k_over_n(shop):
    store, _ = shop
    log = vecstore.FeatureLog(store, seed=0)
    cands = [f"item-{i}" for i in range(100)]
    hits = np.zeros(100)
    rng = np.random.default_rng(0)
    for r in range(300):
        log.retrieval(f"r{r}", cands, np.zeros(100), table="items", features=[], sample=10, ts=T0, rng=rng)
    for frame_path in (store.path / "logs" / "segments").iterdir():
        for frame in segments_module.iter_frames(frame_path):
            if frame.kind == 1:
                _, bufs = frame.parts()
                hits[np.frombuffer(bufs["idx"], dtype="<u4")] += 1
    assert hits.sum() == 3000
    assert (np.abs(hits - 30) < 5 * math.sqrt(30 * 0.9)).all()


# -- statistics ----------------------------------------------------------------


def test_stats_match_numpy_on_the_same_rows(shop, tmp_path):
    store, _ = shop
    log = store.log
    rng = np.random.default_rng(0)
    for r in range(150):
        ranked = [f"item-{i}" for i in rng.choice(520, 20, replace=False)]  # some are missing from the table
        log.ranking(f"r{r}", ranked, np.arange(20.0), table="items", ts=T0 + 10 * r)
    tbl = ds.dataset(log.export(tmp_path / "out"), format="parquet", partitioning="hive").to_table()
    cols = {name: tbl[name].to_numpy(zero_copy_only=False) for name in tbl.column_names}
    nulls = {name: tbl[name].is_null().to_numpy(zero_copy_only=False) for name in tbl.column_names}
    for feature in ("price", "ctr_7d", "in_stock", "clicks", "embedding"):
        st = log.stats(stage="ranking", feature=feature)
        col = cols[feature]
        if feature == "embedding":
            present = np.array([v is not None for v in col])
            x = np.array([np.sqrt(np.sum(np.asarray(v, dtype=np.float64) ** 2)) for v in col[present]])
            assert st.of == "l2_norm"
        else:
            present = ~nulls[feature]
            x = col[present].astype(np.float64)
            assert st.of == "value"
        assert st.count == len(x) and st.missing == len(col) - len(x)
        assert st.weight == len(x)
        assert st.mean == pytest.approx(x.mean(), rel=1e-9, abs=1e-12)
        assert st.std == pytest.approx(x.std(), rel=1e-9, abs=1e-12)
        assert st.min == x.min() and st.max == x.max()
        for q in QS:
            exact = np.quantile(x, q, weights=np.ones(len(x)), method="inverted_cdf")
            assert within(st.quantile(q), exact), (feature, q, st.quantile(q), exact)
        assert set(st.quantiles) == {0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99}


def test_stats_windows_are_whole_buckets(shop, tmp_path):
    store, _ = shop
    log = store.log
    rng = np.random.default_rng(0)
    for hour in range(4):
        for r in range(30):
            ranked = [f"item-{i}" for i in rng.choice(500, 10, replace=False)]
            log.ranking(f"h{hour}-{r}", ranked, np.zeros(10), table="items", features=["price"], ts=T0 + hour * 3600 + r * 60)
    cols = exported(log, tmp_path / "out")
    ts = cols["ts"].astype("datetime64[us]").astype(np.int64) / 1e6
    st = log.stats(stage="ranking", feature="price", start=T0 + 3600 + 5, end=T0 + 3 * 3600 - 5)
    assert (st.start, st.end, st.buckets) == (T0 + 3600, T0 + 3 * 3600, 2)
    x = cols["price"][(ts >= T0 + 3600) & (ts < T0 + 3 * 3600)].astype(np.float64)
    assert st.count == len(x) == 600
    assert st.mean == pytest.approx(x.mean(), rel=1e-9)
    assert within(st.quantiles[0.5], np.quantile(x, 0.5, weights=np.ones(len(x)), method="inverted_cdf"))
    empty = log.stats(stage="ranking", feature="price", start=T0 + 10 * 3600)
    assert empty.count == 0 and math.isnan(empty.mean) and math.isnan(empty.quantiles[0.5])
    assert log.stats(stage="retrieval", feature="price").count == 0


def test_stats_negative_zero_tiny_and_non_finite_values(tmp_path):
    with vecstore.open(tmp_path / "s.vs", seed=1) as store:
        t = store.create_table("t", {"x": vecstore.Scalar("f64"), "v": vecstore.Vector(3, dtype="f32"), "c": vecstore.Category()})
        rng = np.random.default_rng(0)
        x = np.concatenate([rng.normal(0, 100, 300), np.zeros(20), rng.normal(0, 1e-10, 20), [np.nan, np.inf, -np.inf],
                            -rng.lognormal(5, 3, 50)])
        ids = [f"i{i}" for i in range(len(x))]
        t.put(ids, {"x": x, "v": rng.normal(size=(len(x), 3)), "c": ["a"] * len(x)})
        log = store.log
        for lo in range(0, len(ids), 50):
            log.ranking(f"r{lo}", ids[lo : lo + 50], np.zeros(len(ids[lo : lo + 50])), table="t", ts=T0)
        st = log.stats(stage="ranking", feature="x")
        finite = x[np.isfinite(x)]
        assert st.count == len(finite) and st.missing == 3
        assert st.mean == pytest.approx(finite.mean(), rel=1e-9)
        assert st.min == finite.min() and st.max == finite.max()
        for q in np.linspace(0, 1, 41):
            assert within(st.quantile(q), np.quantile(finite, q, weights=np.ones(len(finite)), method="inverted_cdf")), q
        with pytest.raises(vecstore.InvalidValueError):
            log.stats(stage="ranking", feature="c")
        with pytest.raises(vecstore.UnknownFeatureError):
            log.stats(stage="ranking", feature="nope")
        with pytest.raises(vecstore.InvalidValueError):
            log.stats(stage="serving", feature="x")


def test_stats_merge_buckets_without_rescanning_segments(shop, monkeypatch):
    store, _ = shop
    log = store.log
    for r in range(20):
        log.ranking(f"r{r}", [f"item-{r}", f"item-{r + 1}"], [1.0, 0.5], table="items", ts=T0 + r * 3600)
    before = log.stats(stage="ranking", feature="price")

    def no_scanning(*a, **k):
        raise AssertionError("stats read a segment")

    monkeypatch.setattr(segments_module, "iter_frames", no_scanning)
    after = log.stats(stage="ranking", feature="price")
    assert after.count == before.count == 40 and after.buckets == 20
    assert after.mean == before.mean


def test_retrieval_and_ranking_distributions_differ_as_logged(shop):
    store, items = shop
    log = store.log
    rng = np.random.default_rng(0)
    ids = [f"item-{i}" for i in range(500)]
    price = items.get(ids, features=["price"])["price"]
    for r in range(80):
        cands = [ids[i] for i in rng.integers(0, 500, 300)]
        log.retrieval(f"r{r}", cands, rng.random(300), table="items", features=["price"], sample=0.2, ts=T0, rng=rng)
        cheapest = sorted(cands, key=lambda c: price[int(c[5:])])[:10]  # a ranker that favours low prices
        log.ranking(f"r{r}", cheapest, np.zeros(10), table="items", features=["price"], ts=T0)
    ret, rank = log.stats(stage="retrieval", feature="price"), log.stats(stage="ranking", feature="price")
    assert ret.mean == pytest.approx(float(price.mean()), rel=0.05)
    assert rank.quantiles[0.99] < ret.quantiles[0.25]


# -- the sketch itself -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["lognormal", "normal", "uniform_weighted", "integers"])
def test_sketch_quantiles_are_within_one_percent(kind):
    rng = np.random.default_rng(0)
    n = 20_000
    w = np.ones(n)
    if kind == "lognormal":
        x = rng.lognormal(0, 4, n)
    elif kind == "normal":
        x = rng.normal(0, 1000, n)
    elif kind == "uniform_weighted":
        x = rng.uniform(-5, 5, n)
        w = rng.choice([1.0, 20.0, 100.0], n)
    else:
        x = rng.integers(-3, 4, n).astype(float)
    s = Summary()
    for part in np.array_split(np.arange(n), 7):  # built in pieces, like per-call folds
        s.add(x[part], w[part])
    for q in np.linspace(0, 1, 101):
        exact = np.quantile(x, q, weights=w, method="inverted_cdf")
        assert within(s.quantile(q), exact), (q, s.quantile(q), exact)
    assert s.mean == pytest.approx(np.average(x, weights=w), rel=1e-9, abs=1e-9)
    assert s.std == pytest.approx(math.sqrt(np.average((x - np.average(x, weights=w)) ** 2, weights=w)), rel=1e-9)


def test_sketch_merge_and_bytes_round_trip():
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 3, 5000), rng.lognormal(1, 2, 3000)
    sa, sb, sab = Summary(), Summary(), Summary()
    sa.add(a, np.full(5000, 2.0), missing=3)
    sb.add(b, 1.0, missing=1)
    sab.add(np.concatenate([a, b]), np.concatenate([np.full(5000, 2.0), np.ones(3000)]), missing=4)
    merged = Summary.from_bytes(sa.to_bytes()).merge(Summary.from_bytes(sb.to_bytes()))
    assert (merged.count, merged.missing) == (8000, 4)
    assert merged.weight == sab.weight and merged.weight2 == sab.weight2
    assert merged.mean == pytest.approx(sab.mean, rel=1e-12) and merged.std == pytest.approx(sab.std, rel=1e-9)
    for q in QS:
        assert merged.quantile(q) == sab.quantile(q)
    empty = Summary.from_bytes(Summary().to_bytes())
    assert empty.count == 0 and math.isnan(empty.quantile(0.5)) and math.isnan(empty.std)


# -- drift -------------------------------------------------------------------------


def test_drift_flags_a_shifted_feature_and_not_an_unchanged_one(tmp_path):
    with vecstore.open(tmp_path / "s.vs", seed=1) as store:
        t = store.create_table("m", {"x": vecstore.Scalar("f32"), "y": vecstore.Scalar("f32"), "z": vecstore.Scalar("f32")})
        rng = np.random.default_rng(0)
        ids = [f"m{i}" for i in range(4000)]
        n = len(ids)
        t.put(ids, {"x": rng.normal(0, 1, n), "y": rng.uniform(0, 1, n), "z": rng.normal(5, 1, n)})
        log = store.log
        for r in range(100):  # hour 0: the first half of the items
            log.ranking(f"a{r}", ids[r * 20 : r * 20 + 20], np.zeros(20), table="m", ts=T0 + r)
        x2 = rng.normal(0.5, 1, 2000)  # the second half, x shifted by half a standard deviation
        t.put(ids[2000:], {"x": x2, "z": rng.normal(5, 1.6, 2000)})
        for r in range(100):  # hour 1
            log.ranking(f"b{r}", ids[2000 + r * 20 : 2020 + r * 20], np.zeros(20), table="m", ts=T0 + 3600 + r)
        rep = log.drift(["x", "y", "z"], baseline=(T0, T0 + 3600), current=(T0 + 3600, T0 + 7200), stage="ranking")
        assert rep.drifted == ["x", "z"]
        assert rep["x"].psi > 0.2 and rep["x"].ks > 0.15 and rep["x"].ks_pvalue < 1e-6
        assert rep["y"].psi < 0.05 and rep["y"].ks < 0.06 and not rep["y"].drifted
        assert rep["z"].ks > 0.1 and rep["x"].baseline_count == rep["x"].current_count == 2000
        # KS against the exact statistic of the raw values: within the sketch's rounding.
        cols = {c: np.asarray(v) for c, v in exported(log, tmp_path / "out").items()}
        hour1 = cols["request_id"].astype(str).astype("U1") == "b"
        for f in ("x", "y"):
            a, b = np.sort(cols[f][~hour1].astype(float)), np.sort(cols[f][hour1].astype(float))
            grid = np.concatenate([a, b])
            exact = np.abs(np.searchsorted(a, grid, side="right") / len(a) - np.searchsorted(b, grid, side="right") / len(b)).max()
            assert abs(rep[f].ks - exact) < 0.03, (f, rep[f].ks, exact)
        # Every numeric feature when none are named; no data in a window is reported, not raised.
        assert [f.feature for f in log.drift(baseline=(T0, T0 + 3600), current=(T0 + 3600, T0 + 7200)).features] == ["x", "y", "z"]
        empty = log.drift("x", baseline=(T0, T0 + 3600), current=(T0 + 9 * 3600, T0 + 10 * 3600))
        assert not empty.drifted and "current" in empty["x"].reason
        with pytest.raises(vecstore.InvalidValueError):
            log.drift("x", baseline=(T0 + 10, T0), current=(T0, T0 + 1))
        with pytest.raises(vecstore.InvalidValueError):
            log.drift("x", baseline=T0, current=(T0, T0 + 1))


def test_psi_ks_on_summaries_and_the_p_value():
    rng = np.random.default_rng(0)
    same_a, same_b, moved = Summary(), Summary(), Summary()
    same_a.add(rng.normal(0, 1, 20000), 1.0)
    same_b.add(rng.normal(0, 1, 20000), 1.0)
    moved.add(rng.normal(1, 1, 20000), 1.0)
    psi, ks = psi_ks(same_a, same_b)
    assert psi < 0.01 and ks < 0.03
    psi, ks = psi_ks(same_a, moved)
    assert psi > 0.5 and 0.3 < ks < 0.45  # exact KS of N(0,1) vs N(1,1) is 0.383
    assert ks_pvalue(0.02, 20000, 20000) > 1e-4 and ks_pvalue(0.38, 20000, 20000) < 1e-12
    assert ks_pvalue(0.0, 10, 10) == 1.0
