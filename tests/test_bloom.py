"""BloomFilter: no false negatives, rates near the target, growth, persistence."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vecstore import bloom
from vecstore.bloom import BloomFilter
from vecstore.errors import CorruptionError, InvalidValueError

META = {"seq": 123, "table_id": 4, "store_uuid": "0f8e-44"}


def u64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.uint64)


def random_keys(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**64, n, dtype=np.uint64)


def absent_keys(n: int) -> np.ndarray:
    """Keys never added: another seed's 64-bit draws (a shared key has odds ~1e-7; none with these seeds)."""
    return random_keys(n, seed=1)


# -- no false negatives ---------------------------------------------------------

key_arrays = st.one_of(
    # random 64-bit keys
    st.lists(st.integers(0, 2**64 - 1), max_size=300).map(u64),
    # sequential keys from an arbitrary start
    st.tuples(st.integers(0, 2**64 - 400), st.integers(0, 300)).map(
        lambda t: np.arange(t[1], dtype=np.uint64) + np.uint64(t[0])
    ),
    # hashes truncated to 16 (or 8) bits by the collision test hook
    st.tuples(st.lists(st.integers(0, 2**64 - 1), max_size=300), st.sampled_from([8, 16])).map(
        lambda t: u64(t[0]) & np.uint64((1 << t[1]) - 1)
    ),
)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(key_arrays, min_size=1, max_size=4), capacity=st.integers(1, 40))
def test_no_false_negatives_across_growth_copy_and_bytes(batches, capacity):
    bf = BloomFilter(capacity=capacity, fpr=0.05)
    for batch in batches:
        bf.add(batch)
    every = np.concatenate(batches)
    # a key that was a false positive when it came is not counted
    assert 0 < bf.count <= len(np.unique(every)) or len(every) == 0
    assert bf.may_contain(every).all()
    assert bf.copy().may_contain(every).all()
    again, meta = BloomFilter.from_bytes(bf.to_bytes(META))
    assert again.may_contain(every).all() and meta == META
    assert again.count == bf.count and again.num_filters == bf.num_filters


def test_sequential_and_truncated_keys_over_several_growths():
    bf = BloomFilter(capacity=100, fpr=0.01)
    seq = np.arange(5000, dtype=np.uint64)
    assert bf.add(seq) == 5000  # one batch is judged against the filter before it
    assert bf.num_filters >= 5
    truncated = random_keys(20_000) & np.uint64(0xFFFF)
    bf.add(truncated)
    assert bf.may_contain(seq).all() and bf.may_contain(truncated).all()
    # int64 arrays are the same bits
    assert bf.may_contain(seq.view(np.int64)).all()


def test_small_and_large_batches_answer_alike():
    # large batches test the first probes, then the rest for the survivors;
    # small ones test all probes at once
    bf = BloomFilter(capacity=5000, fpr=0.05)
    bf.add(random_keys(5000))
    probe = np.concatenate([random_keys(5000), random_keys(15_000, seed=2)])
    whole = bf.may_contain(probe)
    assert (whole == np.concatenate([bf.may_contain(p) for p in np.split(probe, 40)])).all()
    assert whole[:5000].all() and 0 < whole[5000:].sum() < 0.1 * 15_000


def test_int64_keys_are_viewed_as_uint64():
    bf = BloomFilter(capacity=10, fpr=0.01)
    bf.add(np.array([-1, -2**63], dtype=np.int64))
    assert bf.may_contain(u64([2**64 - 1, 2**63])).all()


def test_non_contiguous_keys():
    keys = random_keys(2000)
    bf = BloomFilter(capacity=1000, fpr=0.01)
    bf.add(keys[::2])
    assert bf.may_contain(keys[::2]).all()


# -- false-positive rate --------------------------------------------------------

