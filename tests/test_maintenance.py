"""Store maintenance: the process lock, compact, backup, repair (vecstore/maintenance.py, dirlock.py)."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import vecstore
from vecstore import dirlock
from vecstore.dirlock import LOCK_NAME, DirLock
from vecstore.errors import InvalidValueError, StoreBusyError
from vecstore.maintenance import backup, compact, repair, store_sizes
from vecstore.vector_index import snapshot_damage

DIM = 16
DAY = 86400.0


def make_store(path, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    with vecstore.open(path) as s:
        t = s.create_table(
            "items",
            {"price": vecstore.Scalar("f32"), "cat": vecstore.Category(), "e": vecstore.Vector(DIM, metric="cos")},
            expected_size=n,
        )
        ids = [f"item-{i}" for i in range(n)]
        t.put(ids, {"price": rng.random(n).astype(np.float32), "cat": [f"c{i % 7}" for i in range(n)], "e": vecs})
        t.may_contain(ids[:1])  # load the Bloom filter, so close saves it
        t.rebuild_index()
    return vecs


def digest(path):
    return hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()


HOLDER = textwrap.dedent(
    """
    import sys, vecstore
    store = vecstore.open(sys.argv[1], readonly=sys.argv[2] == "ro")
    print("open", flush=True)
    sys.stdin.readline()
    store.close()
    """
)


def hold_open(path, mode="rw"):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "open"
    return proc


def release(proc):
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(timeout=60)
    assert proc.returncode == 0


# -- the lock ---------------------------------------------------------------------


def test_every_open_holds_a_shared_lock_and_close_releases_it(tmp_path):
    path = tmp_path / "s.vs"
    a = vecstore.open(path)
    assert (path / LOCK_NAME).exists()
    b = DirLock.shared(path)  # a second holder (each its own open file description)
    with pytest.raises(StoreBusyError, match="stop the server"):
        DirLock.exclusive(path)
    a.close()
    with pytest.raises(StoreBusyError):
        DirLock.exclusive(path)  # b still holds it
    b.release()
    with DirLock.exclusive(path):
        pass
    with vecstore.open(path, readonly=True) as r:  # read-only opens take it too
        assert r._dirlock.held
        with pytest.raises(StoreBusyError):
            DirLock.exclusive(path)


def test_a_directory_holding_only_the_lock_file_is_not_foreign(tmp_path):
    path = tmp_path / "s.vs"
    path.mkdir()
    (path / LOCK_NAME).touch()  # what a creator racing with us leaves before LMDB's files
    with vecstore.open(path) as s:
        assert s.tables() == []
    other = tmp_path / "junk"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(vecstore.NotAStoreError):
        vecstore.open(other)
    assert not (other / LOCK_NAME).exists()


def test_open_while_compaction_holds_the_lock_waits_then_raises(tmp_path):
    path = tmp_path / "s.vs"
    vecstore.open(path).close()
    with DirLock.exclusive(path):
        with pytest.raises(StoreBusyError, match="being compacted"):
            vecstore.open(path, lock_timeout=0.2)
        with pytest.raises(StoreBusyError):
            vecstore.open(path, readonly=True, lock_timeout=0)
    with vecstore.open(path, lock_timeout=0) as s:  # released: opens at once
        assert s.tables() == []


def test_open_during_a_real_compaction_is_refused(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=200)
    seen = []

    def progress(done, total):
        if not seen:
            with pytest.raises(StoreBusyError):
                vecstore.open(path, lock_timeout=0.05)
            seen.append(done)

    compact(path, progress=progress)
    assert seen


def test_lock_timeout_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VECSTORE_LOCK_TIMEOUT", "0.1")
    assert dirlock.default_timeout() == 0.1
    monkeypatch.setenv("VECSTORE_LOCK_TIMEOUT", "nonsense")
    assert dirlock.default_timeout() == dirlock.DEFAULT_LOCK_TIMEOUT


def test_readonly_open_without_a_creatable_lock_file_skips_the_lock(tmp_path, monkeypatch):
    path = tmp_path / "s.vs"
    make_store(path, n=50)
    (path / LOCK_NAME).unlink()

    def refuse(p):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(dirlock, "_open_lock_file", refuse)
    with vecstore.open(path, readonly=True) as s:  # a read-only directory: no lock, still works
        assert s._dirlock.held is False
        assert len(s.table("items")) == 50
    with pytest.raises(vecstore.StorageError, match="lock file"):
        vecstore.open(path)


def _child_closes(store, q):
    store.close()  # closes the child's copy of the descriptor: never LOCK_UN
    q.put("closed")


def test_a_forked_child_closing_its_copy_keeps_the_parents_lock(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=50)
    s = vecstore.open(path)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_closes, args=(s, q))
    p.start()
    assert q.get(timeout=60) == "closed"
    p.join(timeout=30)
    assert p.exitcode == 0
    with pytest.raises(StoreBusyError):
        compact(path)  # the parent still has it open
    assert len(s.table("items")) == 50
    s.close()
    assert compact(path).rows == {"items": 50}


# -- compact ----------------------------------------------------------------------


def test_compact_shrinks_and_keeps_every_live_row_and_search(tmp_path):
    path = tmp_path / "s.vs"
    vecs = make_store(path)
    keep = [i for i in range(len(vecs)) if i % 10 == 0]
    with vecstore.open(path) as s:
        t = s.table("items")
        t.delete([f"item-{i}" for i in range(len(vecs)) if i % 10])
        t.search(vecs[0], k=1)
        t._indexes["e"].persist(force=True)  # (so many deletes made the index rebuild itself already)
        ids = [f"item-{i}" for i in keep]
        before_rows = t.get(ids, raw=True)
        before_exact = t.search(vecs[keep[:20]], k=5, exact=True).ids
    size0 = store_sizes(path)
    steps = []
    report = compact(path, progress=lambda done, total: steps.append((done, total)))
    assert steps[-1][0] == steps[-1][1]
    assert report.rows == {"items": len(keep)}
    assert report.pages_freed > 0 and report.pages_after < report.pages_before
    assert report.after.data_bytes < report.before.data_bytes == size0.data_bytes
    assert report.after.data_bytes < 0.5 * report.before.data_bytes
    assert report.after.derived_bytes < report.before.derived_bytes  # no tombstones, no deleted IDs
    assert set(report.rebuilt) == {"items: Bloom filter"}  # the index held no removed vectors
    assert report.to_dict()["pages_freed"] == report.pages_freed
    assert not list(path.glob(".compact-*"))
    with vecstore.open(path) as s:
        t = s.table("items")
        assert s.verify() == []
        after = t.get(ids, raw=True)
        assert after.found.all()
        for f in ("price", "cat", "e"):
            np.testing.assert_array_equal(np.asarray(after[f]), np.asarray(before_rows[f]))
        assert t.search(vecs[keep[:20]], k=5, exact=True).ids == before_exact
        assert t.search(vecs[keep[:20]], k=1).ids == [[f"item-{i}"] for i in keep[:20]]
        info = t.info()
        assert info.indexes[0].tombstones == 0 and info.indexes[0].vectors == len(keep)
        assert not t.may_contain([f"item-{i}" for i in range(1, 200, 10)]).all()  # deleted IDs left the filter
        t.put(["new"], {"price": [1.0], "e": vecs[:1]})  # writable after the swap
        assert t.search(vecs[0], k=2).ids == ["item-0", "new"] or set(t.search(vecs[0], k=2).ids) == {"item-0", "new"}


def test_compact_refuses_while_another_store_of_this_process_has_it_open(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=100)
    before = digest(path)
    with vecstore.open(path, readonly=True), pytest.raises(StoreBusyError, match="stop the server"):
        compact(path)
    assert digest(path) == before
    assert not list(path.glob(".compact-*"))


@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_compact_refuses_while_another_process_has_it_open(tmp_path, mode):
    path = tmp_path / "s.vs"
    make_store(path, n=100)
    before = digest(path)
    proc = hold_open(path, mode)
    try:
        with pytest.raises(StoreBusyError, match=f"pid {proc.pid}"):
            compact(path)
        assert digest(path) == before
    finally:
        release(proc)
    assert compact(path).rows == {"items": 100}


def test_leftover_temp_dirs_of_a_crashed_compaction_are_ignored_then_removed(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=100)
    for where in (path, path / "logs" / "index"):
        junk = where / ".compact-999999-deadbeef.tmp"
        junk.mkdir(parents=True)
        (junk / "data.mdb").write_bytes(b"half a copy")
    with vecstore.open(path) as s:  # open does not mind
        assert len(s.table("items")) == 100 and s.verify() == []
    report = compact(path)
    assert report.temp_dirs_removed == 2
    assert not list(path.rglob(".compact-*"))
    with vecstore.open(path) as s:
        assert s.verify() == []


def test_a_crash_before_the_swap_leaves_the_old_store(tmp_path, monkeypatch):
    path = tmp_path / "s.vs"
    make_store(path, n=100)

    def crash(*a, **k):
        raise KeyboardInterrupt  # stands for a crash just before the rename

    import vecstore.maintenance as m

    monkeypatch.setattr(m.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        compact(path)
    monkeypatch.undo()
    with vecstore.open(path) as s:
        assert len(s.table("items")) == 100 and s.verify() == []


def test_compact_keep_logs_days_prunes_old_records(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=100)
    now = time.time()
    with vecstore.open(path) as s:
        for d in (20, 10, 1, 0):
            for r in range(5):
                s.log.ranking(f"r{d}-{r}", ["item-1", "item-2"], [1.0, 0.5], table="items", ts=now - d * DAY)
    with vecstore.open(path) as s:
        assert s.log.info().ranking_calls == 20
    with pytest.raises(InvalidValueError):
        compact(path, keep_logs_days=-1)
    report = compact(path, keep_logs_days=5)
    assert report.log_pruned["records_removed"] == 10
    assert report.log_compacted is not None
    with vecstore.open(path) as s:
        info = s.log.info()
        assert info.ranking_calls == 10
        assert info.first_ts >= now - 5 * DAY
        assert s.log.verify() == [] and s.verify() == []


# -- backup -----------------------------------------------------------------------


WRITER = textwrap.dedent(
    """
    import os, sys, numpy as np, vecstore
    store = vecstore.open(sys.argv[1])
    t = store.table("proc")
    rng = np.random.default_rng(1)
    for i in range(3000):
        if os.path.exists(sys.argv[2]):
            break
        ids = [f"p{i}-{j}" for j in range(20)]
        t.put(ids, {"batch": np.full(20, i), "e": rng.standard_normal((20, DIM))})
        print(i, flush=True)
    store.close()
    """
).replace("DIM", str(DIM))


def prefix_batches(t, prefix):
    """The batch numbers present; asserts they form a prefix 0..m-1 and each batch is whole."""
    seen: dict[int, int] = {}
    for rows in t.scan(features=["batch"]):
        for i, b in zip(rows.ids, rows["batch"].tolist()):
            assert i.startswith(prefix)
            seen[int(b)] = seen.get(int(b), 0) + 1
    m = len(seen)
    assert sorted(seen) == list(range(m)), "not a prefix of the writes"
    assert set(seen.values()) <= {20}, "a partial batch"
    return m


def test_backup_while_a_thread_and_a_process_keep_writing(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=300)
    with vecstore.open(path) as s:
        for name in ("thread", "proc"):
            s.create_table(name, {"batch": vecstore.Scalar("i64"), "e": vecstore.Vector(DIM)}, expected_size=1000)
    store = vecstore.open(path)
    stop = threading.Event()
    written = [0]

    def writer():
        rng = np.random.default_rng(2)
        t = store.table("thread")
        for i in range(2000):
            if stop.is_set():
                return
            t.put([f"t{i}-{j}" for j in range(20)], {"batch": np.full(20, i), "e": rng.standard_normal((20, DIM))})
            store.log.ranking(f"req-{i}", ["item-1"], [1.0], table="items")
            written[0] = i + 1

    th = threading.Thread(target=writer)
    th.start()
    stop_file = tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(stop_file)], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(5):  # the process has written 5 batches, and goes on, when the backup starts
            proc.stdout.readline()
        for _ in range(600):
            if written[0] >= 5:
                break
            time.sleep(0.05)
        report = backup(path, tmp_path / "bk.vs")
    finally:
        stop.set()
        stop_file.touch()
        th.join(timeout=120)
        proc.communicate(timeout=120)
    store.close()
    assert proc.returncode == 0
    assert report.snapshot_files >= 2 and report.log_files >= 1
    with vecstore.open(tmp_path / "bk.vs") as b:
        assert b.verify() == []
        assert len(b.table("items")) == 300
        assert prefix_batches(b.table("thread"), "t") == report.tables["thread"]["rows"] // 20 >= 5
        assert prefix_batches(b.table("proc"), "p") == report.tables["proc"]["rows"] // 20 >= 5
        assert b.log.verify() == []
        assert b.log.info().ranking_calls >= 1
        hits = b.table("items").search(np.ones(DIM), k=3)
        assert len(hits.ids) == 3


def test_backup_of_an_idle_store_is_identical_in_content(tmp_path):
    path = tmp_path / "s.vs"
    vecs = make_store(path, n=400)
    dest = tmp_path / "empty-dir"
    dest.mkdir()  # an empty directory is fine
    steps = []
    report = backup(path, dest, logs=False, progress=lambda d, t: steps.append((d, t)))
    assert steps and steps[-1][0] == steps[-1][1]
    assert report.tables == {"items": {"rows": 400, "seq": report.tables["items"]["seq"]}}
    assert not (dest / LOCK_NAME).exists() and not (dest / "lock.mdb").exists()
    with vecstore.open(path) as a, vecstore.open(dest) as b:
        ids = [f"item-{i}" for i in range(400)]
        ra, rb = a.table("items").get(ids, raw=True), b.table("items").get(ids, raw=True)
        for f in ("price", "cat", "e"):
            np.testing.assert_array_equal(np.asarray(ra[f]), np.asarray(rb[f]))
        assert b.table("items").search(vecs[:10], k=1).ids == [[f"item-{i}"] for i in range(10)]
        assert b.table("items").info().indexes[0].seq == a.table("items").info().indexes[0].seq  # snapshot reused
        assert b.verify() == []


def test_backup_of_an_open_store_object_reuses_its_environment(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=100)
    with vecstore.open(path) as s:
        s.table("items").put(["extra"], {"price": [2.0]})
        report = backup(s, tmp_path / "a.vs")  # a Store (a server's)
        report2 = backup(path, tmp_path / "b.vs")  # or its path, while this process has it open
        assert s.table("items").contains("extra")
    assert report.tables["items"]["rows"] == report2.tables["items"]["rows"] == 101
    for name in ("a.vs", "b.vs"):
        with vecstore.open(tmp_path / name) as b:
            assert b.table("items").contains("extra") and b.verify() == []


def test_backup_refuses_a_non_empty_destination(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=20)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "precious.txt").write_text("keep me")
    with pytest.raises(InvalidValueError, match="not an empty directory"):
        backup(path, dest)
    assert [p.name for p in dest.iterdir()] == ["precious.txt"]
    with pytest.raises(InvalidValueError, match="inside the store"):
        backup(path, path / "bk")
    assert not list(tmp_path.glob(".*.tmp"))


def test_backup_with_an_older_or_missing_snapshot_catches_up(tmp_path):
    path = tmp_path / "s.vs"
    vecs = make_store(path, n=300)
    old_snaps = {p.name: p.read_bytes() for p in (path / "index").iterdir()}
    with vecstore.open(path) as s:
        t = s.table("items")
        t.put(["late"], {"e": -vecs[:1]})
        t.rebuild_index()  # the source's snapshot moves on
    dest = tmp_path / "bk.vs"
    backup(path, dest)
    # Put the older snapshot back in the backup (as if it had been copied just before the new save).
    for p in (dest / "index").iterdir():
        p.unlink()
    for name, data in old_snaps.items():
        (dest / "index" / name).write_bytes(data)
    with vecstore.open(dest) as b:
        assert b.table("items").search(-vecs[0], k=1).ids == ["late"]
        assert b.verify() == []
    for p in (dest / "index").iterdir():
        p.unlink()
    (dest / "bloom" / "t1.bloom").unlink()
    with vecstore.open(dest) as b:  # missing snapshots: rebuilt from the rows
        assert b.table("items").may_contain(["late"])
        assert b.verify() == []


# -- verify and repair -------------------------------------------------------------------


def damage(p, at=None):
    data = bytearray(p.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at : at + 64] = b"\xa5" * 64
    p.write_bytes(bytes(data))


def test_damaged_index_and_bloom_snapshots_are_detected_and_repaired(tmp_path):
    path = tmp_path / "s.vs"
    vecs = make_store(path, n=500)
    (snap,) = (path / "index").glob("*.usearch")
    bloom = path / "bloom" / "t1.bloom"
    damage(snap, at=len(snap.read_bytes()) - 200)  # the graph's tail: usearch itself would not notice
    damage(bloom)
    with vecstore.open(path) as s:
        problems = s.verify()
        assert any("index snapshot" in p and snap.name in p for p in problems), problems
        assert any("Bloom snapshot" in p for p in problems), problems
    with vecstore.open(path) as s:
        report = repair(s)
        assert report.problems_before and report.ok
        assert set(report.rebuilt) == {"items: Bloom filter", "items: index of 'e'"}
        assert report.to_dict()["ok"] is True
        assert s.verify() == []
        assert s.table("items").search(vecs[:10], k=1).ids == [[f"item-{i}"] for i in range(10)]
    snaps = list((path / "index").glob("*.usearch"))
    assert len(snaps) == 1 and snapshot_damage(snaps[0]) is None  # the damaged snapshot was replaced
    with vecstore.open(path) as s:
        assert s.verify() == []
        assert s.table("items").may_contain([f"item-{i}" for i in range(500)]).all()
    assert repair(path).rebuilt == []  # healthy: nothing to do


def test_verify_reports_a_damaged_snapshot_while_a_good_index_is_loaded(tmp_path):
    path = tmp_path / "s.vs"
    vecs = make_store(path, n=200)
    with vecstore.open(path) as s:
        t = s.table("items")
        t.search(vecs[0], k=1)  # loaded from the snapshot
        (snap,) = (path / "index").glob("*.usearch")
        damage(snap)
        assert any("is damaged" in p for p in t.verify())
        assert repair(s).ok


def test_repair_rebuilds_a_feature_log_index_that_is_ahead(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path, n=20)
    with vecstore.open(path) as s:
        for r in range(5):
            s.log.ranking(f"r{r}", ["item-1"], [1.0], table="items")
    (seg,) = (path / "logs" / "segments").glob("*.vsl")
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) - 10])  # an OS crash lost the tail the index had covered
    report = repair(path)
    assert report.ok, report.problems_after
    with vecstore.open(path) as s:
        assert s.log.info().ranking_calls == 4


def test_a_snapshot_named_without_a_checksum_is_still_used(tmp_path):
    path = tmp_path / "s.vs"
    vecs = make_store(path, n=200)
    (snap,) = (path / "index").glob("*.usearch")
    legacy = snap.with_name(snap.name.split(".x")[0] + ".usearch")  # as written before checksums
    snap.rename(legacy)
    with vecstore.open(path) as s:
        t = s.table("items")
        assert t.search(vecs[0], k=1).ids == ["item-0"]
        assert t.info().indexes[0].file_bytes == legacy.stat().st_size
        assert t._indexes["e"].saved_seq == t._indexes["e"].seq  # loaded, not rebuilt
        assert t.verify() == []


def test_compact_rebuilds_an_index_only_when_it_holds_removed_vectors(tmp_path):
    path = tmp_path / "s.vs"
    make_store(path)
    first = compact(path)
    assert "items: index of 'e'" not in first.rebuilt  # nothing deleted: caught up and saved, not rebuilt
    with vecstore.open(path) as s:
        t = s.table("items")
        t.delete([f"item-{i}" for i in range(100)])  # below the automatic rebuild threshold
        t.search(np.ones(DIM, np.float32), k=1)
        assert t._indexes["e"].tombstones == 100
    second = compact(path)
    assert "items: index of 'e'" in second.rebuilt
    with vecstore.open(path, readonly=True) as s:
        t = s.table("items")
        assert s.verify() == [] and t.info().indexes[0].tombstones == 0 and t.info().indexes[0].vectors == 2900
