"""Feature log: logging both stages, features as served, the export's schema, label joins, bad input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import vecstore
from vecstore.featurelog.export import FIXED_SCHEMA

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC, an hour boundary



def read(result) -> pa.Table:
    """The exported dataset, rows in a stable order."""
    tbl = ds.dataset(result, format="parquet", partitioning="hive").to_table()
    return tbl.sort_by([("stage", "ascending"), ("request_id", "ascending"), ("position", "ascending")])


def rows_of(tbl: pa.Table, **match) -> list[dict]:
    return [r for r in tbl.to_pylist() if all(r[k] == v for k, v in match.items())]


def test_store_log_is_one_lazy_feature_log(shop):
    store, _ = shop
    assert store.log is store.log
    assert isinstance(store.log, vecstore.FeatureLog)
    assert not (store.path / "logs" / "segments").exists()  # nothing written until something is logged


def test_retrieval_ranking_label_round_trip(shop, tmp_path, rng):
    store, items = shop
    log = vecstore.FeatureLog(store, seed=0)
    cands = [f"item-{i}" for i in range(40)]
    scores = np.linspace(1, 0, 40).astype(np.float32)
    k = log.retrieval("req-1", cands, scores, table="items", user="u-7", source="ann",
                      features=["price", "ctr_7d"], sample=5, context={"surface": "home", "slot": 3}, ts=T0 + 10)
    assert k == 5
    n = log.ranking("req-1", cands[:8], np.arange(8, 0, -1, dtype=np.float64), table="items",
                    positions=np.arange(8) * 2, shown=cands[:3], ts=T0 + 11)
    assert n == 8
    log.label("req-1", "item-1", "click", 1.0, ts=T0 + 30)
    log.flush()
    res = log.export(tmp_path / "out")
    assert res.rows == 48 and res.rows_by_stage == {"retrieval": 40, "ranking": 8} and res.calls == 2
    tbl = read(res)
    assert tbl.num_rows == 48
    ret = rows_of(tbl, stage="retrieval")
    assert [r["item"] for r in ret] == cands
    assert [r["position"] for r in ret] == list(range(40))
    np.testing.assert_array_equal([r["score"] for r in ret], scores.astype(np.float64))
    assert all(r["sample_prob"] == pytest.approx(5 / 40) for r in ret)
    assert sum(r["sampled"] for r in ret) == 5
    assert all(r["shown"] is None for r in ret)
    assert all(r["user"] == "u-7" and r["source"] == "ann" and r["ctx_surface"] == "home" and r["ctx_slot"] == 3 for r in ret)
    # Unsampled candidates have no features; the sampled ones have what the table held.
    truth = items.get(cands)
    for i, r in enumerate(ret):
        if r["sampled"]:
            assert r["price"] == pytest.approx(float(truth["price"][i]))
            assert r["ctr_7d"] == pytest.approx(float(truth["ctr_7d"][i]))
        else:
            assert r["price"] is None and r["ctr_7d"] is None
        assert r["embedding"] is None  # not requested at this stage
    rank = rows_of(tbl, stage="ranking")
    assert [r["item"] for r in rank] == cands[:8]
    assert [r["position"] for r in rank] == [0, 2, 4, 6, 8, 10, 12, 14]
    assert [r["shown"] for r in rank] == [True] * 3 + [False] * 5
    assert all(r["sampled"] and r["sample_prob"] == 1.0 for r in rank)
    # Ranking rows carry every feature (features=None) and inherit user and context.
    assert all(r["user"] == "u-7" and r["ctx_surface"] == "home" and r["source"] is None for r in rank)
    np.testing.assert_allclose([r["embedding"] for r in rank], truth["embedding"][:8], rtol=0, atol=0)
    assert [r["category"] for r in rank] == list(truth["category"][:8])
    assert [r["recent"] for r in rank] == [list(x) for x in truth["recent"][:8]]
    # The click joins both stages' rows of item-1.
    assert [r["label_click"] for r in tbl.to_pylist() if r["item"] == "item-1"] == [1.0, 1.0]
    assert sum(r["label_click"] is not None for r in tbl.to_pylist()) == 2
    assert res.labels_joined == 2


EXPECTED_COLUMNS = [
    ("request_id", pa.string(), False),
    ("ts", pa.timestamp("us", tz="UTC"), False),
    ("user", pa.string(), True),
    ("table", pa.string(), False),
    ("item", pa.string(), False),
    ("position", pa.int32(), False),
    ("score", pa.float64(), False),
    ("source", pa.string(), True),
    ("sample_prob", pa.float64(), False),
    ("sampled", pa.bool_(), False),
    ("shown", pa.bool_(), True),
    ("label_buy", pa.float64(), True),
    ("label_click", pa.float64(), True),
    ("price", pa.float32(), True),
    ("ctr_7d", pa.float32(), True),
    ("in_stock", pa.bool_(), True),
    ("clicks", pa.int64(), True),
    ("category", pa.string(), True),
    ("recent", pa.list_(pa.string()), True),
    ("embedding", pa.list_(pa.float32(), 16), True),
    ("ctx_slot", pa.int64(), True),
    ("ctx_surface", pa.string(), True),
]


def test_export_schema_is_pinned(shop, tmp_path):
    store, _ = shop
    log = store.log
    ids = [f"item-{i}" for i in range(10)]
    log.retrieval("r1", ids, np.ones(10), table="items", features=["price"], sample=1.0,
                  context={"surface": "home", "slot": 1}, ts=T0)
    log.ranking("r1", ids[:3], np.ones(3), table="items", ts=T0 + 1)
    log.label("r1", "item-0", "click", 1.0, ts=T0 + 2)
    log.label("r1", "item-0", "buy", 20.0, ts=T0 + 3)
    res = log.export(tmp_path / "out")
    got = [(f.name, f.type, f.nullable) for f in res.schema]
    assert got == EXPECTED_COLUMNS
    assert list(FIXED_SCHEMA.names) == [c for c, _, _ in EXPECTED_COLUMNS[:11]]
    # Every file holds exactly that schema; stage and date come from the Hive directories.
    for f in res.files:
        assert pq.read_schema(f).remove_metadata().equals(res.schema.remove_metadata())
        assert "/stage=" in f and "/date=2026-01-01/" in f and f.endswith(".parquet")
        assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"
    tbl = ds.dataset(res, format="parquet", partitioning="hive").to_table()
    assert tbl.schema.names == [c for c, _, _ in EXPECTED_COLUMNS] + ["stage", "date"]
    assert sorted(set(tbl["stage"].to_pylist())) == ["ranking", "retrieval"]
    # pyarrow.parquet reads the directory as is too.
    assert pq.read_table(res.path).num_rows == 13


def test_features_are_logged_as_served(shop, tmp_path):
    store, items = shop
    log = store.log
    before = items.get(["item-1", "item-2"], features=["price", "embedding", "category"])
    log.ranking("r", ["item-1", "item-2"], [2.0, 1.0], table="items", ts=T0)
    log.retrieval("r", ["item-1", "item-2"], [2.0, 1.0], table="items", sample=1.0, ts=T0)
    items.put(["item-1", "item-2"], {"price": [999.0, 998.0], "embedding": np.ones((2, 16)), "category": ["new", "new"]})
    items.delete(["item-2"])
    tbl = read(log.export(tmp_path / "out"))
    for r in tbl.to_pylist():
        i = 0 if r["item"] == "item-1" else 1
        assert r["price"] == pytest.approx(float(before["price"][i]))
        np.testing.assert_array_equal(r["embedding"], before["embedding"][i])
        assert r["category"] == before["category"][i]


def test_missing_items_and_values_are_null(shop, tmp_path):
    store, items = shop
    items.put(["partial"], {"price": [5.0]})
    store.log.ranking("r", ["nope", "partial"], [1.0, 0.5], table="items", ts=T0)
    r_nope, r_partial = read(store.log.export(tmp_path / "out")).to_pylist()
    assert r_nope["item"] == "nope" and r_nope["price"] is None and r_nope["embedding"] is None and r_nope["clicks"] is None
    assert r_partial["price"] == 5.0 and r_partial["ctr_7d"] is None and r_partial["category"] is None
    assert r_partial["recent"] is None and r_partial["sampled"] is True


def test_id_kinds(shop, tmp_path):
    store, items = shop
    items.put([7, 2**40, b"raw", "caf\u00e9", "nul\x00id"], {"price": [1.0, 2.0, 3.0, 4.0, 5.0]})
    log = store.log
    log.ranking("a", np.array([7, 2**40, 5]), [3.0, 2.0, 1.0], table="items", shown=np.array([7]), ts=T0)
    log.ranking("b", [b"raw", "caf\u00e9", 7], [3.0, 2.0, 1.0], table="items", shown=["raw"], ts=T0)  # bytes == str
    log.ranking("c", ["caf\u00e9", "nul\x00id"], [1.0, 0.5], table="items", ts=T0)
    log.ranking("d", np.array([7], dtype=np.int32), [1.0], table="items", ts=T0)
    log.retrieval("e", np.array(["caf\u00e9", "x"]), [1.0, 0.5], table="items", sample=1.0, ts=T0)
    log.label("a", 2**40, "click", 1.0, ts=T0)
    log.label("b", b"caf\xc3\xa9", "click", 1.0, ts=T0)
    log.label("c", "nul\x00id", "click", 1.0, ts=T0)
    tbl = read(log.export(tmp_path / "out"))
    by_req = {}
    for r in tbl.to_pylist():
        by_req.setdefault(r["request_id"], []).append(r)
    assert [r["item"] for r in by_req["a"]] == ["7", str(2**40), "5"]
    assert [r["price"] for r in by_req["a"]] == [1.0, 2.0, None]
    assert [r["shown"] for r in by_req["a"]] == [True, False, False]
    assert [r["label_click"] for r in by_req["a"]] == [None, 1.0, None]
    assert [r["item"] for r in by_req["b"]] == ["raw", "caf\u00e9", "7"]
    assert [r["shown"] for r in by_req["b"]] == [True, False, False]
    assert [r["label_click"] for r in by_req["b"]] == [None, 1.0, None]
    assert [r["item"] for r in by_req["c"]] == ["caf\u00e9", "nul\x00id"]
    assert [r["label_click"] for r in by_req["c"]] == [None, 1.0]
    assert [r["price"] for r in by_req["c"]] == [4.0, 5.0]
    assert [r["item"] for r in by_req["d"]] == ["7"]
    assert [r["item"] for r in by_req["e"]] == ["caf\u00e9", "x"]


def test_label_joins_any_order_and_window(shop, tmp_path):
    store, _ = shop
    log = store.log
    ids = [f"item-{i}" for i in range(6)]
    # A label that arrives before its request, for a request logged an hour later.
    log.label("early", "item-2", "click", 1.0, ts=T0)
    log.retrieval("early", ids, np.ones(6), table="items", features=[], sample=1.0, ts=T0 + 3600)
    # A label long after the export window, another for an item the request never had.
    log.retrieval("late", ids, np.ones(6), table="items", features=[], sample=0, ts=T0 + 100)
    log.label("late", "item-4", "click", 1.0, ts=T0 + 86_400 * 3)
    log.label("late", "item-99", "click", 1.0, ts=T0 + 101)
    # Several values for one (request, item, name): the latest ts wins, whatever the log order.
    log.label("late", "item-5", "dwell", 30.0, ts=T0 + 300)
    log.label("late", "item-5", "dwell", 10.0, ts=T0 + 200)
    log.label("late", "item-5", "dwell", 45.0, ts=T0 + 400)
    # A label for a request never logged: kept, joinable once the request shows up.
    log.label("ghost", "item-0", "click", 1.0, ts=T0 + 5)
    res = log.export(tmp_path / "w1", start=T0, end=T0 + 3 * 3600)
    tbl = read(res)
    early = rows_of(tbl, request_id="early")
    assert [r["label_click"] for r in early] == [None, None, 1.0, None, None, None]
    late = rows_of(tbl, request_id="late")
    assert [r["label_click"] for r in late] == [None, None, None, None, 1.0, None]
    assert [r["label_dwell"] for r in late] == [None] * 5 + [45.0]
    assert not rows_of(tbl, request_id="ghost")
    # The ghost's request arrives later; the old label joins then.
    log.ranking("ghost", ["item-0", "item-1"], [1.0, 0.5], table="items", ts=T0 + 7200)
    log.ranking("late", ["item-99"], [1.0], table="items", ts=T0 + 7200)
    tbl2 = read(log.export(tmp_path / "w2", stage="ranking"))
    assert [r["label_click"] for r in rows_of(tbl2, request_id="ghost")] == [1.0, None]
    assert [r["label_click"] for r in rows_of(tbl2, request_id="late")] == [1.0]
    assert set(tbl2["stage"].to_pylist()) == {"ranking"}
    # Without joining, no label columns at all.
    res3 = log.export(tmp_path / "w3", join_labels=False)
    assert not [n for n in res3.schema.names if n.startswith("label_")]


def test_export_window_stage_table_and_partitions(shop, tmp_path):
    store, _ = shop
    store.create_table("ads", {"bid": vecstore.Scalar("f64"), "price": vecstore.Scalar("f32")})
    store["ads"].put(["ad-1"], {"bid": [0.5], "price": [1.5]})
    log = store.log
    for d in range(3):
        log.retrieval(f"r{d}", ["item-1", "item-2"], [1.0, 0.5], table="items", sample=1.0, features=["price"], ts=T0 + d * 86_400)
        log.ranking(f"r{d}", ["ad-1"], [1.0], table="ads", ts=T0 + d * 86_400 + 1)
    res = log.export(tmp_path / "all")
    dates = sorted({f.split("date=")[1][:10] for f in res.files})
    assert dates == ["2026-01-01", "2026-01-02", "2026-01-03"]
    tbl = read(res)
    assert tbl.num_rows == 9
    ads = rows_of(tbl, table="ads")
    assert [r["bid"] for r in ads] == [0.5] * 3 and [r["price"] for r in ads] == [1.5] * 3
    tbl = read(log.export(tmp_path / "win", start=T0 + 86_400, end=T0 + 2 * 86_400))
    assert set(tbl["request_id"].to_pylist()) == {"r1"}
    res = log.export(tmp_path / "items", table="items", stage="retrieval")
    assert res.rows == 6 and "bid" not in res.schema.names
    with pytest.raises(vecstore.ExportError):
        log.export(tmp_path / "items")  # not empty
    assert log.export(tmp_path / "items", table="ads", exist_ok=True).rows == 3
    assert read(tmp_path / "items").num_rows == 9


def test_features_named_like_export_columns_get_unique_names(tmp_path):
    # Hive partition columns (stage, date), fixed columns, and a feature whose
    # own name is what another's rename would be: the export must stay readable.
    names = ["score", "user", "stage", "date", "label_x", "ctx_y", "item", "feature_score", "sampled"]
    with vecstore.open(tmp_path / "w.vs") as store:
        t = store.create_table("weird", {n: vecstore.Scalar("f32") for n in names})
        t.put(["a", "b"], {n: [1.0, 2.0] for n in names})
        store.log.ranking("r", ["a", "b"], [1.0, 2.0], table="weird", context={"y": "cv"}, ts=T0)
        store.log.label("r", "a", "x", 5.0)
        tbl = read(store.log.export(tmp_path / "out", table="weird"))
    cols = tbl.column_names
    assert len(cols) == len(set(cols))
    row = {r["item"]: r for r in tbl.to_pylist()}["a"]
    assert row["score"] == 1.0 and row["feature_score"] == 1.0 and row["feature_feature_score"] == 1.0
    assert row["stage"] == "ranking" and row["feature_stage"] == 1.0 and row["feature_date"] == 1.0
    assert row["label_x"] == 5.0 and row["feature_label_x"] == 1.0 and row["ctx_y"] == "cv"
    # The same columns in an export without labels: a feature's column depends on its name alone.
    with vecstore.open(tmp_path / "w.vs") as store:
        plain = read(store.log.export(tmp_path / "out2", table="weird", join_labels=False))
    assert "feature_label_x" in plain.column_names and "label_x" not in plain.column_names


def test_export_streams_in_row_groups(shop, tmp_path, rng):
    store, _ = shop
    log = store.log
    for r in range(30):
        log.retrieval(f"r{r:02d}", rng.integers(0, 500, 1000), rng.random(1000), table="items", sample=0.02, ts=T0 + r)
    res = log.export(tmp_path / "out", row_group_rows=4096, max_open_files=1)
    assert res.rows == 30_000
    meta = pq.ParquetFile(res.files[0]).metadata
    assert meta.num_row_groups >= 7 and all(meta.row_group(i).num_rows <= 4096 + 1000 for i in range(meta.num_row_groups))
    tbl = read(res)
    assert tbl["request_id"].to_pylist() == [f"r{r:02d}" for r in range(30) for _ in range(1000)]


def test_bad_input_logs_nothing(shop):
    store, _ = shop
    log = store.log
    ids = ["item-1", "item-2"]
    log.label("warm", "x", "click", 1.0)  # create the segment first
    seg = next((store.path / "logs" / "segments").iterdir())
    size = seg.stat().st_size
    bad = [
        (vecstore.InvalidValueError, lambda: log.retrieval("r", ids, [1.0], table="items")),
        (vecstore.InvalidValueError, lambda: log.retrieval("r", ids, np.ones((2, 1)), table="items")),
        (vecstore.InvalidValueError, lambda: log.retrieval("r", ids, ["a", "b"], table="items")),
        (vecstore.TableNotFoundError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="nope")),
        (vecstore.UnknownFeatureError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="items", features=["nope"])),
        (vecstore.UnknownFeatureError, lambda: log.ranking("r", ids, [1.0, 2.0], table="items", features=["price", "x"])),
        (vecstore.InvalidValueError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="items", sample=0.0)),
        (vecstore.InvalidValueError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="items", sample=1.5)),
        (vecstore.InvalidValueError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="items", sample=float("nan"))),
        (vecstore.InvalidValueError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="items", sample=-3)),
        (vecstore.InvalidValueError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="items", sample=True)),
        (vecstore.InvalidValueError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="items", sample="all")),
        (vecstore.InvalidIdError, lambda: log.retrieval("r", [1.5, 2.5], [1.0, 2.0], table="items")),
        (vecstore.InvalidIdError, lambda: log.retrieval("r", "item-1", [1.0], table="items")),
        (vecstore.InvalidIdError, lambda: log.retrieval("r", [True, 3], [1.0, 2.0], table="items")),
        (vecstore.InvalidValueError, lambda: log.retrieval("", ids, [1.0, 2.0], table="items")),
        (vecstore.InvalidValueError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="items", context={"a": [1]})),
        (vecstore.SchemaError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="items", context={"bad key": 1})),
        (vecstore.InvalidIdError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="items", user=1.5)),
        (vecstore.InvalidValueError, lambda: log.retrieval("r", ids, [1.0, 2.0], table="items", ts="yesterday")),
        (vecstore.InvalidValueError, lambda: log.ranking("r", ids, [1.0, 2.0], table="items", positions=[0])),
        (vecstore.InvalidValueError, lambda: log.ranking("r", ids, [1.0, 2.0], table="items", positions=[0.5, 1])),
        (vecstore.InvalidValueError, lambda: log.ranking("r", ids, [1.0, 2.0], table="items", shown=["item-3"])),
        (vecstore.InvalidValueError, lambda: log.ranking("r", ids, [1.0, 2.0], table="items", shown=np.array([True]))),
        (vecstore.InvalidValueError, lambda: log.label("r", "item-1", "click", float("nan"))),
        (vecstore.InvalidValueError, lambda: log.label("r", "item-1", "click", "yes")),
        (vecstore.SchemaError, lambda: log.label("r", "item-1", "no spaces", 1.0)),
        (vecstore.InvalidIdError, lambda: log.label("r", 1.5, "click", 1.0)),
    ]
    for err, call in bad:
        with pytest.raises(err) as info:
            call()
        assert isinstance(info.value, vecstore.VecstoreError)
        assert str(info.value)
    assert seg.stat().st_size == size
    assert log.info().retrieval_calls == 0 and log.info().ranking_calls == 0
    # Allowed: a label for a request nobody logged, empty calls, a count larger than the candidates.
    log.label("never-seen", "item-1", "click", 1.0)
    assert log.retrieval("r", [], [], table="items") == 0
    assert log.retrieval("r", ids, [1, 2], table="items", sample=10) == 2
    assert log.info().retrieval_calls == 2


def test_read_only_store_reads_the_log(shop, tmp_path):
    store, _ = shop
    store.log.ranking("r", ["item-1"], [1.0], table="items", ts=T0)
    path = store.path
    store.close()
    with vecstore.open(path, readonly=True) as ro:
        assert ro.log.info().ranking_calls == 1
        assert ro.log.stats(stage="ranking", feature="price").count == 1
        assert ro.log.export(tmp_path / "ro").rows == 1
        with pytest.raises(vecstore.ReadOnlyError):
            ro.log.label("r", "item-1", "click", 1.0)


def test_closed_store_refuses_logging(shop):
    store, _ = shop
    log = store.log
    log.label("r", "x", "click", 1.0)
    store.close()
    with pytest.raises(vecstore.StoreClosedError):
        log.label("r", "x", "click", 1.0)
    with pytest.raises(vecstore.StoreClosedError):
        log.stats(stage="ranking", feature="price")


def test_table_dropped_and_recreated_between_calls(shop, tmp_path):
    store, _ = shop
    log = store.log
    store.create_table("tmp", {"x": vecstore.Scalar("f32")}).put(["a"], {"x": [1.0]})
    log.ranking("r1", ["a"], [1.0], table="tmp", ts=T0)
    store.drop_table("tmp")
    with pytest.raises(vecstore.TableNotFoundError):
        log.ranking("r2", ["a"], [1.0], table="tmp", ts=T0)
    store.create_table("tmp", {"x": vecstore.Scalar("f32")}).put(["a"], {"x": [2.0]})
    log.ranking("r3", ["a"], [1.0], table="tmp", ts=T0)
    tbl = read(log.export(tmp_path / "out"))
    assert [(r["request_id"], r["x"]) for r in tbl.to_pylist()] == [("r1", 1.0), ("r3", 2.0)]


def test_every_type_exports_exactly_what_get_returned(tmp_path):
    schema = {
        "f64": vecstore.Scalar("f64"), "f16": vecstore.Scalar("f16"), "i8": vecstore.Scalar("i8"),
        "u64": vecstore.Scalar("u64"), "flag": vecstore.Scalar("bool"), "deflt": vecstore.Scalar("f32", default=-1.0),
        "v32": vecstore.Vector(5, dtype="f32"), "v16": vecstore.Vector(5, dtype="f16"),
        "vi8": vecstore.Vector(5, dtype="i8"), "vb1": vecstore.Vector(9, dtype="b1"),
        "cat": vecstore.Category(), "ids": vecstore.IdList(),
    }
    rng = np.random.default_rng(0)
    n = 30
    with vecstore.open(tmp_path / "s.vs", seed=1) as store:
        t = store.create_table("t", schema)
        ids = [f"x{i}" for i in range(n)]
        t.put(ids, {
            "f64": rng.normal(size=n), "f16": rng.normal(size=n), "i8": rng.integers(-128, 128, n),
            "u64": rng.integers(0, 2**63, n, dtype=np.uint64) * 2, "flag": rng.random(n) < 0.5,
            "v32": rng.normal(size=(n, 5)), "v16": rng.normal(size=(n, 5)), "vi8": rng.normal(size=(n, 5)),
            "vb1": rng.normal(size=(n, 9)), "cat": [f"c{i % 4}" if i % 5 else None for i in range(n)],
            "ids": [[i, f"y{i}", b"z"] if i % 3 else None for i in range(n)],
        })
        t.put(["bare"], {"f64": [1.0]})
        asked = ids + ["bare", "absent"]
        truth = t.get(asked)
        store.log.ranking("r", asked, np.arange(len(asked), dtype=np.float64), table="t", ts=T0)
        tbl = read(store.log.export(tmp_path / "out"))
        assert tbl["item"].to_pylist() == asked
        for name in schema:
            got = tbl[name].to_pylist()
            present = truth.present(name)
            for i in range(len(asked)):
                if not present[i]:
                    assert got[i] is None, (name, i)
                elif name in ("cat",):
                    assert got[i] == truth[name][i]
                elif name == "ids":
                    assert got[i] == [str(x) if isinstance(x, int) else x.decode() if isinstance(x, bytes) else x for x in truth[name][i]]
                else:
                    np.testing.assert_array_equal(np.asarray(got[i], dtype=np.float64), np.asarray(truth[name][i], dtype=np.float64))
        assert tbl.schema.field("u64").type == pa.uint64() and tbl.schema.field("vb1").type == pa.list_(pa.float32(), 9)


def test_export_refuses_a_backwards_window_and_an_unknown_table(shop, tmp_path):
    store, items = shop
    store.log.ranking("r", ["item-1"], [1.0], table="items", ts=T0)
    with pytest.raises(vecstore.InvalidValueError, match="starts after it ends"):
        store.log.export(tmp_path / "a", start=T0 + 10, end=T0)
    with pytest.raises(vecstore.TableNotFoundError, match="nope"):
        store.log.export(tmp_path / "b", table="nope")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_shown_as_a_list_of_bools_is_a_mask(shop, tmp_path):
    store, items = shop
    store.log.ranking("m", ["item-1", "item-2", "item-3"], [3.0, 2.0, 1.0], table="items", shown=[True, False, True], ts=T0)
    tbl = read(store.log.export(tmp_path / "out"))
    assert [r["shown"] for r in rows_of(tbl, request_id="m")] == [True, False, True]
    with pytest.raises(vecstore.InvalidValueError, match="'zzz'"):
        store.log.ranking("m2", ["item-1"], [1.0], table="items", shown=["zzz"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_are_refused_and_nothing_is_logged(shop, tmp_path, bad):
    store, items = shop
    with pytest.raises(vecstore.InvalidValueError, match="finite"):
        store.log.retrieval("s", ["item-1", "item-2"], [1.0, bad], table="items", ts=T0)
    with pytest.raises(vecstore.InvalidValueError, match="finite"):
        store.log.ranking("s", ["item-1", "item-2"], np.array([bad, 1.0], np.float32), table="items", ts=T0)
    store.log.ranking("ok", ["item-1"], [1.0], table="items", ts=T0)
    assert {r["request_id"] for r in read(store.log.export(tmp_path / "out")).to_pylist()} == {"ok"}


@pytest.mark.parametrize("bad", [[-1, 0], [0.5, 1], [0, 2**31]])
def test_positions_must_be_slots_from_zero(shop, bad):
    store, items = shop
    with pytest.raises(vecstore.InvalidValueError, match="positions"):
        store.log.ranking("p", ["item-1", "item-2"], [2.0, 1.0], table="items", positions=bad)


def test_shown_as_a_list_of_numpy_bools_is_a_mask_and_a_bad_table_name_is_refused(shop, tmp_path):
    store, items = shop
    store.log.ranking("nb", ["item-1", "item-2"], [2.0, 1.0], table="items", shown=[np.True_, np.False_], ts=T0)
    assert [r["shown"] for r in rows_of(read(store.log.export(tmp_path / "o")), request_id="nb")] == [True, False]
    with pytest.raises(vecstore.InvalidValueError, match="table name"):
        store.log.export(tmp_path / "o2", table=["items"])
    with pytest.raises(vecstore.TableNotFoundError):
        store.table(["items"])