def test_fpr_at_capacity_and_after_growth_to_4x():
    capacity, fpr = 200_000, 0.01
    keys = random_keys(4 * capacity)
    probe = absent_keys(1_000_000)
    bf = BloomFilter(capacity=capacity, fpr=fpr)
    assert bf.add(keys[:capacity]) == capacity
    assert bf.num_filters == 1
    measured = bf.may_contain(probe).mean()
    assert measured <= 1.5 * fpr
    assert abs(measured - bf.estimated_fpr()) <= 0.15 * bf.estimated_fpr()

    bf.add(keys[capacity:])
    assert bf.num_filters == 3  # 200k + 400k + 200k of 800k
    info = bf.filters_info()
    assert [f["capacity"] for f in info] == [200_000, 400_000, 800_000]
    # keys that were false positives of the fuller filters are not counted
    assert [f["count"] for f in info] == [200_000, 400_000, bf.count - 600_000]
    assert 0.99 * 4 * capacity < bf.count < 4 * capacity
    assert info[1]["fpr"] == pytest.approx(fpr / 4) and info[2]["fpr"] == pytest.approx(fpr / 16)
    measured = bf.may_contain(probe).mean()
    assert measured <= 1.5 * fpr
    assert abs(measured - bf.estimated_fpr()) <= 0.15 * bf.estimated_fpr()
    assert bf.may_contain(keys).all()


def test_fpr_holds_for_sequential_keys():
    # the re-mixing must hide the structure of consecutive keys
    bf = BloomFilter(capacity=50_000, fpr=0.01)
    bf.add(np.arange(50_000, dtype=np.uint64))
    probe = np.arange(10**6, 10**6 + 200_000, dtype=np.uint64)
    assert bf.may_contain(probe).mean() <= 1.5 * 0.01


def test_sizing_and_nbytes():
    bf = BloomFilter(capacity=1_000_000, fpr=0.01)
    info = bf.filters_info()[0]
    assert info["bits"] == 9_585_088 and info["hashes"] == 7  # ceil(-n ln p / ln2^2), rounded to words
    assert bf.nbytes == info["bits"] // 8
    assert bf.capacity == 1_000_000 and bf.fpr == 0.01 and bf.count == 0
    assert bf.estimated_fpr() == 0.0


# -- counting -------------------------------------------------------------------

def test_readding_keys_does_not_count_or_grow():
    keys = random_keys(1000)
    bf = BloomFilter(capacity=1000, fpr=0.01)
    assert bf.add(keys) == 1000
    assert bf.add(keys) == 0
    assert bf.add(keys[:10]) == 0
    assert bf.count == 1000 and bf.num_filters == 1
    # one more new key starts the second sub-filter, and only then
    assert bf.add(random_keys(1, seed=5)) == 1
    assert bf.num_filters == 2 and bf.count == 1001


def test_duplicates_in_a_batch_count_once_and_batches_split_across_filters():
    bf = BloomFilter(capacity=10, fpr=0.01)
    assert bf.add(u64([7, 7, 7, 8])) == 2
    assert bf.add(np.arange(100, 125, dtype=np.uint64)) == 25
    assert [f["count"] for f in bf.filters_info()] == [10, 17]
    assert [f["capacity"] for f in bf.filters_info()] == [10, 20]


def test_empty_keys():
    bf = BloomFilter(capacity=10, fpr=0.01)
    empty = np.array([], dtype=np.uint64)
    assert bf.add(empty) == 0
    out = bf.may_contain(empty)
    assert out.dtype == bool and out.shape == (0,)
    assert not bf.may_contain(u64([1, 2])).any()  # nothing added yet


def test_copy_is_independent():
    bf = BloomFilter(capacity=100, fpr=0.01)
    bf.add(u64([1, 2, 3]))
    other = bf.copy()
    other.add(np.arange(1000, 1500, dtype=np.uint64))
    assert bf.count == 3 and bf.num_filters == 1
    assert other.count == 503 and other.num_filters > 1
    assert not bf.may_contain(np.arange(1000, 1500, dtype=np.uint64)).all()


def test_oversized_capacity_is_split_into_capped_sub_filters(monkeypatch):
    monkeypatch.setattr(bloom, "_MAX_BITS", 64 * 20)  # 1280 bits: ~133 keys at 1%
    bf = BloomFilter(capacity=10_000, fpr=0.01)
    first = bf.filters_info()[0]
    assert first["bits"] <= 1280 and first["capacity"] < 10_000
    keys = random_keys(2000)
    bf.add(keys)
    assert all(f["bits"] <= 1280 for f in bf.filters_info())
    assert bf.may_contain(keys).all()
    assert bf.capacity == 10_000


