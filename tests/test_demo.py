"""The demo (``make demo``): one serving loop end to end, its figures match the store, and it replaces only its own."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

import vecstore
from vecstore.demo import (
    EXPORT_DIR,
    MARKER,
    RANKED,
    SALE,
    SALE_FACTOR,
    SAMPLED,
    SHOWN,
    run_demo,
)

SMALL = {"n_items": 2000, "n_users": 200, "n_requests": 40, "k": 200}


def _run(path, **kw):
    lines: list[str] = []
    figures = run_demo(path, **{**SMALL, "seed": 1, **kw}, out=lines.append)
    return figures, "\n".join(lines)


def test_figures_match_the_store_the_log_and_the_export(tmp_path):
    path = tmp_path / "demo-store"
    figures, output = _run(path)
    n = SMALL["n_requests"]

    with vecstore.open(path, readonly=True) as store:
        items, users = store.table("items"), store.table("users")
        assert len(items) == figures["items"] == SMALL["n_items"] - 100  # 100 discontinued items are deleted
        assert len(users) == figures["users"] == SMALL["n_users"]
        info = store.log.info()
        assert info.retrieval_calls == info.ranking_calls == n
        assert figures["retrieval_calls"] == figures["ranking_calls"] == figures["requests"] == n
        assert info.labels_logged == figures["clicks"] == figures["labels_logged"]
        assert store.verify() == [] and store.log.verify() == []
    assert 0 < figures["clicks"] <= figures["shown"] == n * SHOWN

    # The training export: both stages, the clicks joined, readable by pyarrow.
    target = path / EXPORT_DIR
    files = sorted(target.rglob("*.parquet"))
    assert len(files) == figures["export_files"] > 0
    assert sum(f.stat().st_size for f in files) == figures["export_bytes"]
    table = ds.dataset(target, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == figures["export_rows"] == figures["log_rows"]
    assert "label_click" in table.column_names and "ctx_surface" in table.column_names
    stage = table["stage"].to_numpy(zero_copy_only=False)
    retrieval, ranking = table.filter(pc.equal(table["stage"], "retrieval")), table.filter(pc.equal(table["stage"], "ranking"))
    assert retrieval.num_rows == figures["export_rows_retrieval"] == figures["candidates"]
    assert ranking.num_rows == figures["export_rows_ranking"] <= n * RANKED
    assert (stage == "ranking").sum() + (stage == "retrieval").sum() == table.num_rows
    # Every click is on a shown ranking row, and joins that item's retrieval row too.
    clicked = ranking.filter(pc.is_valid(ranking["label_click"]))
    assert clicked.num_rows == figures["clicks"]
    assert all(clicked["shown"].to_pylist())
    assert figures["labels_joined"] == 2 * figures["clicks"]
    assert pc.sum(ranking["shown"]).as_py() == figures["shown"]
    # Retrieval features are logged for SAMPLED candidates per request, with their probability.
    sampled = retrieval.filter(retrieval["sampled"])
    assert sampled.num_rows == n * SAMPLED
    per_request = {}
    for rid, p in zip(retrieval["request_id"].to_pylist(), retrieval["sample_prob"].to_pylist()):
        per_request.setdefault(rid, set()).add(p)
    counts = dict(zip(*np.unique(retrieval["request_id"].to_numpy(zero_copy_only=False), return_counts=True)))
    assert all(ps == {SAMPLED / counts[rid]} for rid, ps in per_request.items())
    assert pc.all(pc.is_valid(sampled["embedding"])).as_py()
    # Deleted items are never retrieved.
    gone = {f"item-{i}" for i in range(SMALL["n_items"] - 100, SMALL["n_items"])}
    assert gone.isdisjoint(retrieval["item"].to_pylist())

    for key in ("retrieval_p50_ms", "retrieval_p99_ms", "features_p50_ms", "rank_log_p50_ms", "request_p99_ms",
                "index_build_s", "items_rows_per_s", "recall", "total_s"):
        assert figures[key] >= 0
    assert figures["problems"] == 0
    assert f"put {SMALL['n_items']:,} items" in output and "verify: ok" in output
    assert str(files[0]) in output and f"vecstore info {path}" in output


def test_prices_are_logged_as_served_across_the_sale(tmp_path):
    path = tmp_path / "demo-store"
    figures, output = _run(path)
    assert "day 2 starts" in output
    day2 = figures["day2_start"]
    ranking = ds.dataset(path / EXPORT_DIR, partitioning="hive").to_table(
        columns=["ts", "item", "price"], filter=ds.field("stage") == "ranking")
    ts = np.array([t.timestamp() for t in ranking["ts"].to_pylist()])
    with vecstore.open(path, readonly=True) as store:
        rows = store.table("items").get(ranking["item"].to_pylist(), features=["price", "category"])
        price, on_sale = rows["price"], np.isin(rows["category"], list(SALE))
    logged = ranking["price"].to_numpy()
    day1 = ts < day2
    # Sale items' day-1 rows kept the price before the sale; every day-2 row matches what is stored now.
    assert (on_sale & day1).any() and (~day1).any()
    assert np.allclose(logged[on_sale & day1] * SALE_FACTOR, price[on_sale & day1], rtol=1e-6)
    assert np.array_equal(logged[~on_sale | ~day1], price[~on_sale | ~day1])


def test_rerun_replaces_the_previous_demo(tmp_path):
    path = tmp_path / "demo-store"
    first, _ = _run(path)
    second, _ = _run(path, n_items=1000, n_requests=10)
    with vecstore.open(path, readonly=True) as store:
        assert len(store.table("items")) == 900
        assert store.log.info().retrieval_calls == 10
    rows = ds.dataset(path / EXPORT_DIR, partitioning="hive").count_rows()
    assert rows == second["export_rows"] < first["export_rows"]
    # The same seed gives the same world, requests and clicks.
    third, _ = _run(path, n_items=1000, n_requests=10)
    assert third["clicks"] == second["clicks"] and third["export_rows"] == second["export_rows"]


def test_refuses_a_directory_or_file_that_is_not_a_store(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a vecstore store"):
        run_demo(mine, **SMALL, out=lambda _: None)
    assert (mine / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "file"
    a_file.write_text("keep me too")
    with pytest.raises(FileExistsError):
        run_demo(a_file, **SMALL, out=lambda _: None)
    assert a_file.read_text() == "keep me too"


def test_refuses_a_store_the_demo_did_not_build(tmp_path):
    path = tmp_path / "shop.vs"
    with vecstore.open(path) as store:
        store.create_table("items", {"price": vecstore.Scalar("f32")}).put(["a"], {"price": [1.0]})
    with pytest.raises(FileExistsError, match="did not build"):
        run_demo(path, **SMALL, out=lambda _: None)
    with vecstore.open(path, readonly=True) as store:
        assert store.table("items").get("a")["price"][0] == 1.0
        assert not (path / MARKER).exists()


def test_replaces_a_store_built_by_the_previous_demo(tmp_path):
    path = tmp_path / "demo-store"
    old = {"price": vecstore.Scalar("f32"), "ctr_7d": vecstore.Scalar("f16"), "in_stock": vecstore.Scalar("bool"),
           "popularity": vecstore.Scalar("u32"), "category": vecstore.Category(), "also_bought": vecstore.IdList(),
           "embedding": vecstore.Vector(64, dtype="i8", metric="cos")}
    with vecstore.open(path) as store:
        store.create_table("items", old)
    figures, _ = _run(path, n_requests=5)
    assert figures["requests"] == 5 and (path / MARKER).is_file()
