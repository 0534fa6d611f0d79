"""CLI commands over a store: init, info, get, put, delete, search, logs.

Each test drives the real click command through CliRunner and checks both
what it printed and what the store holds afterwards.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import catalog_features
from vecstore.cli.common import parse_time, parse_where
from vecstore.cli.main import main

import vecstore

EXAMPLE_SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "schema.example.toml"
N, DIM = 200, 16


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


@pytest.fixture
def store_path(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "shop.vs"
    with vecstore.open(path, seed=7) as s:
        t = s.create_table("items", catalog_features(DIM, "f32"))
        t.put([f"item-{i}" for i in range(N)], {
            "price": np.arange(N, dtype=np.float32),
            "category": ["books" if i % 2 else "toys" for i in range(N)],
            "tags": [[f"t{i % 3}"] for i in range(N)],
            "embedding": rng.standard_normal((N, DIM)).astype(np.float32),
        })
        u = s.create_table("users", {"age": vecstore.Scalar("u8")})
        u.put([1, 2, 3], {"age": [20, 30, 40]})
    return path


# -- init --------------------------------------------------------------------


def test_init_creates_the_example_schema(tmp_path):
    path = tmp_path / "new.vs"
    r = run("init", path, "--schema", EXAMPLE_SCHEMA)
    assert r.exit_code == 0, r.output
    assert "items (6 features)" in r.output
    other_seed = run("init", path, "--schema", EXAMPLE_SCHEMA, "--seed", "5", "--exist-ok")
    assert other_seed.exit_code == 1 and "has the hash seed 42, not 5" in other_seed.output  # was "nothing to do"
    with vecstore.open(path, readonly=True) as s:
        assert s.tables() == ["items", "users"]
        assert s.seed == 42
        emb = s.table("items").features["embedding"]
        assert (emb.dim, emb.dtype, emb.index.dtype) == (64, "i8", "i8")
        assert s.table("users").features["embedding"].index is None
    again = run("init", path, "--schema", EXAMPLE_SCHEMA)
    assert again.exit_code == 1 and "already holds a store" in again.output
    assert run("init", path, "--schema", EXAMPLE_SCHEMA, "--exist-ok").exit_code == 0


def test_init_with_a_bad_schema_creates_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[tables.items.features]\nembedding = { kind = "vector", dtype = "i8" }\n')
    r = run("init", tmp_path / "new.vs", "--schema", bad)
    assert r.exit_code == 1
    assert r.output.startswith("Error: ") and "a vector needs dim" in r.output and "'embedding'" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "new.vs").exists()


def test_init_seed_option_overrides_the_file(tmp_path):
    r = run("init", tmp_path / "s.vs", "--schema", EXAMPLE_SCHEMA, "--seed", "5")
    assert r.exit_code == 0, r.output
    with vecstore.open(tmp_path / "s.vs", readonly=True) as s:
        assert s.seed == 5


# -- commands that must not create a store ------------------------------------

NON_CREATING = [
    ["info", "{p}"],
    ["get", "{p}", "items", "a"],
    ["delete", "{p}", "items", "a"],
    ["search", "{p}", "items", "--id", "a"],
    ["export", "{p}", "items", "{out}"],
    ["verify", "{p}"],
    ["compact", "{p}"],
    ["backup", "{p}", "{out}"],
    ["logs", "stats", "{p}", "--stage", "ranking", "--feature", "price"],
    ["logs", "export", "{p}", "{out}"],
    ["logs", "prune", "{p}", "--keep-days", "1"],
    ["logs", "drift", "{p}", "--baseline", "2d..1d"],
    ["serve", "{p}", "--unix", "{out}"],
]


@pytest.mark.parametrize("argv", NON_CREATING, ids=lambda a: " ".join(a[:2]))
def test_commands_on_a_missing_store_fail_and_create_nothing(tmp_path, argv):
    missing = tmp_path / "missing.vs"
    out = tmp_path / "out.parquet"
    r = run(*[a.format(p=missing, out=out) for a in argv])
    assert r.exit_code == 1, r.output
    assert r.output.startswith("Error: ") and "no store" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not missing.exists()
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path):
    r = run("--debug", "info", tmp_path / "missing.vs")
    assert r.exit_code == 1
    assert isinstance(r.exception, vecstore.StoreNotFoundError)


def test_usage_errors_exit_2(store_path):
    assert run("get", store_path).exit_code == 2
    assert run("search", store_path, "items", "-k", "0", "--id", "item-1").exit_code == 2
    assert run("nonsense").exit_code == 2


# -- info ---------------------------------------------------------------------


def test_info_reports_tables_indexes_and_pages(store_path):
    with vecstore.open(store_path) as s:
        s.table("items").search_by_id("item-1", k=3)  # builds the index snapshot
    r = run("info", store_path)
    assert r.exit_code == 0, r.output
    assert "table items: 200 rows" in r.output and "table users: 3 rows" in r.output
    assert ["embedding", "vector", "f32", "64"] in [line.split() for line in r.output.splitlines()]  # 16 x f32
    assert "index embedding: HNSW f32/cos M=16" in r.output
    assert "free" in r.output and "log      empty" in r.output
    d = json.loads(run("info", store_path, "items", "--json").output)
    assert [t["name"] for t in d["tables"]] == ["items"]
    t = d["tables"][0]
    assert t["rows"] == 200 and t["indexes"][0]["feature"] == "embedding"
    assert d["pages_total"] >= d["pages_free"] >= 0 and d["log"] is None


def test_info_unknown_table(store_path):
    r = run("info", store_path, "nope")
    assert r.exit_code == 1 and "nope" in r.output and "items" in r.output


# -- get / put / delete -------------------------------------------------------


def test_get_human_and_json(store_path):
    r = run("get", store_path, "items", "item-3", "item-4", "--features", "price,category")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split() == ["id", "price", "category"]
    assert lines[1].split() == ["item-3", "3", "books"]
    rows = json.loads(run("get", store_path, "items", "item-5", "--json").output)
    assert rows[0]["found"] is True and rows[0]["tags"] == ["t2"] and len(rows[0]["embedding"]) == DIM
    users = json.loads(run("get", store_path, "users", "2", "--int-ids", "--json").output)
    assert users[0]["age"] == 30
    bad = run("get", store_path, "users", "x", "--int-ids")
    assert bad.exit_code == 2 and "not an integer" in bad.output


def test_get_prints_a_stored_nan_apart_from_a_missing_value(store_path):
    with vecstore.open(store_path) as s:
        s.table("items").put(["nan-1"], {"price": [float("nan")]})  # stored: a value
        s.table("items").put(["bare-1"], {"category": ["toys"]})  # no price: missing
    r = run("get", store_path, "items", "nan-1", "bare-1", "--features", "price")
    assert r.exit_code == 0, r.output
    assert [line.split() for line in r.output.splitlines()[1:]] == [["nan-1", "nan"], ["bare-1", "-"]]


def test_commands_that_may_create_a_store_call_one_without_its_data_file_damaged(store_path, tmp_path):
    (store_path / "data.mdb").unlink()  # put used to answer "no store at ...; pass --schema to create it"
    for args in (["put", store_path, "items"], ["compact", store_path], ["backup", store_path, tmp_path / "b.vs"]):
        r = run(*args, input='{"id": "x", "price": 1}\n')
        assert r.exit_code == 1 and "data file (data.mdb) is missing" in r.output, (args, r.output)
    r = run("put", tmp_path / "new.vs", "items", input='{"id": "x", "price": 1}\n')
    assert r.exit_code == 1 and "no store at" in r.output and "pass --schema" in r.output


def test_a_schema_files_seed_applies_only_to_a_new_store(store_path, tmp_path):
    f = tmp_path / "extra.toml"
    f.write_text('[store]\nseed = 99\n\n[tables.extra.features]\nn = "f32"\n')  # the store's seed is 7
    r = run("put", store_path, "extra", "--schema", f, input='{"id": "a", "n": 1.5}\n')
    assert r.exit_code == 0, r.output
    (tmp_path / "e.csv").write_text("id,n\nb,2\n")
    r = run("import", store_path, "extra", tmp_path / "e.csv", "--schema", f)
    assert r.exit_code == 0, r.output
    with vecstore.open(store_path, readonly=True) as s:
        assert s.seed == 7 and len(s.table("extra")) == 2
    r = run("put", tmp_path / "new.vs", "extra", "--schema", f, input='{"id": "a", "n": 1.5}\n')
    assert r.exit_code == 0, r.output
    with vecstore.open(tmp_path / "new.vs", readonly=True) as s:
        assert s.seed == 99


def test_get_missing_id_exits_1_after_printing_the_rest(store_path):
    r = run("get", store_path, "items", "item-1", "ghost", "--json")
    assert r.exit_code == 1
    assert "1 of 2 ID(s) not stored in items: ghost" in r.output
    assert "--int-ids" not in r.output


def test_get_of_int_ids_spelled_as_text_hints_at_int_ids(store_path):
    r = run("get", store_path, "users", "2")  # stored as the int 2, looked up as the str "2"
    assert r.exit_code == 1
    assert "1 of 1 ID(s) not stored in users: 2 (hint: if the table's IDs are integers, add --int-ids)" in r.output
    assert run("get", store_path, "users", "2", "--int-ids").exit_code == 0


def test_get_unknown_feature_is_one_line(store_path):
    r = run("get", store_path, "items", "item-1", "--features", "colour")
    assert r.exit_code == 1 and "colour" in r.output and len(r.output.strip().splitlines()) == 1


def test_put_reads_json_lines_and_merges(store_path):
    lines = "\n".join(json.dumps(x) for x in [
        {"id": "item-1", "price": 99.5},  # partial update keeps the other features
        {"id": "new-1", "price": 1.0, "category": "food", "tags": ["a", "b"], "embedding": [0.5] * DIM},
        {"id": "new-2", "price": 2.0},
    ])
    r = run("put", store_path, "items", input=lines + "\n")
    assert r.exit_code == 0, r.output
    assert "wrote 3 rows" in r.output
    with vecstore.open(store_path, readonly=True) as s:
        rows = s.table("items").get(["item-1", "new-1", "new-2"])
        assert rows["price"].tolist() == [99.5, 1.0, 2.0]
        assert rows["category"].tolist() == ["books", "food", None]
        assert rows["tags"][1] == ["a", "b"]
        assert np.allclose(rows["embedding"][1], 0.5)


def test_put_bad_line_keeps_earlier_batches(store_path):
    good = "\n".join(json.dumps({"id": f"p-{i}", "price": float(i)}) for i in range(5))
    r = run("put", store_path, "items", "--batch-size", "5", input=good + '\n{"id": "p-9", "price": "cheap"}\n')
    assert r.exit_code == 1
    assert "stdin line 6:" in r.output and "5 row(s) from earlier lines were written" in r.output
    with vecstore.open(store_path, readonly=True) as s:
        assert s.table("items").contains([f"p-{i}" for i in range(5)]).all()
        assert not s.table("items").contains("p-9")
    notjson = run("put", store_path, "items", input="{oops\n")
    assert notjson.exit_code == 1 and "line 1 is not JSON" in notjson.output
    # Lines before an unreadable one are written too, and the message says so.
    r = run("put", store_path, "items", input='{"id": "q-1", "price": 1.0}\n{oops\n')
    assert r.exit_code == 1 and "line 2 is not JSON" in r.output and "1 row(s) from earlier lines were written" in r.output
    with vecstore.open(store_path, readonly=True) as s:
        assert s.table("items").contains("q-1")


def test_put_null_clears_a_category(store_path):
    assert run("put", store_path, "items", input='{"id": "c-1", "category": "books"}\n').exit_code == 0
    assert run("put", store_path, "items", input='{"id": "c-1", "category": null}\n').exit_code == 0
    with vecstore.open(store_path, readonly=True) as s:
        assert s.table("items").get(["c-1"], features=["category"])["category"][0] is None


def test_put_null_keeps_the_stored_value(store_path):
    assert run("put", store_path, "items", input='{"id": "n-1", "price": 3.0}\n').exit_code == 0
    r = run("put", store_path, "items", input='{"id": "n-1", "price": null}\n{"id": "n-2", "price": null}\n')
    assert r.exit_code == 0, r.output
    with vecstore.open(store_path, readonly=True) as s:
        rows = s.table("items").get(["n-1", "n-2"], features=["price"])
        assert rows["price"][0] == 3.0 and rows.found.all() and not rows.present("price")[1]


def test_put_keeps_input_order_and_writes_no_part_of_a_bad_run(store_path):
    lines = [
        {"id": "o-1", "price": 1.0, "category": "a"},
        {"id": "o-1", "price": 2.0},
        {"id": "o-1", "price": 3.0, "category": "c"},  # the last line for an ID wins
    ]
    r = run("put", store_path, "items", input="".join(json.dumps(x) + "\n" for x in lines))
    assert r.exit_code == 0, r.output
    with vecstore.open(store_path, readonly=True) as s:
        row = s.table("items").get("o-1")
        assert row["price"].tolist() == [3.0] and row["category"].tolist() == ["c"]
    bad = [{"id": "q-1", "price": 1.0}, {"id": "q-2", "price": 2.0}, {"id": "q-3", "price": "x"}]
    r = run("put", store_path, "items", input="".join(json.dumps(x) + "\n" for x in bad))
    assert r.exit_code == 1 and "stdin lines 1-3" in r.output and "0 row(s)" in r.output
    with vecstore.open(store_path, readonly=True) as s:
        assert not s.table("items").contains(["q-1", "q-2"]).any()


def test_put_creates_a_store_only_with_a_schema(tmp_path):
    path = tmp_path / "p.vs"
    row = json.dumps({"id": "item-1", "price": 3.0, "category": "toys"}) + "\n"
    r = run("put", path, "items", input=row)
    assert r.exit_code == 1 and "--schema" in r.output and not path.exists()
    r = run("put", path, "items", "--schema", EXAMPLE_SCHEMA, input=row)
    assert r.exit_code == 0, r.output
    with vecstore.open(path, readonly=True) as s:
        assert s.table("items").get("item-1")["category"].tolist() == ["toys"]
    # a failed put into a new store leaves no store behind
    r = run("put", tmp_path / "q.vs", "items", "--schema", EXAMPLE_SCHEMA, input='{"id": "x", "colour": 1}\n')
    assert r.exit_code == 1 and "colour" in r.output and not (tmp_path / "q.vs").exists()
    # nor an empty table in an existing store
    r = run("put", path, "users", "--schema", EXAMPLE_SCHEMA, input='{"id": "u", "age": "old"}\n')
    assert r.exit_code == 1
    with vecstore.open(path, readonly=True) as s:
        assert s.tables() == ["items"]


def test_delete_args_and_stdin(store_path):
    r = run("delete", store_path, "items", "item-1", "item-2", "ghost")
    assert r.exit_code == 0 and "deleted 2 of 3" in r.output
    r = run("delete", store_path, "users", "-", "--int-ids", "--json", input="1\n3\n")
    assert json.loads(r.output) == {"table": "users", "requested": 2, "deleted": 2}
    with vecstore.open(store_path, readonly=True) as s:
        assert len(s.table("items")) == N - 2 and len(s.table("users")) == 1


# -- search -------------------------------------------------------------------


def test_search_by_id_vector_and_file(store_path, tmp_path):
    with vecstore.open(store_path, readonly=True) as s:
        vecs = s.table("items").get([f"item-{i}" for i in range(3)])["embedding"]
    r = run("search", store_path, "items", "--id", "item-0", "-k", "5", "--exact")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].split() == ["rank", "id", "distance"]
    assert len(r.output.splitlines()) == 6 and "item-0 " not in r.output
    hits = json.loads(run("search", store_path, "items", "--vector", json.dumps(vecs[1].tolist()), "-k", "3",
                          "--exact", "--json").output)
    assert hits[0]["id"] == "item-1" and abs(hits[0]["distance"]) < 1e-5
    np.save(tmp_path / "q.npy", vecs)
    batch = json.loads(run("search", store_path, "items", "--vectors", tmp_path / "q.npy", "-k", "2", "--json").output)
    assert [h["id"] for h in batch if h["rank"] == 0] == ["item-0", "item-1", "item-2"]


def test_search_where_filters(store_path):
    r = run("search", store_path, "items", "--id", "item-0", "-k", "10", "--where", "category=books",
            "--where", "price<50", "--json")
    assert r.exit_code == 0, r.output
    ids = [h["id"] for h in json.loads(r.output)]
    assert len(ids) == 10
    assert all(int(i.split("-")[1]) % 2 == 1 and int(i.split("-")[1]) < 50 for i in ids)
    js = run("search", store_path, "items", "--id", "item-0", "-k", "5", "--where", '{"price": ["between", 10, 12]}', "--json")
    assert sorted(h["id"] for h in json.loads(js.output)) == ["item-10", "item-11", "item-12"]
    inn = run("search", store_path, "items", "--id", "item-0", "--where", "category in food,garden")
    assert inn.exit_code == 0 and "no hits" in inn.output


def test_search_errors(store_path):
    assert run("search", store_path, "items").exit_code == 2
    assert run("search", store_path, "items", "--id", "item-1", "--vector", "[1]").exit_code == 2
    wrong_dim = run("search", store_path, "items", "--vector", "[1, 2, 3]")
    assert wrong_dim.exit_code == 1 and "dim" in wrong_dim.output.lower()
    assert len(wrong_dim.output.strip().splitlines()) == 1
    bad_json = run("search", store_path, "items", "--vector", "[1, oops]")
    assert bad_json.exit_code == 2 and "JSON list" in bad_json.output
    bad_where = run("search", store_path, "items", "--id", "item-1", "--where", "price<cheap")
    assert bad_where.exit_code == 2 and "not a number" in bad_where.output
    ghost = run("search", store_path, "items", "--id", "ghost")
    assert ghost.exit_code == 1 and "ghost" in ghost.output and "--int-ids" not in ghost.output
    digits = run("search", store_path, "items", "--id", "7")  # as get does: int IDs need --int-ids
    assert digits.exit_code == 1 and "add --int-ids" in digits.output
    assert run("search", store_path, "users", "--id", "1", "--int-ids").exit_code == 1  # no vector feature


# -- logs ---------------------------------------------------------------------


@pytest.fixture
def logged_store(store_path):
    rng = np.random.default_rng(0)
    now = time.time()
    with vecstore.open(store_path) as s:
        for r in range(40):
            ids = [f"item-{i}" for i in rng.choice(N, 20, replace=False)]
            ts = now - (3 * 86400 if r < 20 else 3600)  # two windows: three days ago and an hour ago
            s.log.retrieval(f"req-{r}", ids, rng.random(20), table="items", sample=1.0, ts=ts)
            s.log.ranking(f"req-{r}", ids[:10], rng.random(10), table="items", shown=ids[:3], ts=ts)
            s.log.label(f"req-{r}", ids[0], "click", ts=ts)
    return store_path


def test_logs_stats_and_info(logged_store):
    r = run("logs", "stats", logged_store, "--stage", "ranking", "--feature", "price", "--json")
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)[0]
    assert st["count"] == 400 and 0 <= st["min"] <= st["max"] < N
    human = run("logs", "stats", logged_store, "--stage", "ranking", "--feature", "price", "--start", "1d")
    assert human.exit_code == 0 and human.output.split("\n")[1].split()[2] == "200"
    info = run("info", logged_store)
    assert "40 retrieval + 40 ranking calls, 40 labels" in info.output


def test_logs_drift(logged_store):
    r = run("logs", "drift", logged_store, "--baseline", "4d..2d", "--current", "1d..", "--feature", "price", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["features"][0]["feature"] == "price" and d["features"][0]["baseline_count"] == 200
    bad = run("logs", "drift", logged_store, "--baseline", "4d")
    assert bad.exit_code == 2 and "START..END" in bad.output


def test_logs_export_and_prune(logged_store, tmp_path):
    import pyarrow.dataset as ds

    out = tmp_path / "train"
    r = run("logs", "export", logged_store, out, "--stage", "ranking")
    assert r.exit_code == 0, r.output
    assert "exported 400 rows" in r.output
    tbl = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    assert tbl.num_rows == 400 and "click" in " ".join(tbl.column_names)
    again = run("logs", "export", logged_store, out)
    assert again.exit_code == 1 and "not an empty directory" in again.output
    p = run("logs", "prune", logged_store, "--keep-days", "2", "--json")
    assert p.exit_code == 0, p.output
    st = json.loads(run("logs", "stats", logged_store, "--stage", "ranking", "--feature", "price", "--json").output)[0]
    assert st["count"] == 200
    assert run("logs", "prune", logged_store).exit_code == 2


# -- parsing helpers ------------------------------------------------------------


def test_parse_time_forms():
    now = 1_000_000.0
    assert parse_time("now", now=now) == now
    assert parse_time("7d", now=now) == now - 7 * 86400
    assert parse_time("90s", now=now) == now - 90
    assert parse_time("12.5", now=now) == 12.5
    assert parse_time("1970-01-02", now=now) == 86400
    assert parse_time("1970-01-01T01:00:00+01:00", now=now) == 0
    assert parse_time(None) is None
    with pytest.raises(Exception, match="not a time"):
        parse_time("yesterday")


def test_parse_where_types_values_by_feature():
    feats = {"price": vecstore.Scalar("f32"), "n": vecstore.Scalar("i32"), "ok": vecstore.Scalar("bool"),
             "category": vecstore.Category()}
    w = parse_where(["price<=2.5", "n!=3", "ok=true", "category in a,b", "category=12"][:4], feats)
    assert w == {"price": ("<=", 2.5), "n": ("!=", 3), "ok": True, "category": ("in", ["a", "b"])}
    assert parse_where(["category=12"], feats) == {"category": "12"}
    assert parse_where(["n>1e3"], feats) == {"n": (">", 1000)}
    # A bound between integers is fine on an integer feature, as in the library's where=.
    assert parse_where(["n>=1.5"], feats) == {"n": (">=", 1.5)}
    assert parse_where(["n<12345678901234567890"], feats) == {"n": ("<", 12345678901234567890)}
    with pytest.raises(Exception, match="not a number"):
        parse_where(["n>abc"], feats)
    assert parse_where([], feats) is None
    with pytest.raises(Exception, match="no feature"):
        parse_where(["colour=red"], feats)


# -- progress -------------------------------------------------------------------


class _Tty:
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_only_on_a_terminal(monkeypatch, capsys):
    from vecstore.cli.common import progress_bar

    with progress_bar("loading", quiet=False) as progress:  # pytest's stdout is not a terminal
        progress(10, 100)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr("sys.stdout", _Tty())
    with progress_bar("loading", quiet=True) as progress:
        progress(10, 100)
    assert capsys.readouterr().err == ""
    with progress_bar("loading", quiet=False) as progress:
        progress(50, 100)
        progress(100, 100)
    err = capsys.readouterr().err
    assert "loading" in err and "rows/s" in err and "100 rows" in err and err.endswith("\n")


# -- serve ----------------------------------------------------------------------


def test_serve_refuses_a_missing_store_and_a_public_address_without_a_token(tmp_path, store_path):
    r = run("serve", tmp_path / "missing.vs", "--unix", tmp_path / "s.sock")
    assert r.exit_code == 1 and "no store" in r.output and not (tmp_path / "missing.vs").exists()
    r = run("serve", store_path, "--host", "0.0.0.0", "--port", "0")
    assert r.exit_code == 1 and "token" in r.output.lower(), r.output
    assert len(r.output.strip().splitlines()) == 1


def test_logs_windows_must_run_forwards_and_tables_exist(logged_store, tmp_path):
    r = run("logs", "stats", logged_store, "--stage", "ranking", "--feature", "price", "--start", "1d", "--end", "2d")
    assert r.exit_code == 2 and "ends" in r.output and "UTC" in r.output
    r = run("logs", "drift", logged_store, "--baseline", "1d..2d")
    assert r.exit_code == 2 and "older time" in r.output
    r = run("logs", "export", logged_store, tmp_path / "out", "--table", "nosuch")
    assert r.exit_code == 1 and "nosuch" in r.output and not (tmp_path / "out").exists()


def test_export_wants_a_parquet_name(store_path, tmp_path):
    for out in ("items.csv", "-"):
        r = run("export", store_path, "items", out)
        assert r.exit_code == 2 and ".parquet" in r.output
    assert not (tmp_path / "items.csv").exists()


def test_get_reads_ids_from_stdin_and_logs_commands_on_a_store_without_a_log(store_path):
    r = run("get", store_path, "items", "-", "--features", "price", "--json", input="item-1\nitem-2\n")
    assert r.exit_code == 0 and [x["price"] for x in json.loads(r.output)] == [1.0, 2.0]
    r = run("logs", "prune", store_path, "--keep-days", "1")
    assert r.exit_code == 0 and "no feature log" in r.output
    assert not (store_path / "logs").exists()
    r = run("logs", "drift", store_path, "--baseline", "2d..1d")
    assert r.exit_code == 0 and r.output.strip() == "no numeric features logged at the ranking stage"


def test_init_exist_ok_reports_what_it_added_and_what_differs(tmp_path):
    path = tmp_path / "s.vs"
    assert run("init", path, "--schema", EXAMPLE_SCHEMA).exit_code == 0
    same = run("init", path, "--schema", EXAMPLE_SCHEMA, "--exist-ok")
    assert same.exit_code == 0 and "nothing to do" in same.output
    extra = tmp_path / "extra.toml"
    extra.write_text('[tables.ads.features]\nbid = "f32"\n')
    added = run("init", path, "--schema", extra, "--exist-ok")
    assert added.exit_code == 0 and "added to" in added.output and "ads (1 feature)" in added.output
    clash = tmp_path / "clash.toml"
    clash.write_text('[tables.ads.features]\nbid = "f64"\n')
    r = run("init", path, "--schema", clash, "--exist-ok")
    assert r.exit_code == 1 and "features that differ: bid" in r.output and "vecstore info" in r.output


def test_put_reads_json_lines_that_start_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.vs"
    with vecstore.open(path) as s:
        s.create_table("t", {"x": vecstore.Scalar("f32")})
    r = run("put", str(path), "t", input='\ufeff{"id": "a", "x": 1.5}\n{"id": "b", "x": 2}\n')
    assert r.exit_code == 0, r.output
    with vecstore.open(path, readonly=True) as s:
        assert s.table("t").get(["a", "b"])["x"].tolist() == [1.5, 2.0]
