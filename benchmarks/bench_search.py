"""Vector-search benchmark: vecstore against bare usearch (and faiss/hnswlib when installed).

Measured in one run, on the real 384-d sentence embeddings in
``../shared/data`` (1,000 held-out rows as queries; random unit vectors if the
file is missing) and on a synthetic 1M x 128 set:

1. Store overhead: ``items.search`` queries/s, 1 thread, single queries and
   one batch, against bare usearch with the same index parameters (target
   >= 0.9x), and recall@10 against exact search (target >= 0.95).
2. f32, f16 and i8 (default rerank) indexes: recall@10 and QPS (target: i8
   recall >= 0.98 with QPS >= the f32 index's).
3. Peers at matched parameters (M=16, ef_construction=128, ef=64): faiss
   ``IndexHNSWFlat`` and hnswlib, when importable (``pip install -e '.[bench]'``).
4. Filtered search at selectivities 0.1%, 1%, 10%, 50%: recall@10 and QPS.
5. Synthetic 1M x 128: build rate (vectors/s, all cores), index bytes, and the
   open time of a saved index, loaded vs memory-mapped (view).

Figures are printed and written to ``benchmarks/results/search.json`` (the
docs plot recall against QPS from it).

Usage::

    python benchmarks/bench_search.py               # full run (several minutes)
    python benchmarks/bench_search.py --quick       # smaller sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from usearch.index import Index

import vecstore

ROOT = Path(__file__).resolve().parents[1]
EMBEDDINGS = ROOT.parent / "shared" / "data" / "pydocs_minilm_f16.npy"
RESULTS = ROOT / "benchmarks" / "results" / "search.json"
K = 10


def recall(found: list, truth: list) -> float:
    """Mean share of each query's true neighbours found (over min(k, matching rows) under a filter)."""
    return float(np.mean([len(set(np.asarray(a).tolist()) & set(np.asarray(b).tolist())) / max(len(b), 1) for a, b in zip(found, truth)]))


