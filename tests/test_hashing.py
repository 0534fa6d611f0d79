"""ID hashing: the documented XXH3-64 scheme, vectorized and scalar paths agree."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

import vecstore
from vecstore import hashing
from vecstore.hashing import decode_id, encode_id, normalize_ids, xxh3_64_int64
from vecstore.xxh3 import xxh3_64_packed

seeds = st.integers(0, 2**64 - 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=50), seeds)
def test_vectorized_int_hash_equals_xxhash(values, seed):
    got = xxh3_64_int64(np.array(values, dtype=np.int64), seed)
    expected = [xxhash.xxh3_64_intdigest(v.to_bytes(8, "little", signed=True), seed) for v in values]
    assert got.tolist() == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(), st.binary(), st.integers(-(2**63), 2**63 - 1)), max_size=30), seeds)
def test_documented_scheme(ids, seed):
    expected = []
    for x in ids:
        payload = x.encode() if isinstance(x, str) else x if isinstance(x, bytes) else x.to_bytes(8, "little", signed=True)
        expected.append(xxhash.xxh3_64_intdigest(payload, seed))
    assert vecstore.hash_ids(ids, seed=seed).tolist() == expected


@pytest.mark.parametrize("seed", [0, 7, 2**63 + 12345, 2**64 - 1])
def test_packed_hash_equals_xxhash_for_every_length_class(seed):
    # Lengths 0..300 cover every XXH3 path: 0, 1-3, 4-8, 9-16, 17-128 (four
    # round counts) vectorized, and the per-string fallback beyond 128.
    rng = np.random.default_rng(0)
    strings = [rng.bytes(n) for n in range(301)] + [rng.bytes(int(n)) for n in rng.integers(0, 140, 500)]
    lengths = np.array([len(b) for b in strings])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    buf = np.frombuffer(b"".join(strings), dtype=np.uint8)
    got = xxh3_64_packed(buf, starts, lengths, seed)
    assert got.tolist() == [xxhash.xxh3_64_intdigest(b, seed) for b in strings]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=40), seeds, st.booleans())
def test_str_batch_hashes_and_stored_forms_match_the_scheme(ids, seed, vectorized):
    # Large all-str batches take the joined, vectorized path (or the per-ID
    # one when an ID contains NUL), small ones the per-ID path; either way
    # keys and stored forms follow the scheme.
    with mock.patch.object(hashing, "_VECTORIZE_MIN", 1 if vectorized else 10**9):
        batch = normalize_ids(ids, seed)
    assert batch.keys.tolist() == [xxhash.xxh3_64_intdigest(x.encode(), seed) for x in ids]
    assert batch.encoded() == [encode_id(x) for x in ids]
    tags, payload, starts, lengths = batch.packed()
    rebuilt = [bytes([t]) + payload[s : s + n].tobytes() for t, s, n in zip(tags, starts, lengths)]
    assert rebuilt == [encode_id(x) for x in ids]


def test_large_str_batch_is_vectorized_and_matches_xxhash():
    ids = [f"item-{i}" for i in range(hashing._VECTORIZE_MIN)] + ["caf\u00e9", "x" * 200, ""]
    batch = normalize_ids(ids, 11)
    assert isinstance(batch._utf8, tuple)  # the joined buffer: the vectorized path ran
    assert batch.keys.tolist() == [xxhash.xxh3_64_intdigest(x.encode(), 11) for x in ids]


def test_str_batch_with_nul_and_non_ascii():
    ids = ["a\0b", "", "caf\u00e9", "\U0001f600" * 20, "x" * 200]
    with mock.patch.object(hashing, "_VECTORIZE_MIN", 1):
        assert vecstore.hash_ids(ids, seed=3).tolist() == [xxhash.xxh3_64_intdigest(x.encode(), 3) for x in ids]
        assert vecstore.hash_ids(ids[1:], seed=3).tolist() == [xxhash.xxh3_64_intdigest(x.encode(), 3) for x in ids[1:]]


@pytest.mark.parametrize("minimum", [1, 10**9])
def test_str_batch_with_a_lone_surrogate_is_refused(minimum):
    # Either path names the bad ID and its position in the batch.
    with mock.patch.object(hashing, "_VECTORIZE_MIN", minimum), pytest.raises(vecstore.InvalidIdError, match="position 1 .*UTF-8"):
        vecstore.hash_ids(["ok", "bad\ud800"], seed=0)


@pytest.mark.parametrize("n", [1, 5, 63, 255, 256, 257, 600])
def test_small_and_large_int_arrays_hash_alike(n):
    # Below hashing._INT_VECTORIZE_MIN an array is hashed per ID, above it by the numpy kernel.
    values = np.random.default_rng(0).integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
    values[:3] = [0, -1, 1 << 40][:n]  # IDs whose little-endian bytes end in zeros, and all ones
    expected = [xxhash.xxh3_64_intdigest(int(v).to_bytes(8, "little", signed=True), 5) for v in values]
    assert vecstore.hash_ids(values, seed=5).tolist() == expected
    assert vecstore.hash_ids(values.tolist(), seed=5).tolist() == expected  # a list of ints takes the same paths
    strided = np.repeat(values, 2)[::2]  # not contiguous
    assert vecstore.hash_ids(strided, seed=5).tolist() == expected


def test_list_of_ints_and_array_agree():
    ints = list(range(-50, 50))
    np.testing.assert_array_equal(vecstore.hash_ids(ints, seed=9), vecstore.hash_ids(np.array(ints), seed=9))
    np.testing.assert_array_equal(
        vecstore.hash_ids(np.array(ints, dtype=np.int16), seed=9), vecstore.hash_ids(ints, seed=9)
    )
    assert vecstore.hash_ids(np.array(["a", "b"]), seed=9).tolist() == vecstore.hash_ids(["a", "b"], seed=9).tolist()


def test_known_value():
    # Pinned so a change of scheme can never go unnoticed (docs/format.md quotes it).
    assert vecstore.hash_ids("item-42", seed=0)[0] == xxhash.xxh3_64_intdigest(b"item-42", 0)


def test_uint64_above_int64_refused():
    with pytest.raises(vecstore.InvalidIdError):
        vecstore.hash_ids(np.array([2**63], dtype=np.uint64), seed=0)
    assert len(vecstore.hash_ids(np.array([5], dtype=np.uint64), seed=0)) == 1


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.integers(-(2**63), 2**63 - 1)))
def test_stored_id_round_trip(x):
    assert decode_id(encode_id(x)) == x


@pytest.mark.parametrize("bad", [1.5, None, True, object(), 2**64, {"a": 1}])
def test_invalid_ids(bad):
    with pytest.raises(vecstore.InvalidIdError):
        vecstore.hash_ids(bad if not isinstance(bad, dict) else bad, seed=0)
    with pytest.raises(vecstore.InvalidIdError):
        vecstore.hash_ids([bad], seed=0)


def test_utf8ids_hash_like_the_same_strs_and_cannot_drift():
    from vecstore.hashing import Utf8Ids, normalize_ids

    ids = Utf8Ids.from_joined("a\0bé\0\0日本".encode())
    assert ids == ("a", "bé", "", "日本") and ids.utf8 == [b"a", "bé".encode(), b"", "日本".encode()]
    np.testing.assert_array_equal(normalize_ids(ids, 9).keys, normalize_ids(list(ids), 9).keys)
    with pytest.raises(TypeError):
        ids[0] = "z"  # a tuple: the strs and their bytes stay in step
    bare = Utf8Ids(["x", "y"])  # built without its bytes: hashed the ordinary way
    np.testing.assert_array_equal(normalize_ids(bare, 9).keys, normalize_ids(["x", "y"], 9).keys)
