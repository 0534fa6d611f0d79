"""Feature-log benchmark: the serving-path cost of logging, the export rate, bytes on disk.

Prints:

1. **Requests/s on one core.**  One request = ``log.retrieval`` of 5,000
   candidates (1 % sampled, features read for 10 features) + ``log.ranking``
   of the top 5 with all 10 features (shown = those 5) + one ``log.label``.
   One serving thread, durability as documented: every call is written to
   the segment before it returns (a process crash loses nothing), and the
   log's background flusher (``flush_seconds``, default 0.5 s here) fsyncs
   what was logged, which bounds what an OS crash or power loss can lose to
   about half a second; each round ends with one more ``log.flush()``,
   timed.  For int IDs the same rounds are then repeated with ``flush()``
   called inline by the serving thread every 1,000 requests (about the same
   window), as a service without the background flusher would; that is
   what earlier versions of this benchmark printed.  Printed for int64 candidate IDs
   (what an ANN index returns) and for str IDs, as wall-clock requests/s and
   as CPU time per request (``time.process_time``), the single-core cost
   whatever else the machine runs.  Target: >= 2,000 requests/s.
2. **Log bytes per request** on disk, per call kind.
3. **Export rate**: ``log.export`` of every logged row to zstd Parquet, in
   candidate rows/s (target >= 1M/s), beside the rate of plain
   ``pyarrow.parquet.write_table`` writing the same rows (already in memory,
   same schema, zstd), and the peak Arrow memory the export used.
4. How long ``stats`` and ``drift`` take over the whole log.

Usage::

    python benchmarks/bench_log.py            # full run (~2 min)
    python benchmarks/bench_log.py --flush-every 1000 --flush-seconds 0   # inline flush only
    python benchmarks/bench_log.py --quick    # smaller sizes, a smoke test
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

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

import vecstore
from vecstore.featurelog.export import FIXED_SCHEMA

N_CANDIDATES = 5000
SAMPLE = 0.01
TOP = 5


def schema() -> dict:
    s: dict = {name: vecstore.Scalar("f32") for name in ("price", "ctr_30d", "popularity", "freshness", "rating", "discount", "margin")}
    s["ctr_7d"] = vecstore.Scalar("f16")
    s["category"] = vecstore.Category()
    s["embedding"] = vecstore.Vector(32, dtype="i8", metric="cos")
    return s  # 10 features


def fill(table: vecstore.Table, rng: np.random.Generator, n: int, str_ids: bool) -> None:
    for lo in range(0, n, 100_000):
        m = min(100_000, n - lo)
        ids = np.arange(lo, lo + m)
        cols: dict = {f: rng.random(m, dtype=np.float32) * 100 for f in ("price", "ctr_30d", "popularity", "freshness", "rating", "discount", "margin")}
        cols["ctr_7d"] = rng.random(m)
        cols["category"] = [("books", "toys", "food", "garden")[i % 4] for i in range(m)]
        cols["embedding"] = rng.normal(size=(m, 32)).astype(np.float32)
        table.put([f"item-{i}" for i in ids] if str_ids else ids, cols)


def run_requests(log: vecstore.FeatureLog, cands: list, scores: list, n_req: int, start: int, flush_every: int) -> tuple[float, float]:
    """Log n_req requests; returns (wall seconds, CPU seconds).

    The ranker's top 5 of each candidate set is picked before the clock starts:
    only logging is timed.
    """
    feats = None  # all 10 features at both stages
    tops = []
    for c, s in zip(cands, scores):
        top = np.argsort(s)[::-1][:TOP]
        tops.append((c[top] if isinstance(c, np.ndarray) else [c[i] for i in top], s[top]))
    t0, c0 = time.perf_counter(), time.process_time()
    for r in range(start, start + n_req):
        c, s = cands[r % len(cands)], scores[r % len(scores)]
        top_ids, top_scores = tops[r % len(tops)]
        rid = f"req-{r}"
        log.retrieval(rid, c, s, table="items", user=f"u-{r % 1000}", source="ann", features=feats, sample=SAMPLE,
                      context={"surface": "home"})
        log.ranking(rid, top_ids, top_scores, table="items", features=feats, shown=top_ids)
        log.label(rid, top_ids[0], "click", 1.0)
        if flush_every and (r + 1) % flush_every == 0:
            log.flush()
    log.flush()
    return time.perf_counter() - t0, time.process_time() - c0


def durability(flush_every: int, flush_seconds: float) -> str:
    ways = []
    if flush_seconds:
        ways.append(f"background flush every {flush_seconds:g} s")
    if flush_every:
        ways.append(f"flush() inline every {flush_every:,} requests")
    return " + ".join(ways) or "no flush() until the end of each round"


def timed_rounds(log: vecstore.FeatureLog, cands: list, scores: list, n_req: int, repeat: int, done: int,
                 flush_every: int) -> int:
    """Log ``repeat`` rounds of ``n_req`` requests, printing each and the medians; returns requests done."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = run_requests(log, cands, scores, n_req, done, flush_every)
        done += n_req
        walls.append(n_req / wall)
        cpus.append(cpu / n_req)
        print(f"  {n_req:,} requests: {n_req / wall:8,.0f} requests/s wall, {cpu / n_req * 1e6:6.0f} us CPU/request "
              f"(= {n_req / cpu:,.0f} requests per CPU-second)")
    print(f"  median {statistics.median(walls):,.0f} requests/s wall (range {min(walls):,.0f} .. {max(walls):,.0f}); "
          f"median CPU {statistics.median(cpus) * 1e6:.0f} us/request = {1 / statistics.median(cpus):,.0f} requests/CPU-s "
          f"(target >= 2,000/s)")
    return done


