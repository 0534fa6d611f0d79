"""The store grows by itself: LMDB map, Bloom filter past expected_size, derived-file catch-up."""

from __future__ import annotations

import numpy as np

import vecstore
from vecstore.table import table_db_names


def test_map_grows_without_map_full_error(tmp_path, rng):
    with vecstore.open(tmp_path / "small.vs", map_size=1 << 20) as s:
        t = s.create_table("t", {"v": vecstore.Vector(256, dtype="f32")})
        for i in range(6):  # ~6 MB of vectors into a 1 MiB map
            ids = np.arange(i * 1000, (i + 1) * 1000)
            t.put(ids, {"v": rng.normal(size=(1000, 256)).astype(np.float32)})
        assert len(t) == 6000
        assert s.info().map_size > 1 << 20
    # One transaction larger than several doublings at once.
    with vecstore.open(tmp_path / "big-txn.vs", map_size=1 << 20) as s:
        t = s.create_table("t", {"v": vecstore.Vector(256, dtype="f32")})
        t.put(np.arange(20_000), {"v": rng.normal(size=(20_000, 256)).astype(np.float32)})
        assert len(t) == 20_000


def test_bloom_grows_past_expected_size_and_stays_accurate(tmp_path):
    with vecstore.open(tmp_path / "bloom.vs") as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")}, expected_size=2_000, bloom_fpr=0.01)
        t.may_contain([0])  # build the filter while the table is empty
        stored = np.arange(0, 10_000)
        for chunk in np.array_split(stored, 10):
            t.put(chunk, {"x": chunk})
        assert t.may_contain(stored).all()
        info = t.info().bloom
        # Keys that already tested positive (false positives) are not counted again.
        assert info.num_filters > 1 and 9_800 <= info.count <= 10_000
        absent = np.arange(10_000_000, 10_200_000)
        measured = t.may_contain(absent).mean()
        assert measured <= 1.5 * 0.01


def test_bloom_snapshot_reused_and_caught_up(tmp_path):
    path = tmp_path / "snap.vs"
    with vecstore.open(path) as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")}, expected_size=1000)
        t.put(np.arange(100), {"x": np.arange(100)})
        t.may_contain([1])
    bloom_file = path / "bloom" / "t1.bloom"
    assert bloom_file.exists()
    # A write by a process that never built the filter leaves the snapshot behind...
    with vecstore.open(path) as s:
        s.table("t").put(np.arange(100, 200), {"x": np.arange(100, 200)})
    # ...and the next reader catches up from the change log instead of missing them.
    with vecstore.open(path) as s:
        t = s.table("t")
        assert t.may_contain(np.arange(200)).all()
        assert 195 <= t.info().bloom.count <= 200


def test_damaged_bloom_file_is_rebuilt_from_rows(tmp_path):
    path = tmp_path / "damaged.vs"
    with vecstore.open(path) as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")})
        t.put(np.arange(500), {"x": np.arange(500)})
        t.may_contain([0])
    f = path / "bloom" / "t1.bloom"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with vecstore.open(path) as s:
        t = s.table("t")
        assert t.may_contain(np.arange(500)).all()
        # verify reports the damaged snapshot (the filter in use was rebuilt from the rows)...
        assert any("Bloom snapshot t1.bloom was unreadable" in p for p in t.verify())
        t.rebuild_bloom()  # ...and a rebuild saves a sound one (what `vecstore verify --repair` does)
        assert t.verify() == []
    f.unlink()
    with vecstore.open(path) as s:
        assert s.table("t").may_contain(np.arange(500)).all()


