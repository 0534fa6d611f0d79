"""Crashes and several processes: SIGKILL mid-stream, a writer and a reader, fork."""

from __future__ import annotations

import multiprocessing as mp
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

import vecstore

BATCH = 300

WRITER = textwrap.dedent(
    """
    import sys, numpy as np, vecstore
    store = vecstore.open(sys.argv[1])
    t = store.table("t")
    rng = np.random.default_rng(0)
    i = 0
    while True:
        ids = [f"b{i}-{j}" for j in range(%d)]
        t.put(ids, {"x": np.full(len(ids), i), "v": rng.normal(size=(len(ids), 8))})
        print(i, flush=True)
        i += 1
    """
    % BATCH
)


def _new_store(path):
    with vecstore.open(path) as s:
        s.create_table("t", {"x": vecstore.Scalar("i64"), "v": vecstore.Vector(8, dtype="f16")}, expected_size=1000)


def test_sigkill_mid_stream_keeps_every_acknowledged_batch_and_no_partial_one(tmp_path):
    path = tmp_path / "crash.vs"
    _new_store(path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    acked = -1
    deadline = time.monotonic() + 60
    try:
        while acked < 15 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert acked >= 15, "writer did not make progress"
    with vecstore.open(path) as s:
        t = s.table("t")
        batches = acked + 5  # a few past the last ack may or may not have committed
        for i in range(batches):
            ids = [f"b{i}-{j}" for j in range(BATCH)]
            found = t.get(ids, features=["x"]).found
            if i <= acked:
                assert found.all(), f"acknowledged batch {i} lost rows"
            assert found.all() or not found.any(), f"batch {i} is partial"
            if found.all():
                assert (t.get(ids)["x"] == i).all()
                assert t.may_contain(ids).all()
        assert t.verify() == []


def _reader(path, ready, go, result):
    s = vecstore.open(path)
    t = s.table("t")
    before = (bool(t.contains("late")), bool(t.may_contain("late")))
    t.may_contain("warm-up")  # build and cache this process's Bloom filter before the write
    ready.set()
    go.wait(30)
    rows = t.get(["late"])
    after = (bool(t.contains("late")), bool(t.may_contain("late")), int(rows["x"][0]) if rows.found[0] else None)
    result.put((before, after, s.tables()))
    s.close()


def test_reader_process_sees_other_process_commit_on_next_call(tmp_path):
    path = tmp_path / "two.vs"
    _new_store(path)
    ctx = mp.get_context("spawn")
    ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
    p = ctx.Process(target=_reader, args=(str(path), ready, go, result))
    p.start()
    try:
        assert ready.wait(60)
        with vecstore.open(path) as s:
            s.table("t").put(["late"], {"x": [42], "v": np.ones((1, 8))})
            s.create_table("extra", {"y": vecstore.Scalar()})
        go.set()
        before, after, tables = result.get(timeout=60)
    finally:
        p.join(timeout=30)
    assert before == (False, False)
    assert after == (True, True, 42)
    assert tables == ["extra", "t"]


def _forked_child(store, q):
    t = store.table("t")
    q.put(int(t.get(["parent"])["x"][0]))
    t.put(["child"], {"x": [2], "v": np.ones((1, 8))})
    q.put("done")


def test_store_is_usable_after_fork(tmp_path):
    path = tmp_path / "fork.vs"
    _new_store(path)
    s = vecstore.open(path)
    t = s.table("t")
    t.put(["parent"], {"x": [1], "v": np.ones((1, 8))})
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_forked_child, args=(s, q))
    p.start()
    assert q.get(timeout=60) == 1
    assert q.get(timeout=60) == "done"
    p.join(timeout=30)
    assert p.exitcode == 0
    # The parent's handle still works and sees the child's write.
    assert t.get(["child"])["x"][0] == 2
    assert t.may_contain(["child", "parent"]).all()
    t.put(["parent2"], {"x": [3], "v": np.ones((1, 8))})
    assert len(t) == 3
    s.close()


def test_writes_from_two_processes_interleave(tmp_path):
    path = tmp_path / "w2.vs"
    _new_store(path)
    script = textwrap.dedent(
        """
        import sys, numpy as np, vecstore
        with vecstore.open(sys.argv[1]) as s:
            t = s.table("t")
            for i in range(20):
                t.put([f"{sys.argv[2]}-{i}"], {"x": [i], "v": np.ones((1, 8))})
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), tag]) for tag in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=120) == 0
    with vecstore.open(path) as s:
        t = s.table("t")
        assert len(t) == 40
        ids = [f"{tag}-{i}" for tag in "ab" for i in range(20)]
        assert t.contains(ids).all() and t.may_contain(ids).all()
        assert t.verify() == []


def test_a_read_only_reader_adopts_a_map_grown_by_another_process(tmp_path):
    # The reader has not used the table yet when a writer in another process
    # grows the map: opening the table's sub-databases must adopt the new size
    # (it used to raise MDB_MAP_RESIZED on every call from then on).
    path = tmp_path / "grow.vs"
    with vecstore.open(path, map_size=64 * 1024) as s:
        s.create_table("items", {"v": vecstore.Vector(16, dtype="f32")})
    with vecstore.open(path, readonly=True, map_size=64 * 1024) as reader:
        t = reader.table("items")
        grow = textwrap.dedent("""
            import sys, numpy as np, vecstore
            with vecstore.open(sys.argv[1], map_size=64 * 1024) as s:
                v = np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)
                s.table("items").put(list(range(3000)), {"v": v})
                print(s.info().map_size)
        """)
        out = subprocess.run([sys.executable, "-c", grow, str(path)], capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout) > 64 * 1024  # the writer did grow the map
        assert len(t) == 3000
        assert t.contains([0, 2999, 3000]).tolist() == [True, True, False]
        assert t.get([5])["v"].shape == (1, 16)
