"""The end-to-end demo behind ``make demo`` and ``vecstore demo``: a recommender's serving loop.

It builds a store of synthetic items and users (:mod:`vecstore.demo_data`:
two-tower-like embeddings around 12 interest clusters, plus price,
popularity, CTR and stock features), then serves a few hundred requests the
way a recommender service would, all in this process on the embedded store:

1. **retrieval**: ``items.search`` with the user's embedding, ``k`` = 500
   candidates from the HNSW index (category-page requests add a ``where``
   filter);
2. **feature reads**: ``users.get`` of the user and ``items.get`` of every
   candidate's ranking features;
3. **ranking**: a toy score (embedding dot product + popularity and CTR
   priors - a price penalty for price-sensitive users), top 50 kept, top 5
   shown;
4. **logging**: ``store.log.retrieval`` (every candidate's ID and score, the
   features of 50 sampled candidates with their sampling probability) and
   ``store.log.ranking`` (the 50 ranked items with all features as served,
   which 5 were shown);
5. **outcomes**: clicks drawn from a known click model
   (:class:`vecstore.demo_data.ClickModel`), logged with ``store.log.label``.

Then it flushes the log, prints log statistics and a drift report, and
exports a Parquet training set with the clicks joined.  The simulated
requests are spread over the last 48 hours (event times passed as ``ts=``),
and a sale changes some prices at the start of the second day, so the drift
report has something to find.

Example::

    from vecstore.demo import run_demo
    figures = run_demo("demo-store", n_items=20_000, n_requests=100)
    figures["clicks"], figures["export_rows"]
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .demo_data import DIM, World, make_world
from .features import HNSW, Category, Scalar, Vector
from .store import Store
from .store import open as open_store

__all__ = ["EXPORT_DIR", "MARKER", "run_demo"]

MARKER = ".vecstore-demo"  # written into a store the demo built; only such a store is replaced
EXPORT_DIR = "train"  # the training export, inside the store's directory
HOUR = 3600.0
SALE = ("toys", "games", "books", "music")  # 40 % off these from the start of day 2
SALE_FACTOR = 0.6
RANKED, SHOWN, SAMPLED = 50, 5, 50
RANK_FEATURES = ["price", "popularity", "ctr_7d", "in_stock", "embedding"]
USER_FEATURES = ["segment", "fav_category", "price_sensitivity", "embedding"]
# The table the demo before this one built; a store holding just that is replaced too.
_OLD_DEMO = {"items": {"price", "ctr_7d", "in_stock", "popularity", "category", "also_bought", "embedding"}}

ITEM_SCHEMA = {
    "category": Category(),
    "price": Scalar("f32"),
    "popularity": Scalar("u32"),
    "ctr_7d": Scalar("f16"),
    "in_stock": Scalar("bool"),
    # f16 storage: cosine > 0.99999 to the original at half the bytes of f32,
    # and an f16 index, whose distances are final.  An i8 index over these
    # vectors reranks k * 4 = 2,000 candidates read from LMDB per request:
    # measured 18 ms instead of 2 ms at k = 500 (i8 storage would skip the
    # rerank, at a cosine of about 0.999).  M = 12 and expansion_add = 48
    # (defaults 16 and 128) build 100,000 vectors about 3x faster, at a
    # recall@500 of about 0.87 (printed).
    "embedding": Vector(DIM, dtype="f16", metric="cos",
                        index=HNSW(dtype="f16", connectivity=12, expansion_add=48)),
}
USER_SCHEMA = {
    "segment": Category(),
    "fav_category": Category(),
    "price_sensitivity": Scalar("f16"),
    "sessions_7d": Scalar("u16"),
    "embedding": Vector(DIM, dtype="f16", metric="cos", index=None),  # users are looked up, never searched
}


def _since(t0: float) -> float:
    return time.perf_counter() - t0


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _is_demo_store(path: Path) -> bool:
    """True when ``path`` holds a store this demo (or the one before it) built."""
    if (path / MARKER).is_file():
        return True
    try:
        with open_store(path, readonly=True) as store:
            tables = {name: set(store.table(name).features) for name in store.tables()}
    except Exception:  # noqa: BLE001 - anything unreadable is not ours to delete
        return False
    return tables == _OLD_DEMO


def _make_room(path: Path) -> None:
    """Delete a previous demo store at ``path``; refuse anything else."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink():
        raise FileExistsError(f"{path} is a symbolic link; pick another path (the demo deletes what it replaces)")
    if not path.is_dir() or not (path / "data.mdb").is_file():
        raise FileExistsError(f"{path} exists and is not a vecstore store; pick another path")
    if not _is_demo_store(path):
        raise FileExistsError(
            f"{path} is a vecstore store that the demo did not build; pick another path (the demo replaces its own only)"
        )
    shutil.rmtree(path)


