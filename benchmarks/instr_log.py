"""Instructions per logged request, counted by valgrind: a benchmark figure that load does not move.

On a shared machine wall-clock and CPU time move by tens of percent from one
minute to the next, which hides a 5 % change.  This runs the request loop of
``bench_log.py`` (retrieval of 5,000 candidates, 1 % sampled, + ranking of
5 + one label; a 20,000-item table) under ``valgrind --tool=cachegrind``
twice, with 0 and with ``--requests`` requests, and prints the difference per
request, so start-up and set-up cancel out.  The log checkpoints only at
``flush()`` and samples with a fixed seed, so the count does not depend on
how fast the process runs.  It needs valgrind
(``apt-get install valgrind``) and takes a minute or two.

Usage::

    python benchmarks/instr_log.py                # int64 candidate IDs
    python benchmarks/instr_log.py --str-ids      # str candidate IDs
    python benchmarks/instr_log.py --root ../old  # another checkout, to compare commits
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def work(root: str, n_requests: int, str_ids: bool) -> None:
    """The measured process: build a small table, warm up, log ``n_requests`` requests."""
    sys.path[:0] = [root, str(Path(root) / "benchmarks")]
    import bench_log
    import numpy as np

    import vecstore

    assert vecstore.__file__.startswith(root), f"imported {vecstore.__file__}, not from {root}"
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="vs-instr-") as d:
        store = vecstore.open(Path(d) / "x.vs", sync=False)
        table = store.create_table("items", bench_log.schema(), expected_size=20_000)
        bench_log.fill(table, rng, 20_000, str_ids)
        pool = [rng.integers(0, 20_000, bench_log.N_CANDIDATES) for _ in range(16)]
        cands = [[f"item-{i}" for i in c] for c in pool] if str_ids else pool
        scores = [rng.random(bench_log.N_CANDIDATES, dtype=np.float32) for _ in range(16)]
        # Checkpoints only at flush() and a seeded sample: the work done does
        # not depend on how fast the (slowed-down) process runs.
        log = vecstore.FeatureLog(store, seed=0, checkpoint_seconds=1e9, segment_seconds=1e9)
        bench_log.run_requests(log, cands, scores, 50, 10**8, 1000)  # warm up
        if n_requests:
            bench_log.run_requests(log, cands, scores, n_requests, 0, 1000)
        log.close()
        store.close()


def count(root: str, n_requests: int, str_ids: bool) -> int:
    """Instructions executed by one measured process (valgrind's ``I refs``)."""
    cmd = [
        "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        sys.executable, __file__, "--work", "--root", root, "--requests", str(n_requests),
    ] + (["--str-ids"] if str_ids else [])
    # One BLAS thread: idle OpenBLAS threads spin under valgrind and add noise.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    m = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if out.returncode != 0 or m is None:
        raise SystemExit(f"valgrind run failed:\n{out.stderr[-2000:]}")
    return int(m.group(1).replace(",", ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(HERE.parent), help="checkout whose vecstore to measure (default: this one)")
    ap.add_argument("--requests", type=int, default=300, help="requests counted (default 300)")
    ap.add_argument("--str-ids", action="store_true", help="str candidate IDs ('item-<n>') instead of int64")
    ap.add_argument("--work", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = str(Path(args.root).resolve())
    if args.work:
        work(root, args.requests, args.str_ids)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    base = count(root, 0, args.str_ids)
    full = count(root, args.requests, args.str_ids)
    kind = "str" if args.str_ids else "int64"
    print(f"{root}: {(full - base) // args.requests:,} instructions per request "
          f"({kind} candidate IDs, {args.requests} requests)")


if __name__ == "__main__":
    main()
