"""Bulk import (Parquet, CSV, JSON Lines, .npy) and Parquet export of feature tables."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import sample_columns, snapshot

import vecstore
from vecstore.errors import (
    ExportError,
    ImportFileError,
    InvalidValueError,
    SchemaError,
    UnknownFeatureError,
)
from vecstore.table_export import (
    MIXED_ID_TYPE,
    SCHEMA_METADATA_KEY,
    TableExportResult,
    export_table,
)
from vecstore.table_import import ImportResult, import_file, infer_features

FULL_SCHEMA = {
    "price": vecstore.Scalar("f32"),
    "ctr": vecstore.Scalar("f16"),
    "score": vecstore.Scalar("f64", default=-1.0),
    "clicks": vecstore.Scalar("i64"),
    "tiny": vecstore.Scalar("i8"),
    "big": vecstore.Scalar("u64"),
    "in_stock": vecstore.Scalar("bool"),
    "category": vecstore.Category(),
    "recent": vecstore.IdList(max_len=8),
    "emb_i8": vecstore.Vector(16, dtype="i8", metric="cos", index=vecstore.HNSW(dtype="i8", connectivity=8)),
    "emb_f16": vecstore.Vector(8, dtype="f16", metric="l2", index=None),
    "emb_f32": vecstore.Vector(4, dtype="f32", metric="ip", index=vecstore.HNSW(expansion_search=32)),
    "sign": vecstore.Vector(12, dtype="b1", index=None),
}


def fill(table, ids, rng, idlist_ids) -> None:
    """Every feature for the first half of the rows, a sparse subset for the rest (missing values)."""
    n = len(ids)
    h = n // 2
    table.put(ids[:h], {
        "price": rng.uniform(0, 100, h),
        "ctr": rng.uniform(0, 1, h),
        "score": rng.normal(size=h),
        "clicks": rng.integers(-(10**12), 10**12, h),
        "tiny": rng.integers(-128, 128, h),
        "big": rng.integers(0, 2**63, h, dtype=np.uint64) * np.uint64(2),
        "in_stock": rng.random(h) < 0.5,
        "category": [["books", "toys", "ünïcode"][i % 3] for i in range(h)],
        "recent": [idlist_ids[: i % 4] for i in range(h)],
        "emb_i8": rng.normal(size=(h, 16)),
        "emb_f16": rng.normal(size=(h, 8)),
        "emb_f32": rng.normal(size=(h, 4)),
        "sign": rng.normal(size=(h, 12)),
    })
    rest = ids[h:]
    m = len(rest)
    table.put(rest, {
        "price": np.where(np.arange(m) % 5 == 0, np.nan, rng.uniform(0, 1, m)),  # stored NaN is not missing
        "category": [None if i % 2 else "food" for i in range(m)],
        "emb_i8": rng.normal(size=(m, 16)),
    })


def assert_tables_equal(a, b, ids) -> None:
    assert b.features == a.features
    assert list(b.features) == list(a.features)
    ra, rb = a.get(ids), b.get(ids)
    assert rb.found.all()
    for name, spec in a.features.items():
        assert np.array_equal(ra.present(name), rb.present(name)), name
        va, vb = ra[name], rb[name]
        if va.dtype == object:
            assert va.tolist() == vb.tolist(), name
        else:
            assert va.dtype == vb.dtype, name
            assert np.array_equal(va, vb, equal_nan=True), name
        if isinstance(spec, vecstore.Vector) or (isinstance(spec, vecstore.Scalar) and spec.dtype == "f16"):
            xa, xb = a.get(ids, features=[name], raw=True).raw(name), b.get(ids, features=[name], raw=True).raw(name)
            for pa_, pb_ in zip(xa, xb) if isinstance(xa, tuple) else [(xa, xb)]:
                assert np.array_equal(pa_, pb_), name  # the stored codes themselves, i8 scales included


@pytest.mark.parametrize("int_ids", [False, True])
def test_round_trip_exact(tmp_path, rng, int_ids):
    src = vecstore.open(tmp_path / "a.vs", seed=1)
    t = src.create_table("items", FULL_SCHEMA, expected_size=5000, bloom_fpr=0.001)
    if int_ids:
        ids = [int(x) for x in rng.choice(2**62, 300, replace=False) - 2**61]
        idlist_ids = [5, -7, 2**40]
    else:
        ids = [f"item-{i}" for i in range(300)]
        idlist_ids = ["a", "b", "c"]
    fill(t, ids, rng, idlist_ids)
    out = tmp_path / "items.parquet"
    res = export_table(src, "items", out, batch_size=64, row_group_size=100)
    assert isinstance(res, TableExportResult)
    assert res.rows == 300 and res.bytes == out.stat().st_size and res.table == "items"
    f = pq.ParquetFile(out)
    assert f.metadata.num_row_groups == 3
    assert f.schema_arrow.field("id").type == (pa.int64() if int_ids else pa.string())
    assert f.schema_arrow.field("emb_i8").type == pa.list_(pa.float32(), 16)
    assert f.schema_arrow.field("recent").type == pa.list_(pa.int64() if int_ids else pa.string())

    dst = vecstore.open(tmp_path / "b.vs", seed=2)
    got = import_file(dst, "copy", out, batch_size=70)
    assert got.created and got.rows == 300 and got.batches == 5
    copy = dst.table("copy")
    assert copy.schema.expected_size == 5000 and copy.schema.bloom_fpr == 0.001
    assert_tables_equal(t, copy, ids)
    assert copy.verify() == []
    # The copy exports to the same rows (repr: NaN equals NaN there; row order follows the keys, so sort).
    export_table(copy, tmp_path / "again.parquet")
    again = pq.read_table(tmp_path / "again.parquet")
    assert again.schema == pq.read_schema(out).remove_metadata().with_metadata(again.schema.metadata)
    assert repr(again.sort_by("id").to_pylist()) == repr(pq.read_table(out).sort_by("id").to_pylist())


def test_export_column_types_and_nulls(tmp_path, rng, store):
    t = store.create_table("t", {
        "a": vecstore.Scalar("f16"), "b": vecstore.Scalar("i16"), "c": vecstore.Category(),
        "d": vecstore.IdList(), "v": vecstore.Vector(3, dtype="i8"),
    })
    t.put(["x"], {"a": [0.5], "b": [7], "c": ["k"], "d": [["p", "q"]], "v": [[1.0, 0.0, -1.0]]})
    t.put(["y"], {"b": [3]})
    export_table(t, tmp_path / "t.parquet")
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.schema.field("a").type == pa.float32()
    assert table.schema.field("b").type == pa.int16()
    assert table.schema.field("c").type == pa.string()
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["x"] == {"id": "x", "a": 0.5, "b": 7, "c": "k", "d": ["p", "q"], "v": [1.0, 0.0, -1.0]}
    assert rows["y"] == {"id": "y", "a": None, "b": 3, "c": None, "d": None, "v": None}
    meta = json.loads(table.schema.metadata[SCHEMA_METADATA_KEY])
    assert meta["features"]["v"] == t.features["v"].to_dict()


def test_export_features_subset(tmp_path, items, rng):

    ids, cols = sample_columns(rng, 50)
    items.put(ids, cols)
    res = export_table(items, tmp_path / "sub.parquet", features=["price", "embedding"])
    table = pq.read_table(tmp_path / "sub.parquet")
    assert table.column_names == ["id", "price", "embedding"]
    assert res.rows == 50
    dst = vecstore.open(tmp_path / "sub.vs")
    import_file(dst, "items", tmp_path / "sub.parquet")
    assert dst.table("items").features == {"price": items.features["price"], "embedding": items.features["embedding"]}
    with pytest.raises(UnknownFeatureError):
        export_table(items, tmp_path / "bad.parquet", features=["nope"])
    assert not (tmp_path / "bad.parquet").exists()


def test_export_refuses_existing_target(tmp_path, items, rng):

    ids, cols = sample_columns(rng, 10)
    items.put(ids, cols)
    out = tmp_path / "out.parquet"
    out.write_bytes(b"keep me")
    with pytest.raises(ExportError, match="already exists"):
        export_table(items, out)
    assert out.read_bytes() == b"keep me"
    res = export_table(items, out, overwrite=True)
    assert res.rows == 10 and pq.read_table(out).num_rows == 10
    with pytest.raises(ExportError, match="directory"):
        export_table(items, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "shop.vs"]  # no temp file left behind


def test_export_progress_and_empty_table(tmp_path, store, rng):
    t = store.create_table("t", {"x": vecstore.Scalar("f32")})
    res = export_table(t, tmp_path / "empty.parquet")
    assert res.rows == 0 and pq.read_table(tmp_path / "empty.parquet").num_rows == 0
    t.put(list(range(250)), {"x": rng.random(250)})
    calls = []
    export_table(store, "t", tmp_path / "p.parquet", batch_size=100, progress=lambda d, n: calls.append((d, n)))
    assert calls == [(100, 250), (200, 250), (250, 250)]


def test_mixed_and_bytes_ids_round_trip(tmp_path, store):
    t = store.create_table("t", {"x": vecstore.Scalar("f32"), "links": vecstore.IdList()})
    ids = ["a", 1, "1", b"\xff\x00"]  # 1 and "1" are two entities; the bytes are not UTF-8
    t.put(ids, {"x": [1.0, 2.0, 3.0, 4.0], "links": [["a", 1], None, [b"\xfe", "b"], [2]]})
    export_table(t, tmp_path / "mixed.parquet")
    schema = pq.read_schema(tmp_path / "mixed.parquet")
    assert schema.field("id").type == MIXED_ID_TYPE
    assert schema.field("links").type == pa.list_(MIXED_ID_TYPE)
    rows = pq.read_table(tmp_path / "mixed.parquet").to_pylist()
    assert {"int": 1, "str": None, "bytes": None} in [r["id"] for r in rows]
    dst = vecstore.open(tmp_path / "m.vs")
    import_file(dst, "t", tmp_path / "mixed.parquet")
    got = dst.table("t").get(ids)
    assert got.found.all() and len(dst.table("t")) == 4
    assert got["x"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert got["links"].tolist() == [["a", 1], None, [b"\xfe", "b"], [2]]

    b = store.create_table("b", {"x": vecstore.Scalar("f32")})
    b.put([b"\xff\x00", "plain"], {"x": [1.0, 2.0]})
    export_table(b, tmp_path / "b.parquet")
    assert pq.read_schema(tmp_path / "b.parquet").field("id").type == pa.binary()
    import_file(dst, "b", tmp_path / "b.parquet")
    assert dst.table("b").get([b"\xff\x00", "plain"])["x"].tolist() == [1.0, 2.0]


# -- inference --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrow_type", "feature"),
    [
        (pa.float16(), vecstore.Scalar("f16")),
        (pa.float32(), vecstore.Scalar("f32")),
        (pa.float64(), vecstore.Scalar("f64")),
        (pa.int8(), vecstore.Scalar("i8")),
        (pa.int16(), vecstore.Scalar("i16")),
        (pa.int32(), vecstore.Scalar("i32")),
        (pa.int64(), vecstore.Scalar("i64")),
        (pa.uint8(), vecstore.Scalar("u8")),
        (pa.uint16(), vecstore.Scalar("u16")),
        (pa.uint32(), vecstore.Scalar("u32")),
        (pa.uint64(), vecstore.Scalar("u64")),
        (pa.bool_(), vecstore.Scalar("bool")),
        (pa.string(), vecstore.Category()),
        (pa.large_string(), vecstore.Category()),
        (pa.dictionary(pa.int32(), pa.string()), vecstore.Category()),
        (pa.list_(pa.string()), vecstore.IdList()),
        (pa.large_list(pa.int64()), vecstore.IdList()),
        (pa.list_(pa.float32(), 7), vecstore.Vector(7, dtype="f32")),
        (pa.list_(pa.float64(), 3), vecstore.Vector(3, dtype="f32")),
    ],
)
def test_infer_features_per_type(arrow_type, feature):
    schema = pa.schema([("id", pa.string()), ("col", arrow_type)])
    assert infer_features(schema, id_column="id") == {"col": feature}


@pytest.mark.parametrize(
    "arrow_type",
    [pa.timestamp("ms"), pa.struct([("a", pa.int32())]), pa.list_(pa.list_(pa.int32())), pa.binary(), pa.null()],
)
def test_infer_unsupported_type(arrow_type):
    schema = pa.schema([("id", pa.int64()), ("when", arrow_type)])
    with pytest.raises(SchemaError) as e:
        infer_features(schema, id_column="id")
    assert "'when'" in str(e.value)
    assert "features=" in str(e.value) and "columns=" in str(e.value)
    if not pa.types.is_null(arrow_type):
        assert str(arrow_type) in str(e.value)


def test_infer_variable_list_of_floats():
    schema = pa.schema([("id", pa.string()), ("v", pa.list_(pa.float64()))])
    with pytest.raises(SchemaError, match="variable-size list"):
        infer_features(schema, id_column="id")
    same = pa.record_batch({"id": ["a", "b", "c"], "v": [[1.0, 2.0], None, [3.0, 4.0]]}, schema=schema)
    assert infer_features(schema, id_column="id", sample=same) == {"v": vecstore.Vector(2)}
    ragged = pa.record_batch({"id": ["a", "b"], "v": [[1.0, 2.0], [3.0]]}, schema=schema)
    with pytest.raises(SchemaError, match=r"lengths \[1, 2\]"):
        infer_features(schema, id_column="id", sample=ragged)


def test_id_column_checks(tmp_path, store):
    with pytest.raises(ImportFileError, match="no ID column 'id'"):
        infer_features(pa.schema([("key", pa.string())]), id_column="id")
    with pytest.raises(ImportFileError, match="must be strings or integers"):
        infer_features(pa.schema([("id", pa.float64())]), id_column="id")
    pq.write_table(pa.table({"key": ["a"], "x": [1.0]}), tmp_path / "f.parquet")
    with pytest.raises(ImportFileError, match="no ID column 'id'"):
        import_file(store, "t", tmp_path / "f.parquet")
    assert "t" not in store
    pq.write_table(pa.table({"id": ["a", None], "x": [1.0, 2.0]}), tmp_path / "n.parquet")
    with pytest.raises(ImportFileError, match="empty at row 1"):
        import_file(store, "t", tmp_path / "n.parquet")
    assert "t" not in store


# -- import formats -------------------------------------------------------------------------


def test_import_csv(tmp_path, store):
    path = tmp_path / "users.csv"
    path.write_text("user_id,age,score,country,active,zip\n7,31,0.5,fr,true,01000\n8,,1.5,,false,75001\n9,40,,de,,\n")
    res = import_file(store, "users", path, id_column="user_id", features={"zip": vecstore.Category()})
    assert isinstance(res, ImportResult)
    assert res.rows == 3 and res.created
    assert res.features == {
        "age": vecstore.Scalar("i64"), "score": vecstore.Scalar("f64"), "country": vecstore.Category(),
        "active": vecstore.Scalar("bool"), "zip": vecstore.Category(),
    }
    rows = store.table("users").get([7, 8, 9]).to_pylist()  # integer IDs stay integers
    assert rows == [
        {"id": 7, "age": 31, "score": 0.5, "country": "fr", "active": True, "zip": "01000"},
        {"id": 8, "age": None, "score": 1.5, "country": None, "active": False, "zip": "75001"},
        {"id": 9, "age": 40, "score": None, "country": "de", "active": None, "zip": None},
    ]


def test_csv_ids_are_read_as_text_so_none_merge_and_updates_keep_the_tables_id_kind(tmp_path, store):
    f = tmp_path / "f.csv"
    # Leading zeros: Arrow's own guess read "007" and "7" as the one ID 7, and
    # the import said 3 rows where the table got 2.  Now the column is str.
    f.write_text("id,x\n007,1\n7,2\n42,3\n")
    assert import_file(store, "zero", f).rows == 3
    assert len(store.table("zero")) == 3
    assert store.table("zero").get(["007", "7", "42"])["x"].tolist() == [1, 2, 3]
    # Digits into a table of str IDs update its rows, not new int entities.
    f.write_text("id,x\nA1,1\n42,2\n")
    import_file(store, "s", f)
    f.write_text("id,x\n42,9\n")
    import_file(store, "s", f)
    t = store.table("s")
    assert len(t) == 2 and t.get(["42"])["x"].tolist() == [9] and not t.get([42]).found[0]
    # Plain integers into a new table stay ints; an update names the same rows.
    f.write_text("id,x\n1,1\n-2,2\n")
    import_file(store, "i", f)
    f.write_text("id,x\n1,5\n")
    import_file(store, "i", f)
    t = store.table("i")
    assert len(t) == 2 and t.get([1, -2])["x"].tolist() == [5, 2]
    # A non-integer ID into a table of int IDs is refused, naming the row, before anything is written.
    f.write_text("id,x\n3,1\nX,2\n")
    with pytest.raises(ImportFileError, match=r"ID 'X' at row 1 is not an integer .* but table 'i' holds int IDs"):
        import_file(store, "i", f)
    assert len(t) == 2 and not t.get([3]).found[0]
    # The whole column decides, not its first rows: one odd ID late in the file
    # makes every ID a str (a guess from the first batch made them ints, then failed).
    f.write_text("id,x\n" + "".join(f"{i},{i}\n" for i in range(20)) + "0020,20\n")
    assert import_file(store, "late", f, batch_size=10).rows == 21
    assert store.table("late").get(["0", "19", "0020"]).found.all() and not store.table("late").get([0]).found[0]
    # "-0" is no plain integer either, so it never meets "0".
    f.write_text("id,x\n0,1\n-0,2\n")
    import_file(store, "zeros", f)
    assert len(store.table("zeros")) == 2
    # Digits into a table of both kinds are ambiguous: refused, not guessed.
    store.create_table("mixed", {"x": vecstore.Scalar("i64")}).put([1, "a"], {"x": [1, 2]})
    f.write_text("id,x\n1,7\n")
    with pytest.raises(ImportFileError, match="holds both int and str IDs"):
        import_file(store, "mixed", f)
    f.write_text("id,x\na,7\nb,8\n")  # no digits-only question: str IDs
    import_file(store, "mixed", f)
    assert store.table("mixed").get([1, "a", "b"])["x"].tolist() == [1, 7, 8]
    # IDs past the int64 range are strings, like any other non-integer.
    f.write_text("id,x\n1,1\n99999999999999999999,2\n")
    import_file(store, "big", f)
    assert store.table("big").get(["1", "99999999999999999999"]).found.all()
    # A header-only CSV into a new table still says it has no IDs.
    f.write_text("id,x\n")
    with pytest.raises(ImportFileError, match="holds no values"):
        import_file(store, "none", f)
    assert "none" not in store


def test_import_jsonl(tmp_path, store, rng):
    path = tmp_path / "items.jsonl"
    vecs = rng.normal(size=(6, 4))
    lines = [{"id": f"i{i}", "emb": vecs[i].tolist(), "tags": [f"t{i}", "x"], "n": i, "c": "k"} for i in range(6)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    res = import_file(store, "items", path, batch_size=4)
    assert res.features == {
        "emb": vecstore.Vector(4), "tags": vecstore.IdList(), "n": vecstore.Scalar("i64"), "c": vecstore.Category(),
    }
    rows = store.table("items").get([f"i{i}" for i in range(6)])
    assert np.allclose(rows["emb"], vecs.astype(np.float32))
    assert rows["tags"].tolist()[2] == ["t2", "x"]
    assert rows["n"].tolist() == list(range(6))


def test_import_parquet_file_and_directory(tmp_path, store, rng):
    n = 40
    table = pa.table({
        "id": pa.array(np.arange(n, dtype=np.int32)),
        "price": pa.array(rng.random(n).astype(np.float32)),
        "cat": pa.array([["a", "b"][i % 2] for i in range(n)]).dictionary_encode(),
        "friends": pa.array([[i, i + 1] for i in range(n)], type=pa.list_(pa.int64())),
        "emb": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(n * 3).astype(np.float32)), 3),
    })
    pq.write_table(table, tmp_path / "one.pq")
    res = import_file(store, "one", tmp_path / "one.pq")
    assert res.rows == n and res.features["cat"] == vecstore.Category() and res.features["emb"] == vecstore.Vector(3)
    got = store.table("one").get(list(range(n)))
    assert got["price"].tolist() == table["price"].to_pylist()
    assert got["cat"].tolist() == table["cat"].to_pylist()
    assert got["friends"].tolist() == table["friends"].to_pylist()

    d = tmp_path / "ds"
    d.mkdir()
    for k in range(4):  # files with different dictionaries, read as one dataset
        pq.write_table(table.slice(k * 10, 10), d / f"part-{k}.parquet")
    res = import_file(store, "many", d, batch_size=15)
    assert res.rows == n and res.batches == 3
    assert snapshot(store.table("many")) == snapshot(store.table("one"))


def test_import_npy(tmp_path, store, rng):
    vecs = rng.normal(size=(25, 8)).astype(np.float32)
    np.save(tmp_path / "emb.npy", vecs)
    calls = []
    res = import_file(store, "rows", tmp_path / "emb.npy", vector_feature="emb", batch_size=10,
                      progress=lambda d, t: calls.append((d, t)))
    assert res.rows == 25 and calls == [(10, 25), (20, 25), (25, 25)]
    assert res.features == {"emb": vecstore.Vector(8)}
    assert np.array_equal(store.table("rows").get(list(range(25)))["emb"], vecs)  # row numbers as IDs

    names = [f"doc-{i}" for i in range(25)]
    import_file(store, "named", tmp_path / "emb.npy", vector_feature="emb", ids=names,
                features={"emb": vecstore.Vector(8, dtype="f16", index=None)})
    assert store.table("named").features["emb"].dtype == "f16"
    assert np.allclose(store.table("named").get(names)["emb"], vecs, rtol=1e-3, atol=1e-3)

    (tmp_path / "ids.txt").write_text("\n".join(names) + "\n")
    import_file(store, "fromfile", tmp_path / "emb.npy", vector_feature="emb", ids=tmp_path / "ids.txt")
    assert np.array_equal(store.table("fromfile").get(names)["emb"], vecs)
    np.save(tmp_path / "ids.npy", np.arange(100, 125))
    import_file(store, "npyids", tmp_path / "emb.npy", vector_feature="emb", ids=tmp_path / "ids.npy")
    assert np.array_equal(store.table("npyids").get(list(range(100, 125)))["emb"], vecs)

    with pytest.raises(ImportFileError, match="vector_feature="):
        import_file(store, "x", tmp_path / "emb.npy")
    with pytest.raises(ImportFileError, match="24 IDs"):
        import_file(store, "x", tmp_path / "emb.npy", vector_feature="emb", ids=names[:-1])
    store.create_table("scalars", {"n": vecstore.Scalar("f32")})
    with pytest.raises(ImportFileError, match=r"feature 'n' \(scalar in table 'scalars'\) is not a vector feature"):
        import_file(store, "scalars", tmp_path / "emb.npy", vector_feature="n")  # the hint was "leave it out with --columns"
    (tmp_path / "text.npy").write_text("hello\n")  # numpy itself calls any such file a pickle
    with pytest.raises(ImportFileError, match="is not a .npy file"):
        import_file(store, "x", tmp_path / "text.npy", vector_feature="emb")
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    with pytest.raises(ImportFileError, match="2-D float"):
        import_file(store, "x", tmp_path / "flat.npy", vector_feature="emb")
    assert "x" not in store


def test_a_text_ids_file_follows_the_csv_rule_for_ints(tmp_path, store):
    vecs = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.save(tmp_path / "v.npy", vecs)
    ids = tmp_path / "ids.txt"

    def load(table: str, text: str):
        ids.write_text(text)
        return import_file(store, table, tmp_path / "v.npy", vector_feature="emb", ids=ids)

    load("ints", "1\n-2\n")
    assert store.table("ints").get([1, -2]).found.all()
    load("strs", "007\n7\n")  # leading zeros: two str IDs, not the one int 7
    assert store.table("strs").get(["007", "7"]).found.all()
    store.create_table("named", {"emb": vecstore.Vector(4)}).put(["a"], {"emb": vecs[:1]})
    load("named", "1\n2\n")  # digits into a table of str IDs stay str
    assert store.table("named").get(["1", "2"]).found.all()
    with pytest.raises(ImportFileError, match=r"ID 'x' at line 2 of ids.txt is not an integer .* holds int IDs"):
        load("ints", "3\nx\n")
    assert len(store.table("ints")) == 2


def test_import_format_errors(tmp_path, store):
    with pytest.raises(ImportFileError, match="does not exist"):
        import_file(store, "t", tmp_path / "nope.csv")
    (tmp_path / "data.txt").write_text("id\n1\n")
    with pytest.raises(ImportFileError, match="format="):
        import_file(store, "t", tmp_path / "data.txt")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ImportFileError, match="cannot read"):
        import_file(store, "t", tmp_path / "junk.parquet")
    (tmp_path / "array.json").write_text('[{"id": "a", "x": 1}, {"id": "b", "x": 2}]')
    with pytest.raises(ImportFileError, match="one JSON object per line"):
        import_file(store, "t", tmp_path / "array.json")
    (tmp_path / "data.txt").write_text("id,x\na,1\n")
    assert import_file(store, "t", tmp_path / "data.txt", format="csv").rows == 1
    assert store.tables() == ["t"]


# -- schema, nulls, existing tables ------------------------------------------------------------------


def test_import_into_existing_table(tmp_path, items, rng):

    ids, cols = sample_columns(rng, 20)
    items.put(ids, cols)
    before = snapshot(items)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,price,colour\nitem-1,5.0,red\n")
    with pytest.raises(UnknownFeatureError, match="'colour'"):
        import_file(items._store, "items", bad)
    assert snapshot(items) == before  # nothing written

    res = import_file(items._store, "items", bad, columns=["price"])  # leave the unknown column out
    assert not res.created and res.features is None and res.rows == 1
    row = items.get(["item-1"])
    assert row["price"][0] == 5.0 and row["category"][0] == cols["category"][1]  # other features kept

    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"id": ["item-2"], "price": ["cheap"]}), wrong)
    with pytest.raises(SchemaError, match="'price'"):
        import_file(items._store, "items", wrong)


def test_nulls_are_not_written(tmp_path, store):
    t = store.create_table("t", {"n": vecstore.Scalar("i32"), "c": vecstore.Category(), "v": vecstore.Vector(2, index=None)})
    t.put(["a", "b"], {"n": [1, 2], "c": ["x", "y"], "v": [[1.0, 0.0], [0.0, 1.0]]})
    pq.write_table(pa.table({
        "id": ["a", "b", "new"],
        "n": pa.array([None, 20, None], type=pa.int32()),
        "c": [None, None, "z"],
        "v": pa.array([[2.0, 2.0], None, None], type=pa.list_(pa.float32(), 2)),
    }), tmp_path / "u.parquet")
    res = import_file(store, "t", tmp_path / "u.parquet")
    assert res.rows == 3
    got = t.get(["a", "b", "new"]).to_pylist()
    assert got == [
        {"id": "a", "n": 1, "c": "x", "v": [2.0, 2.0]},
        {"id": "b", "n": 20, "c": "y", "v": [0.0, 1.0]},
        {"id": "new", "n": None, "c": "z", "v": None},
    ]
    assert not t.get(["new"]).present("n")[0]


def test_features_do_not_change_how_an_existing_table_is_read(tmp_path, store):
    # For an existing table only its own features decide how columns parse: a
    # schema that contradicts them is refused (naming what differs), nothing
    # written; one that agrees, even naming fewer features, is fine.
    t = store.create_table("items", {"price": vecstore.Scalar("f32"), "category": vecstore.Category()})
    path = tmp_path / "w.jsonl"
    path.write_text('{"id": "a", "price": 1.5, "category": "7"}\n')
    with pytest.raises(vecstore.SchemaError, match="no feature 'ctr'"):
        import_file(store, "items", path, features={"price": vecstore.Scalar("f64"), "ctr": vecstore.Scalar(),
                                                    "category": vecstore.Scalar("i32")})
    with pytest.raises(vecstore.SchemaError, match="other specs for 'price', 'category'"):
        import_file(store, "items", path, features={"price": vecstore.Scalar("f64"), "category": vecstore.Scalar("i32")})
    assert len(t) == 0
    res = import_file(store, "items", path, features={"category": vecstore.Category()})
    assert res.rows == 1 and t.get(["a"]).to_pylist() == [{"id": "a", "price": 1.5, "category": "7"}]


def test_a_header_only_file_imports_nothing_into_an_existing_table(tmp_path, store):
    store.create_table("items", {"price": vecstore.Scalar("f32")})
    path = tmp_path / "h.csv"
    path.write_text("id,price\n")
    assert import_file(store, "items", path).rows == 0
    with pytest.raises(ImportFileError, match="no data rows"):  # a new table has nothing to infer types from
        import_file(store, "fresh", path)
    assert "fresh" not in store


def test_a_repeated_id_keeps_its_last_values_across_null_patterns(tmp_path, store):
    # Rows with different null cells go into different puts; with a repeated
    # ID those puts must still apply in file order, so the last row wins.
    path = tmp_path / "dup.csv"
    path.write_text("id,price,cat\na,2,x\na,1,\nb,1,\nb,2,y\nc,5,z\nc,,w\n")
    import_file(store, "dup", path)
    got = {r["id"]: (r["price"], r["cat"]) for r in store.table("dup").get(["a", "b", "c"]).to_pylist()}
    # a: price from its last row, category kept from the first (the last has none)
    assert got == {"a": (1, "x"), "b": (2, "y"), "c": (5, "w")}


def test_features_override_and_metadata(tmp_path, store, rng):
    src = store.create_table("src", {"h": vecstore.Scalar("f16"), "v": vecstore.Vector(4, dtype="i8", metric="l2")})
    src.put(["a", "b"], {"h": [0.25, 0.5], "v": rng.normal(size=(2, 4))})
    export_table(src, tmp_path / "src.parquet")
    # The metadata wins over inference (h is float32 in the file but f16 in the table) ...
    assert import_file(store, "same", tmp_path / "src.parquet").features == src.features
    # ... and features= wins over both, per column; a spec for a column the file lacks adds a feature.
    res = import_file(store, "other", tmp_path / "src.parquet",
                      features={"h": vecstore.Scalar("f64"), "extra": vecstore.Category()})
    assert res.features == {"h": vecstore.Scalar("f64"), "v": src.features["v"], "extra": vecstore.Category()}
    assert store.table("other").get(["a"])["h"][0] == 0.25
    # columns= drops a column that no feature could hold.
    pq.write_table(pa.table({"id": [1], "x": [1.5], "when": pa.array([0], type=pa.timestamp("s"))}), tmp_path / "ts.parquet")
    with pytest.raises(SchemaError, match="'when'"):
        import_file(store, "ts", tmp_path / "ts.parquet")
    assert "ts" not in store
    assert import_file(store, "ts", tmp_path / "ts.parquet", columns=["x"]).features == {"x": vecstore.Scalar("f64")}


# -- streaming and errors midway -----------------------------------------------------------------------------


def test_streaming_progress(tmp_path, store, rng):
    n = 1234
    pq.write_table(
        pa.table({"id": [f"k{i}" for i in range(n)], "x": rng.random(n)}), tmp_path / "big.parquet", row_group_size=100
    )
    calls: list[tuple[int, int | None]] = []
    res = import_file(store, "big", tmp_path / "big.parquet", batch_size=128, progress=lambda d, t: calls.append((d, t)))
    assert res.batches == 10 and res.rows == n and len(store.table("big")) == n
    assert [d for d, _ in calls] == [min(128 * (i + 1), n) for i in range(10)]
    assert {t for _, t in calls} == {n}
    assert res.to_dict()["rows"] == n and res.to_dict()["features"] == {"x": vecstore.Scalar("f64").to_dict()}

    csv = tmp_path / "big.csv"
    csv.write_text("id,x\n" + "".join(f"k{i},{i}\n" for i in range(n)))
    calls.clear()
    import_file(store, "bigcsv", csv, batch_size=500, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(500, None), (1000, None), (n, None)]


def test_error_midway_keeps_committed_batches(tmp_path, store):
    t = store.create_table("small", {"n": vecstore.Scalar("i8")})
    path = tmp_path / "n.csv"
    path.write_text("id,n\n" + "".join(f"k{i},{i * 20}\n" for i in range(10)))  # 140 does not fit i8
    with pytest.raises(InvalidValueError) as e:
        import_file(store, "small", path, batch_size=3)
    msg = str(e.value)
    assert "6 rows were imported before the error at row 7" in msg and "140" in msg
    assert e.value.rows_imported == 6 and e.value.row == 7
    assert len(t) == 6

    # A new table whose first batch fails is dropped again: the store is unchanged.
    with pytest.raises(InvalidValueError, match="nothing was imported"):
        import_file(store, "fresh", path, batch_size=100, features={"n": vecstore.Scalar("i8")})
    assert "fresh" not in store


def test_error_in_batch_with_nulls_writes_nothing_of_it(tmp_path, store):
    t = store.create_table("t", {"n": vecstore.Scalar("u8"), "c": vecstore.Category()})
    pq.write_table(pa.table({
        "id": ["a", "b", "c", "d"],
        "n": pa.array([1, None, 300, 4], type=pa.int64()),
        "c": ["x", "y", None, "z"],
    }), tmp_path / "p.parquet")
    with pytest.raises(InvalidValueError, match="at row 2"):
        import_file(store, "t", tmp_path / "p.parquet")
    assert len(t) == 0


def test_read_error_midway(tmp_path, store, monkeypatch):
    from vecstore import import_sources

    monkeypatch.setattr(import_sources, "BLOCK_BYTES", 64)  # many small blocks: the bad row is read after some are written
    path = tmp_path / "r.csv"
    path.write_text("id,x\n" + "".join(f"k{i},{i}\n" for i in range(100)) + "k100,abc\n")
    with pytest.raises(ImportFileError) as e:
        import_file(store, "t", path, batch_size=10)
    assert e.value.rows_imported == 90 and "90 rows were imported before the error" in str(e.value)
    assert "abc" in str(e.value) and "features=" in str(e.value)
    assert "In column 'x':" in str(e.value)  # by name, not pyarrow's "CSV column #1"
    assert len(store.table("t")) == 90


def test_id_collision_in_first_batch_drops_new_table(tmp_path):
    store = vecstore.open(tmp_path / "c.vs", hash_bits=8)  # collisions every few dozen IDs
    path = tmp_path / "c.csv"
    path.write_text("id,x\n" + "".join(f"k{i},{i}\n" for i in range(100)))
    with pytest.raises(vecstore.IdCollisionError, match="nothing was imported") as e:
        import_file(store, "t", path, batch_size=100)
    assert e.value.rows_imported == 0 and e.value.existing_id != e.value.new_id
    assert "t" not in store


def test_csv_null_markers_are_only_empty_cells(tmp_path):
    # pyarrow's CSV reader takes NA, null, NaN, N/A, #N/A... for nulls by default,
    # which dropped real values (the country code "NA") and turned float NaN
    # into "no value".  Only an empty cell is a null; a quoted "" is a string.
    f = tmp_path / "na.csv"
    f.write_text('id,country,score\n1,NA,1.5\n2,null,NaN\n3,N/A,-nan\n4,"",\n5,,2.5\n""," NA ",3.5\n')
    with vecstore.open(tmp_path / "s.vs") as s:
        import_file(s, "t", f, features={"country": vecstore.Category(), "score": vecstore.Scalar("f64")})
        rows = s.table("t").get(["1", "2", "3", "4", "5", ""])
        assert rows.found.all()  # a quoted "" ID is the empty-string ID
        assert rows["country"].tolist() == ["NA", "null", "N/A", "", None, " NA "]
        assert rows.present("country").tolist() == [True, True, True, True, False, True]
        score = rows["score"]
        assert score[0] == 1.5 and np.isnan(score[1]) and np.isnan(score[2]) and score[5] == 3.5
        assert rows.present("score").tolist() == [True, True, True, False, True, True]  # NaN is a value


def test_a_repeated_column_name_is_refused_in_one_line(tmp_path):
    f = tmp_path / "dup.csv"
    f.write_text("id,a,a\n1,2,3\n")
    with vecstore.open(tmp_path / "s.vs") as s:
        with pytest.raises(ImportFileError, match="more than one column named 'a'"):
            import_file(s, "t", f)
        assert "t" not in s


def test_import_refuses_a_schema_that_contradicts_the_existing_table(tmp_path):
    # features= only shapes a new table; into an existing one it used to be
    # ignored silently, even when it asked for other specs (an i8 vector, a
    # feature the table lacks).  A schema that agrees is fine.
    vecs = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    f = tmp_path / "emb.npy"
    np.save(f, vecs)
    with vecstore.open(tmp_path / "s.vs") as s:
        s.create_table("items", {"embedding": vecstore.Vector(8)})
        for bad, message in (({"embedding": vecstore.Vector(4, dtype="i8")}, "other specs for 'embedding'"),
                             ({"zzz": vecstore.Scalar()}, "has no feature 'zzz'")):
            with pytest.raises(vecstore.SchemaError, match=message):
                import_file(s, "items", f, vector_feature="embedding", features=bad, ids=list(range(20)))
            assert len(s.table("items")) == 0
        import_file(s, "items", f, vector_feature="embedding", features={"embedding": vecstore.Vector(8)}, ids=list(range(20)))
        assert len(s.table("items")) == 20


def test_import_hints_fit_the_mistake(tmp_path):
    with vecstore.open(tmp_path / "s.vs") as s:
        arr = tmp_path / "array.jsonl"
        arr.write_text('[{"id": "a", "x": 1}]\n')
        with pytest.raises(ImportFileError) as info:
            import_file(s, "t", arr)
        assert info.value.hint and "not a JSON array" in info.value.hint
        torn = tmp_path / "torn.jsonl"
        torn.write_text('{"id": "a", "x": 1}\n{"id": "b", "x": \n')
        with pytest.raises(ImportFileError) as info:
            import_file(s, "t", torn)
        assert not info.value.hint or "JSON array" not in info.value.hint  # a broken line is not an array
        s.create_table("f", {"x": vecstore.Scalar("f32")})
        with pytest.raises(vecstore.InvalidValueError) as info:
            s.table("f").put(["a"], {"x": np.array([1e300])})
        assert info.value.hint == "use f64"  # not "a wider dtype such as f32"


def refused(store, path, text: str, match: str) -> ImportFileError:
    """Import ``text`` written to ``path`` into table "t" and return the ImportFileError it must raise."""
    path.write_text(text)
    with pytest.raises(ImportFileError, match=match) as e:
        import_file(store, "t", path)
    return e.value


def test_a_quote_left_open_in_csv_is_refused_not_swallowed(tmp_path):
    # pyarrow reads an unclosed quote to the end of the file as one value: the
    # rows after it vanished into a category string and the import "succeeded".
    with vecstore.open(tmp_path / "s.vs") as s:
        refused(s, tmp_path / "open.csv", 'id,price,category\na,1.5,x\nb,2.5,"y\nc,3.5,z\nd,4.5,w\n',
                r"column 'category' at row 1 spans several lines \(a quote left open\?\)")
        assert "t" not in s  # the new table is dropped again: nothing was imported
        refused(s, tmp_path / "open_id.csv", 'price,id\n1.5,a\n2.5,"b\n3.5,c\n', "column 'id' at row 1 spans several lines")
        # Quotes that close, commas and doubled quotes inside them, are fine.
        h = tmp_path / "ok.csv"
        h.write_text('id,category\na,"y, z"\nb,"He said ""hi"""\n')
        import_file(s, "t", h)
        assert s.table("t").get(["a", "b"])["category"].tolist() == ["y, z", 'He said "hi"']


