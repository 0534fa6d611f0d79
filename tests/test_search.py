"""Vector search: recall against exact search, consistency with the rows, filters, bad input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import vecstore

N, DIM = 2000, 32


def clustered(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    """Vectors around 40 centres: closer to real embeddings than uniform noise."""
    centres = rng.normal(size=(40, dim))
    x = centres[rng.integers(0, 40, n)] + 0.35 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make(store, rng, *, dtype="f32", index=None, metric="cos", n=N, name="items"):
    spec = vecstore.Vector(DIM, dtype=dtype, metric=metric, index=index if index is not None else vecstore.HNSW())
    t = store.create_table(name, {"embedding": spec, "category": vecstore.Category(), "price": vecstore.Scalar("f32")})
    vecs = clustered(rng, n)
    ids = [f"item-{i}" for i in range(n)]
    cats = np.array(["books", "toys", "food", "garden"])[np.arange(n) % 4]
    t.put(ids, {"embedding": vecs, "category": cats.tolist(), "price": (np.arange(n) % 100).astype(np.float32)})
    return t, ids, vecs


def recall(hits, truth) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(hits.keys, truth.keys)]))


@pytest.mark.parametrize(
    ("dtype", "index", "floor"),
    [
        ("f32", vecstore.HNSW(), 0.95),
        ("f16", vecstore.HNSW(), 0.95),
        ("f16", vecstore.HNSW(dtype="i8"), 0.95),  # reranked by default
    ],
)
def test_recall_against_exact_search(store, rng, dtype, index, floor):
    t, _, _ = make(store, rng, dtype=dtype, index=index)
    queries = clustered(np.random.default_rng(1), 200)
    truth = t.search(queries, k=10, exact=True)
    hits = t.search(queries, k=10)
    assert hits.batched and len(hits) == 200
    assert all(len(k) == 10 for k in hits.keys)
    assert recall(hits, truth) >= floor


def test_binary_index_candidates_are_reranked_exactly(store, rng):
    # Sign bits keep what sign-structured vectors (like many real embeddings) share.
    t = store.create_table("bits", {"v": vecstore.Vector(128, index=vecstore.HNSW(dtype="b1"))})
    base = np.sign(rng.normal(size=(2000, 128))).astype(np.float32)
    vecs = base + 0.3 * rng.normal(size=base.shape).astype(np.float32)
    t.put(list(range(2000)), {"v": vecs})
    q = vecs[:100] + 0.3 * rng.normal(size=(100, 128)).astype(np.float32)
    truth = t.search(q, k=10, exact=True)
    hits = t.search(q, k=10)
    assert recall(hits, truth) >= 0.95
    # Distances are exact cosine distances (the rerank's), not Hamming counts.
    np.testing.assert_allclose(hits.distances[0][:3], truth.distances[0][:3], atol=1e-5)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_other_metrics_match_exact_distances(store, rng, metric):
    t, _, vecs = make(store, rng, metric=metric)
    q = vecs[:20] * 1.5
    truth = t.search(q, k=5, exact=True)
    hits = t.search(q, k=5, ef=256)
    assert recall(hits, truth) >= 0.95
    # Reported distances are the metric's, whichever path found the row.
    for qi in range(3):
        v = t.get(hits.ids[qi], features=["embedding"])["embedding"]
        want = ((v - q[qi]) ** 2).sum(1) if metric == "l2" else 1 - v @ q[qi]
        np.testing.assert_allclose(hits.distances[qi], want, rtol=1e-4, atol=1e-4)


def test_exact_search_is_numpy_ground_truth(store, rng):
    t, ids, vecs = make(store, rng, n=300)
    q = clustered(np.random.default_rng(5), 1)[0]
    hits = t.search(q, k=7, exact=True)
    d = 1 - vecs @ q / np.linalg.norm(q)
    order = np.argsort(d, kind="stable")[:7]
    assert hits.ids == [ids[i] for i in order]
    np.testing.assert_allclose(hits.distances, d[order], atol=1e-5)


def test_deleted_and_replaced_vectors_are_never_returned(store, rng):
    t, ids, vecs = make(store, rng)
    t.search(vecs[0], k=1)  # build the index first, so what follows is caught up incrementally
    gone = ids[:200]
    t.delete(gone)
    hits = t.search(vecs[:200], k=10)
    assert not set(sum(hits.ids, [])) & set(gone)
    # An upsert that moves item-500 onto item-900's vector: the old position is forgotten.
    t.put(["item-500"], {"embedding": vecs[900:901]})
    near_new = t.search(vecs[900], k=2)
    assert set(near_new.ids) == {"item-500", "item-900"}
    near_old = t.search(vecs[500], k=5, exact=True)
    assert "item-500" not in near_old.ids
    assert "item-500" not in t.search(vecs[500], k=5).ids or near_old.ids[0] == "item-500"
    # A partial put that does not carry the vector keeps it indexed.
    t.put(["item-900"], {"price": [1.0]})
    assert t.search(vecs[900], k=1).ids in (["item-900"], ["item-500"])
    assert t.verify() == []


def test_filtered_search_returns_k_matching_rows(store, rng):
    t, ids, vecs = make(store, rng)
    q = clustered(np.random.default_rng(2), 20)
    cases = [
        {"category": "books"},  # 25%: HNSW with oversampling
        {"category": {"books", "toys", "food"}},  # 75%
        {"category": "toys", "price": ("<", 4.0)},  # 0.25%: exact over the matches
        {"price": ("between", 10, 19)},
        {"category": ("not in", ["books"])},
    ]
    rows = t.get(ids, features=["category", "price"])
    for where in cases:
        match = np.ones(N, dtype=bool)
        for f, cond in where.items():
            col = rows[f]
            if isinstance(cond, set):
                match &= np.isin(col, list(cond))
            elif isinstance(cond, tuple) and cond[0] == "<":
                match &= col < cond[1]
            elif isinstance(cond, tuple) and cond[0] == "between":
                match &= (col >= cond[1]) & (col <= cond[2])
            elif isinstance(cond, tuple) and cond[0] == "not in":
                match &= ~np.isin(col, cond[1])
            else:
                match &= col == cond
        allowed = {ids[i] for i in np.flatnonzero(match)}
        hits = t.search(q, k=10, where=where)
        truth = t.search(q, k=10, where=where, exact=True)
        want = min(10, len(allowed))
        assert all(len(h) == want for h in hits.ids), where
        assert set(sum(hits.ids, [])) <= allowed, where
        assert recall(hits, truth) >= 0.95, where


def test_filter_with_few_matches_and_allow_list(store, rng):
    t, ids, vecs = make(store, rng)
    # Three matching rows: fewer than k, so the result holds exactly those.
    hits = t.search(vecs[0], k=10, where={"price": ("==", 7.0), "category": "food"})
    assert sorted(hits.ids) == sorted(ids[i] for i in range(N) if i % 100 == 7 and i % 4 == 2)
    allowed = ids[1000:1500] + ["not-stored"]
    hits = t.search(vecs[:5], k=10, among=allowed)
    assert all(len(h) == 10 for h in hits.ids)
    assert set(sum(hits.ids, [])) <= set(allowed)
    # A large allow-list goes through the index and still returns k.
    big = ids[::2]
    hits = t.search(vecs[:5], k=10, among=big, where={"category": ("!=", "garden")})
    assert all(len(h) == 10 for h in hits.ids)
    assert set(sum(hits.ids, [])) <= set(big)
    assert t.search(vecs[0], k=10, where={"category": "no-such-category"}).ids == []
    assert t.search(vecs[0], k=10, among=[]).ids == []


def test_filters_follow_writes(store, rng):
    t, ids, vecs = make(store, rng)
    assert len(t.search(vecs[0], k=10, where={"category": "new"}).ids) == 0
    t.put(ids[:3], {"category": ["new"] * 3})
    assert sorted(t.search(vecs[0], k=10, where={"category": "new"}).ids) == sorted(ids[:3])
    t.delete(ids[0])
    assert sorted(t.search(vecs[0], k=10, where={"category": "new"}).ids) == sorted(ids[1:3])


def test_search_by_id_excludes_itself(store, rng):
    t, ids, vecs = make(store, rng)
    hits = t.search_by_id("item-42", k=5)
    assert len(hits.ids) == 5 and "item-42" not in hits.ids
    truth = t.search(vecs[42], k=6, exact=True)
    assert set(hits.ids) <= set(truth.ids) | set(t.search(vecs[42], k=20, exact=True).ids)
    assert "item-42" not in t.search_by_id("item-42", k=3, where={"category": "food"}).ids
    with pytest.raises(vecstore.IdNotFoundError):
        t.search_by_id("nope")
    t.put(["novec"], {"price": [1.0]})
    with pytest.raises(vecstore.InvalidValueError, match="no 'embedding' vector"):
        t.search_by_id("novec")


def test_results_as_arrow_and_python(store, rng):
    t, ids, vecs = make(store, rng, n=100)
    one = t.search(vecs[3], k=3)
    assert isinstance(one.keys, np.ndarray) and one.distances.dtype == np.float32
    assert one.ids[0] == "item-3" and one.to_pylist()[0]["id"] == "item-3"
    assert one.to_arrow().column_names == ["rank", "id", "key", "distance"]
    batch = t.search(vecs[:2], k=3)
    table = batch.to_arrow()
    assert table.column_names == ["query", "rank", "id", "key", "distance"]
    assert table.num_rows == 6 and table.schema.field("key").type == pa.uint64()
    assert [len(x) for x in batch.to_pylist()] == [3, 3]
    # More hits asked for than rows: only real rows come back (usearch pads with key 0).
    assert len(t.search(vecs[0], k=500).ids) == 100


def test_unindexed_vectors_search_exactly(store, rng):
    t = store.create_table("raw", {"v": vecstore.Vector(DIM, index=None)})
    vecs = clustered(rng, 50)
    t.put(list(range(50)), {"v": vecs})
    assert t.search(vecs[7], k=1).ids == [7]
    assert t.info().indexes == []
    with pytest.raises(vecstore.UnknownFeatureError):
        t.rebuild_index()


def test_bad_search_input_raises_clear_errors(store, rng):
    t, _, vecs = make(store, rng, n=50)
    t2 = store.create_table("two", {"a": vecstore.Vector(4), "b": vecstore.Vector(4), "n": vecstore.IdList()})
    bad = [
        (lambda: t.search(np.zeros(DIM + 1)), vecstore.InvalidValueError, "dimension"),
        (lambda: t.search(np.full(DIM, np.nan)), vecstore.InvalidValueError, "NaN"),
        (lambda: t.search(np.zeros((2, 2, DIM))), vecstore.InvalidValueError, "dimension"),
        (lambda: t.search("text"), vecstore.InvalidValueError, "query"),
        (lambda: t.search(vecs[0], k=0), vecstore.InvalidValueError, "k must"),
        (lambda: t.search(vecs[0], k=True), vecstore.InvalidValueError, "k must"),
        (lambda: t.search(vecs[0], ef=0), vecstore.InvalidValueError, "ef must"),
        (lambda: t.search(vecs[0], rerank=-1), vecstore.InvalidValueError, "rerank"),
        (lambda: t.search(vecs[0], feature="nope"), vecstore.UnknownFeatureError, "nope"),
        (lambda: t.search(vecs[0], feature="price"), vecstore.InvalidValueError, "not a vector"),
        (lambda: t.search(vecs[0], where={"embedding": 1.0}), vecstore.InvalidValueError, "vector feature"),
        (lambda: t.search(vecs[0], where={"nope": 1.0}), vecstore.UnknownFeatureError, "nope"),
        (lambda: t.search(vecs[0], where={"price": ("~", 1)}), vecstore.InvalidValueError, "operator"),
        (lambda: t.search(vecs[0], where={"price": "cheap"}), vecstore.InvalidValueError, "number"),
        (lambda: t.search(vecs[0], where={"category": ("<", "b")}), vecstore.InvalidValueError, "category"),
        (lambda: t.search(vecs[0], where=[("price", 1)]), vecstore.InvalidValueError, "dict"),
        (lambda: t2.search(np.zeros(4)), vecstore.InvalidValueError, "several vector features"),
        (lambda: t2.search(np.ones(4), feature="a", where={"n": 1}), vecstore.InvalidValueError, "idlist"),
        (lambda: t.search_by_id(["a", "b"]), vecstore.InvalidValueError, "one ID"),
    ]
    for call, exc, text in bad:
        with pytest.raises(exc, match=text):
            call()
    with pytest.raises(vecstore.SchemaError):
        vecstore.HNSW(dtype="f64")
    with pytest.raises(vecstore.SchemaError):
        vecstore.HNSW(connectivity=1)


def test_rebuild_index_reports_progress_and_info(store, rng):
    t, _, vecs = make(store, rng)
    seen = []
    info = t.rebuild_index("embedding", progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (N, N)
    assert info.vectors == N and info.tombstones == 0 and info.loaded and info.behind == 0 and info.file_bytes > 0
    t.delete([f"item-{i}" for i in range(10)])
    info = t.info().indexes[0]
    assert info.behind == 1  # caught up on the next search
    t.search(vecs[0], k=1)
    info = t.info().indexes[0]
    assert info.behind == 0 and info.vectors == N - 10 and info.tombstones == 10


def test_id_cache_never_serves_a_stale_id(store, rng):
    t, ids, vecs = make(store, rng, n=200)
    assert t.search(vecs[3], k=1).ids == ["item-3"]
    assert t.search(vecs[3], k=1).ids == ["item-3"]  # served from the key -> ID cache
    t.delete("item-3")
    assert "item-3" not in t.search(vecs[3], k=5).ids
    t.put([b"item-3"], {"embedding": vecs[3:4]})  # same entity, now stored spelled as bytes
    assert t.search(vecs[3], k=1).ids == [b"item-3"]
    assert t.search(vecs[3], k=1).ids == [b"item-3"]


def test_empty_batch_and_binary_storage(store, rng):
    t = store.create_table("signs", {"v": vecstore.Vector(64, dtype="b1")})
    vecs = np.sign(rng.normal(size=(300, 64))).astype(np.float32)
    t.put(list(range(300)), {"v": vecs})
    assert t.search(np.zeros((0, 64)), k=3).ids == []
    hits = t.search(vecs[:5], k=3)
    exact = t.search(vecs[:5], k=3, exact=True)
    # A b1 index over b1 vectors still reports the feature's (cosine) distances.
    np.testing.assert_allclose(np.array(hits.distances)[:, 0], np.array(exact.distances)[:, 0], atol=1e-5)
    assert [h[0] for h in hits.ids] == [0, 1, 2, 3, 4]


def test_unfiltered_search_reads_ids_missing_from_the_cache_on_the_same_snapshot(store, rng):
    t, _, vecs = make(store, rng)
    vi = t._indexes["embedding"]
    first = t.search(vecs[:5], k=10)
    vi.ids.clear()  # cold key -> ID cache: the fast path reads the IDs instead of searching again
    calls = []
    real = vi.search
    vi.search = lambda *a, **kw: calls.append(1) or real(*a, **kw)
    try:
        again = t.search(vecs[:5], k=10)
    finally:
        del vi.search
    assert again.ids == first.ids and len(calls) == 1
    assert all(vi.ids[int(k)] == i for ks, row in zip(again.keys, again.ids) for k, i in zip(ks, row))
    # a commit in between: the result follows it (never a deleted row)
    t.delete(first.ids[0][:3])
    vi.ids.clear()
    after = t.search(vecs[0], k=10)
    assert not set(after.ids) & set(first.ids[0][:3])


def test_a_zero_query_under_cosine_is_refused(store, rng):
    t, _, _ = make(store, rng)
    with pytest.raises(vecstore.InvalidValueError, match="zero vector"):
        t.search(np.zeros(DIM, np.float32), k=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float32_query_with_nan_or_inf_is_refused(store, rng, bad):
    # A contiguous float32 1-D query takes the one-dot-product check; it must
    # refuse exactly what the full checks refuse.
    t, _, vecs = make(store, rng)
    q = vecs[0].astype(np.float32).copy()
    q[3] = bad
    with pytest.raises(vecstore.InvalidValueError, match="NaN"):
        t.search(q, k=3)


def test_a_huge_but_finite_float32_query_is_searched(store, rng):
    # Its squared norm would overflow float32; that alone must not refuse it.
    t, _, vecs = make(store, rng)
    q = (vecs[0] * np.float32(1e30)).astype(np.float32)
    assert np.isfinite(q).all()
    assert t.search(q, k=3).ids == t.search(vecs[0].astype(np.float32), k=3).ids


def test_id_cache_warmed_at_load_follows_deletes_and_key_reuse(tmp_path):
    # The key -> ID cache is filled from every row when the index loads; a
    # key later freed and taken by another ID (possible with the narrow-hash
    # test hook) must come back with the new ID, never the cached old one.
    rng = np.random.default_rng(0)
    path = tmp_path / "reuse.vs"
    with vecstore.open(path, hash_bits=8) as s:
        t = s.create_table("t", {"v": vecstore.Vector(DIM)})
        names = []
        for i in range(2000):  # first ID seen for each of up to 256 keys
            if len(names) == 200:
                break
            name = f"id-{i}"
            if s.hash_ids([name])[0] not in s.hash_ids(names or ["-"]):
                names.append(name)
        vecs = rng.normal(size=(len(names), DIM)).astype(np.float32)
        t.put(names, {"v": vecs})
        t.search(vecs[0], k=1)  # build and save the index
    with vecstore.open(path, hash_bits=8) as s:
        t = s.table("t")
        assert t.search(vecs[5], k=1).ids == [names[5]]  # loads the snapshot, warms the cache
        assert len(t._index("v").ids) == len(names)
        key = s.hash_ids([names[5]])[0]
        other = next(f"x-{i}" for i in range(100_000) if s.hash_ids([f"x-{i}"])[0] == key)
        t.delete([names[5]])
        t.put([other], {"v": vecs[5:6]})
        assert t.search(vecs[5], k=1).ids == [other]


def test_an_i8_index_is_only_for_cosine(store):
    # usearch's int8 index normalizes vectors: under ip/l2 it would rank by direction alone.
    for metric in ("ip", "l2"):
        with pytest.raises(vecstore.SchemaError, match="i8 HNSW index normalizes"):
            store.create_table(f"x{metric}", {"v": vecstore.Vector(8, metric=metric, index=vecstore.HNSW(dtype="i8"))})
        t = store.create_table(f"d{metric}", {"v": vecstore.Vector(8, dtype="i8", metric=metric)})
        assert t.features["v"].index.dtype == "f16"  # i8 storage gets an f16 index under ip/l2
    assert store.create_table("c", {"v": vecstore.Vector(8, dtype="i8")}).features["v"].index.dtype is None
    # exist_ok accepts the same features as given again
    assert store.create_table("dl2", {"v": vecstore.Vector(8, dtype="i8", metric="l2")}, exist_ok=True).name == "dl2"


def test_ip_on_unnormalized_vectors_with_an_i8_stored_feature_finds_the_true_neighbours(store):
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((2000, 32)) * np.exp(rng.standard_normal((2000, 1)))).astype(np.float32)
    Q = rng.standard_normal((20, 32)).astype(np.float32)
    t = store.create_table("ipt", {"v": vecstore.Vector(32, dtype="i8", metric="ip")})
    t.put(list(range(2000)), {"v": X})
    truth, hits = t.search(Q, k=10, exact=True), t.search(Q, k=10, ef=256)
    assert recall(hits, truth) >= 0.9


def test_where_on_an_f16_scalar_matches_the_value_as_written(store):
    t = store.create_table("h", {"v": vecstore.Vector(4), "ctr": vecstore.Scalar("f16")})
    t.put(["a", "b"], {"v": np.eye(4, dtype=np.float32)[:2], "ctr": [0.3, 0.5]})
    q = np.ones(4, np.float32)
    assert t.search(q, k=5, where={"ctr": 0.3}).ids == ["a"]
    assert t.search(q, k=5, where={"ctr": {0.3}}).ids == ["a"]
    assert sorted(t.search(q, k=5, where={"ctr": ("<=", 0.3)}).ids) == ["a"]
    assert t.search(q, k=5, where={"ctr": ("<", 0.3)}).ids == []
    assert sorted(t.search(q, k=5, where={"ctr": ("<", 1e9)}).ids) == ["a", "b"]


def test_among_accepts_a_set_and_search_by_id_names_a_zero_row(store):
    t = store.create_table("s", {"v": vecstore.Vector(4)})
    t.put(["a", "b", "z"], {"v": np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], np.float32)})
    assert t.search(np.ones(4, np.float32), k=5, among={"a", "b"}).ids in (["a", "b"], ["b", "a"])
    with pytest.raises(vecstore.InvalidValueError, match="row 'z'.*zero vector"):
        t.search_by_id("z", k=1)


def test_to_arrow_keeps_mixed_id_kinds_apart(store):
    # The int 7 and the str "7" are two entities: mixed kinds get export's struct,
    # and str IDs beside bytes stay str (pyarrow alone made them bytes).
    t = store.create_table("m", {"v": vecstore.Vector(4)})
    t.put(["a", b"b", 7, "7"], {"v": np.eye(4, dtype=np.float32)})
    col = t.search(np.ones(4, np.float32), k=4).to_arrow().column("id")
    assert col.type == vecstore.table_export.MIXED_ID_TYPE
    got = sorted((k, v) for d in col.to_pylist() for k, v in d.items() if v is not None)
    assert got == [("bytes", b"b"), ("int", 7), ("str", "7"), ("str", "a")]
    only_text = t.get(["a", b"b"]).to_arrow().column("id")
    assert only_text.type == "string" and only_text.to_pylist() == ["a", "b"]