def run_demo(
    path: str | Path,
    *,
    n_items: int = 100_000,
    n_users: int = 10_000,
    n_requests: int = 300,
    k: int = 500,
    seed: int = 0,
    out: Callable[[str], Any] = print,
) -> dict[str, float]:
    """Build a demo store at ``path`` (replacing a previous demo there), serve and log requests, print a report.

    Raises FileExistsError when ``path`` exists and is not a store the demo
    built.  Returns the figures it printed, keyed by name (counts, sizes,
    seconds and milliseconds), so callers can check them; the training
    export is in ``path / EXPORT_DIR``.
    """
    if n_items < 200 or n_users < 1 or n_requests < 2 or k < 1:
        raise ValueError("the demo needs n_items >= 200, n_users >= 1, n_requests >= 2 and k >= 1")
    path = Path(path)
    started = time.perf_counter()
    _make_room(path)
    rng = np.random.default_rng(seed)
    figures: dict[str, float] = {}
    out(f"vecstore demo: a recommender's serving loop on an embedded store in {path}/")
    world = make_world(rng, n_items, n_users)
    with open_store(path, seed=seed) as store:
        (path / MARKER).write_text("built by `vecstore demo`; running the demo again at this path replaces it\n")
        _build(store, world, figures, out)
        _serve(store, world, rng, n_requests, k, figures, out)
        _report_log(store, figures, out)
        _export(store, path / EXPORT_DIR, figures, out)
        _checks(store, world, figures, out)
    figures["total_s"] = _since(started)
    out(f"\ndone in {figures['total_s']:.1f} s. What next:")
    for line in _next_steps(str(path)):
        out(f"  {line}")
    return figures


def _next_steps(path: str) -> list[str]:
    """Commands to try on the demo store: the CLI's where it has them, else Python one-liners."""
    try:
        from .cli.main import main as cli

        have = set(cli.commands)
    except ImportError:
        have = set()
    steps = [f"vecstore info {path}                    # tables, sizes, feature layout, index, log"]
    if {"get", "search", "logs"} <= have:
        steps += [
            f"vecstore get {path} users user-7",
            f"vecstore search {path} items --id item-42 -k 5 --where 'category=books'",
            f"vecstore logs stats {path} --stage ranking --feature price --feature ctr_7d",
            f"vecstore logs drift {path} --baseline 48h..24h --current 24h..",
        ]
    else:
        steps += [
            f"python -c \"import vecstore; print(vecstore.open('{path}').table('items').search_by_id('item-42', k=5).ids)\"",
            f"python -c \"import vecstore; print(vecstore.open('{path}').log.stats(stage='ranking', feature='price'))\"",
        ]
    steps += [
        f"python -c \"import pyarrow.dataset as ds; print(ds.dataset('{path}/{EXPORT_DIR}', partitioning='hive').head(5))\"",
        "docs/feature-logging.md: the log, its export and the 1/p weights",
    ]
    return steps


