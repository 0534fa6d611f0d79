"""The index agrees with the rows: snapshots, crashes, other processes, and usearch's traps."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from usearch.index import Index

import vecstore
from vecstore import vector_index

DIM = 16


def vec_store(path, n=500, seed=0):
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    with vecstore.open(path) as s:
        t = s.create_table("t", {"v": vecstore.Vector(DIM, dtype="f16"), "x": vecstore.Scalar("i64")})
        t.put(list(range(n)), {"v": vecs, "x": np.arange(n)})
    return vecs


def agrees_with_exact(t, queries, k=5) -> bool:
    """HNSW hits match exact search (recall >= 0.95: the index holds the rows' current vectors)."""
    hits, truth = t.search(queries, k=k, ef=256).ids, t.search(queries, k=k, exact=True).ids
    return np.mean([len(set(a) & set(b)) / k for a, b in zip(hits, truth)]) >= 0.95


def test_snapshot_is_saved_reused_and_caught_up(tmp_path):
    path = tmp_path / "snap.vs"
    vecs = vec_store(path)
    with vecstore.open(path) as s:
        t = s.table("t")
        t.rebuild_index()  # builds and saves a snapshot at the current log position
    files = list((path / "index").glob("t1.v.s*.usearch"))
    assert len(files) == 1
    # Another "process" writes without ever loading the index...
    with vecstore.open(path) as s:
        s.table("t").put([1000, 1001], {"v": vecs[:2] * -1})
        s.table("t").delete([5])
    assert list((path / "index").glob("t1.v.s*.usearch")) == files  # nothing saved by that writer
    # ...and the next reader loads the snapshot and replays the log.
    with vecstore.open(path) as s:
        t = s.table("t")
        assert t.search(-vecs[0], k=1).ids == [1000]
        assert 5 not in t.search(vecs[5], k=3).ids
        info = t.info().indexes[0]
        assert info.loaded and info.behind == 0 and info.vectors == 501
        assert t.verify() == []


CRASHER = textwrap.dedent(
    """
    import os, signal, sys, numpy as np, vecstore
    s = vecstore.open(sys.argv[1])
    t = s.table("t")
    rng = np.random.default_rng(1)
    t.search(np.ones(16), k=1)          # the index lives in this process
    for i in range(40):
        t.put([5000 + i], {"v": rng.normal(size=(1, 16))})
        t.delete([i])
        if i % 10 == 0:
            t.rebuild_index()           # a snapshot part way through
        t.search(np.ones(16), k=3)      # absorbed in memory, not saved
        print(i, flush=True)
    t.put([9999], {"v": np.ones((1, 16))})
    os.kill(os.getpid(), signal.SIGKILL)  # committed to LMDB, never reached the index file
    """
)


def test_sigkill_between_commit_and_index_save_then_reopen_agrees(tmp_path):
    path = tmp_path / "crash.vs"
    vecs = vec_store(path)
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split()[-1] == "39"
    with vecstore.open(path) as s:
        t = s.table("t")
        assert t.verify() == []
        assert t.search(np.ones(DIM), k=1).ids == [9999]
        hits = t.search(vecs[:40], k=5)
        assert not set(sum(hits.ids, [])) & set(range(40))
        assert agrees_with_exact(t, vecs[40:60])


def test_damaged_or_foreign_snapshot_is_detected_and_rebuilt(tmp_path):
    path = tmp_path / "damaged.vs"
    vecs = vec_store(path)
    with vecstore.open(path) as s:
        s.table("t").rebuild_index()
    (snap,) = (path / "index").glob("*.usearch")
    snap.write_bytes(snap.read_bytes()[:100])  # truncated
    with vecstore.open(path) as s:
        t = s.table("t")
        assert t.search(vecs[3], k=1).ids == [3]  # rebuilt from the rows meanwhile
        problems = t.verify()
        assert any("unreadable" in p for p in problems)
        t.rebuild_index()
        assert t.verify() == []
    # An index that lost a vector (e.g. a bug or a foreign file) is reported too.
    with vecstore.open(path) as s:
        t = s.table("t")
        t.search(vecs[0], k=1)
        t._indexes["v"].index.remove(s.hash_ids([7])[0])
        assert any("misses 1 stored vectors" in p for p in t.verify())


def _writer_then_signal(path, go, done):
    with vecstore.open(path) as s:
        go.wait(30)
        s.table("t").put(["late"], {"v": np.full((1, DIM), 3.0)})
        s.table("t").delete([0, 1])
    done.set()


def test_reader_process_sees_another_processes_writes(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "two.vs"
    vecs = vec_store(path)
    with vecstore.open(path) as s:
        s.table("t").rebuild_index()
    ctx = mp.get_context("spawn")
    go, done = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_writer_then_signal, args=(path, go, done))
    proc.start()
    with vecstore.open(path, readonly=True) as s:
        t = s.table("t")
        assert t.search(vecs[0], k=1).ids == [0]
        vi = t._indexes["v"]
        assert vi.view  # read-only processes map the snapshot instead of loading it
        go.set()
        assert done.wait(60)
        assert t.search(np.full(DIM, 3.0), k=1).ids == ["late"]
        assert not vi.view  # changes went into an in-memory copy, never into the view
        assert 0 not in t.search(vecs[0], k=3).ids
    proc.join(30)
    assert proc.exitcode == 0


# -- usearch behaviours the index is built around (pinned usearch version) ----------


def test_usearch_add_of_existing_key_raises_so_upsert_is_remove_then_add(tmp_path):
    ix = Index(ndim=4, metric="cos", dtype="f32")
    ix.add(1, np.ones(4, dtype=np.float32))
    with pytest.raises(RuntimeError, match="Duplicate"):
        ix.add(1, np.ones(4, dtype=np.float32))
    vecs = vec_store(tmp_path / "up.vs", n=50)
    with vecstore.open(tmp_path / "up.vs") as s:
        t = s.table("t")
        t.search(vecs[0], k=1)
        for _ in range(3):
            t.put([7], {"v": -vecs[:1]})
        assert t.search(-vecs[0], k=1).ids == [7]
        assert t.info().indexes[0].vectors == 50


def test_usearch_remove_keeps_memory_so_tombstones_trigger_a_rebuild(tmp_path):
    ix = Index(ndim=DIM, metric="cos", dtype="f32")
    ix.add(np.arange(2000, dtype=np.uint64), np.random.default_rng(0).normal(size=(2000, DIM)).astype(np.float32))
    before = ix.memory_usage
    ix.remove(np.arange(1500, dtype=np.uint64))
    assert len(ix) == 500 and ix.memory_usage >= before  # removed, not reclaimed
    vecs = vec_store(tmp_path / "tomb.vs", n=2000)
    with vecstore.open(tmp_path / "tomb.vs") as s:
        t = s.table("t")
        t.search(vecs[0], k=1)
        t.delete(list(range(200)))
        t.search(vecs[0], k=1)
        assert t.info().indexes[0].tombstones == 200
        t.delete(list(range(200, 800)))  # past max(256, live / 4): rebuilt from the rows
        t.search(vecs[0], k=1)
        info = t.info().indexes[0]
        assert info.tombstones == 0 and info.vectors == 1200
        assert t.verify() == []


def test_snapshot_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "atomic.vs"
    vecs = vec_store(path)
    with vecstore.open(path) as s:
        s.table("t").rebuild_index()
    (snap,) = (path / "index").glob("*.usearch")
    good = snap.read_bytes()

    def torn_save(self, path_or_buffer=None, progress=None):
        with open(path_or_buffer, "wb") as f:
            f.write(b"torn")
        raise OSError("disk gone")

    with vecstore.open(path) as s:
        t = s.table("t")
        t.put([777], {"v": vecs[:1]})
        monkeypatch.setattr(Index, "save", torn_save)
        with pytest.raises(OSError):
            t.rebuild_index()
        monkeypatch.undo()
    assert snap.read_bytes() == good  # the old snapshot is untouched...
    assert not list((path / "index").glob(".*.tmp"))  # ...and no temp file is left
    with vecstore.open(path) as s:
        assert s.table("t").verify() == []


def test_one_index_serves_many_threads(tmp_path):
    vecs = vec_store(tmp_path / "threads.vs", n=1000)
    with vecstore.open(tmp_path / "threads.vs") as s:
        t = s.table("t")
        want = t.search(vecs[:50], k=5).ids
        errors: list[BaseException] = []

        def worker(i):
            try:
                for j in range(50):
                    assert t.search(vecs[j], k=5).ids == want[j]
                if i == 0:
                    t.put([5000 + j for j in range(20)], {"v": np.full((20, DIM), 9.0)})
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors
        assert t.verify() == []


def test_batch_padding_is_sliced_off(tmp_path):
    ix = Index(ndim=4, metric="cos", dtype="f32")
    ix.add(np.arange(3, dtype=np.uint64), np.eye(4, dtype=np.float32)[:3])
    m = ix.search(np.eye(4, dtype=np.float32)[:2], 10)
    assert list(m.counts) == [3, 3] and m.keys.shape == (2, 10)  # 7 padded slots per query
    vecs = vec_store(tmp_path / "pad.vs", n=3)
    with vecstore.open(tmp_path / "pad.vs") as s:
        hits = s.table("t").search(vecs[:2], k=10)
        assert [len(h) for h in hits.ids] == [3, 3]


@pytest.mark.parametrize("dtype", ["f32", "f16", "i8", "b1"])
def test_compiled_search_call_agrees_with_the_public_one(dtype):
    # VectorIndex.search calls usearch's compiled search_many directly (the
    # public Index.search wraps it); a usearch upgrade that changes either
    # must fail here, not silently change results.
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(300, 32)).astype(np.float32)
    ix = Index(ndim=32, metric="hamming" if dtype == "b1" else "cos", dtype=dtype)
    data = np.packbits(vecs > 0, axis=1) if dtype == "b1" else vecs
    ix.add(np.arange(300, dtype=np.uint64), data, threads=1)
    q = data[:7]
    m = ix.search(q, 10, threads=1)
    keys, dists, counts = ix._compiled.search_many(q, count=10, exact=False, threads=1)[:3]
    np.testing.assert_array_equal(counts, m.counts)
    for b in range(len(q)):
        np.testing.assert_array_equal(keys[b, : counts[b]], m.keys[b, : m.counts[b]])
        np.testing.assert_array_equal(dists[b, : counts[b]], m.distances[b, : m.counts[b]])


