"""Scratch benchmark: BloomFilter.may_contain / add throughput (keys/s)."""

import sys
import time

import numpy as np

sys.path.insert(0, ".")
from vecstore.bloom import BloomFilter  # noqa: E402


def best(fn, repeat=5):
    t = 1e9
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


n = 1_000_000
rng = np.random.default_rng(0)
present = rng.integers(0, 2**64, n, dtype=np.uint64)
absent = rng.integers(0, 2**64, n, dtype=np.uint64)
mixed = np.concatenate([present[: n // 2], absent[: n // 2]])

adds = []
for _ in range(5):
    bf = BloomFilter(capacity=n, fpr=0.01)
    t0 = time.perf_counter()
    bf.add(present)
    adds.append(time.perf_counter() - t0)
print(f"add 1M random keys (empty filter, cap 1M, 1%): {n / min(adds) / 1e6:.1f}M keys/s ({min(adds) * 1e3:.0f} ms)")
t = best(lambda: bf.add(present))
print(f"re-add 1M present keys (no-op upsert):         {n / t / 1e6:.1f}M keys/s ({t * 1e3:.0f} ms)")
print(f"filter: {bf}")
for name, ks in [("absent", absent), ("present", present), ("50/50", mixed)]:
    t = best(lambda: bf.may_contain(ks))
    print(f"may_contain 1M {name:8s}: {n / t / 1e6:.1f}M keys/s ({t * 1e3:.1f} ms)")
print(f"measured fpr {bf.may_contain(absent).mean():.5f}, estimated {bf.estimated_fpr():.5f}")
# after growth to 4x capacity: 3 sub-filters to probe
g = BloomFilter(capacity=n // 4, fpr=0.01)
g.add(present)
t = best(lambda: g.may_contain(absent))
print(f"may_contain 1M absent, {g.num_filters} sub-filters (grown to 4x): {n / t / 1e6:.1f}M keys/s; fpr {g.may_contain(absent).mean():.5f}")
