"""Feature tables: put/get round trips, partial merges, deletes, scans, info."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import SCHEMA, sample_columns, snapshot

import vecstore


def test_put_get_round_trip_every_feature(items, rng):
    ids, cols = sample_columns(rng, 200)
    assert items.put(ids, cols) == 200
    assert len(items) == 200
    rows = items.get(ids)
    assert rows.found.all()
    np.testing.assert_array_equal(rows["price"], cols["price"])
    np.testing.assert_allclose(rows["ctr_7d"], cols["ctr_7d"], rtol=2**-11, atol=2**-25)
    assert rows["ctr_7d"].dtype == np.float32
    np.testing.assert_array_equal(rows["in_stock"], cols["in_stock"])
    np.testing.assert_array_equal(rows["clicks"], cols["clicks"])
    assert list(rows["category"]) == cols["category"]
    assert list(rows["recent"]) == cols["recent"]
    emb = rows["embedding"]
    assert emb.dtype == np.float32 and emb.shape == (200, 16)
    cos = (emb * cols["embedding"]).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(cols["embedding"], axis=1)
    assert cos.min() > 0.999


def test_get_in_input_order_with_missing_rows_and_defaults(items, rng):
    ids, cols = sample_columns(rng, 10)
    items.put(ids, cols)
    rows = items.get(["item-3", "nope", "item-0", "item-3"], features=["price", "category", "clicks", "embedding", "recent"])
    assert rows.found.tolist() == [True, False, True, True]
    price = rows["price"]
    assert price[0] == cols["price"][3] and np.isnan(price[1]) and price[2] == cols["price"][0]
    assert rows["category"].tolist() == ["books", None, "books", "books"]
    assert rows["clicks"][1] == 0
    assert np.isnan(rows["embedding"][1]).all()
    assert rows["recent"][1] is None
    assert rows.present("price").tolist() == [True, False, True, True]


def test_single_id_calls(items):
    assert items.put("solo", {"price": 2.5, "embedding": np.ones(16), "category": "books", "recent": ["a", 7]}) == 1
    rows = items.get("solo")
    assert len(rows) == 1 and rows.found[0]
    assert rows["price"][0] == 2.5
    assert rows["recent"][0] == ["a", 7]
    assert items.contains("solo") is True
    assert items.contains("other") is False
    assert items.may_contain("solo") is True
    assert items.delete("solo") == 1
    assert items.contains("solo") is False


def test_partial_rows_merge(items, rng):
    ids, cols = sample_columns(rng, 50)
    items.put(ids, cols)
    items.put(ids[:10], {"price": np.full(10, 7.0)})
    rows = items.get(ids)
    assert (rows["price"][:10] == 7.0).all()
    np.testing.assert_array_equal(rows["price"][10:], cols["price"][10:])
    np.testing.assert_array_equal(rows["clicks"], cols["clicks"])
    assert list(rows["category"]) == cols["category"]
    assert list(rows["recent"]) == cols["recent"]


def test_new_row_with_some_features_reports_others_missing(items):
    items.put(["x"], {"clicks": [5]})
    rows = items.get(["x"])
    assert rows.found[0]
    assert rows["clicks"][0] == 5
    assert np.isnan(rows["price"][0]) and not rows.present("price")[0]
    assert rows["category"][0] is None and rows["recent"][0] is None


def test_none_clears_category_and_idlist(items):
    items.put(["a", "b"], {"category": ["books", "toys"], "recent": [["x"], ["y"]]})
    items.put(["a"], {"category": [None], "recent": [None]})
    rows = items.get(["a", "b"])
    assert rows["category"].tolist() == [None, "toys"]
    assert rows["recent"].tolist() == [None, ["y"]]


def test_repeated_id_in_batch_keeps_last(items):
    assert items.put(["a", "b", "a"], {"price": [1.0, 2.0, 3.0]}) == 2
    assert items.get("a")["price"][0] == 3.0
    assert len(items) == 2


def test_int_and_numpy_ids(items):
    arr = np.arange(1000, 1100, dtype=np.int64)
    items.put(arr, {"clicks": arr})
    rows = items.get(arr[::-1])
    np.testing.assert_array_equal(rows["clicks"], arr[::-1])
    assert items.get([1000, 1001])["clicks"].tolist() == [1000, 1001]
    # An int ID and its decimal string are different entities.
    assert not items.contains("1000")
    assert items.contains(np.int32(1000))


def test_str_and_bytes_ids_are_the_same_entity(items):
    items.put(["abc"], {"price": [1.0]})
    assert items.contains(b"abc")
    items.put([b"abc"], {"price": [2.0]})
    assert len(items) == 1 and items.get("abc")["price"][0] == 2.0


def test_delete(items, rng):
    ids, cols = sample_columns(rng, 20)
    items.put(ids, cols)
    assert items.delete(ids[:5] + ["never-stored"]) == 5
    assert len(items) == 15
    assert not items.contains(ids[:5]).any()
    assert items.get(ids[:5]).found.sum() == 0
    assert items.delete(ids[:5]) == 0
    # A re-put after delete starts a fresh row (no stale ID list).
    items.put([ids[0]], {"price": [1.0]})
    assert items.get(ids[0])["recent"][0] is None


def test_empty_batches_are_no_ops(items):
    assert items.put([], {}) == 0
    assert items.put([], {"price": []}) == 0
    assert items.delete([]) == 0
    assert len(items.get([])) == 0
    assert items.contains([]).shape == (0,)
    assert items.may_contain(np.array([], dtype=np.int64)).shape == (0,)
    assert len(items) == 0


def test_scan_in_key_order_covers_all_rows(items, rng):
    ids, cols = sample_columns(rng, 2500)
    items.put(ids, cols)
    seen_keys = []
    seen_ids = []
    for rows in items.scan(batch_size=700, features=["price", "recent"]):
        assert len(rows) <= 700
        seen_keys.extend(rows.keys.tolist())
        seen_ids.extend(rows.ids)
        by_id = dict(zip(ids, cols["price"]))
        assert all(by_id[i] == p for i, p in zip(rows.ids, rows["price"]))
    assert seen_keys == sorted(seen_keys)
    assert sorted(seen_ids) == sorted(ids)
    np.testing.assert_array_equal(np.array(seen_keys, dtype=np.uint64), np.sort(items._store.hash_ids(ids)))


def test_raw_forms(items, rng):
    ids, cols = sample_columns(rng, 5)
    items.put(ids, cols)
    rows = items.get(ids, raw=True)
    codes, scale = rows["embedding"]
    assert codes.dtype == np.int8 and scale.dtype == np.float32
    np.testing.assert_allclose(codes * scale[:, None], items.get(ids)["embedding"])
    assert rows["ctr_7d"].dtype == np.float16
    assert rows.raw("category").dtype == np.uint32


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


def test_info_reports_layout_and_bloom(items, rng):
    ids, cols = sample_columns(rng, 100)
    items.put(ids, cols)
    info = items.info()
    assert info.rows == 100
    by_name = {f.name: f for f in info.features}
    assert by_name["embedding"].bytes_per_row == 16 + 4
    assert by_name["ctr_7d"].bytes_per_row == 2
    assert info.bloom.count == 100 and info.bloom.configured_fpr == 0.01
    assert 0 < info.bloom.estimated_fpr < 0.01
    assert info.lmdb_bytes > 0
    assert info.to_dict()["name"] == "items"


def test_create_table_exist_ok_when_another_process_wins_the_race(store, monkeypatch):
    # Another process creates the table after this one's check and before its
    # write: exist_ok returned TableExistsError there (1 in 40 rounds of 6
    # processes starting together).  Simulated by hiding the table from the check.
    t = store.create_table("a", {"x": vecstore.Scalar()})
    real = type(store)._refresh
    hidden = [True]

    def refresh(self):
        if hidden[0]:
            hidden[0] = False
            self._tables.pop("a", None)  # as if not created yet when this process looked
            return
        self._schema_gen = -1  # see the table again from now on
        real(self)

    monkeypatch.setattr(type(store), "_refresh", refresh)
    again = store.create_table("a", {"x": vecstore.Scalar()}, exist_ok=True)
    assert again.name == "a" and again.schema.table_id == t.schema.table_id
    hidden[0] = True
    with pytest.raises(vecstore.TableExistsError, match="different schema"):
        store.create_table("a", {"y": vecstore.Scalar()}, exist_ok=True)
    hidden[0] = True
    with pytest.raises(vecstore.TableExistsError, match="already exists"):
        store.create_table("a", {"x": vecstore.Scalar()})


def test_tables_lifecycle(store):
    assert store.tables() == []
    t = store.create_table("a", {"x": vecstore.Scalar()})
    store.create_table("b", {"x": vecstore.Scalar()})
    assert store.tables() == ["a", "b"] and "a" in store and store["a"] is t
    with pytest.raises(vecstore.TableExistsError):
        store.create_table("a", {"x": vecstore.Scalar()})
    assert store.create_table("a", {"x": vecstore.Scalar()}, exist_ok=True) is t
    with pytest.raises(vecstore.TableExistsError):
        store.create_table("a", {"y": vecstore.Scalar()}, exist_ok=True)
    t.put(["k"], {"x": [1.0]})
    store.drop_table("a")
    assert store.tables() == ["b"]
    with pytest.raises(vecstore.TableNotFoundError):
        store.table("a")
    with pytest.raises(vecstore.TableNotFoundError):
        t.get(["k"])
    fresh = store.create_table("a", {"x": vecstore.Scalar()})
    assert len(fresh) == 0 and not fresh.contains("k")


def test_reopen_needs_no_schema(tmp_path, rng):
    path = tmp_path / "s.vs"
    with vecstore.open(path) as s:
        t = s.create_table("items", SCHEMA)
        ids, cols = sample_columns(rng, 30)
        t.put(ids, cols)
        before = snapshot(t)
        seed = s.seed
    with vecstore.open(path) as s:
        assert s.seed == seed
        assert s.table("items").features == SCHEMA
        assert snapshot(s.table("items")) == before


def test_hash_ids_matches_store_keys(store, items):
    items.put(["a", 5], {"price": [1.0, 2.0]})
    keys = vecstore.hash_ids(["a", 5], seed=store.seed)
    np.testing.assert_array_equal(items.get(["a", 5]).keys, keys)
    np.testing.assert_array_equal(store.hash_ids(["a", 5]), keys)


def test_verify_healthy_store(items, rng):
    ids, cols = sample_columns(rng, 100)
    items.put(ids, cols)
    items.delete(ids[:10])
    assert items.verify() == []


def test_closed_store_raises(tmp_path):
    s = vecstore.open(tmp_path / "c.vs")
    t = s.create_table("t", {"x": vecstore.Scalar()})
    s.close()
    with pytest.raises(vecstore.StoreClosedError):
        t.get(["a"])
    with pytest.raises(vecstore.StoreClosedError):
        s.tables()


def test_put_accepts_what_to_arrow_returns(store, items, rng):
    ids, cols = sample_columns(rng, 40)
    items.put(ids, cols)
    copy = store.create_table("copy", SCHEMA)
    for rows in items.scan(batch_size=15):
        copy.put(list(rows.ids), rows.to_arrow())
    assert snapshot(copy) == snapshot(items)


def test_put_from_arrow_nulls(items):
    import pyarrow as pa

    t = pa.table({
        "id": ["a", "b"],
        "price": pa.array([1.5, None], pa.float32()),
        "category": pa.array(["books", None]),
        "recent": pa.array([["x"], None]),
    })
    items.put(["a", "b"], t)
    rows = items.get(["a", "b"])
    assert rows["price"][0] == 1.5 and np.isnan(rows["price"][1])
    assert rows["category"].tolist() == ["books", None]
    assert rows["recent"].tolist() == [["x"], None]
    with pytest.raises(vecstore.InvalidValueError, match="nulls"):
        items.put(["a", "b"], {"clicks": pa.array([1, None])})


def test_verify_finds_damage(store, items, rng):
    ids, cols = sample_columns(rng, 20)
    items.put(ids, cols)
    assert items.verify() == []
    items._open()
    var_db, dict_db = items._db("var"), items._db("dict")
    slot = items.schema.feature_index["category"].to_bytes(2, "big")

    def damage(txn):
        k, _ = next(iter(txn.cursor(var_db)))
        txn.put(k, b"\xc1", db=var_db)  # not msgpack
        txn.delete(slot + b"c" + (2).to_bytes(4, "big"), db=dict_db)  # a gap in the dictionary

    store._env.write(damage)
    problems = items.verify()
    assert any("does not decode" in p for p in problems)
    assert any("gap" in p for p in problems)


@pytest.mark.parametrize("n", [0, 1, 7, 32, 33, 500])
@pytest.mark.parametrize("id_format", [b"\x01id-%d", b"\x01id-%05d"], ids=["mixed-lengths", "one-length"])
@pytest.mark.parametrize("share", [0.7, 1.0], ids=["some-absent", "all-present"])
def test_unpack_records_puts_rows_back_in_input_order(n, id_format, share):
    # Small batches take a plain-Python path, larger ones a numpy scatter (IDs
    # of one length) or gather (mixed lengths); each must return input-order
    # records, zeros and found=False for absent rows.
    from vecstore.records import unpack_records

    rng = np.random.default_rng(0)
    dtype = np.dtype([("a", "<u4"), ("b", "<f2", (3,))])
    recs = np.zeros(n, dtype=dtype)
    recs["a"] = rng.integers(1, 1000, n)
    recs["b"] = rng.normal(size=(n, 3))
    present = rng.random(n) < share
    order = rng.permutation(n)  # sorted position j holds input row order[j]
    vals = [recs[i].tobytes() + id_format % i if present[i] else None for i in order.tolist()]
    found, got = unpack_records(vals, order, dtype)
    np.testing.assert_array_equal(found, present)
    expected = recs.copy()
    expected[~present] = np.zeros(1, dtype=dtype)
    assert got.tobytes() == expected.tobytes()
    assert got.flags.writeable


@pytest.mark.parametrize("batch", [100, 20])
@pytest.mark.parametrize("id_format", ["id-{}", "id-{:03}"], ids=["mixed-lengths", "one-length"])
def test_a_truncated_row_is_reported_not_read_as_its_neighbour(tmp_path, batch, id_format):
    # Every unpack path (numpy for large batches, Python for small) must
    # refuse a stored value shorter than the record instead of reading on.
    with vecstore.open(tmp_path / "short.vs") as s:
        t = s.create_table("t", {"p": vecstore.Scalar("f64"), "q": vecstore.Scalar("f64")})
        ids = [id_format.format(i) for i in range(100)]
        t.put(ids, {"p": np.arange(100.0), "q": np.arange(100.0) + 1000})
        W = t.schema.record_size
        rows = t._db("rows")
        kb = int(t._ids(ids[50]).keys[0]).to_bytes(8, "big")
        s._env.write(lambda txn: txn.put(kb, txn.get(kb, db=rows)[: W - 8], db=rows))
        with pytest.raises(vecstore.CorruptionError, match="shorter"):
            t.get(ids[50 - batch // 2 : 50 + batch // 2])


@pytest.mark.parametrize("bad", [1.5, True, 0, "3"])
def test_idlist_max_len_must_be_a_whole_number(bad):
    with pytest.raises(vecstore.SchemaError, match="max_len must be a whole number"):
        vecstore.IdList(max_len=bad)


def test_a_stored_fractional_idlist_max_len_still_opens():
    # Schemas written before the check keep loading; the limit acts as it did.
    from vecstore.features import feature_from_dict

    assert feature_from_dict({"kind": "idlist", "max_len": 2.5}, stored=True) == vecstore.IdList(max_len=2)
    with pytest.raises(vecstore.SchemaError):
        feature_from_dict({"kind": "idlist", "max_len": 2.5})


def test_rows_with_mixed_id_kinds_round_trip_through_arrow_and_pylist(tmp_path):
    # Ints beside strings in ID lists were turned into text by to_arrow(), so
    # put(ids, get(ids).to_arrow()) wrote different entities; to_pylist() did too.
    with vecstore.open(tmp_path / "s.vs") as s:
        t = s.create_table("t", {"tags": vecstore.IdList(), "x": vecstore.Scalar("f32"), "v": vecstore.Vector(2)})
        ids = [1, "1", b"\xff", "a"]
        t.put(ids, {"tags": [[1, 2], ["x", 3], [b"q", b"\xfe"], None], "x": [1.0, 2.0, 3.0, 4.0],
                    "v": np.array([[1, 2], [3, 4], [5, 6], [7, 8]], dtype=np.float32)})
        t.put(["a"], {"x": np.array([np.nan])})
        rows = t.get(ids)
        table = rows.to_arrow()
        t.put(ids, table)  # goes back in as it is
        again = t.get(ids)
        assert list(again["tags"]) == list(rows["tags"]) == [[1, 2], ["x", 3], [b"q", b"\xfe"], None]
        listed = rows.to_pylist()
        assert [r["id"] for r in listed] == ids  # each ID keeps its kind
        assert [r["tags"] for r in listed] == [[1, 2], ["x", 3], [b"q", b"\xfe"], None]
        assert listed[0]["v"] == [1.0, 2.0] and listed[0]["x"] == 1.0 and np.isnan(listed[3]["x"])
        t.put(["b"], {"x": np.array([5.0])})
        missing = t.get(["b"]).to_pylist()[0]
        assert missing["tags"] is None and missing["v"] is None and missing["x"] == 5.0
