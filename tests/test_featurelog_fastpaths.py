"""Feature log: the serving-path shortcuts log exactly what the plain paths would.

* every kind of str batch is logged with the features get() returns for it
  (ASCII, non-ASCII, NUL inside, numpy arrays, mixed with bytes, small and
  large batches), and a narrow-hash store where IDs share keys;
* resolved features are cached per (schema, features) (plan.plan_for);
* ``shown`` passed as the ranked IDs themselves;
* segment writers ask for writeback as they go (segments.WRITEBACK).
"""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as ds
import pytest

import vecstore
from vecstore.featurelog import segments
from vecstore.featurelog.frames import iter_frames
from vecstore.featurelog.plan import plan_for, sample_positions

T0 = 1_767_225_600.0
FEATURES = ("price", "ctr_7d", "clicks", "category", "recent", "embedding")


def read(result):
    tbl = ds.dataset(result, format="parquet", partitioning="hive").to_table()
    return tbl.sort_by([("stage", "ascending"), ("request_id", "ascending"), ("position", "ascending")])


def assert_logged_as_served(row: dict, truth, i: int) -> None:
    """One exported row against row ``i`` of a ``get`` made with the IDs as the caller gave them."""
    for f in FEATURES:
        if not truth.present(f)[i]:
            assert row[f] is None, (f, row["item"])
        elif f == "embedding":
            np.testing.assert_array_equal(row[f], truth[f][i])
        elif f == "recent":
            assert row[f] == [str(x) for x in truth[f][i]]  # ID lists export as text
        elif f == "category":
            assert row[f] == truth[f][i]
        else:
            assert row[f] == pytest.approx(float(truth[f][i]), rel=0, abs=0), (f, row["item"])


def str_batches() -> dict[str, list]:
    return {
        "ascii": [f"a-{i}" for i in range(0, 60, 3)],
        "non_ascii": [f"caf\u00e9-\u6f22-{i}" for i in range(20)] + ["\U0001f600"],
        "nul_inside": [f"nul\x00{i}" for i in range(15)] + ["plain", "\x00", "end\x00"],
        "mixed_bytes": [f"m-{i}".encode() if i % 2 else f"m-{i}" for i in range(12)],
        "many": [f"big-{i}" for i in range(2100)],  # past get()'s cut-over to vectorized hashing
    }


