"""CLI commands that move or repair whole stores: import/export, verify --repair,
compact (also against a running server process) and backup during writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import catalog_features
from vecstore.cli.main import main

import vecstore

DIM = 16


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def make_store(path: Path, n: int = 2000) -> list[str]:
    rng = np.random.default_rng(0)
    ids = [f"item-{i}" for i in range(n)]
    with vecstore.open(path, seed=3) as s:
        t = s.create_table("items", catalog_features(DIM, "i8"), expected_size=n)
        t.put(ids, {
            "price": rng.random(n).astype(np.float32) * 100,
            "category": [("books", "toys", "food")[i % 3] for i in range(n)],
            "tags": [[f"t{i % 5}", i] for i in range(n)],
            "embedding": rng.standard_normal((n, DIM)).astype(np.float32),
        })
        t.search_by_id(ids[0], k=5)  # build the index
        t.may_contain(ids[:1])  # and the Bloom filter
        s.flush()  # and write its snapshot and the Bloom snapshot
    return ids


# -- import / export --------------------------------------------------------------


def test_export_import_round_trip(tmp_path):
    src, dst = tmp_path / "src.vs", tmp_path / "dst.vs"
    ids = make_store(src)
    out = tmp_path / "items.parquet"
    r = run("export", src, "items", out)
    assert r.exit_code == 0, r.output
    assert "exported 2,000 rows" in r.output and "\r" not in r.output  # no progress bar when not a terminal
    assert pq.read_metadata(out).num_rows == 2000
    r = run("import", dst, "items", out, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["rows"] == 2000 and res["created"] is True
    assert list((dst / "index").glob("*.usearch")), "import saves the index, so the first search is warm"
    assert list((dst / "bloom").glob("*.bloom"))
    with vecstore.open(src, readonly=True) as a, vecstore.open(dst, readonly=True) as b:
        ta, tb = a.table("items"), b.table("items")
        assert {n: s.to_dict() for n, s in ta.features.items()} == {n: s.to_dict() for n, s in tb.features.items()}
        ra, rb = ta.get(ids), tb.get(ids)
        assert rb.found.all()
        for f in ("price", "category", "tags"):
            assert ra.to_arrow().column(f).to_pylist() == rb.to_arrow().column(f).to_pylist()
        assert np.array_equal(ra.raw("embedding")[0], rb.raw("embedding")[0])
        assert tb.search_by_id("item-7", k=3).ids == ta.search_by_id("item-7", k=3).ids
    again = run("export", src, "items", out)
    assert again.exit_code == 1 and "exists" in again.output
    assert run("export", src, "items", out, "--overwrite", "--features", "price").exit_code == 0
    assert pq.read_schema(out).names == ["id", "price"]


def test_import_csv_infers_a_table(tmp_path):
    csv = tmp_path / "users.csv"
    pacsv.write_csv(pa.table({"user_id": [1, 2, 3], "age": [30, 40, 50], "country": ["de", "fr", "de"]}), csv)
    r = run("import", tmp_path / "u.vs", "users", csv, "--id-column", "user_id")
    assert r.exit_code == 0, r.output
    assert "imported 3 rows" in r.output and "table created" in r.output
    out = json.loads(run("get", tmp_path / "u.vs", "users", "2", "--int-ids", "--json").output)
    assert out[0]["age"] == 40 and out[0]["country"] == "fr"


def test_import_with_a_schema_file(tmp_path):
    schema = tmp_path / "s.toml"
    schema.write_text('[tables.users]\nexpected_size = 1000\n[tables.users.features]\nage = "u8"\n')
    csv = tmp_path / "users.csv"
    pacsv.write_csv(pa.table({"id": ["a", "b"], "age": [30, 40], "country": ["de", "fr"], "score": [0.5, 1.5]}), csv)
    r = run("import", tmp_path / "u.vs", "users", csv, "--schema", schema)
    assert r.exit_code == 0, r.output
    with vecstore.open(tmp_path / "u.vs", readonly=True) as s:
        f = s.table("users").features
        assert f["age"] == vecstore.Scalar("u8")  # from the schema file
        assert f["country"] == vecstore.Category() and f["score"].kind == "scalar"  # inferred
    # a failed import creates no table in an existing store
    bad = tmp_path / "bad.csv"
    pacsv.write_csv(pa.table({"id": ["a"], "age": [3000]}), bad)
    schema.write_text('[tables.other.features]\nage = "u8"\n')
    r = run("import", tmp_path / "u.vs", "other", bad, "--schema", schema)
    assert r.exit_code == 1, r.output
    with vecstore.open(tmp_path / "u.vs", readonly=True) as s:
        assert s.tables() == ["users"]


def test_failed_import_into_a_new_store_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,age\nx,1\n")
    r = run("import", tmp_path / "new.vs", "users", bad)
    assert r.exit_code == 1 and "id" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "new.vs").exists()


def test_an_import_into_a_new_store_failing_midway_keeps_what_it_committed(tmp_path):
    # The error says the committed batches stay; the store created for them must stay too.
    schema = tmp_path / "s.toml"
    schema.write_text('[tables.small.features]\nn = "i8"\n')
    path = tmp_path / "n.csv"
    path.write_text("id,n\n" + "".join(f"k{i},{i * 20}\n" for i in range(10)))  # 140 does not fit i8
    r = run("import", tmp_path / "new.vs", "small", path, "--schema", schema, "--batch-size", "3")
    assert r.exit_code == 1 and "6 rows were imported before the error" in r.output
    with vecstore.open(tmp_path / "new.vs", readonly=True) as s:
        assert len(s.table("small")) == 6


def test_failed_import_into_an_existing_table_keeps_it(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=100)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "item-1", "colour": "red"}) + "\n")
    r = run("import", path, "items", bad)
    assert r.exit_code == 1 and "colour" in r.output
    with vecstore.open(path, readonly=True) as s:
        assert len(s.table("items")) == 100
        assert s.verify() == []


# -- verify / repair ------------------------------------------------------------------


def _damage(path: Path) -> None:
    for f in [*(path / "index").glob("*.usearch"), *(path / "bloom").glob("*.bloom")]:
        data = bytearray(f.read_bytes())
        mid = len(data) // 2
        data[mid:mid + 64] = bytes(64)  # zero a run in the middle
        data[-32:] = b"\xff" * 32
        f.write_bytes(bytes(data))


def test_verify_detects_damage_and_repair_fixes_it(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path)
    assert list((path / "index").glob("*.usearch")) and list((path / "bloom").glob("*.bloom"))
    ok = run("verify", path)
    assert ok.exit_code == 0 and "ok" in ok.output
    _damage(path)
    bad = run("verify", path)
    assert bad.exit_code == 1, bad.output
    problems = [line for line in bad.output.splitlines() if line.startswith("problem:")]
    assert any("index" in p.lower() for p in problems) and any("bloom" in p.lower() for p in problems), bad.output
    assert "--repair" in bad.output
    fixed = run("verify", path, "--repair", "--json")
    assert fixed.exit_code == 0, fixed.output
    report = json.loads(fixed.output)
    assert report["ok"] and report["problems"]
    assert run("verify", path).exit_code == 0
    assert len(json.loads(run("search", path, "items", "--id", "item-3", "-k", "5", "--json").output)) == 5


# -- compact ------------------------------------------------------------------------------


def test_compact_shrinks_after_deletes_and_keeps_live_rows(tmp_path):
    path = tmp_path / "s.vs"
    ids = make_store(path, n=20_000)
    with vecstore.open(path) as s:
        s.table("items").delete(ids[:18_000])
        before = s.table("items").get(ids[18_000:]).to_arrow()
    size_before = (path / "data.mdb").stat().st_size
    r = run("compact", path, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["after"]["data_bytes"] < rep["before"]["data_bytes"] == size_before
    assert rep["rows"] == {"items": 2000}
    assert (path / "data.mdb").stat().st_size < size_before
    with vecstore.open(path, readonly=True) as s:
        t = s.table("items")
        assert len(t) == 2000
        assert t.get(ids[18_000:]).to_arrow().equals(before)
        assert not t.contains(ids[:18_000]).any()
        assert s.verify() == []
        hits = t.search_by_id(ids[-1], k=10)
        assert all(int(i.split("-")[1]) >= 18_000 for i in hits.ids)
    human = run("compact", path)
    assert human.exit_code == 0 and "compacted" in human.output and "rows kept: items 2,000" in human.output


def test_compact_keep_logs_accepts_zero_like_the_library(tmp_path):
    # --keep-logs 0 keeps nothing logged before now (the library's keep_logs_days=0);
    # a negative number of days is refused in one line, changing nothing.
    path = tmp_path / "s.vs"
    make_store(path, n=100)
    with vecstore.open(path) as s:
        for r in range(3):
            s.log.ranking(f"r{r}", ["item-1"], [1.0], table="items", ts=time.time() - 60)
    r = run("compact", path, "--keep-logs", "-1")
    assert r.exit_code != 0 and "-1" in r.output
    with vecstore.open(path) as s:
        assert s.log.info().ranking_calls == 3
    r = run("compact", path, "--keep-logs", "0", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["log_pruned"]["records_removed"] == 3


def test_compact_refuses_while_a_server_has_the_store_open(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=500)
    sock = tmp_path / "vs.sock"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vecstore.cli", "serve", str(path), "--unix", str(sock)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        for _ in range(300):  # bounded: up to 30 s for the server to start
            if sock.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert sock.exists(), proc.stderr.read().decode() if proc.poll() is not None else "server did not start"
        size = (path / "data.mdb").stat().st_size
        r = run("compact", path)
        assert r.exit_code == 1, r.output
        assert "open" in r.output and "server" in r.output
        assert len(r.output.strip().splitlines()) == 1
        assert (path / "data.mdb").stat().st_size == size
        with vecstore.connect(f"unix://{sock}") as client:  # the server still serves
            assert len(client.table("items").get(["item-1"]).found) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    r = run("compact", path)
    assert r.exit_code == 0, r.output


# -- backup -------------------------------------------------------------------------------


def test_backup_during_writes_opens_and_verifies(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=2000)
    stop = threading.Event()
    written = [0]

    def writer():
        rng = np.random.default_rng(1)
        with vecstore.open(path) as s:
            t = s.table("items")
            while not stop.is_set() and written[0] < 200:  # bounded
                i = written[0]
                t.put([f"new-{i}"], {"price": [float(i)], "embedding": rng.standard_normal((1, DIM))})
                written[0] += 1

    th = threading.Thread(target=writer)
    th.start()
    try:
        for _ in range(200):  # let some writes land first (bounded)
            if written[0] >= 20:
                break
            time.sleep(0.01)
        dest = tmp_path / "backup.vs"
        r = run("backup", path, dest, "--json")
    finally:
        stop.set()
        th.join(timeout=60)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert run("verify", dest).exit_code == 0
    with vecstore.open(dest, readonly=True) as b:
        t = b.table("items")
        n_new = len(t) - 2000
        assert n_new == rep["tables"]["items"]["rows"] - 2000
        # a prefix of the writer's puts, nothing torn
        assert t.contains([f"new-{i}" for i in range(n_new)]).all()
        assert not t.contains(f"new-{n_new}")
    again = run("backup", path, dest)
    assert again.exit_code == 1 and ("empty" in again.output or "exists" in again.output), again.output


def test_import_npy_vectors(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((300, DIM)).astype(np.float32)
    np.save(tmp_path / "v.npy", vecs)
    (tmp_path / "ids.txt").write_text("".join(f"doc-{i}\n" for i in range(300)))
    path = tmp_path / "v.vs"
    missing = run("import", path, "docs", tmp_path / "v.npy")
    assert missing.exit_code == 2 and "--vector-feature" in missing.output and not path.exists()
    r = run("import", path, "docs", tmp_path / "v.npy", "--vector-feature", "emb", "--ids", tmp_path / "ids.txt")
    assert r.exit_code == 0, r.output
    hits = json.loads(run("search", path, "docs", "--vector", json.dumps(vecs[7].tolist()), "-k", "1", "--json").output)
    assert hits[0]["id"] == "doc-7"
    # into the existing table, its only vector feature is the default; no --ids: row numbers as int IDs
    more = tmp_path / "more.npy"
    np.save(more, vecs[:10])
    r = run("import", path, "docs", more)
    assert r.exit_code == 0, r.output
    with vecstore.open(path, readonly=True) as s:
        assert len(s.table("docs")) == 310 and s.table("docs").contains(9)
    assert run("import", path, "docs", tmp_path / "ids.txt", "--format", "csv", "--ids", more).exit_code == 2


@pytest.mark.parametrize("name,content,needle", [
    ("bad.jsonl", b'{"id": "a", "name": "caf\xe9"}\n', "UTF-8"),
    ("empty.npy", b"", "is not a .npy file"),
    ("header.csv", b"id,x\n", "no data rows"),
])
def test_unreadable_files_are_one_line_errors(tmp_path, name, content, needle):
    f = tmp_path / name
    f.write_bytes(content)
    r = run("import", tmp_path / "x.vs", "t", f, *(["--vector-feature", "v"] if name.endswith(".npy") else []))
    assert r.exit_code == 1 and r.output.startswith("Error: ") and needle in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.vs").exists()


def test_missing_ids_are_refused_and_empty_strings_are_ids(tmp_path):
    csv = tmp_path / "e.csv"
    csv.write_text("id,x\na,1\n,2\n")  # an empty CSV cell is a missing ID
    r = run("import", tmp_path / "x.vs", "t", csv)
    assert r.exit_code == 1 and "empty at row 1" in r.output
    # An explicit "" (Parquet, JSON Lines) is an ID, as in put: export -> import round-trips.
    f = tmp_path / "e.parquet"
    pq.write_table(pa.table({"id": ["a", ""], "x": [1.0, 2.0]}), f)
    assert run("import", tmp_path / "y.vs", "t", f).exit_code == 0
    with vecstore.open(tmp_path / "y.vs", readonly=True) as s:
        assert s.table("t").get([""])["x"].tolist() == [2.0]


def test_a_text_ids_file_of_integers_gives_int_ids(tmp_path):
    np.save(tmp_path / "v.npy", np.eye(3, dtype=np.float32))
    (tmp_path / "ids.txt").write_text("1\n2\n-5\n")
    (tmp_path / "sids.txt").write_text("a\n007\nb\n")
    (tmp_path / "blank.txt").write_text("a\n\nb\n")
    path = tmp_path / "ids.vs"
    assert run("import", path, "t", tmp_path / "v.npy", "--vector-feature", "v", "--ids", tmp_path / "ids.txt").exit_code == 0
    assert run("import", path, "u", tmp_path / "v.npy", "--vector-feature", "v", "--ids", tmp_path / "sids.txt").exit_code == 0
    r = run("import", path, "w", tmp_path / "v.npy", "--vector-feature", "v", "--ids", tmp_path / "blank.txt")
    assert r.exit_code == 1 and "empty line 2" in r.output
    with vecstore.open(path, readonly=True) as s:
        assert s.table("t").contains([1, 2, -5]).all() and not s.table("t").contains(["1"]).any()
        assert s.table("u").contains(["a", "007", "b"]).all()
    # Into a table that holds str IDs, digits name its rows: they stay str.
    with vecstore.open(path) as s:
        s.create_table("strs", {"v": vecstore.Vector(3)}).put(["1", "2", "-5"], {"v": np.eye(3, dtype=np.float32)})
    assert run("import", path, "strs", tmp_path / "v.npy", "--vector-feature", "v", "--ids", tmp_path / "ids.txt").exit_code == 0
    with vecstore.open(path, readonly=True) as s:
        assert len(s.table("strs")) == 3 and not s.table("strs").contains([1]).any()