def test_tombstone_threshold_constants_are_documented():
    assert vector_index.TOMBSTONE_RATIO == 0.25 and vector_index.TOMBSTONE_MIN == 256


def test_drop_table_removes_index_files(tmp_path):
    path = tmp_path / "drop.vs"
    vec_store(path)
    with vecstore.open(path) as s:
        s.table("t").rebuild_index()
        assert list((path / "index").glob("t1.*"))
        s.drop_table("t")
        assert not list((path / "index").glob("t1.*"))


def test_write_only_process_keeps_the_log_short_with_an_index(tmp_path):
    from vecstore.derived import LOG_SOFT_LIMIT

    path = tmp_path / "log.vs"
    vec_store(path, n=10)
    rng = np.random.default_rng(0)
    with vecstore.open(path) as s:
        t = s.table("t")
        start = time.monotonic()
        for i in range(LOG_SOFT_LIMIT + 10):
            t.put([100 + i], {"v": rng.normal(size=(1, DIM))})
        assert time.monotonic() - start < 600  # bounded loop, not a timing assertion of speed
        assert t.info().log_entries <= LOG_SOFT_LIMIT
        assert t.verify() == []


def test_usearch_parallel_inserts_into_a_small_graph_lose_nodes_so_small_graphs_grow_serially(tmp_path):
    misses = {0: 0, 1: 0}
    for seed in range(40):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(300, 8))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        for threads in (0, 1):
            ix = Index(ndim=8, metric="cos", dtype="f32", connectivity=16, expansion_add=128)
            ix.add(np.arange(300, dtype=np.uint64), x, threads=threads)
            misses[threads] += int((ix.search(x, 1, threads=1).keys[:, 0] != np.arange(300)).sum())
    assert misses[1] == 0  # serial inserts: every vector finds itself
    with vecstore.open(tmp_path / "small.vs") as s:
        t = s.create_table("t", {"v": vecstore.Vector(8)})
        x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
        t.put(list(range(300)), {"v": x})
        assert [h[0] for h in t.search(x, k=1).ids] == list(range(300))


