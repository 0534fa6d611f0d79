"""Every error vecstore raises, under one base class.

Each exception carries a one-line ``message`` that says what went wrong and,
where there is one, a ``hint`` that says what to do about it.  The CLI prints
``str(error)`` as is and the sidecar sends ``type(error).__name__`` and
``str(error)`` in its error frames, so messages are written for people.

Where a builtin exception describes the same situation (a bad value, an
unknown name) the vecstore error also derives from it, so
``except ValueError`` keeps working in code that does not know vecstore.

Example::

    try:
        items.put(["a"], {"embedding": np.zeros((1, 3))})
    except vecstore.InvalidValueError as e:
        print(e)   # feature 'embedding' expects vectors of dimension 64 ...
"""

from __future__ import annotations

import errno
from typing import Any

__all__ = [
    "CorruptionError",
    "ExportError",
    "ImportFileError",
    "FormatVersionError",
    "IdCollisionError",
    "IdNotFoundError",
    "InvalidIdError",
    "InvalidValueError",
    "NotAStoreError",
    "ReadOnlyError",
    "SchemaError",
    "StoreBusyError",
    "StorageError",
    "StoreClosedError",
    "StoreNotFoundError",
    "TableExistsError",
    "TableNotFoundError",
    "UnknownFeatureError",
    "VecstoreError",
    "wrap_lmdb_error",
]


class VecstoreError(Exception):
    """Base class of every error raised by vecstore.

    ``message`` says what went wrong; ``hint``, when set, what to do.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class SchemaError(VecstoreError, ValueError):
    """A table schema or feature definition is invalid."""


class TableNotFoundError(VecstoreError, LookupError):
    """The named table does not exist in the store."""


class TableExistsError(VecstoreError, ValueError):
    """``create_table`` was asked for a name that is already taken."""


class UnknownFeatureError(VecstoreError, LookupError):
    """A feature name is not part of the table's schema."""


class InvalidIdError(VecstoreError, TypeError):
    """An entity ID has an unsupported type or value (IDs are str, bytes or int)."""


class InvalidValueError(VecstoreError, ValueError):
    """A feature value does not fit its feature: wrong shape, length, range or NaN."""


class IdNotFoundError(VecstoreError, LookupError):
    """An operation needs a stored row (e.g. ``search_by_id``) and the ID has none."""


class IdCollisionError(VecstoreError):
    """Two different IDs hash to the same 64-bit key.

    Attributes ``key`` (the u64 key), ``existing_id`` and ``new_id`` name both
    sides.  Nothing of the batch that raised it was written.
    """

    def __init__(self, key: int, existing_id: Any, new_id: Any, *, table: str) -> None:
        self.key = key
        self.existing_id = existing_id
        self.new_id = new_id
        self.table = table
        super().__init__(
            f"ID {new_id!r} collides with existing ID {existing_id!r} in table "
            f"{table!r}: both hash to key {key:#018x}; nothing of this batch was written",
            hint="rename one of the entities (for example add a prefix); "
            "a store never merges two IDs that share a key",
        )


class FormatVersionError(VecstoreError):
    """The store was written by a newer on-disk format than this vecstore reads."""


class NotAStoreError(VecstoreError):
    """The path exists but does not hold a vecstore store."""


class StoreNotFoundError(VecstoreError, FileNotFoundError):
    """No store exists at the path and the call may not create one."""


class StoreClosedError(VecstoreError):
    """The store (or a table of it) was used after ``close()``."""


class ReadOnlyError(VecstoreError):
    """A write was attempted on a store opened with ``readonly=True``."""


class CorruptionError(VecstoreError):
    """Stored bytes fail a consistency check (checksum, length or magic number)."""


class StorageError(VecstoreError):
    """An error from the LMDB storage layer, wrapped with a hint on what to do.

    ``cause`` is the original ``lmdb.Error``.
    """

    def __init__(self, message: str, *, hint: str | None = None, cause: BaseException | None = None) -> None:
        super().__init__(message, hint=hint)
        self.cause = cause


# Hints keyed by the py-lmdb exception class name, so this module does not need
# to import lmdb to be importable (it is imported by everything else).
_LMDB_HINTS: dict[str, str] = {
    "MapFullError": "the store grows its map by itself, so this is a bug in vecstore: please report it",
    "MapResizedError": "another process grew the store; retry the call",
    "ReadersFullError": "too many concurrent readers: open the store with a larger max_readers=, "
    "or check for processes that died holding read transactions (`vecstore verify` clears stale ones)",
    "DiskError": "the disk reported an I/O error or is full: free space and retry; committed data is intact",
    "CorruptedError": "the LMDB file is damaged: restore it from a backup (`vecstore backup`) ",
    "PanicError": "LMDB hit a fatal error: close every process using the store and reopen it",
    "VersionMismatchError": "the store was written by an incompatible LMDB version",
    "InvalidError": "the file is not an LMDB environment or was written on another architecture",
    "ReadonlyError": "the store files are read-only for this user: check permissions, or open with readonly=True",
    "LockError": "could not take the store's lock file: check permissions on lock.mdb",
    "DbsFullError": "the store holds too many tables: drop unused tables or open with a larger max_tables=",
    "BadValsizeError": "a key or value is larger than LMDB allows",
    "TxnFullError": "the write is too large for one transaction: split it into smaller batches",
}


def wrap_lmdb_error(exc: BaseException, action: str) -> StorageError:
    """Turn an ``lmdb.Error`` raised while doing ``action`` into a StorageError with a hint."""
    name = type(exc).__name__
    hint = _LMDB_HINTS.get(name)
    if hint is None and isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        hint = _LMDB_HINTS["DiskError"]
    text = str(exc).splitlines()[0] if str(exc) else name
    return StorageError(f"{action} failed: {text}", hint=hint, cause=exc)


class ExportError(VecstoreError):
    """A feature-log export cannot be written: the target is not empty, or logged types disagree."""


class ImportFileError(VecstoreError):
    """A file given to ``import_file`` cannot be read: unknown format, missing ID column, bad rows."""


class StoreBusyError(VecstoreError):
    """The store is in use in a way that forbids the operation.

    Raised by compaction while another process (a server, a service) has the
    store open, and by opening a store while it is being compacted.
    """