def _build(store: Store, world: World, figures: dict[str, float], out: Callable[[str], Any]) -> None:
    out("\n[1/5] build the store")
    for name, schema, ents in (("items", ITEM_SCHEMA, world.items), ("users", USER_SCHEMA, world.users)):
        n = len(ents.ids)
        table = store.create_table(name, schema, expected_size=n, bloom_fpr=0.01)
        t0 = time.perf_counter()
        table.put(ents.ids, ents.columns)
        secs = _since(t0)
        figures[f"{name}_put_s"] = secs
        figures[f"{name}_rows_per_s"] = n / secs
        out(f"  put {n:,} {name} in {secs:.2f} s ({n / secs:,.0f} rows/s): {', '.join(schema)}")
    items = store.table("items")
    t0 = time.perf_counter()
    info = items.rebuild_index("embedding")
    figures["index_build_s"] = _since(t0)
    out(f"  HNSW index over {info.vectors:,} item embeddings ({DIM}-d, f16, M=12) built in {figures['index_build_s']:.1f} s")
    t0 = time.perf_counter()
    items.search(world.users.columns["embedding"][0], k=10, where={"category": "books", "in_stock": True})
    figures["filter_warmup_ms"] = _since(t0) * 1e3
    out(f"  first filtered search: loaded the in-memory filter columns in {figures['filter_warmup_ms']:.0f} ms")
    gone = world.items.ids[-100:]
    items.delete(gone)
    figures["items"] = float(len(items))
    figures["users"] = float(len(store.table("users")))
    out(f"  deleted 100 discontinued items ({figures['items']:,.0f} left); the index follows, "
        "so no search returns them")


def _serve(
    store: Store, world: World, rng: np.random.Generator, n_requests: int, k: int,
    figures: dict[str, float], out: Callable[[str], Any],
) -> None:
    items, users, log = store.table("items"), store.table("users"), store.log
    out(f"\n[2/5] serve {n_requests} requests: retrieve {k} -> read features -> rank {RANKED} -> show {SHOWN} -> log")
    # Simulated event times: the requests are spread over the 48 hours before
    # the last full hour and passed to the log as ts=; latencies are real.
    t_end = math.floor(time.time() / HOUR) * HOUR
    t_start = t_end - 48 * HOUR
    figures["day2_start"] = t_start + 24 * HOUR
    out("  simulated traffic: the requests are spread over the last 48 hours (event times go to the log as ts=)")
    lat = {s: np.zeros(n_requests) for s in ("retrieval", "features", "rank_log", "request")}
    pages = np.zeros(n_requests, dtype=bool)  # category pages (filtered retrieval)
    on_sale = np.isin(np.array(world.items.columns["category"]), SALE)
    median_price = float(np.median(world.items.columns["price"]))
    clicks = shown = candidates = 0
    for r in range(n_requests):
        ts = t_start + (r + 0.5) * 48 * HOUR / n_requests
        if r == n_requests // 2:
            _start_sale(items, world, on_sale, out)
        rid = f"req-{r}"
        u = int(rng.integers(len(world.users.ids)))
        uid = world.users.ids[u]
        category_page = rng.random() < 0.2
        t0 = time.perf_counter()
        user = users.get(uid, features=USER_FEATURES)
        t1 = time.perf_counter()
        where = {"category": user["fav_category"][0], "in_stock": True} if category_page else None
        hits = items.search(user["embedding"][0], k=k, where=where)
        t2 = time.perf_counter()
        feats = items.get(hits.ids, features=RANK_FEATURES)
        t3 = time.perf_counter()
        # The toy ranker: cosine of the two towers + popularity and CTR priors
        # - a price penalty scaled by the user's price sensitivity.
        score = (
            feats["embedding"] @ user["embedding"][0]
            + 0.04 * np.log1p(feats["popularity"].astype(np.float64))
            + 2.0 * feats["ctr_7d"]
            - 0.15 * float(user["price_sensitivity"][0]) * np.log(feats["price"] / median_price)
        )
        score[~feats["in_stock"]] = -np.inf  # never rank what cannot be sold
        top = np.argsort(-score, kind="stable")[: min(RANKED, int(np.isfinite(score).sum()))]
        ranked = [hits.ids[i] for i in top]
        context = {"surface": "category" if category_page else "home", "segment": user["segment"][0]}
        log.retrieval(rid, hits.ids, 1.0 - hits.distances, table="items", user=uid, source="ann",
                      sample=SAMPLED, context=context, ts=ts, rng=rng)
        log.ranking(rid, ranked, score[top], table="items", shown=ranked[:SHOWN], ts=ts)
        t4 = time.perf_counter()
        lat["retrieval"][r] = (t2 - t1) * 1e3
        lat["features"][r] = (t1 - t0 + t3 - t2) * 1e3  # users.get before the search + items.get after it
        lat["rank_log"][r] = (t4 - t3) * 1e3
        lat["request"][r] = (t4 - t0) * 1e3
        # The user sees the top items; clicks arrive seconds later.
        seen = ranked[:SHOWN]
        p = world.clicks.prob(u, world.item_rows(seen), np.arange(len(seen)))
        for item in np.array(seen, dtype=object)[rng.random(len(seen)) < p]:
            log.label(rid, item, "click", 1.0, ts=ts + float(rng.uniform(2, 60)))
            clicks += 1
        shown += len(seen)
        pages[r] = category_page
        candidates += len(hits.ids)
    figures.update(requests=float(n_requests), clicks=float(clicks), shown=float(shown), candidates=float(candidates))
    out(f"  {n_requests} requests, {pages.sum()} of them category pages; {candidates:,} candidates retrieved")
    out("  latency per request         p50       p99")
    for name, values, what in (
        ("retrieval_home", lat["retrieval"][~pages], f"items.search(user embedding, k={k})"),
        ("retrieval_category", lat["retrieval"][pages], "+ where={'category': <user's favourite>, 'in_stock': True}"),
        ("features", lat["features"], "users.get + items.get of the candidates' features"),
        ("rank_log", lat["rank_log"], f"score, sort, log.retrieval ({SAMPLED} sampled) + log.ranking ({RANKED} rows)"),
        ("request", lat["request"], "all of the above"),
        ("retrieval", lat["retrieval"], None),  # both kinds together: a figure, not printed
    ):
        if not len(values):
            continue
        p50, p99 = (float(x) for x in np.percentile(values, [50, 99]))
        figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"] = p50, p99
        if what is not None:
            label = name.replace("retrieval_", "retrieval, ").replace("features", "feature reads").replace("_", " + ")
            out(f"    {label:19s} {p50:6.2f} ms {p99:6.2f} ms   {what}")
    # What the approximate index misses, for a few users: HNSW against an exact scan.
    recall = []
    for q in users.get(world.users.ids[:5], features=["embedding"])["embedding"]:
        exact = set(items.search(q, k=k, exact=True).ids)
        recall.append(len(exact & set(items.search(q, k=k).ids)) / len(exact))
    figures["recall"] = float(np.mean(recall))
    out(f"  ANN recall@{k} against an exact scan ({len(recall)} users): {figures['recall']:.1%}")
    out(f"  clicks: {clicks} on {shown:,} shown items ({clicks / max(shown, 1):.1%}), drawn from the click model, "
        "logged with log.label")


