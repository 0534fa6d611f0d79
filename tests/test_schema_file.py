"""TOML schema files: every feature form parses to the right spec, every mistake
is a SchemaError naming where it is, and the example file in docs/ works."""

from __future__ import annotations

from pathlib import Path

import pytest

import vecstore
from vecstore import HNSW, Category, IdList, Scalar, SchemaError, Vector
from vecstore.schema_file import load_schema, parse_schema

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "schema.example.toml"


def test_every_feature_form():
    spec = parse_schema('''
[store]
seed = 9
[tables.t]
expected_size = 500
bloom_fpr = 0.001
[tables.t.features]
a = "f16"
b = "category"
c = "idlist"
d = { kind = "scalar", dtype = "i32", default = 7 }
e = { kind = "idlist", max_len = 3 }
f = { kind = "vector", dim = 4 }
g = { kind = "vector", dim = 8, dtype = "b1", metric = "l2", index = false }
h = { kind = "vector", dim = 8, index = { dtype = "i8", connectivity = 8 } }
''')
    assert spec.seed == 9
    t = spec.table("t")
    assert (t.expected_size, t.bloom_fpr) == (500, 0.001)
    assert list(t.features) == list("abcdefgh")  # file order is storage order
    assert t.features == {
        "a": Scalar("f16"), "b": Category(), "c": IdList(), "d": Scalar("i32", default=7), "e": IdList(max_len=3),
        "f": Vector(4), "g": Vector(8, dtype="b1", metric="l2", index=None),
        "h": Vector(8, index=HNSW(dtype="i8", connectivity=8)),
    }


@pytest.mark.parametrize("text,needle", [
    ("not toml [", "not valid TOML"),
    ("[tables]", "defines no tables"),
    ("[tables.t]\nexpected_size = 5", "has no features"),
    ("[tables.t.features]\nx = 'float'", "'x': 'float' is neither"),
    ("[tables.t.features]\nx = { kind = 'blob' }", "unknown kind 'blob'"),
    ("[tables.t.features]\nx = { kind = 'vector' }", "needs dim"),
    ("[tables.t.features]\nx = { kind = 'vector', dim = 4, conectivity = 3 }", "unknown key(s) conectivity"),
    ("[tables.t.features]\nx = { kind = 'vector', dim = 4, index = { m = 3 } }", "unknown index key(s) m"),
    ("[tables.t.features]\nx = { kind = 'vector', dim = 0 }", "dim must be"),
    ("[tables.t.features]\nx = { kind = 'scalar', dtype = 'u8', default = 300 }", "does not fit"),
    ("[tables.t]\nbloom_fpr = 2\n[tables.t.features]\nx = 'f32'", "bloom_fpr must be"),
    ("[store]\nseed = -1\n[tables.t.features]\nx = 'f32'", "seed must be"),
    ("[stor]\n[tables.t.features]\nx = 'f32'", "unknown top-level key(s) stor"),
])
def test_mistakes_are_schema_errors_that_say_where(text, needle):
    with pytest.raises(SchemaError) as e:
        parse_schema(text, source="s.toml")
    assert needle in str(e.value)
    assert str(e.value).startswith("s.toml")


def test_missing_table_and_missing_file(tmp_path):
    spec = parse_schema("[tables.t.features]\nx = 'f32'")
    with pytest.raises(SchemaError, match="defines no table 'u'"):
        spec.table("u")
    with pytest.raises(SchemaError, match="does not exist"):
        load_schema(tmp_path / "nope.toml")


def test_example_file_creates_a_store(tmp_path):
    spec = vecstore.load_schema(EXAMPLE)
    with vecstore.open(tmp_path / "s.vs", seed=spec.seed) as store:
        tables = spec.create_tables(store)
        assert [t.name for t in tables] == ["items", "users"]
        # identical schema again is accepted with exist_ok
        spec.create_tables(store, exist_ok=True)
        with pytest.raises(vecstore.TableExistsError):
            spec.create_tables(store)


def test_a_mismatching_existing_table_names_the_features_that_differ(tmp_path):
    spec = parse_schema("[tables.t.features]\nx = 'f32'\ny = 'category'\n")
    other = parse_schema("[tables.t.features]\nx = 'f16'\ny = 'category'\n")
    with vecstore.open(tmp_path / "s.vs") as store:
        spec.create_tables(store)
        with pytest.raises(vecstore.TableExistsError, match=r"features that differ: x\)"):
            other.create_tables(store, exist_ok=True)
    with pytest.raises(SchemaError, match="list at least one feature"):
        parse_schema("[tables.t.features]\n")


@pytest.mark.parametrize(
    ("toml", "text"),
    [
        ('[tables."bad name".features]\na = "f32"\n', "table 'bad name': invalid table name"),
        ('[tables.t.features]\nid = "f32"\n', "table 't': feature name 'id' is reserved"),
    ],
)
def test_bad_names_are_refused_when_the_file_is_read(toml, text):
    # Before anything is created: `vecstore init` must leave no store behind.
    with pytest.raises(vecstore.SchemaError, match=text):
        parse_schema(toml, source="s.toml")


def test_the_id_feature_name_is_reserved(tmp_path):
    with vecstore.open(tmp_path / "r.vs") as s, pytest.raises(vecstore.SchemaError, match="reserved"):
        s.create_table("t", {"id": vecstore.Scalar()})
