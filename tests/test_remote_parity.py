"""One table test module, three backends: a local Table, and the same store behind the server
over a Unix socket and over loopback TCP.  Every test runs against all three, so the remote
tables cannot drift from the local one in arguments, return types or exceptions.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest
from conftest import SCHEMA, sample_columns
from server_kit import start

import vecstore


@pytest.fixture(params=["local", "unix", "tcp"])
def connect(request, tmp_path):
    """``connect(**open_kwargs)``: a new store, used directly or through a server, as a Store-like object."""
    cleanup = []

    def make(**kwargs):
        n = len(cleanup)
        store = vecstore.open(tmp_path / f"p{n}.vs", seed=1234, **kwargs)
        cleanup.append(store.close)
        if request.param == "local":
            return store
        sub = tmp_path / f"s{n}"
        sub.mkdir()
        running = start(store, request.param, sub)
        cleanup.append(running.stop)
        client = vecstore.connect(running.address, timeout=30)
        cleanup.append(client.close)
        return client

    yield make
    for close in reversed(cleanup):
        close()


@pytest.fixture
def db(connect):
    return connect()


@pytest.fixture
def items(db):
    return db.create_table("items", SCHEMA, expected_size=10_000)


def test_put_get_round_trip_every_feature(items, rng):
    ids, cols = sample_columns(rng, 200)
    assert items.put(ids, cols) == 200
    assert len(items) == 200
    rows = items.get(ids)
    assert isinstance(rows, vecstore.Rows) and rows.found.all()
    assert rows.ids is ids
    np.testing.assert_array_equal(rows["price"], cols["price"])
    np.testing.assert_allclose(rows["ctr_7d"], cols["ctr_7d"], rtol=2**-11, atol=2**-25)
    assert rows["ctr_7d"].dtype == np.float32 and rows["clicks"].dtype == np.int64
    np.testing.assert_array_equal(rows["in_stock"], cols["in_stock"])
    np.testing.assert_array_equal(rows["clicks"], cols["clicks"])
    assert list(rows["category"]) == cols["category"]
    assert list(rows["recent"]) == cols["recent"]
    emb = rows["embedding"]
    assert emb.dtype == np.float32 and emb.shape == (200, 16)
    cos = (emb * cols["embedding"]).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(cols["embedding"], axis=1)
    assert cos.min() > 0.999
    np.testing.assert_array_equal(rows.keys, vecstore.hash_ids(ids, seed=1234))


def test_get_in_input_order_with_missing_rows_and_defaults(items, rng):
    ids, cols = sample_columns(rng, 10)
    items.put(ids, cols)
    feats = ["price", "category", "clicks", "embedding", "recent"]
    rows = items.get(["item-3", "nope", "item-0", "item-3"], features=feats)
    assert rows.found.tolist() == [True, False, True, True]
    price = rows["price"]
    assert price[0] == cols["price"][3] and np.isnan(price[1]) and price[2] == cols["price"][0]
    assert rows["category"].tolist() == ["books", None, "books", "books"]
    assert rows["clicks"][1] == 0
    assert np.isnan(rows["embedding"][1]).all()
    assert rows["recent"][1] is None
    assert rows.present("price").tolist() == [True, False, True, True]
    with pytest.raises(vecstore.UnknownFeatureError):
        rows["in_stock"]  # not read


def test_single_id_calls_give_scalar_results(items):
    assert items.put("solo", {"price": 2.5, "embedding": np.ones(16), "category": "books", "recent": ["a", 7]}) == 1
    rows = items.get("solo")
    assert len(rows) == 1 and rows.found[0] and rows.ids == ["solo"]
    assert rows["price"][0] == 2.5
    assert rows["recent"][0] == ["a", 7]
    assert items.contains("solo") is True
    assert items.contains("other") is False
    assert items.may_contain("solo") is True
    assert items.delete("solo") == 1
    assert items.contains("solo") is False


def test_partial_rows_merge_and_none_clears(items, rng):
    ids, cols = sample_columns(rng, 50)
    items.put(ids, cols)
    items.put(ids[:10], {"price": np.full(10, 7.0)})
    rows = items.get(ids)
    assert (rows["price"][:10] == 7.0).all()
    np.testing.assert_array_equal(rows["price"][10:], cols["price"][10:])
    np.testing.assert_array_equal(rows["clicks"], cols["clicks"])
    items.put(ids[:2], {"category": [None, "toys"], "recent": [None, ["y"]]})
    rows = items.get(ids[:2])
    assert rows["category"].tolist() == [None, "toys"]
    assert rows["recent"].tolist() == [None, ["y"]]


def test_repeated_ids_and_id_types(items):
    assert items.put(["a", "b", "a"], {"price": [1.0, 2.0, 3.0]}) == 2
    assert items.get("a")["price"][0] == 3.0
    arr = np.arange(1000, 1100, dtype=np.int64)
    items.put(arr, {"clicks": arr})
    rows = items.get(arr[::-1])
    np.testing.assert_array_equal(rows["clicks"], arr[::-1])
    assert isinstance(rows.ids, np.ndarray) and rows.ids.dtype == np.int64
    assert items.get([1000, 1001])["clicks"].tolist() == [1000, 1001]
    assert items.get((1000, 1001))["clicks"].tolist() == [1000, 1001]
    assert items.get(np.arange(1000, 1003, dtype=np.uint32))["clicks"].tolist() == [1000, 1001, 1002]
    assert items.get(np.array(["a", "b"]))["price"].tolist() == [3.0, 2.0]
    assert items.get(x for x in ["a"])["price"].tolist() == [3.0]
    assert not items.contains("1000")  # an int and its decimal string are different entities
    assert items.contains(np.int32(1000))
    items.put([b"abc"], {"price": [5.0]})
    assert items.contains("abc") and items.get("abc")["price"][0] == 5.0
    assert items.put([-(2**63), 2**63 - 1], {"clicks": [1, 2]}) == 2


def test_delete_and_empty_batches(items, rng):
    ids, cols = sample_columns(rng, 20)
    items.put(ids, cols)
    assert items.delete(ids[:5] + ["never-stored"]) == 5
    assert len(items) == 15
    assert not items.contains(ids[:5]).any()
    assert items.get(ids[:5]).found.sum() == 0
    assert items.delete(ids[:5]) == 0
    assert items.put([], {}) == 0
    assert items.delete([]) == 0
    assert len(items.get([])) == 0
    assert items.contains([]).shape == (0,)
    assert items.may_contain(np.array([], dtype=np.int64)).shape == (0,)


def test_results_are_writable_arrays(items, rng):
    ids, cols = sample_columns(rng, 5)
    items.put(ids, cols)
    rows = items.get(ids)
    for arr in (rows.found, rows.keys, rows["price"], rows["embedding"], items.contains(ids), items.may_contain(ids)):
        assert isinstance(arr, np.ndarray) and arr.flags.writeable
        arr[0] = arr[0]


def test_raw_forms_and_feature_subsets(items, rng):
    ids, cols = sample_columns(rng, 5)
    items.put(ids, cols)
    rows = items.get(ids, raw=True)
    codes, scale = rows["embedding"]
    assert codes.dtype == np.int8 and scale.dtype == np.float32
    np.testing.assert_allclose(codes * scale[:, None], items.get(ids)["embedding"])
    assert rows["ctr_7d"].dtype == np.float16
    assert rows.raw("category").dtype == np.uint32
    assert rows.to_pylist()[0]["category"] == "books"
    sub = items.get(ids + ["nope"], features=["embedding", "category"])
    assert sub.features == ["embedding", "category"]
    assert sub["category"].tolist()[:2] == ["books", "toys"] and sub["category"][5] is None
    np.testing.assert_allclose(sub["embedding"][:5], items.get(ids)["embedding"])
    assert items.get(ids, features="price")["price"].tolist() == cols["price"].tolist()
    assert items.get(ids, features=("price",))["price"].shape == (5,)
    assert items.get(ids, features=[]).to_pylist()[0] == {"id": "item-0"}


def test_to_arrow_and_pylist(items, rng):
    ids, cols = sample_columns(rng, 3)
    items.put(ids, cols)
    t = items.get(ids + ["nope"]).to_arrow()
    assert t.column_names == ["id", *SCHEMA]
    assert t.schema.field("embedding").type == pa.list_(pa.float32(), 16)
    assert t.column("price").null_count == 1
    recs = items.get(["item-0", "nope"], features=["price", "category"]).to_pylist()
    assert recs[0]["id"] == "item-0" and recs[0]["category"] == "books"
    assert recs[1] == {"id": "nope", "price": None, "category": None}


def test_put_accepts_arrow_and_scan_covers_all_rows(db, items, rng):
    ids, cols = sample_columns(rng, 250)
    items.put(ids, cols)
    copy = db.create_table("copy", SCHEMA)
    seen = []
    for rows in items.scan(batch_size=70):
        assert isinstance(rows, vecstore.Rows) and len(rows) <= 70
        seen.extend(rows.keys.tolist())
        copy.put(list(rows.ids), rows.to_arrow())
    assert seen == sorted(seen) and len(seen) == 250
    a = [r for rows in items.scan(batch_size=100) for r in rows.to_pylist()]
    b = [r for rows in copy.scan(batch_size=1000) for r in rows.to_pylist()]
    assert a == b
    assert sorted(i for batch in items.ids(batch_size=33) for i in batch) == sorted(ids)
    assert next(iter(items.scan(features=["price"], raw=True)))["price"].dtype == np.float32
    with pytest.raises(vecstore.InvalidValueError):
        next(iter(items.scan(batch_size=0)))
    partial = items.scan(batch_size=10)
    assert len(next(partial)) == 10
    partial.close()  # an abandoned scan frees its server-side state
    items.put(["z"], pa.table({"id": ["z"], "price": pa.array([None], pa.float32())}))
    assert np.isnan(items.get("z")["price"][0])


def test_info_verify_and_bloom(items, rng):
    ids, cols = sample_columns(rng, 100)
    items.put(ids, cols)
    items.delete(ids[:10])
    info = items.info()
    assert isinstance(info, vecstore.TableInfo) and isinstance(info.bloom, vecstore.BloomInfo)
    assert all(isinstance(f, vecstore.FeatureInfo) for f in info.features)
    assert all(isinstance(i, vecstore.IndexInfo) for i in info.indexes)
    assert info.rows == 90 and info.bloom.count >= 90  # deletes leave bits set until a rebuild
    assert {f.name: f.bytes_per_row for f in info.features}["embedding"] == 20
    assert info.to_dict()["name"] == "items"
    assert items.verify() == []
    assert items.may_contain(ids[10:]).all()  # never a false negative
    rebuilt = items.rebuild_bloom()
    assert isinstance(rebuilt, vecstore.BloomInfo) and rebuilt.count == 90
    assert items.features == SCHEMA and items.name == "items"


def test_store_surface_and_table_lifecycle(db):
    assert db.tables() == []
    t = db.create_table("a", {"x": vecstore.Scalar()})
    db.create_table("b", {"x": vecstore.Scalar()})
    assert db.tables() == ["a", "b"] and "a" in db and list(db) == ["a", "b"]
    assert db["a"].name == "a"
    with pytest.raises(vecstore.TableExistsError):
        db.create_table("a", {"x": vecstore.Scalar()})
    assert db.create_table("a", {"x": vecstore.Scalar()}, exist_ok=True).name == "a"
    with pytest.raises(vecstore.TableExistsError):
        db.create_table("a", {"y": vecstore.Scalar()}, exist_ok=True)
    with pytest.raises(vecstore.SchemaError):
        db.create_table("bad name!", {"x": vecstore.Scalar()})
    with pytest.raises(vecstore.SchemaError):
        db.create_table("c", {"x": "f32"})
    t.put(["k"], {"x": [1.0]})
    info = db.info()
    assert isinstance(info, vecstore.StoreInfo) and [x.name for x in info.tables] == ["a", "b"]
    assert info.tables[0].rows == 1
    db.drop_table("a")
    assert db.tables() == ["b"]
    with pytest.raises(vecstore.TableNotFoundError):
        db.table("a")
    with pytest.raises(vecstore.TableNotFoundError):
        db.table(5)  # not a name at all: the same error locally and remotely
    with pytest.raises(vecstore.TableNotFoundError):
        t.get(["k"])
    fresh = db.create_table("a", {"x": vecstore.Scalar()})
    assert len(fresh) == 0 and not fresh.contains("k")
    with pytest.raises(vecstore.TableNotFoundError):
        len(t)  # bound to the dropped table, as a local Table is, not to the name
    np.testing.assert_array_equal(db.hash_ids(["k", 1]), vecstore.hash_ids(["k", 1], seed=1234))
    db.flush()
    assert db.verify() == []


BAD_CALLS = [
    ("bad id type", lambda t: t.get([1.5]), vecstore.InvalidIdError),
    ("bool id", lambda t: t.contains(True), vecstore.InvalidIdError),
    ("None id", lambda t: t.put([None], {"price": [1.0]}), vecstore.InvalidIdError),
    ("object id", lambda t: t.get([object()]), vecstore.InvalidIdError),
    ("set of ids", lambda t: t.get({"a"}), vecstore.InvalidIdError),
    ("int id too big", lambda t: t.get([2**64]), vecstore.InvalidIdError),
    ("uint64 id too big", lambda t: t.get(np.array([2**64 - 1], dtype=np.uint64)), vecstore.InvalidIdError),
    ("2-D id array", lambda t: t.get(np.zeros((2, 2), dtype=np.int64)), vecstore.InvalidIdError),
    ("bytes array ids", lambda t: t.get(np.array([b"a"])), vecstore.InvalidIdError),
    ("unknown feature in get", lambda t: t.get(["a"], features=["nope"]), vecstore.UnknownFeatureError),
    ("unknown feature in put", lambda t: t.put(["a"], {"nope": [1]}), vecstore.UnknownFeatureError),
    ("wrong vector dim", lambda t: t.put(["a"], {"embedding": np.zeros((1, 3))}), vecstore.InvalidValueError),
    ("NaN vector", lambda t: t.put(["a"], {"embedding": np.full((1, 16), np.nan)}), vecstore.InvalidValueError),
    ("wrong length", lambda t: t.put(["a", "b"], {"price": [1.0]}), vecstore.InvalidValueError),
    ("string in numbers", lambda t: t.put(["a"], {"price": ["x"]}), vecstore.InvalidValueError),
    ("object in numbers", lambda t: t.put(["a"], {"price": [object()]}), vecstore.InvalidValueError),
    ("int out of range", lambda t: t.put(["a"], {"clicks": [2**70]}), vecstore.InvalidValueError),
    ("f16 overflow", lambda t: t.put(["a"], {"ctr_7d": [1e6]}), vecstore.InvalidValueError),
    ("category not str", lambda t: t.put(["a"], {"category": [5]}), vecstore.InvalidValueError),
    ("columns not a mapping", lambda t: t.put(["a"], [1.0]), vecstore.InvalidValueError),
    ("bad batch size", lambda t: list(t.scan(batch_size=-1)), vecstore.InvalidValueError),
    ("features not iterable", lambda t: t.get(["a"], features=5), TypeError),
]


@pytest.mark.parametrize(("what", "call", "exc"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_errors_are_the_local_classes_and_write_nothing(items, what, call, exc):
    items.put(["keep"], {"price": [1.0]})
    with pytest.raises(exc):
        call(items)
    assert len(items) == 1 and items.get("keep")["price"][0] == 1.0


def test_id_collisions(connect):
    db = connect(hash_bits=8)
    t = db.create_table("t", {"x": vecstore.Scalar("i64")})
    ids = [f"id-{i}" for i in range(64)]
    keys = vecstore.hash_ids(ids, seed=1234, hash_bits=8)
    first = {}
    pair = None
    for i, k in zip(ids, keys.tolist()):
        if k in first:
            pair = (first[k], i)
            break
        first[k] = i
    assert pair is not None
    t.put([pair[0]], {"x": [1]})
    with pytest.raises(vecstore.IdCollisionError) as e:
        t.put([pair[1]], {"x": [2]})
    assert e.value.existing_id == pair[0] and e.value.new_id == pair[1] and e.value.table == "t"
    assert t.get(pair[0])["x"][0] == 1 and not t.contains(pair[1])


def _vectors(rng, n, dim=8):
    x = rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_search_and_search_by_id(db, rng):
    t = db.create_table("v", {"emb": vecstore.Vector(8), "cat": vecstore.Category(), "price": vecstore.Scalar()})
    vecs = _vectors(rng, 300)
    ids = [f"v{i}" for i in range(300)]
    t.put(ids, {"emb": vecs, "cat": ["a", "b", "c"] * 100, "price": np.arange(300.0)})
    q = vecs[7]
    hits = t.search(q, k=5, exact=True)
    assert isinstance(hits, vecstore.SearchResult) and not hits.batched
    truth = np.argsort(1 - vecs @ q)[:5]
    assert hits.ids == [ids[i] for i in truth]
    assert hits.keys.dtype == np.uint64 and hits.distances.dtype == np.float32 and hits.distances.flags.writeable
    assert t.search(q, k=5).ids[0] == "v7"
    batch = t.search(vecs[:3], k=4)
    assert batch.batched and [h[0] for h in batch.ids] == ["v0", "v1", "v2"]
    assert batch.to_arrow().num_rows == 12
    only_b = t.search(q, k=10, where={"cat": "b", "price": ("<", 100.0)})
    assert only_b.ids and all(int(i[1:]) % 3 == 1 and int(i[1:]) < 100 for i in only_b.ids)
    members = t.search(q, k=10, where={"cat": {"a", "c"}})
    assert all(int(i[1:]) % 3 != 1 for i in members.ids)
    assert set(t.search(q, k=10, among=["v1", "v2", "v3"]).ids) == {"v1", "v2", "v3"}
    similar = t.search_by_id("v7", k=3)
    assert len(similar.ids) == 3 and "v7" not in similar.ids
    assert t.search_by_id("v7", k=3, exact=True).ids == [ids[i] for i in truth[1:4]]
    with pytest.raises(vecstore.IdNotFoundError):
        t.search_by_id("nope")
    with pytest.raises(vecstore.InvalidValueError, match="dimension"):
        t.search(np.zeros(9))
    with pytest.raises(vecstore.InvalidValueError, match="k must"):
        t.search(q, k=0)
    with pytest.raises(vecstore.InvalidValueError, match="operator"):
        t.search(q, where={"price": ("~", 1)})
    with pytest.raises(vecstore.InvalidValueError, match="dict"):
        t.search(q, where=[("price", 1)])
    info = t.rebuild_index("emb")
    assert isinstance(info, vecstore.IndexInfo) and info.vectors == 300


def test_feature_log(db, items, rng, tmp_path):
    from vecstore.featurelog import (
        DriftReport,
        ExportResult,
        LogInfo,
        LogStats,
        PruneReport,
    )

    ids, cols = sample_columns(rng, 50)
    items.put(ids, cols)
    log = db.log
    t0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
    # 40 str candidates: over the wire, the compact form of a str batch.
    assert log.retrieval("req-1", ids[:40], np.linspace(1, 0, 40), table="items", features=["price"], sample=5,
                         context={"surface": "home"}, ts=t0 + 1) == 5
    assert log.ranking("req-1", ids[:5], np.arange(5, 0, -1.0), table="items", shown=ids[:2], ts=t0 + 2) == 5
    log.label("req-1", ids[0], "click", 1.0, ts=datetime(2026, 1, 1, 0, 0, 30))  # naive: UTC
    log.flush()
    info = log.info()
    assert isinstance(info, LogInfo) and info.retrieval_calls == 1 and info.labels_logged == 1
    assert info.rows == {"retrieval": 40, "ranking": 5}
    res = log.export(tmp_path / "out")
    assert isinstance(res, ExportResult) and res.rows == 45 and res.labels_joined == 2
    import pyarrow.dataset as pads

    logged = pads.dataset(res.path, format="parquet", partitioning="hive").to_table(filter=pads.field("stage") == "retrieval")
    assert logged.sort_by("position")["item"].to_pylist() == ids[:40]
    assert isinstance(res.schema, pa.Schema) and "label_click" in res.schema.names
    stats = log.stats(stage="ranking", feature="price")
    assert isinstance(stats, LogStats) and stats.count == 5 and 0.5 in stats.quantiles
    assert stats.min <= stats.quantile(0.3) <= stats.max  # the sketch behind it travels too
    report = log.drift(["price"], baseline=(t0, t0 + 3600), current=(t0 + 3600, t0 + 7200))
    assert isinstance(report, DriftReport) and isinstance(report.baseline, tuple) and report.baseline[0] == t0
    assert log.verify() == []
    assert isinstance(log.prune(before=t0 - 3600), PruneReport)
    with pytest.raises(vecstore.InvalidValueError):
        log.retrieval("", ids[:2], [1.0, 2.0], table="items")
    with pytest.raises(vecstore.TableNotFoundError):
        log.ranking("req-2", ids[:2], [1.0, 2.0], table="nope")
    for few_or_many in (ids[:2], ids[:40]):  # an ID that cannot be encoded: the same error either side of the wire
        with pytest.raises(vecstore.InvalidIdError):
            log.retrieval("req-3", [*few_or_many, "x\ud800"], np.ones(len(few_or_many) + 1), table="items")


def test_large_str_batches_with_awkward_ids(items, rng):
    # 40+ str IDs go over the wire as one NUL-joined string (protocol 2): the
    # same rows, order, missing entries and errors as a local table, for
    # non-ASCII, empty and repeated IDs, and IDs that cannot take that form.
    assert getattr(items, "compact_ids", True)  # a remote table uses the compact form
    ids = [f"é-{i}" for i in range(38)] + ["", "日本", "a\x00b"]  # the NUL ID is sent as a plain array
    _, cols = sample_columns(rng, len(ids))
    assert items.put(ids, cols) == len(ids)
    ask = [*reversed(ids), "ghost", "é-3", ""]
    rows = items.get(ask, features=["price", "category"])
    assert rows.found.tolist() == [True] * len(ids) + [False, True, True]
    want = {x: p for x, p in zip(ids, cols["price"])}
    np.testing.assert_array_equal(rows["price"][: len(ids)], [want[x] for x in reversed(ids)])
    assert list(rows.ids) == ask
    without_nul = [x for x in ask if "\x00" not in x]
    assert items.contains(without_nul).tolist() == [x in want for x in without_nul]
    assert items.may_contain(without_nul)[[x in want for x in without_nul]].all()
    with pytest.raises(vecstore.InvalidIdError):
        items.get([f"x{i}" for i in range(40)] + ["bad\ud800"])  # not UTF-8: the local error, from the server
    assert items.delete(without_nul) == len(ids) - 1
    assert items.contains(["a\x00b"]).tolist() == [True]
