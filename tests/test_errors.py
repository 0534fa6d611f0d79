"""LMDB errors reach users wrapped, with a hint on what to do."""

from __future__ import annotations

import errno
import shutil

import lmdb
import pytest

import vecstore
from vecstore.errors import StorageError, wrap_lmdb_error


@pytest.mark.parametrize(
    "exc,hint",
    [
        (lmdb.ReadersFullError("mdb_txn_begin: MDB_READERS_FULL"), "max_readers"),
        (lmdb.CorruptedError("mdb_get: MDB_CORRUPTED"), "backup"),
        (lmdb.DbsFullError("mdb_dbi_open: MDB_DBS_FULL"), "max_tables"),
        (lmdb.MapFullError("mdb_put: MDB_MAP_FULL"), "bug"),
    ],
)
def test_wrapped_with_hint(exc, hint):
    err = wrap_lmdb_error(exc, "reading")
    assert isinstance(err, StorageError) and isinstance(err, vecstore.VecstoreError)
    assert err.cause is exc and hint in err.hint
    assert str(err).startswith("reading failed: ") and "\n" not in str(err)


def test_disk_full_gets_a_hint():
    err = wrap_lmdb_error(lmdb.Error(errno.ENOSPC, "No space left on device"), "writing")
    assert isinstance(err, StorageError)


def test_too_many_tables_is_a_storage_error_with_hint(tmp_path):
    with vecstore.open(tmp_path / "few.vs", max_tables=1) as s:
        s.create_table("a", {"x": vecstore.Scalar()})
        with pytest.raises(StorageError, match="max_tables"):
            for i in range(5):
                s.create_table(f"t{i}", {"x": vecstore.Scalar()})
        assert s.table("a") is not None


def test_hint_is_shown_in_str():
    err = vecstore.VecstoreError("it broke", hint="do this")
    assert str(err) == "it broke (hint: do this)"


