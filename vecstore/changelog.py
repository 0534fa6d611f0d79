"""Each table's change log: the keys every committed put and delete touched.

LMDB is the single source of truth; the Bloom filter (and, later, the vector
index) are derived from it.  A derived structure remembers the log position
(``seq``) it reflects, so any process can bring it up to date by replaying the
entries after that position, whoever wrote them, and a crash between a commit
and the update of a derived file costs only a replay.

An entry is written in the same LMDB transaction as the rows it describes, so
the log and the rows can never disagree.  Entries are trimmed once every
derived structure has persisted a snapshot past them (see ``truncate``).

Entry layout (docs/format.md): key = seq as u64 big-endian; value = op (u8:
1 put, 2 delete), feature-mask length (u16 LE), feature mask bytes (bit i set
when the put carried feature i of the schema), then the keys as u64 LE.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["OP_DELETE", "OP_PUT", "LogEntry", "append", "entries", "first", "head", "truncate"]

OP_PUT = 1
OP_DELETE = 2
_HDR = struct.Struct("<BH")
_SEQ = struct.Struct(">Q")


@dataclass(frozen=True)
class LogEntry:
    seq: int
    op: int
    feature_mask: bytes
    keys: np.ndarray


def head(txn, db) -> int:
    """The last seq written (0 for a log that never had an entry)."""
    cur = txn.cursor(db)
    return _SEQ.unpack(cur.key())[0] if cur.last() else 0


def first(txn, db) -> int:
    """The oldest seq still present (0 when empty)."""
    cur = txn.cursor(db)
    return _SEQ.unpack(cur.key())[0] if cur.first() else 0


def append(txn, db, op: int, keys: np.ndarray, feature_mask: bytes = b"") -> int:
    """Add an entry after the current head, in the caller's write transaction; return its seq."""
    seq = head(txn, db) + 1
    value = _HDR.pack(op, len(feature_mask)) + feature_mask + np.ascontiguousarray(keys, dtype="<u8").tobytes()
    txn.put(_SEQ.pack(seq), value, db=db, append=True)
    return seq


def entries(txn, db, after: int) -> Iterator[LogEntry]:
    """Entries with seq > ``after``, oldest first."""
    cur = txn.cursor(db)
    if not cur.set_range(_SEQ.pack(after + 1)):
        return
    for k, v in cur:
        op, mlen = _HDR.unpack_from(v)
        off = _HDR.size + mlen
        yield LogEntry(_SEQ.unpack(k)[0], op, bytes(v[_HDR.size : off]), np.frombuffer(v, dtype="<u8", offset=off))


def truncate(txn, db, upto: int) -> int:
    """Delete entries with seq <= ``upto``, always keeping the newest (it records the head).

    Returns how many were deleted.
    """
    last = head(txn, db)
    upto = min(upto, last - 1)
    cur = txn.cursor(db)
    n = 0
    if not cur.first():
        return 0
    while _SEQ.unpack(cur.key())[0] <= upto:
        if not cur.delete():
            break
        n += 1
    return n