# -- persistence ----------------------------------------------------------------

def grown_filter() -> tuple[BloomFilter, np.ndarray]:
    keys = random_keys(3000)
    bf = BloomFilter(capacity=1000, fpr=0.01)
    bf.add(keys)
    return bf, keys


def test_bytes_round_trip():
    bf, keys = grown_filter()
    blob = bf.to_bytes(META)
    assert blob[:8] == b"VSBLOOM1"
    again, meta = BloomFilter.from_bytes(blob)
    assert meta == META
    assert again.to_bytes(META) == blob  # same bits, counts and settings
    assert again.filters_info() == bf.filters_info()
    assert (again.capacity, again.fpr, again.count) == (bf.capacity, bf.fpr, bf.count)
    probe = random_keys(20_000, seed=9)
    assert (again.may_contain(probe) == bf.may_contain(probe)).all()
    assert again.may_contain(keys).all()
    # the decoded filter keeps working, growth included
    assert again.add(random_keys(2000, seed=3)) > 0
    assert BloomFilter.from_bytes(bytearray(blob))[0].count == bf.count


def test_save_load_round_trip(tmp_path):
    bf, keys = grown_filter()
    path = tmp_path / "bloom.bin"
    bf.save(path, META)
    again, meta = BloomFilter.load(path)
    assert meta == META and again.to_bytes(META) == bf.to_bytes(META)
    assert again.may_contain(keys).all()
    again.add(random_keys(5000, seed=4))  # loaded arrays are writable
    again.save(str(path), {"seq": 124})
    third, meta = BloomFilter.load(path)
    assert meta == {"seq": 124} and third.count == again.count
    assert os.listdir(tmp_path) == ["bloom.bin"]  # no temp files left behind


def test_save_creates_missing_folders(tmp_path):
    path = tmp_path / "store" / "bloom" / "t1.bloom"
    BloomFilter(capacity=10, fpr=0.01).save(path, META)
    assert BloomFilter.load(path)[1] == META


def test_load_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        BloomFilter.load(tmp_path / "nope.bin")


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic", "version", "append", "empty"])
def test_damaged_data_raises_corruption(tmp_path, damage):
    bf, _ = grown_filter()
    data = bytearray(bf.to_bytes(META))
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 3] ^= 0x10
    elif damage == "magic":
        data[:8] = b"NOTBLOOM"
    elif damage == "version":
        data[8] = 99
    elif damage == "append":
        data += b"\0" * 8
    else:
        data = bytearray()
    with pytest.raises(CorruptionError):
        BloomFilter.from_bytes(bytes(data))
    path = tmp_path / "bloom.bin"
    path.write_bytes(data)
    with pytest.raises(CorruptionError):
        BloomFilter.load(path)


def test_every_single_byte_flip_is_detected():
    bf = BloomFilter(capacity=20, fpr=0.1)
    bf.add(np.arange(30, dtype=np.uint64))
    blob = bf.to_bytes({"seq": 1})
    for i in range(len(blob)):
        damaged = bytearray(blob)
        damaged[i] ^= 0x01
        with pytest.raises(CorruptionError):
            BloomFilter.from_bytes(bytes(damaged))


def test_save_is_atomic_when_a_temp_file_is_left_behind(tmp_path, monkeypatch):
    bf, _ = grown_filter()
    path = tmp_path / "bloom.bin"
    bf.save(path, META)
    # A crash mid-write leaves a stray temp file; the old file stays valid.
    (tmp_path / ".bloom.bin.crashed.tmp").write_bytes(bf.to_bytes(META)[:100])

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    bigger = bf.copy()
    bigger.add(random_keys(5000, seed=8))
    with pytest.raises(OSError, match="disk full"):
        bigger.save(path, {"seq": 999})
    monkeypatch.undo()
    again, meta = BloomFilter.load(path)
    assert meta == META and again.count == bf.count
    # the failed save cleaned up its own temp file; the stray one is untouched
    assert sorted(os.listdir(tmp_path)) == [".bloom.bin.crashed.tmp", "bloom.bin"]