def test_a_truncated_data_file_is_refused_not_crashed_on(tmp_path):
    # LMDB would read the missing pages through its memory map and die of
    # SIGBUS; the open checks the length first.  In subprocesses, so a
    # regression fails the test instead of killing the test run.
    import os
    import shutil
    import subprocess
    import sys

    import numpy as np

    good = tmp_path / "good.vs"
    with vecstore.open(good) as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64"), "v": vecstore.Vector(16)})
        t.put(np.arange(3000), {"x": np.arange(3000), "v": np.random.default_rng(0).normal(size=(3000, 16))})
    bad = tmp_path / "bad.vs"
    shutil.copytree(good, bad)
    os.truncate(bad / "data.mdb", (bad / "data.mdb").stat().st_size // 2)
    for args in (["info", str(bad)], ["verify", str(bad)], ["get", str(bad), "t", "1"]):
        out = subprocess.run([sys.executable, "-m", "vecstore.cli", *args], capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 1, (args, out.returncode, out.stderr)
        assert out.stderr.strip().count("\n") == 0 and "data.mdb is truncated" in out.stderr
    code = f"import vecstore\ntry:\n    vecstore.open({str(bad)!r}, readonly=True)\nexcept vecstore.CorruptionError as e:\n    print('refused', e)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.startswith("refused"), out.stderr
    with vecstore.open(good, readonly=True) as s:  # an intact store passes the check
        assert len(s.table("t")) == 3000


def test_open_errors_say_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "s.vs"
    with vecstore.open(path) as s:
        s.create_table("t", {"x": vecstore.Scalar("i64")})
        # LMDB refuses a second open of one environment in a process.
        with pytest.raises(StorageError, match="already open in this process") as info:
            vecstore.open(path, readonly=True)
        assert "share the Store you already have" in info.value.hint
    # A read-only open of a store whose lock.mdb this user cannot write: the
    # generic hint ("open with readonly=True") would send them in a circle.
    def refuse(*args, **kwargs):
        raise lmdb.ReadonlyError(str(path), "Permission denied")

    monkeypatch.setattr(lmdb, "open", refuse)
    with pytest.raises(StorageError, match="Permission denied") as info:
        vecstore.open(path, readonly=True)
    assert "needs write access to lock.mdb" in info.value.hint


def test_an_emptied_data_file_or_damaged_metadata_is_reported_not_replaced(tmp_path):
    def make(name: str):
        path = tmp_path / name
        with vecstore.open(path) as s:
            s.create_table("t", {"x": vecstore.Scalar("i64")}).put([1, 2], {"x": [1, 2]})
            s.table("t").may_contain([1])  # writes bloom/
        return path

    # An emptied data.mdb (a restore onto a full disk) was silently made a new,
    # empty store with a new seed: verify then said "ok".
    empty = make("empty.vs")
    (empty / "data.mdb").write_bytes(b"")
    for readonly in (False, True):
        with pytest.raises(vecstore.CorruptionError, match="data file .data.mdb. is empty") as info:
            vecstore.open(empty, readonly=readonly)
        assert "restore the store from a backup" in info.value.hint
    assert (empty / "data.mdb").stat().st_size == 0  # left as it was found

    # Damaged metadata and schema records: CorruptionError, not a ValueError from msgpack.
    for key, db, what in ((b"store", b"meta", "metadata record"), (b"t", b"schemas", "schema record of table 't'")):
        path = make(f"{db.decode()}.vs")
        env = lmdb.open(str(path), max_dbs=16)
        with env.begin(write=True) as txn:
            txn.put(key, b"\x81\x01\x02", db=env.open_db(db, txn=txn))  # a map with an int key
        env.close()
        with pytest.raises(vecstore.CorruptionError, match=what):
            vecstore.open(path).table("t")

    # Metadata lost from a store that has tables: damaged, not new (a new seed
    # would make every row unreachable), with or without derived files.
    lost = make("lost.vs")
    shutil.rmtree(lost / "bloom")
    env = lmdb.open(str(lost), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.delete(b"store", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(vecstore.CorruptionError, match="lost its metadata"):
        vecstore.open(lost)

    # backup decodes the schemas too: a damaged one is reported, not a crash.
    from vecstore.maintenance import backup

    with pytest.raises(vecstore.CorruptionError, match="schema record of table 't'"):
        backup(tmp_path / "schemas.vs", tmp_path / "copy.vs")


def test_a_seed_that_differs_from_the_stores_is_refused_not_ignored(tmp_path):
    path = tmp_path / "s.vs"
    vecstore.open(path, seed=7).close()
    vecstore.open(path, seed=7).close()  # its own seed: fine
    vecstore.open(path).close()
    with pytest.raises(vecstore.InvalidValueError, match="has the hash seed 7, not 5") as info:
        vecstore.open(path, seed=5)  # was silently ignored (also by `vecstore init --seed 5 --exist-ok`)
    assert "fixed when it is created" in info.value.hint


def test_a_store_without_its_data_file_is_reported_as_damaged(tmp_path):
    path = tmp_path / "s.vs"
    with vecstore.open(path) as s:
        t = s.create_table("t", {"x": vecstore.Scalar("i64")})
        t.put([1, 2], {"x": [1, 2]})
        t.may_contain([1])  # writes bloom/
    (path / "data.mdb").unlink()
    for readonly in (False, True):
        with pytest.raises(vecstore.CorruptionError, match="data file .data.mdb. is missing") as info:
            vecstore.open(path, readonly=readonly)
        assert "restore the store from a backup" in info.value.hint
    assert not (path / "data.mdb").exists()  # nothing was created in its place
    with pytest.raises(vecstore.NotAStoreError, match="non-empty directory"):  # a folder of something else
        other = tmp_path / "photos"
        other.mkdir()
        (other / "a.jpg").write_bytes(b"x")
        vecstore.open(other)