def _start_sale(items: Any, world: World, on_sale: np.ndarray, out: Callable[[str], Any]) -> None:
    """Day 2 begins: a partial put cuts prices; the log keeps each request's prices as served."""
    ids = [i for i, s in zip(world.items.ids[:-100], on_sale[:-100]) if s]
    rows = world.item_rows(ids)
    new = (world.items.columns["price"][rows] * SALE_FACTOR).astype(np.float32)
    items.put(ids, {"price": new})
    world.clicks.item_log_rel_price[rows] += math.log(SALE_FACTOR)
    out(f"  day 2 starts: {len(ids):,} prices cut by {1 - SALE_FACTOR:.0%} ({', '.join(SALE)}) with one partial put")


def _report_log(store: Store, figures: dict[str, float], out: Callable[[str], Any]) -> None:
    log = store.log
    t0 = time.perf_counter()
    log.flush()
    figures["flush_ms"] = _since(t0) * 1e3
    info = log.info()
    figures.update(
        retrieval_calls=float(info.retrieval_calls), ranking_calls=float(info.ranking_calls),
        labels_logged=float(info.labels_logged), log_bytes=float(info.bytes),
        log_rows=float(sum(info.rows.values())),
    )
    out("\n[3/5] the feature log (store.log)")
    out(f"  flushed (fsync) in {figures['flush_ms']:.0f} ms: {info.retrieval_calls} retrieval + {info.ranking_calls} "
        f"ranking calls, {info.labels_logged} labels, {figures['log_rows']:,.0f} rows, {_mib(info.bytes)} "
        f"in {info.segments} segment file(s) ({info.bytes / max(info.retrieval_calls, 1) / 1024:.1f} KiB/request)")
    out("  log.stats: price at each stage (retrieval rows weighted by 1/sample_prob, so they stand for every candidate)")
    for stage in ("retrieval", "ranking"):
        s = log.stats(stage=stage, feature="price")
        out(f"    {stage:9s} {s.count:7,} rows logged, standing for {s.weight:9,.0f}: mean {s.mean:6.2f}, "
            f"p10 {s.quantile(0.1):6.2f}, p50 {s.quantile(0.5):6.2f}, p90 {s.quantile(0.9):6.2f}")
        figures[f"{stage}_price_mean"] = s.mean
    day2 = figures["day2_start"]
    report = log.drift(["price", "popularity", "ctr_7d"], baseline=(day2 - 24 * HOUR, day2),
                       current=(day2, day2 + 24 * HOUR), stage="ranking")
    out("  log.drift, ranking stage, day 1 -> day 2:")
    for d in report.features:
        verdict = "DRIFTED" if d.drifted else "stable"
        out(f"    {d.feature:10s} PSI {d.psi:5.2f}  KS {d.ks:4.2f} (p {d.ks_pvalue:.1g})  "
            f"mean {d.baseline_mean:8.2f} -> {d.current_mean:8.2f}  {verdict}")
    figures["drifted"] = float(len(report.drifted))