def bench_logging(tmp: Path, rng: np.random.Generator, n_items: int, n_req: int, repeat: int, flush_every: int,
                  flush_seconds: float, str_ids: bool) -> Path:
    kind = "str IDs ('item-<n>')" if str_ids else "int64 IDs (numpy)"
    print(f"\n[log] {n_items:,} items x 10 features; request = retrieval of {N_CANDIDATES:,} candidates "
          f"({SAMPLE:.0%} sampled) + ranking of {TOP} (all features) + 1 label; {kind}; "
          f"{durability(flush_every, flush_seconds)}")
    path = tmp / ("str.vs" if str_ids else "int.vs")
    store = vecstore.open(path, sync=False)
    table = store.create_table("items", schema(), expected_size=n_items)
    fill(table, rng, n_items, str_ids)
    pool = [rng.integers(0, n_items, N_CANDIDATES) for _ in range(64)]
    cands = [[f"item-{i}" for i in c] for c in pool] if str_ids else pool
    scores = [rng.random(N_CANDIDATES, dtype=np.float32) for _ in range(64)]
    log = store.log
    log.flush_seconds = flush_seconds or None
    run_requests(log, cands, scores, 200, 10**8, flush_every)  # warm up (caches, first segment, index)
    done = timed_rounds(log, cands, scores, n_req, repeat, 0, flush_every)
    if not str_ids and flush_seconds and not flush_every:
        print("  the same, with flush() called inline every 1,000 requests instead of the background flusher:")
        log.flush_seconds = None
        done = timed_rounds(log, cands, scores, n_req, repeat, done, 1000)
        log.flush_seconds = flush_seconds
    # One request's calls, each timed alone (CPU), to show where the time goes.
    c, s = cands[0], scores[0]
    top = np.argpartition(s, -TOP)[-TOP:]
    top_ids = c[top] if isinstance(c, np.ndarray) else [c[i] for i in top]
    parts = {
        "retrieval": lambda i: log.retrieval(f"x{i}", c, s, table="items", user="u", source="ann", sample=SAMPLE, context={"surface": "home"}),
        "ranking": lambda i: log.ranking(f"x{i}", top_ids, s[top], table="items", shown=top_ids),
        "label": lambda i: log.label(f"x{i}", top_ids[0], "click", 1.0),
        "table.get(50 IDs)": lambda i: table.get(cands[i % 64][:50]),
        "table.get(5 IDs)": lambda i: table.get(top_ids),
    }
    line = []
    for name, fn in parts.items():
        c0 = time.process_time()
        for i in range(300):
            fn(i)
        line.append(f"{name} {(time.process_time() - c0) / 300 * 1e6:.0f}")
    print("  CPU us per call: " + ", ".join(line))
    log.flush()
    info = log.info()
    seg_bytes = info.bytes
    total = info.retrieval_calls  # one retrieval per request (the per-call timings above logged 300 more of each)
    print(f"  log bytes per request on disk: {seg_bytes / total:,.0f} B "
          f"({seg_bytes / 2**20:,.1f} MiB of segments for {total:,} requests; index {info.index_bytes / 2**20:.1f} MiB)")
    per_kind = frame_bytes(store.path)
    print("  per call: " + ", ".join(f"{k} {v:,.0f} B" for k, v in per_kind.items()))
    store.close()
    return path