# -- bad arguments --------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity": 0, "fpr": 0.01},
        {"capacity": -5, "fpr": 0.01},
        {"capacity": 1.5, "fpr": 0.01},
        {"capacity": True, "fpr": 0.01},
        {"capacity": 10, "fpr": 0.0},
        {"capacity": 10, "fpr": 1.0},
        {"capacity": 10, "fpr": float("nan")},
        {"capacity": 10, "fpr": "0.01"},
    ],
)
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(InvalidValueError):
        BloomFilter(**kwargs)


@pytest.mark.parametrize(
    "keys",
    [
        np.array([1.0, 2.0]),
        np.array([1, 2], dtype=np.uint32),
        np.array(["a"]),
        [1, 2, 3],
        np.zeros((2, 2), dtype=np.uint64),
    ],
)
def test_bad_keys(keys):
    bf = BloomFilter(capacity=10, fpr=0.01)
    with pytest.raises(InvalidValueError):
        bf.add(keys)
    with pytest.raises(InvalidValueError):
        bf.may_contain(keys)


@pytest.mark.parametrize("meta", [{"a": 1.5}, {1: "x"}, {"a": [1]}, {"a": 2**70}, "seq"])
def test_bad_meta(meta, tmp_path):
    bf = BloomFilter(capacity=10, fpr=0.01)
    with pytest.raises(InvalidValueError):
        bf.to_bytes(meta)
    with pytest.raises(InvalidValueError):
        bf.save(tmp_path / "bloom.bin", meta)
    assert os.listdir(tmp_path) == []


def test_the_documented_layout_and_probe_rule_answer_like_the_filter():
    # docs/format.md describes the snapshot bytes and the probe rule so that a
    # client in another language can test keys locally; read them back here in
    # plain Python from that description alone.
    import struct

    import msgpack

    rng = np.random.default_rng(0)
    bf = BloomFilter(capacity=500, fpr=0.05)
    stored = rng.integers(0, 2**63, 1500, dtype=np.int64).astype(np.uint64)  # grows to several sub-filters
    bf.add(stored)
    blob = bf.to_bytes({"seq": 3, "table_id": 1})
    magic, version, _, nsubs, meta_len, _, _cap, _fpr, total = struct.unpack_from("<8sHHIIIQdQ", blob)
    assert (magic, version, total) == (b"VSBLOOM1", 1, len(blob)) and nsubs > 1
    subs = [struct.unpack_from("<QQQIId", blob, 48 + 40 * i) for i in range(nsubs)]
    off = 48 + 40 * nsubs
    assert msgpack.unpackb(blob[off : off + meta_len]) == {"seq": 3, "table_id": 1}
    off += meta_len + (-meta_len % 8)
    words = []
    for _cap_i, _count, bits, _hashes, _, _ in subs:
        words.append(struct.unpack_from(f"<{bits // 64}Q", blob, off))
        off += bits // 8
    assert off + 8 == len(blob)
    M = (1 << 64) - 1

    def may_contain(key: int) -> bool:
        for i, (_cap_i, count, bits, hashes, _, _) in enumerate(subs):
            if not count:
                continue
            h = (key + 0x9E3779B97F4A7C15 * (i + 1)) & M
            h ^= h >> 33
            h = (h * 0xFF51AFD7ED558CCD) & M
            h ^= h >> 33
            h = (h * 0xC4CEB9FE1A85EC53) & M
            h ^= h >> 33
            h1, h2 = h & 0xFFFFFFFF, (h >> 32) | 1
            probes = (((((h1 + j * h2) & 0xFFFFFFFF) * bits) >> 32) for j in range(hashes))
            if all((words[i][b >> 6] >> (b & 63)) & 1 for b in probes):
                return True
        return False

    absent = rng.integers(0, 2**63, 3000, dtype=np.int64).astype(np.uint64)
    keys = np.concatenate([stored[:300], absent])
    assert [may_contain(int(k)) for k in keys] == bf.may_contain(keys).tolist()
    assert all(may_contain(int(k)) for k in stored)