def test_bloom_snapshot_mode_and_temp_files_of_dead_processes(tmp_path):
    import os
    import subprocess
    import sys
    import time

    path = tmp_path / "perm.vs"
    old = os.umask(0o022)
    try:
        with vecstore.open(path) as s:
            t = s.create_table("t", {"x": vecstore.Scalar("i64")})
            t.put(np.arange(100), {"x": np.arange(100)})
            t.may_contain([0])
    finally:
        os.umask(old)
    folder = path / "bloom"
    # Readable by whoever may read data.mdb (it was 0600, so other users' reads failed).
    assert (folder / "t1.bloom").stat().st_mode & 0o777 == 0o644
    # Temp files of saves that crashed: one of a process that is gone, one of an
    # older version (no pid) and an hour old, one of a live process (this one).
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    gone = folder / f".t1.bloom.0badcafe.{int(dead.stdout)}.tmp"
    legacy = folder / ".t1.bloom.k3j2h1.tmp"
    live = folder / f".t1.bloom.0badcafe.{os.getpid()}.tmp"
    for f in (gone, legacy, live):
        f.write_bytes(b"partial")
    hour_ago = time.time() - 7200
    os.utime(legacy, (hour_ago, hour_ago))
    with vecstore.open(path) as s:
        s.table("t").rebuild_bloom()  # saves the snapshot: the next save cleans up
    assert not gone.exists() and not legacy.exists()
    assert live.exists()  # a save of a live process may still be writing it


def test_change_log_is_trimmed_once_snapshots_absorb_it(tmp_path):
    path = tmp_path / "trim.vs"
    with vecstore.open(path) as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")})
        t.may_contain([0])
        for i in range(50):
            t.put([i], {"x": [i]})
        assert t.info().log_entries == 50
        s.flush()
        assert t.info().log_entries == 1  # the newest entry is kept: it records the log head
        t.put([999], {"x": [1]})
        assert t.may_contain(list(range(50)) + [999]).all()


def test_rebuild_bloom_forgets_deleted_ids(tmp_path):
    with vecstore.open(tmp_path / "rb.vs") as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")}, expected_size=1000)
        t.may_contain([0])  # build the filter before the deletes
        t.put(np.arange(1000), {"x": np.arange(1000)})
        t.delete(np.arange(500))
        assert t.info().bloom.count >= 990  # deletes stay in the filter until a rebuild
        info = t.rebuild_bloom()
        assert info.count == 500
        assert t.may_contain(np.arange(500, 1000)).all()
        assert t.may_contain(np.arange(500)).mean() < 0.05


def test_drop_table_removes_its_files_and_sub_databases(tmp_path):
    path = tmp_path / "drop.vs"
    with vecstore.open(path) as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")})
        t.put([1], {"x": [1]})
        t.may_contain([1])
        s.flush()
        assert (path / "bloom" / "t1.bloom").exists()
        s.drop_table("t")
        assert not (path / "bloom" / "t1.bloom").exists()
        for name in table_db_names(1):
            assert s._env.db(name) is None


def test_change_log_stays_short_for_a_write_only_process(tmp_path):
    from vecstore.derived import LOG_SOFT_LIMIT as _LOG_SOFT_LIMIT

    with vecstore.open(tmp_path / "wo.vs") as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")})
        for i in range(3 * _LOG_SOFT_LIMIT):  # never calls may_contain
            t.put([i], {"x": [i]})
        assert t.info().log_entries <= _LOG_SOFT_LIMIT + 1
        assert t.may_contain(list(range(3 * _LOG_SOFT_LIMIT))).all()


def test_bloom_sync_records_the_snapshot_it_read(tmp_path, monkeypatch):
    # LMDB shows a commit in the meta page (env info) a moment before new readers
    # see it. A sync inside that window must not mark the commit as absorbed.
    with vecstore.open(tmp_path / "window.vs") as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")})
        t.put([1], {"x": [1]})
        assert t.may_contain(1)
        real = s._env.last_txnid
        monkeypatch.setattr(s._env, "last_txnid", lambda: real() + 1)
        t.may_contain(0)  # syncs while the next txnid is already reported
        monkeypatch.undo()
        t.put([2], {"x": [2]})  # that next commit
        assert t.may_contain(2)
