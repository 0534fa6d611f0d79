"""Storage-engine benchmark: vecstore against raw py-lmdb, measured in one run.

Prints, as ratios against the raw baseline measured in the same process:

1. ``get`` of 5,000 random existing IDs (10 scalar features + a 64-d f16
   vector) into columnar numpy, against a plain loop of ``txn.get`` over the
   same keys in raw py-lmdb (no decoding).  Target: <= 1.5x.
2. ``put`` of 100,000 such rows, against raw ``putmulti`` of the same encoded
   bytes into a fresh LMDB environment.  Target: >= 0.5x the raw rate.
   Beside it, the floor of any put through py-lmdb: the unavoidable steps
   (hash, sort, f16 cast, one bytes object per key and value, putmulti), each
   timed alone, and the best rate ratio their sum allows.
3. ``may_contain`` over 1,000,000 IDs (int array and str list): IDs/s, target
   >= 5M/s, and the false-positive rate measured at full capacity beside the
   configured one.
4. Bytes per row on disk for f32 / f16 / i8 / b1 vectors, on the real 384-d
   sentence embeddings in ../shared/data when present (and their cosine to
   the original after the round trip).

Usage::

    python benchmarks/bench_kv.py            # full run (~1 min)
    python benchmarks/bench_kv.py --quick    # smaller sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lmdb
import numpy as np

import vecstore

ROOT = Path(__file__).resolve().parents[1]
EMBEDDINGS = ROOT.parent / "shared" / "data" / "pydocs_minilm_f16.npy"


def schema() -> dict:
    s = {f"s{i}": vecstore.Scalar("f32") for i in range(10)}
    s["emb"] = vecstore.Vector(64, dtype="f16", metric="cos")
    return s


def columns(rng: np.random.Generator, n: int) -> dict:
    cols = {f"s{i}": rng.random(n, dtype=np.float32) for i in range(10)}
    cols["emb"] = rng.normal(size=(n, 64)).astype(np.float32)
    return cols


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_get(tmp: Path, rng: np.random.Generator, n_rows: int, repeat: int) -> None:
    print(f"\n[get] {n_rows:,} rows of 10 f32 scalars + 64-d f16 vector; 5,000 random existing IDs per call")
    store = vecstore.open(tmp / "get.vs", sync=False)
    t = store.create_table("items", schema(), expected_size=n_rows)
    ids = [f"item-{i}" for i in range(n_rows)]
    for lo in range(0, n_rows, 100_000):
        t.put(ids[lo : lo + 100_000], {k: v for k, v in columns(rng, min(100_000, n_rows - lo)).items()})
    env = store._env.raw
    rows_db = store._env.db(b"t1.rows")
    # Separate fresh query sets for each side: running one right after the other
    # on the same keys would hand the second one a warm CPU cache.
    query_sets = [[ids[i] for i in rng.integers(0, n_rows, 5000)] for _ in range(repeat)]
    raw_sets = [[ids[i] for i in rng.integers(0, n_rows, 5000)] for _ in range(repeat)]

    def ours(q):
        rows = t.get(q)
        cols = rows.to_dict()  # decode every feature to numpy
        assert rows.found.all() and cols["emb"].shape == (5000, 64)

    key_sets = [store.hash_ids(q).astype(">u8").view("V8").tolist() for q in raw_sets]

    def raw(keys):
        with env.begin(buffers=False) as txn:
            for k in keys:
                txn.get(k, db=rows_db)

    for q, k in zip(query_sets[:3], key_sets[:3]):  # warm the page cache for both
        ours(q)
        raw(k)
    ours_t, raw_t = [], []
    for i, (q, k) in enumerate(zip(query_sets, key_sets)):  # interleaved, alternating who goes first
        if i % 2:
            raw_t += timed(lambda: raw(k), 1)
        ours_t += timed(lambda: ours(q), 1)
        if not i % 2:
            raw_t += timed(lambda: raw(k), 1)
    o, r = statistics.median(ours_t), statistics.median(raw_t)
    print(f"  vecstore get + decode : median {o * 1e3:7.3f} ms  (p90 {np.percentile(ours_t, 90) * 1e3:.3f} ms)")
    print(f"  raw txn.get loop      : median {r * 1e3:7.3f} ms  (p90 {np.percentile(raw_t, 90) * 1e3:.3f} ms)")
    print(f"  ratio vecstore / raw  : {o / r:.2f}x   (target <= 1.5x)")
    qi = [np.array([int(s[5:]) for s in q]) for q in query_sets[:5]]
    tables_int = store.create_table("items_int", schema(), expected_size=n_rows)
    for lo in range(0, n_rows, 100_000):
        hi = min(n_rows, lo + 100_000)
        tables_int.put(np.arange(lo, hi), columns(rng, hi - lo))
    int_t = [min(timed(lambda: tables_int.get(q).to_dict(), 3)) for q in qi]
    print(f"  (int64 numpy IDs, vectorized hashing: median {statistics.median(int_t) * 1e3:.3f} ms)")
    store.close()


def bench_put(tmp: Path, rng: np.random.Generator, n: int, repeat: int) -> None:
    print(f"\n[put] {n:,} new rows of 10 f32 scalars + 64-d f16 vector, one call")
    ours_t: list[float] = []
    raw_t: list[float] = []
    raw_append_t: list[float] = []
    upsert_t: list[float] = []
    for r in range(repeat):
        ids = [f"item-{r}-{i}" for i in range(n)]
        cols = columns(rng, n)
        store = vecstore.open(tmp / f"put{r}.vs", sync=False)
        t = store.create_table("items", schema(), expected_size=n)
        t0 = time.perf_counter()
        t.put(ids, cols)
        ours_t.append(time.perf_counter() - t0)
        # The same encoded bytes, in the order vecstore wrote them, put raw.
        with store._env.read() as txn:
            pairs = list(txn.cursor(store._env.db(b"t1.rows")))
        store.close()
        for append, sink in ((False, raw_t), (True, raw_append_t)):
            env = lmdb.open(str(tmp / f"raw{r}-{append}"), map_size=1 << 30, sync=False, metasync=False, max_dbs=2)
            db = env.open_db(b"rows")
            t0 = time.perf_counter()
            with env.begin(write=True) as txn:
                txn.cursor(db).putmulti(pairs, append=append)
            sink.append(time.perf_counter() - t0)
            env.close()
        # An upsert of the same IDs with new prices (rows exist: read, check, merge, rewrite).
        store = vecstore.open(tmp / f"put{r}.vs", sync=False)
        t = store.table("items")
        t0 = time.perf_counter()
        t.put(ids, {"s0": cols["s0"] + 1})
        upsert_t.append(time.perf_counter() - t0)
        store.close()
    o, r_, ra, u = (statistics.median(x) for x in (ours_t, raw_t, raw_append_t, upsert_t))
    print(f"  vecstore put (new IDs)        : median {o * 1e3:7.1f} ms = {n / o:11,.0f} rows/s")
    print(f"  raw putmulti                  : median {r_ * 1e3:7.1f} ms = {n / r_:11,.0f} rows/s")
    print(f"  raw putmulti(append=True)     : median {ra * 1e3:7.1f} ms = {n / ra:11,.0f} rows/s")
    print(f"  rate vecstore / raw putmulti  : {r_ / o:.2f}x   (target >= 0.5x)")
    print(f"  rate vecstore / raw append    : {ra / o:.2f}x")
    print(f"  vecstore partial upsert of the same {n:,} IDs (1 feature): {u * 1e3:.1f} ms = {n / u:,.0f} rows/s")
    print("  (vecstore also hashes the IDs, encodes and validates the columns, checks collisions and logs the keys;")
    print("   raw writes the exact (key, record) bytes vecstore wrote, in the same sorted order)")


def bench_put_floor(tmp: Path, rng: np.random.Generator, n: int, repeat: int) -> None:
    """The least any Python put can do through py-lmdb, step by step, against raw ``putmulti``.

    Each step is timed alone, at its fastest known form, on data already in
    memory; their sum is a lower bound on the put of new str-ID rows (it
    leaves out validation, the collision check, the ID suffix and the change
    log), hence an upper bound on the rate ratio the put target asks about.
    """
    print(f"\n[put floor] {n:,} rows: what a put must do at least with py-lmdb (medians, ms)")
    ids = [f"item-x-{i}" for i in range(n)]
    cols = columns(rng, n)
    store = vecstore.open(tmp / "floor.vs", sync=False)
    W = store.create_table("items", schema(), expected_size=n).schema.record_size
    seed = store.seed
    store.close()
    keys = vecstore.hash_ids(ids, seed=seed)
    order = np.argsort(keys)
    recs = np.zeros((n, W), dtype=np.uint8)
    key_m = keys[order].astype(">u8").view("V8")
    val_m = recs.view(f"V{W}").ravel()
    kb, vb = key_m.tolist(), val_m.tolist()
    pairs = list(zip(kb, vb))

    def raw_put(append: bool) -> float:
        env = lmdb.open(str(tmp / f"floor-{time.perf_counter_ns()}"), map_size=1 << 30, sync=False, metasync=False, max_dbs=2)
        db = env.open_db(b"rows")
        t0 = time.perf_counter()
        with env.begin(write=True) as txn:
            txn.cursor(db).putmulti(pairs, append=append)
        took = time.perf_counter() - t0
        env.close()
        return took

    steps = {
        "hash the str IDs (XXH3-64, vectorized)": lambda: vecstore.hash_ids(ids, seed=seed),
        "sort the keys": lambda: np.argsort(keys),
        "f32 -> f16 of the vectors": lambda: cols["emb"].astype(np.float16),
        "key and value bytes objects (tolist)": lambda: (key_m.tolist(), val_m.tolist()),
    }
    total = 0.0
    for name, fn in steps.items():
        took = statistics.median(timed(fn, repeat))
        total += took
        print(f"  {name:40s}: {took * 1e3:7.1f}")
    appended = statistics.median([raw_put(True) for _ in range(repeat)])
    raw = statistics.median([raw_put(False) for _ in range(repeat)])
    total += appended
    print(f"  {'putmulti(append=True) of those pairs':40s}: {appended * 1e3:7.1f}")
    print(f"  {'sum: the floor of a put':40s}: {total * 1e3:7.1f}")
    print(f"  raw putmulti (the target's baseline)    : {raw * 1e3:7.1f}")
    print(f"  best reachable rate vecstore / raw      : {raw / total:.2f}x   (target >= 0.5x)")


def bench_bloom(tmp: Path, rng: np.random.Generator, n: int, repeat: int) -> None:
    print(f"\n[may_contain] table filled to its expected_size of {n:,} IDs, bloom_fpr 0.01")
    store = vecstore.open(tmp / "bloom.vs", sync=False)
    t = store.create_table("t", {"x": vecstore.Scalar("u8")}, expected_size=n, bloom_fpr=0.01)
    ids = np.arange(n, dtype=np.int64)
    t.may_contain([-1])  # build the filter while empty, so it fills to exactly its capacity
    for lo in range(0, n, 250_000):
        t.put(ids[lo : lo + 250_000], {"x": np.zeros(min(250_000, n - lo), np.uint8)})
    absent = np.arange(n, 2 * n, dtype=np.int64) * 7 + 10**12
    t.may_contain(absent[:10])
    best = min(timed(lambda: t.may_contain(absent), repeat))
    print(f"  {n:,} int64 IDs (numpy)  : {best * 1e3:7.1f} ms = {n / best / 1e6:6.2f} M IDs/s  (target >= 5M/s)")
    str_ids = [f"user-{i}" for i in range(n, 2 * n)]
    best_s = min(timed(lambda: t.may_contain(str_ids), max(1, repeat // 2)))
    print(f"  {n:,} str IDs (list)     : {best_s * 1e3:7.1f} ms = {n / best_s / 1e6:6.2f} M IDs/s")
    keys = store.hash_ids(absent)
    bloom = t._sync_bloom()
    best_k = min(timed(lambda: bloom.may_contain(keys), repeat))
    print(f"  probe only (pre-hashed)  : {best_k * 1e3:7.1f} ms = {n / best_k / 1e6:6.2f} M keys/s")
    assert t.may_contain(ids).all()
    fpr = t.may_contain(absent).mean()
    info = t.info().bloom
    print(f"  false-positive rate at full capacity: measured {fpr:.5f}, configured 0.01000, "
          f"estimated {info.estimated_fpr:.5f}; no false negatives over {n:,} stored IDs")
    print(f"  filter size {info.bytes / 2**20:.2f} MiB ({info.bytes * 8 / n:.2f} bits/ID), {info.num_filters} filter(s)")
    store.close()


def bench_bytes(tmp: Path, rng: np.random.Generator, quick: bool) -> None:
    if EMBEDDINGS.exists():
        vecs = np.load(EMBEDDINGS).astype(np.float32)
        if quick:
            vecs = vecs[:5000]
        src = f"real all-MiniLM-L6-v2 embeddings from {EMBEDDINGS.name}"
    else:
        vecs = rng.normal(size=(5000 if quick else 27_000, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        src = "random unit vectors (shared data not found)"
    n, d = vecs.shape
    print(f"\n[bytes/row] {n:,} x {d}-d {src}; one Vector feature, int IDs")
    print(f"  {'codec':5s} {'stored B/vec':>12s} {'LMDB B/row':>11s} {'file B/row':>11s} {'mean cos':>9s} {'min cos':>9s}")
    for dtype in ("f32", "f16", "i8", "b1"):
        path = tmp / f"bytes-{dtype}.vs"
        with vecstore.open(path, sync=False) as s:
            t = s.create_table("v", {"e": vecstore.Vector(d, dtype=dtype)}, expected_size=n)
            t.put(np.arange(n), {"e": vecs})
            back = t.get(np.arange(n))["e"]
            info = t.info()
            rows_bytes = info.lmdb_bytes
        cos = (back * vecs).sum(1) / (np.linalg.norm(back, axis=1) * np.linalg.norm(vecs, axis=1))
        file_bytes = os.path.getsize(path / "data.mdb")
        print(f"  {dtype:5s} {info.features[0].bytes_per_row:12d} {rows_bytes / n:11.1f} {file_bytes / n:11.1f} "
              f"{cos.mean():9.5f} {cos.min():9.5f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"vecstore {vecstore.__version__}, lmdb {lmdb.__version__} (LMDB {'.'.join(map(str, lmdb.version()))}), "
          f"numpy {np.__version__}, Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="vecstore-bench-") as d:
        tmp = Path(d)
        bench_get(tmp, rng, 20_000 if args.quick else 200_000, 10 if args.quick else 40)
        bench_put(tmp, rng, 20_000 if args.quick else 100_000, 1 if args.quick else 5)
        bench_put_floor(tmp, rng, 20_000 if args.quick else 100_000, 3 if args.quick else 7)
        bench_bloom(tmp, rng, 100_000 if args.quick else 1_000_000, 3 if args.quick else 7)
        bench_bytes(tmp, rng, args.quick)
    return None


if __name__ == "__main__":
    sys.exit(main())
