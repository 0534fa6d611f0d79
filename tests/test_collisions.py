"""ID collisions, forced through the documented hash_bits test hook."""

from __future__ import annotations

import numpy as np
import pytest

import vecstore


@pytest.fixture
def narrow(tmp_path):
    # 8-bit keys: 256 slots, so a few hundred IDs are certain to collide.
    with vecstore.open(tmp_path / "narrow.vs", seed=1, hash_bits=8) as s:
        yield s.create_table("t", {"x": vecstore.Scalar("i64"), "tags": vecstore.IdList()})


def _colliding_pair(seed=1, bits=8):
    keys = vecstore.hash_ids([f"id-{i}" for i in range(1000)], seed=seed, hash_bits=bits)
    first = {}
    for i, k in enumerate(keys.tolist()):
        if k in first:
            return f"id-{first[k]}", f"id-{i}", k
        first[k] = i
    raise AssertionError("no collision found")


def test_keys_are_masked():
    keys = vecstore.hash_ids([f"id-{i}" for i in range(100)], seed=1, hash_bits=8)
    assert keys.max() < 256


def test_collision_with_stored_id_is_reported_and_nothing_written(narrow):
    a, b, key = _colliding_pair()
    narrow.put([a], {"x": [1]})
    with pytest.raises(vecstore.IdCollisionError) as info:
        narrow.put(["fresh-1", b], {"x": [2, 3]})
    err = info.value
    assert err.existing_id == a and err.new_id == b and err.key == key
    assert a in str(err) and b in str(err)
    assert len(narrow) == 1
    assert not narrow.contains("fresh-1")
    assert narrow.get(a)["x"][0] == 1


def test_collision_within_one_batch(narrow):
    a, b, _ = _colliding_pair()
    with pytest.raises(vecstore.IdCollisionError):
        narrow.put([a, "other", b], {"x": [1, 2, 3]})
    assert len(narrow) == 0


def test_reads_never_return_another_ids_row(narrow):
    a, b, _ = _colliding_pair()
    narrow.put([a], {"x": [1], "tags": [["t"]]})
    assert not narrow.contains(b)
    rows = narrow.get([b, a])
    assert rows.found.tolist() == [False, True]
    assert narrow.delete([b]) == 0
    assert narrow.contains(a)
    assert narrow.may_contain(b)  # shares a's key: the filter cannot tell them apart


def test_same_id_again_is_an_update_not_a_collision(narrow):
    narrow.put(["same"], {"x": [1]})
    narrow.put(["same"], {"x": [2]})
    assert narrow.get("same")["x"][0] == 2 and len(narrow) == 1


def test_int_ids_collide_too(narrow):
    ints = np.arange(600, dtype=np.int64)
    with pytest.raises(vecstore.IdCollisionError):
        narrow.put(ints, {"x": ints})
    assert len(narrow) == 0


def test_hash_bits_is_validated(tmp_path):
    with pytest.raises(vecstore.SchemaError):
        vecstore.open(tmp_path / "x.vs", hash_bits=4)
