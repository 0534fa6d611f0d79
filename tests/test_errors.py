"""LMDB errors reach users wrapped, with a hint on what to do."""

from __future__ import annotations

import errno

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