def qps_single(fn, queries: np.ndarray, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for q in queries:
            fn(q)
        best = min(best, time.perf_counter() - t0)
    return len(queries) / best


def qps_batch(fn, queries: np.ndarray, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(queries)
        best = min(best, time.perf_counter() - t0)
    return len(queries) / best


def load_real(quick: bool) -> tuple[np.ndarray, np.ndarray, str]:
    if EMBEDDINGS.exists():
        e = np.load(EMBEDDINGS).astype(np.float32)
        name = f"pydocs MiniLM {e.shape[0]}x{e.shape[1]}"
    else:
        rng = np.random.default_rng(0)
        e = rng.normal(size=(27_000, 384)).astype(np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        name = "random unit vectors (shared data missing)"
    if quick:
        e = e[:8000]
    return e[:-1000], e[-1000:], name


def store_section(tmp: Path, base: np.ndarray, queries: np.ndarray, out: dict) -> None:
    print(f"\n== store overhead and index dtypes ({len(base)} vectors, {len(queries)} queries, k={K}, 1 thread) ==")
    ids = [f"doc-{i}" for i in range(len(base))]
    with vecstore.open(tmp / "real.vs", map_size=1 << 30) as store:
        t_exact = store.create_table("exact", {"v": vecstore.Vector(base.shape[1], dtype="f16", index=None)})
        t_exact.put(ids, {"v": base})
        truth = t_exact.search(queries, k=K, exact=True).ids
        truth_idx = [[int(i[4:]) for i in row] for row in truth]  # "doc-<row>" -> row number
        rows = []
        for idx_dtype in ("f32", "f16", "i8"):
            t = store.create_table(f"items_{idx_dtype}", {"v": vecstore.Vector(base.shape[1], dtype="f16", index=vecstore.HNSW(dtype=idx_dtype))})
            t.put(ids, {"v": base})
            t0 = time.perf_counter()
            t.rebuild_index("v")
            build_s = time.perf_counter() - t0
            hits = t.search(queries, k=K, threads=1)
            r = recall(hits.ids, truth)
            ours_single = qps_single(lambda q: t.search(q, k=K), queries[:300])
            ours_batch = qps_batch(lambda q: t.search(q, k=K, threads=1), queries)
            # Bare usearch, same parameters, same vectors (as the store hands them over).
            bare = Index(ndim=base.shape[1], metric="cos", dtype=idx_dtype, connectivity=16, expansion_add=128, expansion_search=64)
            bare.add(np.arange(len(base), dtype=np.uint64), base[:], threads=0)
            bm = bare.search(queries, K, threads=1)
            bare_r = recall([k[:c] for k, c in zip(bm.keys, bm.counts)], truth_idx)
            bare_single = qps_single(lambda q: bare.search(q, K, threads=1), queries[:300])  # its fastest single-query setting
            bare_batch = qps_batch(lambda q: bare.search(q, K, threads=1), queries)
            row = {
                "index": idx_dtype,
                "rerank": 4 if idx_dtype == "i8" else 0,
                "recall": r,
                "qps_single": ours_single,
                "qps_batch": ours_batch,
                "bare_recall": bare_r,
                "bare_qps_single": bare_single,
                "bare_qps_batch": bare_batch,
                "build_s": build_s,
                "index_bytes": t.info().indexes[0].file_bytes,
            }
            rows.append(row)
            print(
                f"  {idx_dtype:>3} index: recall@10 {r:.4f} (bare usearch {bare_r:.4f}); QPS single {ours_single:,.0f} vs bare {bare_single:,.0f}"
                f" = {ours_single / bare_single:.2f}x; batch {ours_batch:,.0f} vs bare {bare_batch:,.0f} = {ours_batch / bare_batch:.2f}x;"
                f" build {build_s:.1f} s; file {row['index_bytes'] / 2**20:.1f} MiB"
            )
        out["indexes"] = rows
        f32 = next(r for r in rows if r["index"] == "f32")
        i8 = next(r for r in rows if r["index"] == "i8")
        print(f"  i8 + rerank 4 vs f32 index: recall {i8['recall']:.4f} vs {f32['recall']:.4f}; batch QPS ratio {i8['qps_batch'] / f32['qps_batch']:.2f}x, single {i8['qps_single'] / f32['qps_single']:.2f}x")
        curve = []
        t = store.table("items_f16")
        for ef in (16, 32, 64, 128, 256):
            r = recall(t.search(queries, k=K, ef=ef, threads=1).ids, truth)
            q = qps_batch(lambda qq: t.search(qq, k=K, ef=ef, threads=1), queries)
            curve.append({"system": "vecstore f16", "ef": ef, "recall": r, "qps": q})
        ti8 = store.table("items_i8")
        for ef, rr in ((32, 2), (64, 4), (128, 4), (128, 8)):
            r = recall(ti8.search(queries, k=K, ef=ef, rerank=rr, threads=1).ids, truth)
            q = qps_batch(lambda qq: ti8.search(qq, k=K, ef=ef, rerank=rr, threads=1), queries)
            curve.append({"system": f"vecstore i8 rerank {rr}", "ef": ef, "recall": r, "qps": q})
        peers(base, queries, truth_idx, curve)
        out["curve"] = curve
        print("  recall/QPS curve (batch, 1 thread):")
        for c in curve:
            print(f"    {c['system']:<24} ef={c['ef']:<4} recall {c['recall']:.4f}  QPS {c['qps']:,.0f}")
        filtered(store, base, queries, ids, out)


def peers(base: np.ndarray, queries: np.ndarray, truth_idx: list, curve: list) -> None:
    norm = base / np.linalg.norm(base, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    try:
        import faiss

        faiss.omp_set_num_threads(1)
        ix = faiss.IndexHNSWFlat(base.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        ix.hnsw.efConstruction = 128
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        ix.add(norm)
        faiss.omp_set_num_threads(1)
        for ef in (32, 64, 128, 256):
            ix.hnsw.efSearch = ef
            _, found = ix.search(qn, K)
            curve.append({"system": "faiss HNSWFlat", "ef": ef, "recall": recall(found, truth_idx), "qps": qps_batch(lambda q: ix.search(q, K), qn)})
    except ImportError:
        print("  faiss not installed: pip install -e '.[bench]' to compare")
    try:
        import hnswlib

        h = hnswlib.Index(space="cosine", dim=base.shape[1])
        h.init_index(max_elements=len(base), ef_construction=128, M=16)
        h.add_items(base, np.arange(len(base)), num_threads=os.cpu_count() or 1)
        h.set_num_threads(1)
        for ef in (32, 64, 128, 256):
            h.set_ef(ef)
            found, _ = h.knn_query(queries, k=K)
            curve.append({"system": "hnswlib", "ef": ef, "recall": recall(found, truth_idx), "qps": qps_batch(lambda q: h.knn_query(q, k=K), queries)})
    except ImportError:
        print("  hnswlib not installed: pip install -e '.[bench]' to compare")


def filtered(store, base: np.ndarray, queries: np.ndarray, ids: list, out: dict) -> None:
    print("\n== filtered search (f16 index, k=10, 1 thread; 200 queries) ==")
    n = len(base)
    rng = np.random.default_rng(0)
    # bucket in [0, 1000): a 'bucket < s*1000' predicate selects s of the rows.
    store.create_table("filt", {"v": vecstore.Vector(base.shape[1], dtype="f16"), "bucket": vecstore.Scalar("i32")})
    tf = store.table("filt")
    tf.put(ids, {"v": base, "bucket": rng.integers(0, 1000, n).astype(np.int32)})
    tf.rebuild_index("v")
    q = queries[:200]
    rows = []
    for sel in (0.001, 0.01, 0.1, 0.5):
        where = {"bucket": ("<", int(sel * 1000))}
        truth = tf.search(q, k=K, where=where, exact=True).ids
        hits = tf.search(q, k=K, where=where, threads=1).ids
        r = recall(hits, truth)
        full = float(np.mean([len(h) == min(K, len(tr)) for h, tr in zip(hits, truth)]))
        qs = qps_single(lambda x: tf.search(x, k=K, where=where), q[:100], repeat=2)
        rows.append({"selectivity": sel, "recall": r, "qps_single": qs, "full_results": full})
        print(f"  selectivity {sel:>6.1%}: recall@10 {r:.4f}, QPS {qs:,.0f}, queries with k hits {full:.0%}")
    out["filtered"] = rows


def synthetic_section(tmp: Path, n: int, out: dict) -> None:
    print(f"\n== synthetic {n:,} x 128 (f32 stored, f32 index, all cores) ==")
    rng = np.random.default_rng(0)
    with vecstore.open(tmp / "synth.vs", map_size=1 << 31) as store:
        t = store.create_table("s", {"v": vecstore.Vector(128, dtype="f32", index=vecstore.HNSW())}, expected_size=n)
        t0 = time.perf_counter()
        for lo in range(0, n, 100_000):
            m = min(100_000, n - lo)
            t.put(np.arange(lo, lo + m), {"v": rng.normal(size=(m, 128)).astype(np.float32)})
        put_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        info = t.rebuild_index("v")
        build_s = time.perf_counter() - t0
        queries = rng.normal(size=(200, 128)).astype(np.float32)
        truth = t.search(queries, k=K, exact=True).keys
        r = recall(t.search(queries, k=K, threads=1).keys, truth)
        qs = qps_single(lambda q: t.search(q, k=K), queries, repeat=1)
    snap = sorted((tmp / "synth.vs" / "index").glob("*.usearch"))[-1]
    t0 = time.perf_counter()
    Index.restore(str(snap), view=False)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    Index.restore(str(snap), view=True)
    view_s = time.perf_counter() - t0
    row = {
        "n": n, "put_rows_per_s": n / put_s, "build_vectors_per_s": n / build_s, "index_bytes": info.file_bytes,
        "recall": r, "qps_single": qs, "open_load_s": load_s, "open_view_s": view_s,
    }
    out["synthetic"] = row
    print(f"  put {n / put_s:,.0f} rows/s; index build {n / build_s:,.0f} vectors/s ({build_s:.1f} s); index file {info.file_bytes / 2**20:.1f} MiB")
    print(f"  recall@10 {r:.4f} (random Gaussian vectors are the hardest case for HNSW), QPS single {qs:,.0f}")
    print(f"  open saved index: load {load_s * 1000:.1f} ms, view (mmap) {view_s * 1000:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes for a smoke test")
    ap.add_argument("--synthetic", type=int, default=None, help="rows in the synthetic set (default 1,000,000; 50,000 with --quick)")
    args = ap.parse_args()
    n_synth = args.synthetic or (50_000 if args.quick else 1_000_000)
    base, queries, name = load_real(args.quick)
    print(f"vecstore {vecstore.__version__}, usearch {__import__('usearch').__version__}, Python {platform.python_version()}, {os.cpu_count()} cores")
    print(f"data: {name}")
    out: dict = {"data": name, "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="vecstore-bench-") as tmp:
        store_section(Path(tmp), base, queries, out)
        synthetic_section(Path(tmp), n_synth, out)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
