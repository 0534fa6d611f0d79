"""Sidecar benchmark: vecstore's server over a Unix socket, beside Redis for the same feature reads.

Prints, all measured in one run (ratios compare figures taken side by side):

1. ``get`` latency, p50 and p99, of 100 and of 1,000 random existing entities
   (10 f32 scalars + a 64-d f16 vector) through ``vecstore.connect`` over a
   Unix socket, decoded into numpy columns (``rows.to_dict()``).  Beside it,
   when ``redis-server`` and redis-py are installed, ``MGET`` of the same rows
   stored in Redis as msgpack maps (the scalars and the f16 vector's bytes),
   each unpacked with ``msgpack.unpackb``; the two are timed alternately, query
   by query, so both see the same machine.  Targets: ours <= 1.0x Redis at
   100 entities and <= 0.5x at 1,000.
2. Requests/s of small ``get``s (10 IDs) with 1 and with 8 concurrent client
   processes (Redis ``MGET`` of the same beside it).
3. ``search`` (k=10, HNSW, 64-d, one thread) over the socket against the same
   search in process: the added latency at p50.  Target: <= 150 us per query.
   Queries run in blocks of 100, alternating in process and over the socket
   (the first 10 of each block not counted), so each side runs with its own
   index warm, as it would in a service that uses only one of them; the
   server's own time for the op (from its ``stats``) is printed beside it.
4. ``ping`` round trips, the floor under every remote call.

The server runs as ``python -m vecstore.server`` in its own process, as a
sidecar would; Redis runs with persistence off.

Usage::

    python benchmarks/bench_server.py            # full run (~1 min)
    python benchmarks/bench_server.py --quick    # smaller sizes, for a smoke test

redis-py is not a dependency of vecstore: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np

import vecstore

try:
    import redis
except ImportError:  # pragma: no cover - optional
    redis = None

ROOT = Path(__file__).resolve().parents[1]


def schema() -> dict:
    s = {f"s{i}": vecstore.Scalar("f32") for i in range(10)}
    s["emb"] = vecstore.Vector(64, dtype="f16", metric="cos")
    return s


def pct(xs: list[float]) -> tuple[float, float]:
    a = np.array(xs) * 1e6
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def wait_for(path: Path, proc: subprocess.Popen, what: str) -> None:
    for _ in range(3000):
        if path.exists():
            return
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.01)
    raise SystemExit(f"{what} did not start")


def build(tmp: Path, n_rows: int, rng: np.random.Generator) -> tuple[list[str], dict]:
    store = vecstore.open(tmp / "bench.vs", sync=False)
    t = store.create_table("items", schema(), expected_size=n_rows)
    ids = [f"item-{i}" for i in range(n_rows)]
    cols = {f"s{i}": rng.random(n_rows, dtype=np.float32) for i in range(10)}
    cols["emb"] = rng.normal(size=(n_rows, 64)).astype(np.float32)
    for lo in range(0, n_rows, 50_000):
        t.put(ids[lo : lo + 50_000], {k: v[lo : lo + 50_000] for k, v in cols.items()})
    v = store.create_table("vectors", {"emb": vecstore.Vector(64, dtype="f32", metric="cos")})
    n_vec = min(n_rows, 20_000)
    v.put(list(range(n_vec)), {"emb": rng.normal(size=(n_vec, 64)).astype(np.float32)})
    v.search(np.ones(64, np.float32), k=10)  # build and save the index once
    store.close()
    return ids, cols


def load_redis(r, ids: list[str], cols: dict) -> None:
    pipe = r.pipeline(transaction=False)
    emb16 = cols["emb"].astype(np.float16)
    scal = np.stack([cols[f"s{i}"] for i in range(10)], axis=1).tolist()
    for i, key in enumerate(ids):
        row = {f"s{j}": scal[i][j] for j in range(10)}
        row["emb"] = emb16[i].tobytes()
        pipe.set(key, msgpack.packb(row))
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()


def bench_latency(items, r, ids: list[str], rng: np.random.Generator, repeat: int) -> None:
    print("\n[get latency] Unix socket; random existing IDs; microseconds")
    heads = ("ours p50", "ours p99", "", "redis p50", "redis p99", "", "ratio p50", "ratio p99")
    print(f"  {'entities':>8}  " + " ".join(f"{h:>9}" if h else " " for h in heads))
    for n in (100, 1000):
        ours, theirs = [], []
        for it in range(repeat + 20):
            q = [ids[i] for i in rng.integers(0, len(ids), n)]
            t0 = time.perf_counter()
            rows = items.get(q)
            rows.to_dict()  # every feature decoded into numpy
            t1 = time.perf_counter()
            if r is not None:
                vals = r.mget(q)
                [msgpack.unpackb(v) for v in vals]
                t2 = time.perf_counter()
            if it >= 20:  # warm-up excluded
                ours.append(t1 - t0)
                if r is not None:
                    theirs.append(t2 - t1)
        o50, o99 = pct(ours)
        if r is None:
            print(f"  {n:>8}  {o50:9.0f} {o99:9.0f}   {'(no redis)':>19}")
            continue
        r50, r99 = pct(theirs)
        target = 1.0 if n == 100 else 0.5
        print(f"  {n:>8}  {o50:9.0f} {o99:9.0f}   {r50:9.0f} {r99:9.0f}   {o50 / r50:8.2f}x {o99 / r99:8.2f}x"
              f"   (target p50 <= {target}x: {'ok' if o50 / r50 <= target else 'MISSED'})")


def _throughput_worker(kind: str, url: str, ids: list[str], seconds: float, seed: int, start, out) -> None:
    rng = np.random.default_rng(seed)
    queries = [[ids[i] for i in rng.integers(0, len(ids), 10)] for _ in range(512)]
    if kind == "ours":
        items = vecstore.connect(url).table("items")
        call = items.get
    else:
        r = redis.Redis(unix_socket_path=url)

        def call(q):
            return [msgpack.unpackb(v) for v in r.mget(q)]

    call(queries[0])
    start.wait()
    n, t_end = 0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        call(queries[n & 511])
        n += 1
    out.put(n)


def bench_throughput(url: str, redis_sock: str | None, ids: list[str], seconds: float) -> None:
    print(f"\n[throughput] get of 10 random IDs, {seconds:.0f} s per run, one process per client")
    ctx = mp.get_context("spawn")
    for kind, target in (("ours", url), ("redis", redis_sock)):
        if target is None:
            continue
        figures = []
        for clients in (1, 8):
            start, out = ctx.Event(), ctx.Queue()
            procs = [ctx.Process(target=_throughput_worker, args=(kind, target, ids, seconds, k, start, out))
                     for k in range(clients)]
            for p in procs:
                p.start()
            time.sleep(1.0 + 0.3 * clients)  # let every client connect and warm up
            start.set()
            total = sum(out.get(timeout=120) for _ in procs)
            for p in procs:
                p.join(60)
            figures.append(f"{clients} client{'s' if clients > 1 else ' '}: {total / seconds:9,.0f} req/s")
        print(f"  {kind:6s} " + "   ".join(figures))


def bench_search(store_path: Path, client, rng: np.random.Generator, repeat: int) -> None:
    print("\n[search] 20,000 x 64-d f32 vectors, HNSW, k=10, threads=1; microseconds per query")
    # Opened writable, as the server opens it: a writable store loads the index
    # into memory, a read-only one maps the snapshot file (a different speed).
    local_store = vecstore.open(store_path)
    local = local_store.table("vectors")
    remote = client.table("vectors")
    block, skip = 100, 10
    n_blocks = max(2, -(-repeat // (block - skip)))
    qs = rng.normal(size=(n_blocks * block, 64)).astype(np.float32)
    before = client.stats().ops.get("search")
    loc, rem = [], []
    for b in range(n_blocks):
        chunk = qs[b * block : (b + 1) * block]
        # threads=1 on both sides: one query is fastest on one thread (threads=0
        # fans it out over every core, which costs more than it saves here).
        for side, table, out in (("local", local, loc), ("remote", remote, rem)):
            for i, q in enumerate(chunk):
                t0 = time.perf_counter()
                table.search(q, k=10, threads=1)
                if i >= skip:
                    out.append(time.perf_counter() - t0)
        a, r = local.search(chunk[0], k=10, threads=1), remote.search(chunk[0], k=10, threads=1)
        assert a.ids == r.ids
    l50, l99 = pct(loc)
    r50, r99 = pct(rem)
    added = r50 - l50
    after = client.stats().ops["search"]
    print(f"  in process  p50 {l50:7.0f}  p99 {l99:7.0f}")
    print(f"  over socket p50 {r50:7.0f}  p99 {r99:7.0f}   (the server's own time for the op: "
          f"p50 {after.p50_us:.0f} over its {after.requests - (before.requests if before else 0):,} searches)")
    print(f"  added at p50: {added:.0f} us (target <= 150 us: {'ok' if added <= 150 else 'MISSED'})")
    pings = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.call("ping")
        pings.append(time.perf_counter() - t0)
    p50, p99 = pct(pings)
    print(f"  for reference, an empty request (ping) round trip: p50 {p50:.0f}  p99 {p99:.0f}")
    local_store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    ap.add_argument("--rows", type=int, default=None, help="rows in the table (default 200,000; quick: 20,000)")
    ap.add_argument("--no-redis", action="store_true", help="skip Redis even when it is installed")
    args = ap.parse_args()
    n_rows = args.rows or (20_000 if args.quick else 200_000)
    repeat = 60 if args.quick else 400
    seconds = 1.0 if args.quick else 3.0
    rng = np.random.default_rng(0)
    print(f"vecstore {vecstore.__version__} sidecar benchmark; Python {platform.python_version()}, "
          f"{os.cpu_count()} cores, {n_rows:,} rows")
    have_redis = not args.no_redis and redis is not None and shutil.which("redis-server") is not None
    if not have_redis:
        print("redis-server or redis-py not available: printing vecstore's figures only")
    with tempfile.TemporaryDirectory(prefix="vs-bench-") as d:
        tmp = Path(d)
        ids, cols = build(tmp, n_rows, rng)
        sock = tmp / "vs.sock"
        cmd = [sys.executable, "-m", "vecstore.server", str(tmp / "bench.vs"), "--unix", str(sock)]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        rserver = r = None
        rsock = tmp / "redis.sock"
        try:
            wait_for(sock, server, "vecstore server")
            if have_redis:
                rserver = subprocess.Popen(
                    ["redis-server", "--port", "0", "--unixsocket", str(rsock), "--save", "", "--appendonly", "no"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                wait_for(rsock, rserver, "redis-server")
                r = redis.Redis(unix_socket_path=str(rsock))
                load_redis(r, ids, cols)
            client = vecstore.connect(f"unix://{sock}", timeout=30)
            items = client.table("items")
            bench_latency(items, r, ids, rng, repeat)
            bench_throughput(f"unix://{sock}", str(rsock) if have_redis else None, ids, seconds)
            bench_search(tmp / "bench.vs", client, rng, repeat)
            stats = client.stats()
            print(f"\nserver-side get latency over the run: p50 {stats.ops['get'].p50_us:.0f} us, "
                  f"p99 {stats.ops['get'].p99_us:.0f} us ({stats.ops['get'].requests:,} requests)")
            client.close()
        finally:
            server.terminate()
            server.wait(60)
            if rserver is not None:
                rserver.terminate()
                rserver.wait(60)


if __name__ == "__main__":
    main()
