"""CLI round trip on the real embeddings: what an operator sees, wall clock included.

Writes the pydocs MiniLM data (../shared/data, 384-d) as a Parquet file, then
times each command as a separate process (so Python start-up and opening the
store are counted): `vecstore import` (load, then index and Bloom filter
saved), `vecstore search` (first search after the import: warm, from the
saved index), `vecstore export`, `vecstore verify`, `vecstore backup` and
`vecstore compact`.  Prints figures; asserts nothing.

    python benchmarks/bench_cli.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def vecstore(*args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "vecstore.cli", *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"vecstore {' '.join(args)} failed: {out.stderr.strip()}")
    return wall, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=0, help="use only the first N rows (default: all)")
    args = ap.parse_args()
    emb = np.load(DATA / "pydocs_minilm_f16.npy").astype(np.float32)
    texts = json.loads((DATA / "pydocs_texts.json").read_text())
    if args.rows:
        emb, texts = emb[: args.rows], texts[: args.rows]
    n, dim = emb.shape
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        src = tmp / "docs.parquet"
        pq.write_table(pa.table({
            "id": [t["id"] for t in texts],
            "length": pa.array([len(t["text"]) for t in texts], pa.int32()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
        }), src)
        np.save(tmp / "q.npy", emb[:100])
        store = str(tmp / "s.vs")
        print(f"vecstore CLI on pydocs MiniLM: {n:,} x {dim} (f32 stored, f32 HNSW index), 2 cores as CI")
        wall, out = vecstore("import", store, "docs", str(src), "--json")
        r = json.loads(out)
        print(f"  import   {wall:6.2f} s wall: load {r['seconds'] - r['index_seconds']:.2f} s ({r['rows_per_s']:,.0f} rows/s),"
              f" index + Bloom filter {r['index_seconds']:.2f} s")
        for i in range(2):
            wall, _ = vecstore("search", store, "docs", "--vectors", str(tmp / "q.npy"), "-k", "10", "--json")
            print(f"  search   {wall:6.2f} s wall: 100 queries, k=10 ({'first' if i == 0 else 'second'} run after import)")
        wall, out = vecstore("export", store, "docs", str(tmp / "out.parquet"), "--json")
        r = json.loads(out)
        print(f"  export   {wall:6.2f} s wall: {r['rows'] / r['seconds']:,.0f} rows/s, {r['bytes'] / 2**20:.1f} MiB")
        wall, _ = vecstore("verify", store)
        print(f"  verify   {wall:6.2f} s wall")
        wall, out = vecstore("backup", store, str(tmp / "bk.vs"), "--json")
        print(f"  backup   {wall:6.2f} s wall: {json.loads(out)['sizes']['total_bytes'] / 2**20:.1f} MiB")
        wall, out = vecstore("compact", store, "--json")
        r = json.loads(out)
        print(f"  compact  {wall:6.2f} s wall: {r['before']['total_bytes'] / 2**20:.1f} MiB ->"
              f" {r['after']['total_bytes'] / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
