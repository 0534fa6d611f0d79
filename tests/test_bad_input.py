"""Bad input raises a clear VecstoreError subclass and leaves the store exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sample_columns, snapshot

import vecstore


@pytest.fixture
def loaded(items, rng):
    ids, cols = sample_columns(rng, 50)
    items.put(ids, cols)
    return items


def _good(n: int = 2) -> dict:
    return {"price": np.ones(n), "embedding": np.ones((n, 16))}


BAD_PUTS = [
    ("wrong vector dimension", ["item-1", "new"], {"embedding": np.ones((2, 15))}, vecstore.InvalidValueError, "dimension 16"),
    ("NaN in a vector", ["item-1", "new"], {"embedding": np.array([[0.0] * 16, [np.nan] + [0.0] * 15])}, vecstore.InvalidValueError, "NaN"),
    ("inf in a vector", ["item-1", "new"], {"embedding": np.array([[np.inf] * 16, [0.0] * 16])}, vecstore.InvalidValueError, "infinity"),
    ("int overflow", ["item-1", "new"], {"clicks": [1, 2**63]}, vecstore.InvalidValueError, "cannot hold"),
    ("f16 overflow", ["item-1", "new"], {"ctr_7d": [1.0, 1e6]}, vecstore.InvalidValueError, "out of range"),
    ("fraction in int", ["item-1", "new"], {"clicks": [1.5, 2]}, vecstore.InvalidValueError, "whole numbers"),
    ("non-bool in bool", ["item-1", "new"], {"in_stock": [1, 2]}, vecstore.InvalidValueError, "bool"),
    ("string in scalar", ["item-1", "new"], {"price": ["a", "b"]}, vecstore.InvalidValueError, "numbers"),
    ("non-str category", ["item-1", "new"], {"category": ["ok", 3]}, vecstore.InvalidValueError, "Category"),
    ("bad id list item", ["item-1", "new"], {"recent": [["a"], [1.5]]}, vecstore.InvalidValueError, "IdList"),
    ("id list not a list", ["item-1", "new"], {"recent": [["a"], "abc"]}, vecstore.InvalidValueError, "list of IDs"),
    ("unknown feature", ["item-1", "new"], {"nope": [1, 2]}, vecstore.UnknownFeatureError, "no feature 'nope'"),
    ("too few values", ["item-1", "new"], {"price": [1.0]}, vecstore.InvalidValueError, "expected 2 values"),
    ("too many vectors", ["item-1", "new"], {"embedding": np.ones((3, 16))}, vecstore.InvalidValueError, "shape"),
    ("float ID", [1.5, "new"], _good(), vecstore.InvalidIdError, "unsupported ID type"),
    ("None ID", [None, "new"], _good(), vecstore.InvalidIdError, "unsupported ID type"),
    ("bool ID", [True, "new"], _good(), vecstore.InvalidIdError, "bool"),
    ("huge int ID", [2**70, "new"], _good(), vecstore.InvalidIdError, "64-bit"),
    ("2-D ID array", np.zeros((2, 1), dtype=np.int64), _good(), vecstore.InvalidIdError, "1-D"),
    ("columns not a mapping", ["item-1", "new"], [1, 2], vecstore.InvalidValueError, "mapping"),
]


@pytest.mark.parametrize("what,ids,cols,exc,text", BAD_PUTS, ids=[b[0] for b in BAD_PUTS])
def test_bad_put_raises_and_writes_nothing(loaded, what, ids, cols, exc, text):
    before = snapshot(loaded)
    with pytest.raises(exc, match=text) as info:
        loaded.put(ids, cols)
    assert isinstance(info.value, vecstore.VecstoreError)
    assert "\n" not in str(info.value)
    assert snapshot(loaded) == before
    assert not loaded.contains("new")
    assert loaded.verify() == []


def test_bad_reads_raise(loaded):
    with pytest.raises(vecstore.UnknownFeatureError):
        loaded.get(["item-1"], features=["nope"])
    with pytest.raises(vecstore.InvalidIdError):
        loaded.get([3.5])
    with pytest.raises(vecstore.InvalidIdError):
        loaded.contains({"a": 1})
    with pytest.raises(vecstore.InvalidIdError):
        loaded.may_contain(np.array([1.5]))
    with pytest.raises(vecstore.InvalidValueError):
        list(loaded.scan(batch_size=0))
    with pytest.raises(vecstore.UnknownFeatureError):
        loaded.get(["item-1"], features=["price"])["embedding"]


BAD_SCHEMAS = [
    ({"x": vecstore.Scalar}, "expected Scalar"),
    ({"x": 3}, "expected Scalar"),
    ({}, "at least one feature"),
    ({"bad name": vecstore.Scalar()}, "invalid feature name"),
    ({"__x": vecstore.Scalar()}, "invalid feature name"),
]


@pytest.mark.parametrize("schema,text", BAD_SCHEMAS)
def test_bad_schemas(store, schema, text):
    with pytest.raises(vecstore.SchemaError, match=text):
        store.create_table("t", schema)
    assert store.tables() == []


def test_bad_feature_specs():
    with pytest.raises(vecstore.SchemaError, match="scalar dtype"):
        vecstore.Scalar("f128")
    with pytest.raises(vecstore.SchemaError, match="dim"):
        vecstore.Vector(0)
    with pytest.raises(vecstore.SchemaError, match="vector dtype"):
        vecstore.Vector(8, dtype="i4")
    with pytest.raises(vecstore.SchemaError, match="metric"):
        vecstore.Vector(8, metric="hamming")
    with pytest.raises(vecstore.SchemaError, match="does not fit"):
        vecstore.Scalar("u8", default=-1)


def test_bad_table_options(store):
    with pytest.raises(vecstore.SchemaError, match="invalid table name"):
        store.create_table("no/slash", {"x": vecstore.Scalar()})
    with pytest.raises(vecstore.SchemaError, match="expected_size"):
        store.create_table("t", {"x": vecstore.Scalar()}, expected_size=0)
    with pytest.raises(vecstore.SchemaError, match="bloom_fpr"):
        store.create_table("t", {"x": vecstore.Scalar()}, bloom_fpr=1.0)
    with pytest.raises(vecstore.TableNotFoundError, match="no table 'missing'"):
        store.table("missing")


def test_unknown_table_and_readonly(tmp_path):
    path = tmp_path / "ro.vs"
    with vecstore.open(path) as s:
        s.create_table("t", {"x": vecstore.Scalar()}).put(["a"], {"x": [1.0]})
    with vecstore.open(path, readonly=True) as s:
        t = s.table("t")
        assert t.get("a")["x"][0] == 1.0
        with pytest.raises(vecstore.ReadOnlyError):
            t.put(["b"], {"x": [2.0]})
        with pytest.raises(vecstore.ReadOnlyError):
            s.create_table("u", {"x": vecstore.Scalar()})


def test_open_errors(tmp_path):
    with pytest.raises(vecstore.StoreNotFoundError):
        vecstore.open(tmp_path / "missing.vs", create=False)
    with pytest.raises(vecstore.StoreNotFoundError):
        vecstore.open(tmp_path / "missing2.vs", readonly=True)
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "notes.txt").write_text("hi")
    with pytest.raises(vecstore.NotAStoreError):
        vecstore.open(tmp_path / "occupied")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(vecstore.NotAStoreError):
        vecstore.open(tmp_path / "afile")


def test_newer_format_version_is_refused(tmp_path):
    import lmdb
    import msgpack

    path = tmp_path / "future.vs"
    vecstore.open(path).close()
    env = lmdb.open(str(path), max_dbs=8)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        m = msgpack.unpackb(txn.get(b"store", db=meta))
        m["format_version"] = vecstore.FORMAT_VERSION + 1
        txn.put(b"store", msgpack.packb(m), db=meta)
    env.close()
    with pytest.raises(vecstore.FormatVersionError, match="format version 2"):
        vecstore.open(path)


OBJECT_COLUMNS = [
    ("clicks", np.array([1.5, 2], dtype=object), "whole numbers"),
    ("clicks", np.array([1, 2**63], dtype=object), "cannot hold"),
    ("in_stock", [None, True], "True/False"),
    ("in_stock", np.array([2.0, 1], dtype=object), "True/False"),
    ("price", [None, 1.0], "numbers"),
    ("price", np.array(["1.5", 2.0], dtype=object), "numbers"),
    ("category", ["ok", "\ud800"], "Unicode"),
    ("category", ["ok", "x" * 600], "at most 500"),
    ("recent", [["ok"], ["\ud800"]], "Unicode"),
]


@pytest.mark.parametrize("feature,values,text", OBJECT_COLUMNS)
def test_no_silent_coercion(loaded, feature, values, text):
    before = snapshot(loaded)
    with pytest.raises(vecstore.InvalidValueError, match=text):
        loaded.put(["item-1", "new"], {feature: values})
    assert snapshot(loaded) == before


def test_numpy_bytes_id_arrays_are_refused(loaded):
    with pytest.raises(vecstore.InvalidIdError, match="NUL"):
        loaded.get(np.array([b"a\x00"]))


def test_delete_with_colliding_ids_in_one_batch(tmp_path):
    with vecstore.open(tmp_path / "n.vs", seed=1, hash_bits=8) as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")})
        keys = vecstore.hash_ids([f"id-{i}" for i in range(1000)], seed=1, hash_bits=8).tolist()
        seen = {}
        a = b = None
        for i, k in enumerate(keys):
            if k in seen:
                a, b = f"id-{seen[k]}", f"id-{i}"
                break
            seen[k] = i
        t.put([a], {"x": [1]})
        assert t.delete([a, b]) == 1
        assert not t.contains(a)


@pytest.mark.parametrize(
    ("dtype", "default"),
    [("f32", "x"), ("f32", [1]), ("bool", 5), ("bool", "yes"), ("f16", 1e9), ("i8", 1.5), ("i8", True), ("u8", 256),
     ("i64", 10**400), ("f32", 10**400)],
)
def test_a_scalar_default_the_dtype_cannot_hold_is_refused(dtype, default):
    # get() fills missing rows with the default; one the dtype cannot hold
    # would make those reads fail later, far from the mistake.
    with pytest.raises(vecstore.SchemaError, match="does not fit"):
        vecstore.Scalar(dtype, default=default)


def test_a_valid_scalar_default_fills_missing_rows(tmp_path):
    with vecstore.open(tmp_path / "d.vs") as s:
        t = s.create_table("t", {"a": vecstore.Scalar("f16", default=0.5), "b": vecstore.Scalar("bool", default=True),
                                 "c": vecstore.Scalar("i8", default=-3), "x": vecstore.Scalar("f32")})
        t.put(["r"], {"x": [1.0]})
        rows = t.get(["r", "missing"])
        assert rows["a"].tolist() == [0.5, 0.5] and rows["b"].tolist() == [True, True] and rows["c"].tolist() == [-3, -3]


def test_a_store_with_a_stored_default_refused_today_still_opens(tmp_path):
    # Stores written before defaults were checked may hold one; they must open.
    from vecstore.features import feature_from_dict

    spec = feature_from_dict({"kind": "scalar", "dtype": "f32", "default": "x"}, stored=True)
    assert spec.default == "x" and spec.dtype == "f32"
    with pytest.raises(vecstore.SchemaError):
        feature_from_dict({"kind": "scalar", "dtype": "f32", "default": "x"})  # new schemas are still checked


def test_a_numpy_scalar_default_is_stored_as_a_python_number(tmp_path):
    with vecstore.open(tmp_path / "n.vs") as s:
        t = s.create_table("t", {"a": vecstore.Scalar("f32", default=np.float32(1.5)),
                                 "b": vecstore.Scalar("bool", default=np.True_)})
        assert t.get(["missing"])["a"][0] == 1.5
    with vecstore.open(tmp_path / "n.vs") as s:
        assert s.table("t").features["b"].default is True