def test_a_quote_left_open_late_in_a_csv_stops_the_import_there(tmp_path, store, monkeypatch):
    from vecstore import import_sources

    monkeypatch.setattr(import_sources, "BLOCK_BYTES", 1 << 10)  # several blocks: the open quote is read after some are written
    path = tmp_path / "late.csv"
    path.write_text("id,c\n" + "".join(f"k{i},v{i}\n" for i in range(300)) + 'k300,"open\n' + "k301,v\nk302,v\n")
    with pytest.raises(ImportFileError, match="spans several lines") as e:
        import_file(store, "t", path, batch_size=50)
    assert 0 < e.value.rows_imported <= 300
    assert len(store.table("t")) == e.value.rows_imported
    assert not store.table("t").contains(["k301", "k302"]).any()


def test_csv_read_errors_name_the_column_and_say_what_to_check(tmp_path):
    with vecstore.open(tmp_path / "s.vs") as s:
        base = tmp_path / "base.csv"
        base.write_text("id,name,price\n1,a,1.5\n")
        import_file(s, "t", base)
        # Into an existing f64 column: pyarrow fails while opening the file (its
        # first block), and called the column "CSV column #2".
        refused(s, tmp_path / "bad.csv", "id,name,price\n12,c,abc\n",
                "In column 'price': CSV conversion error to double: invalid value 'abc'")
        # A quote left open until the end: the column count breaks; the hint says why.
        e = refused(s, tmp_path / "q.csv", 'id,name,price\n3,"open quote,3.5\n4,d,4.5\n', "Expected 3 columns")
        assert "a quote left open" in str(e)
        assert len(s.table("t")) == 1