def _export(store: Store, target: Path, figures: dict[str, float], out: Callable[[str], Any]) -> None:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    res = store.log.export(target)
    sizes = {Path(f): Path(f).stat().st_size for f in res.files}
    figures.update(
        export_rows=float(res.rows), export_files=float(len(res.files)), export_bytes=float(sum(sizes.values())),
        export_s=res.seconds, labels_joined=float(res.labels_joined),
        export_rows_retrieval=float(res.rows_by_stage.get("retrieval", 0)),
        export_rows_ranking=float(res.rows_by_stage.get("ranking", 0)),
    )
    out("\n[4/5] export the training set (store.log.export, clicks joined)")
    out(f"  {res.rows:,} rows ({figures['export_rows_retrieval']:,.0f} retrieval, "
        f"{figures['export_rows_ranking']:,.0f} ranking), {res.labels_joined} labels joined "
        f"(a click joins its ranking and its retrieval row), {len(res.files)} Parquet files, {_mib(figures['export_bytes'])} in {res.seconds:.2f} s:")
    for f, size in sorted(sizes.items()):
        out(f"    {f} ({size / 1024:,.0f} KiB)")
    # Read it back as a trainer would: CTR by position of the shown items.
    shown = ds.dataset(target, format="parquet", partitioning="hive").to_table(
        columns=["position", "label_click"], filter=(ds.field("stage") == "ranking") & ds.field("shown"))
    pos = shown["position"].to_numpy()
    clicked = pc.fill_null(shown["label_click"], 0.0).to_numpy()
    ctr = "  ".join(f"{p + 1}: {clicked[pos == p].mean():.1%}" for p in range(SHOWN) if (pos == p).any())
    out(f"  read back with pyarrow: {len(pos):,} shown rows; CTR by position  {ctr}")


def _checks(store: Store, world: World, figures: dict[str, float], out: Callable[[str], Any]) -> None:
    out("\n[5/5] checks")
    users = store.table("users")
    n = len(world.users.ids)
    maybe = users.may_contain(world.users.ids + [f"visitor-{i}" for i in range(n)])
    figures["bloom_fpr"] = float(maybe[n:].mean())
    out(f"  users.may_contain on {2 * n:,} IDs (half never stored): no false negatives: {bool(maybe[:n].all())}, "
        f"false-positive rate {figures['bloom_fpr']:.4f} (configured 0.01)")
    problems = store.verify() + store.log.verify()
    out(f"  verify: {'ok' if not problems else problems} (rows, Bloom filters, index and feature log)")
    figures["problems"] = float(len(problems))