def frame_bytes(store_path: Path) -> dict[str, float]:
    from vecstore.featurelog.frames import iter_frames

    sizes: dict[int, list[int]] = {}
    for seg in sorted((store_path / "logs" / "segments").glob("*.vsl"))[:1]:
        for f in iter_frames(seg, load=lambda kind, ts, off: False):
            sizes.setdefault(f.kind, []).append(f.end - f.offset)
    names = {1: "retrieval", 2: "ranking", 3: "label"}
    return {names[k]: statistics.mean(v) for k, v in sizes.items() if k in names}


def bench_export(tmp: Path, store_path: Path) -> None:
    print("\n[export] every logged row to zstd Parquet, Hive-partitioned, labels joined")
    with vecstore.open(store_path) as store:
        log = store.log
        pool = pa.default_memory_pool()
        base = pool.bytes_allocated()
        pool.release_unused()
        res = log.export(tmp / "export")
        peak = pool.max_memory()
        rate = res.rows / res.seconds
        print(f"  log.export            : {res.rows:,} rows ({res.calls:,} calls) in {res.seconds:6.2f} s = {rate:11,.0f} rows/s  "
              f"(target >= 1M/s), {len(res.files)} files, {sum(os.path.getsize(f) for f in res.files) / 2**20:.1f} MiB")
        t = time.perf_counter()
        st = log.stats(stage="retrieval", feature="price")
        t_stats = time.perf_counter() - t
        t = time.perf_counter()
        now = time.time()
        log.drift(None, baseline=(now - 7200, now - 3600), current=(now - 3600, now + 3600), stage="ranking")
        t_drift = time.perf_counter() - t
    # The same rows, already in memory with the same schema, written by pyarrow alone:
    # with the export's writer options, and with pyarrow's defaults.
    tables = [pq.read_table(f) for f in res.files]
    rows = sum(t.num_rows for t in tables)
    dictionary = ["request_id", "user", "table", "source"] + [
        f.name for f in res.schema if f.name not in ("item", "shown", "sampled") and f.name not in FIXED_SCHEMA.names
        and (pa.types.is_string(f.type) or pa.types.is_boolean(f.type))
    ]
    for label, opts in (("same options", {"use_dictionary": dictionary}), ("pyarrow defaults", {})):
        t0 = time.perf_counter()
        for i, tbl in enumerate(tables):
            pq.write_table(tbl, tmp / f"raw-{i}.parquet", compression="zstd", row_group_size=262_144, **opts)
        raw = time.perf_counter() - t0
        print(f"  pyarrow write_table   : {rows:,} rows in {raw:6.2f} s = {rows / raw:11,.0f} rows/s  "
              f"(same rows already in memory, zstd, {label}); export / this = {rate / (rows / raw):.2f}x")
    print(f"  peak Arrow memory during the export: {max(peak - base, 0) / 2**20:.0f} MiB (the log on disk: "
          f"{sum(p.stat().st_size for p in (store_path / 'logs' / 'segments').glob('*.vsl')) / 2**20:.0f} MiB)")
    n_ds = ds.dataset(res, format="parquet", partitioning="hive").count_rows()
    assert n_ds == res.rows
    print(f"  stats over the whole log: {t_stats * 1e3:.1f} ms ({st.count:,} sampled rows); "
          f"drift of all 9 numeric features: {t_drift * 1e3:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    ap.add_argument("--flush-every", type=int, default=0,
                    help="requests between inline log.flush() (fsync) calls by the serving thread (default 0: none)")
    ap.add_argument("--flush-seconds", type=float, default=0.5,
                    help="log.flush_seconds, the background flusher's period: about what an OS crash may lose "
                         "(default 0.5; 0: no background flusher)")
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds per ID kind")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"vecstore {vecstore.__version__}, numpy {np.__version__}, pyarrow {pa.__version__}, "
          f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    n_items = 20_000 if args.quick else 200_000
    n_req = 500 if args.quick else 2000
    with tempfile.TemporaryDirectory(prefix="vecstore-bench-log-") as d:
        tmp = Path(d)
        int_store = bench_logging(tmp, rng, n_items, n_req, args.repeat, args.flush_every, args.flush_seconds,
                                  str_ids=False)
        bench_logging(tmp, rng, n_items, n_req, args.repeat, args.flush_every, args.flush_seconds, str_ids=True)
        bench_export(tmp, int_store)


if __name__ == "__main__":
    sys.exit(main())
