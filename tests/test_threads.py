"""Threads in one process: readers keep working while a writer grows the map."""

from __future__ import annotations

import threading
import time

import numpy as np

import vecstore


def test_readers_during_map_growth(tmp_path):
    rng = np.random.default_rng(0)
    with vecstore.open(tmp_path / "t.vs", map_size=1 << 20) as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64"), "v": vecstore.Vector(128, dtype="f32")})
        base = np.arange(1000)
        t.put(base, {"x": base, "v": rng.normal(size=(1000, 128))})
        errors: list[BaseException] = []
        checks = [0]
        stop = threading.Event()

        def reader() -> None:
            try:
                while not stop.is_set():
                    rows = t.get(base[::7], features=["x"])
                    assert rows.found.all() and (rows["x"] == base[::7]).all()
                    assert t.may_contain(base[::13]).all()
                    checks[0] += 1
            except BaseException as e:  # noqa: BLE001 - reported to the main thread
                errors.append(e)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for th in threads:
            th.start()
        start_map = s.info().map_size
        for i in range(1, 8):  # ~3.6 MB of vectors: the 1 MiB map doubles several times
            ids = np.arange(i * 1000, (i + 1) * 1000)
            t.put(ids, {"x": ids, "v": rng.normal(size=(1000, 128))})
        stop.set()
        for th in threads:
            th.join(timeout=60)
        assert not errors, errors[0]
        assert checks[0] > 0
        assert s.info().map_size > start_map
        assert len(t) == 8000


def test_concurrent_writers_in_threads_serialize(tmp_path):
    with vecstore.open(tmp_path / "w.vs") as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")})

        def writer(tag: int) -> None:
            for i in range(50):
                t.put([f"{tag}-{i}"], {"x": [i]})

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
        assert len(t) == 200
        assert t.verify() == []


def test_may_contain_has_no_false_negatives_while_another_thread_syncs(tmp_path):
    with vecstore.open(tmp_path / "race.vs", sync=False) as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")}, expected_size=100_000)
        t.may_contain([0])
        stop = threading.Event()

        def poller() -> None:
            # Short sleeps: a thread spinning on LMDB calls starves the others
            # (py-lmdb releases the GIL around every call; see docs/concepts.md).
            while not stop.is_set():
                t.may_contain(np.arange(50))
                time.sleep(0.0002)

        threads = [threading.Thread(target=poller) for _ in range(2)]
        for th in threads:
            th.start()
        misses = 0
        try:
            for i in range(200):
                ids = np.arange(1000 + i * 20, 1000 + (i + 1) * 20)
                t.put(ids, {"x": ids})
                misses += int((~t.may_contain(ids)).sum())
        finally:
            stop.set()
            for th in threads:
                th.join(timeout=60)
        assert misses == 0


DEADLOCK_SCRIPT = r"""
import sys, threading, time
import vecstore
store = vecstore.open(sys.argv[1])
env = store._env
holding = threading.Event()

def writer():
    def fn(txn):
        holding.set()
        time.sleep(0.3)  # holds LMDB's writer lock; needs the GIL to wake up
        txn.put(b"k", b"v", db=env.db(b"meta"))
    env.write(fn)

env.db(b"meta", create=True)
t = threading.Thread(target=writer)
t.start()
holding.wait(10)
env.db(b"another", create=True)  # must wait without holding the GIL
t.join(10)
store.close()
print("done")
"""


def test_opening_a_sub_database_while_another_thread_writes_does_not_deadlock(tmp_path):
    # py-lmdb's open_db(txn=None) began its write transaction holding the GIL:
    # the writer thread then could never finish.  Bounded by the timeout.
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", DEADLOCK_SCRIPT, str(tmp_path / "s.vs")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr


NESTED_READ_SCRIPT = r"""
import sys, threading, time
import vecstore
from vecstore.errors import StorageError
store = vecstore.open(sys.argv[1], map_size=1 << 20)
env = store._env
outer_open, inner_done = threading.Event(), threading.Event()

def reader():
    with env.read():
        outer_open.set()
        time.sleep(0.3)  # the resize below starts meanwhile and waits for this transaction
        with env.read():  # a nested read must not wait for that resize
            pass
    inner_done.set()

t = threading.Thread(target=reader, daemon=True)
t.start()
outer_open.wait(10)
grower = threading.Thread(target=env._grow, daemon=True)
grower.start()
if not inner_done.wait(10):
    print("nested read deadlocked")
    sys.exit(1)
grower.join(10)
assert not grower.is_alive()
# A thread inside a transaction cannot resize the map: an error, not a hang.
with env.read():
    try:
        env._grow()
    except StorageError as e:
        print("refused:", e)
assert store._env._gate.held() == 0
store.close()
print("done")
"""


def test_a_nested_read_during_a_map_resize_does_not_deadlock(tmp_path):
    # The resize waits for the thread's outer read; the inner read used to wait
    # for the resize.  In a subprocess, bounded by the timeout, so a regression
    # fails instead of hanging the suite.
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", NESTED_READ_SCRIPT, str(tmp_path / "s.vs")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "done"
    assert lines[0].startswith("refused: growing the map needs every transaction of this process closed")