@pytest.mark.parametrize("kind", sorted(str_batches()))
@pytest.mark.parametrize("container", ["list", "numpy"])
def test_str_ids_log_what_get_returns(shop, tmp_path, kind, container):
    store, items = shop
    ids = str_batches()[kind]
    if container == "numpy":
        # numpy str arrays drop trailing NULs, so those IDs (and str mixed with bytes) go in object arrays
        ids_in = np.array(ids, dtype=object if kind in ("nul_inside", "mixed_bytes") else str)
    else:
        ids_in = ids
    rng = np.random.default_rng(1)
    n = len(ids)
    stored = ids[::2] + ids[1::4]  # some IDs absent, in a shuffled order
    items.put(stored, {
        "price": rng.uniform(1, 100, len(stored)), "ctr_7d": rng.uniform(0, 1, len(stored)),
        "clicks": rng.integers(0, 100, len(stored)), "category": [f"c{i % 3}" for i in range(len(stored))],
        "recent": [[f"r{i}", i] for i in range(len(stored))], "embedding": rng.normal(size=(len(stored), 16)),
    })
    truth = items.get(ids)
    assert not truth.found.all() and truth.found.any()
    log = vecstore.FeatureLog(store, seed=3)
    scores = np.linspace(1, 0, n)
    log.ranking("rank", ids_in, scores, table="items", shown=ids_in, ts=T0)
    log.retrieval("all", ids_in, scores, table="items", sample=1.0, ts=T0)
    k = log.retrieval("some", ids_in, scores, table="items", sample=max(1, n // 3), ts=T0)
    assert k == max(1, n // 3)
    tbl = read(log.export(tmp_path / "out"))
    log.close()
    by_req: dict[str, list[dict]] = {}
    for r in tbl.to_pylist():
        by_req.setdefault(r["request_id"], []).append(r)
    text = [x.decode() if isinstance(x, bytes) else x for x in ids]
    for req in ("rank", "all", "some"):
        rows = by_req[req]
        assert [r["item"] for r in rows] == text
        for i, r in enumerate(rows):
            if req == "some" and not r["sampled"]:
                assert all(r[f] is None for f in FEATURES)
            else:
                assert_logged_as_served(r, truth, i)
    assert sum(r["sampled"] for r in by_req["some"]) == k
    assert all(r["shown"] for r in by_req["rank"])


def test_str_ids_sharing_a_key_stay_apart(tmp_path):
    # With 8-bit keys many IDs share one; get() tells them apart by the stored ID.
    with vecstore.open(tmp_path / "narrow.vs", seed=1, hash_bits=8) as store:
        t = store.create_table("t", {"x": vecstore.Scalar("f32")})
        names = [f"id-{i}" for i in range(2000)]
        keys = vecstore.hash_ids(names, seed=1, hash_bits=8).tolist()
        first: dict[int, str] = {}
        twin = None
        for name, key in zip(names, keys):
            if key in first:
                twin = (first[key], name)
                break
            first[key] = name
        assert twin is not None
        a, b = twin
        t.put([a], {"x": [7.0]})
        store.log.ranking("r", [a, b, "caf\u00e9"], [3.0, 2.0, 1.0], table="t", ts=T0)
        store.log.retrieval("q", [b, a], [2.0, 1.0], table="t", sample=2, ts=T0)
        tbl = read(store.log.export(tmp_path / "out"))
    got = {(r["request_id"], r["item"]): r["x"] for r in tbl.to_pylist()}
    assert got == {("r", a): 7.0, ("r", b): None, ("r", "caf\u00e9"): None, ("q", a): 7.0, ("q", b): None}


def test_feature_plans_are_cached_and_checked(shop, tmp_path):
    store, items = shop
    schema = items.schema
    every = plan_for(schema, "items", None)
    assert every.features == tuple(schema.features) and every.get_features is None
    assert plan_for(schema, "items", None) is every
    one = plan_for(schema, "items", "price")
    assert one.features == ("price",) and one.get_features == ["price"] and plan_for(schema, "items", "price") is one
    two = plan_for(schema, "items", ["ctr_7d", "price", "ctr_7d"])
    assert two.features == ("ctr_7d", "price")  # duplicates dropped, caller's order kept
    assert plan_for(schema, "items", ("ctr_7d", "price", "ctr_7d")) is plan_for(schema, "items", ["ctr_7d", "price", "ctr_7d"])
    assert plan_for(schema, "items", (f for f in ["price"])).features == ("price",)  # any iterable, not cached
    for _ in range(2):  # an unknown feature raises every time: nothing bad is cached
        with pytest.raises(vecstore.UnknownFeatureError):
            plan_for(schema, "items", ["price", "nope"])
        with pytest.raises(vecstore.UnknownFeatureError):
            store.log.ranking("r", ["item-1"], [1.0], table="items", features=["nope"], ts=T0)
    # A table re-created with another schema gets plans of its own.
    store.create_table("tmp", {"x": vecstore.Scalar("f32")}).put(["a"], {"x": [1.0]})
    store.log.ranking("r1", ["a"], [1.0], table="tmp", ts=T0)
    store.drop_table("tmp")
    store.create_table("tmp", {"y": vecstore.Scalar("f64"), "x": vecstore.Scalar("f32")}).put(["a"], {"x": [2.0], "y": [3.0]})
    store.log.ranking("r2", ["a"], [1.0], table="tmp", ts=T0)
    rows = read(store.log.export(tmp_path / "out", table="tmp")).to_pylist()
    assert [(r["request_id"], r["x"], r["y"]) for r in rows] == [("r1", 1.0, None), ("r2", 2.0, 3.0)]


def test_shown_given_as_the_ranked_ids_themselves(shop, tmp_path):
    store, _ = shop
    ids = np.array([1, 2, 3])
    names = ["item-1", "item-2"]
    store.log.ranking("a", ids, [3.0, 2.0, 1.0], table="items", shown=ids, ts=T0)
    store.log.ranking("b", names, [2.0, 1.0], table="items", shown=names, ts=T0)
    store.log.ranking("c", names, [2.0, 1.0], table="items", shown=list(names), ts=T0)
    store.log.ranking("d", names, [2.0, 1.0], table="items", shown=names[:1], ts=T0)
    rows = read(store.log.export(tmp_path / "out")).to_pylist()
    assert [(r["request_id"], r["shown"]) for r in rows] == [
        ("a", True), ("a", True), ("a", True), ("b", True), ("b", True), ("c", True), ("c", True), ("d", True), ("d", False),
    ]


@pytest.mark.parametrize("supported", [True, False])
def test_writeback_as_segments_grow(shop, tmp_path, monkeypatch, supported):
    store, _ = shop
    monkeypatch.setattr(segments, "WRITEBACK", 4096)
    if not supported:
        monkeypatch.setattr(segments, "_sync_file_range", None)
    log = vecstore.FeatureLog(store, seed=0)
    ids = [f"item-{i}" for i in range(400)]
    for r in range(40):
        log.retrieval(f"r{r}", ids, np.linspace(1, 0, 400), table="items", sample=20, ts=T0 + r)
        log.ranking(f"r{r}", ids[:5], np.arange(5.0), table="items", ts=T0 + r)
        log.label(f"r{r}", ids[0], "click", ts=T0 + r)
    seg = log._seg
    assert seg is not None
    if supported and segments._sync_file_range is not None:
        assert seg.offset - seg.written_back < 4096 + 20_000  # asked for writeback as it went
    else:
        assert seg.written_back < 4096  # never asked: flush() alone writes it out
    log.flush()
    frames = list(iter_frames(seg.path))
    assert sum(f.kind == 1 for f in frames) == 40 and sum(f.kind == 3 for f in frames) == 40
    assert log.verify() == []
    res = log.export(tmp_path / "out")
    assert res.rows_by_stage == {"retrieval": 40 * 400, "ranking": 40 * 5} and res.labels_joined == 80
    log.close()


@pytest.mark.parametrize(("n", "k"), [(20, 3), (5000, 50), (20, 10), (7, 7), (1, 1), (100, 1)])
def test_sample_positions_are_uniform_subsets(n, k):
    gen = np.random.default_rng(5)
    draws = 20_000 if n <= 20 else 400
    hits = np.zeros(n)
    pairs: dict[tuple[int, int], int] = {}
    for _ in range(draws):
        s = sample_positions(gen, n, k)
        assert s.dtype == np.int64 and len(s) == k
        assert (np.diff(s) > 0).all() and 0 <= s[0] and s[-1] < n  # distinct, ascending, in range
        hits[s] += 1
        if n == 20 and k == 3:
            key = (int(s[0]), int(s[1]))
            pairs[key] = pairs.get(key, 0) + 1
    if n > 20:
        hits = hits.reshape(10, -1).sum(axis=1) if n % 10 == 0 else hits  # coarse bins: a handful of draws per position
    expected = draws * k / len(hits)
    assert (np.abs(hits - expected) < 5 * np.sqrt(expected) + 1e-9).all()
    if pairs:
        # P(two smallest are (a, b)) = (n - 1 - b) / C(n, 3): checks the joint law, not just the marginals.
        total = n * (n - 1) * (n - 2) / 6
        for (a, b), c in pairs.items():
            e = draws * (n - 1 - b) / total
            assert abs(c - e) < 5 * np.sqrt(e) + 1, (a, b, c, e)
    assert sample_positions(np.random.default_rng(9), n, k).tolist() == sample_positions(np.random.default_rng(9), n, k).tolist()