def test_a_damaged_stored_id_does_not_break_index_load_or_verify(tmp_path):
    # The key -> ID cache is filled from every row when the index loads; one
    # row whose stored ID no longer decodes must not make every search (or
    # verify, the tool that reports such damage) fail.
    rng = np.random.default_rng(0)
    path = tmp_path / "dmg.vs"
    vecs = rng.normal(size=(300, DIM)).astype(np.float32)
    with vecstore.open(path) as s:
        t = s.create_table("t", {"v": vecstore.Vector(DIM)})
        t.put([f"id-{i}" for i in range(300)], {"v": vecs})
        t.search(vecs[0], k=3)
        W = t.schema.record_size
        rows = t._db("rows")

        def damage(txn):
            k, v = next(iter(txn.cursor(rows)))
            txn.put(k, v[:W] + b"\x01\xff\xfe", db=rows)  # not UTF-8

        s._env.write(damage)
    with vecstore.open(path) as s:
        t = s.table("t")
        assert any("does not decode" in p for p in t.verify())
        assert t.search(vecs[5], k=1).ids == ["id-5"]


def test_verify_sees_an_index_vector_of_the_wrong_length_under_l2(tmp_path):
    # Same direction, five times as long: under l2 (and ip) that is a different vector.
    with vecstore.open(tmp_path / "len.vs") as s:
        t = s.create_table("t", {"v": vecstore.Vector(4, metric="l2")})
        t.put([1, 2], {"v": np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32)})
        t.search(np.ones(4, np.float32), k=1)
        assert t.verify() == []
        vi = t._index("v")
        key = int(t._ids([1]).keys[0])
        vi.index.remove(key)
        vi.index.add(key, np.array([5, 0, 0, 0], np.float32))
        assert any("different vector" in p for p in t.verify())
