"""``Table.verify``: check a table's rows and everything derived from them.

LMDB rows are the truth; this reports (never repairs) where anything
disagrees with them: rows that do not decode or sit under the wrong hash, ID
lists or category codes without their row or dictionary entry, Bloom false
negatives, HNSW indexes that miss rows, hold deleted ones or hold a
different vector, and derived snapshot files on disk that fail their
checksum (``bloom/*.bloom``, ``index/*.usearch``), whether or not this
process loaded them.  ``vecstore verify --repair``
(:func:`vecstore.maintenance.repair`) rebuilds derived structures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from .bloom import BloomFilter
from .errors import CorruptionError, InvalidIdError
from .hashing import decode_id
from .vector_index import snapshot_damage

if TYPE_CHECKING:
    from .table import Table

__all__ = ["verify_table"]


def verify_table(table: Table) -> list[str]:
    """Problems found in ``table``, one line each (empty: healthy)."""
    problems: list[str] = []
    bloom = table._sync_bloom()
    W = table.schema.record_size
    table._open()
    with table._env.read() as txn:
        table._check_valid(txn)
        row_keys: list[bytes] = []
        stored_ids: list[Any] = []
        records: list[bytes] = []
        for k, v in txn.cursor(table._db("rows")):
            row_keys.append(k)
            if len(v) <= W:
                problems.append(f"{table.name}: row {k.hex()} has {len(v)} bytes, expected {W} plus its ID")
                continue
            records.append(v[:W])
            try:
                stored_ids.append((k, decode_id(v[W:])))
            except (InvalidIdError, UnicodeDecodeError, IndexError):
                problems.append(f"{table.name}: stored ID of key {k.hex()} does not decode")
        if stored_ids:
            expect = table._ids([i for _, i in stored_ids]).keys
            got = np.frombuffer(b"".join(k for k, _ in stored_ids), dtype=">u8").astype(np.uint64)
            for j in np.flatnonzero(expect != got)[:10].tolist():
                problems.append(f"{table.name}: ID {stored_ids[j][1]!r} is stored under key {int(got[j]):#x}, not its hash")
        rowset = set(row_keys)
        for k, v in txn.cursor(table._db("var")):
            if k[:8] not in rowset:
                problems.append(f"{table.name}: ID list entry for missing row {k[:8].hex()}")
            try:
                if not isinstance(msgpack.unpackb(v), list):
                    raise ValueError("not a list")
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                problems.append(f"{table.name}: ID list of row {k[:8].hex()} does not decode")
    rec = np.frombuffer(b"".join(records), dtype=table.schema.record_dtype)
    for name in table._cat_codes:
        try:
            known = len(table._load_categories(name))
        except CorruptionError as e:
            problems.append(f"{table.name}: {e.message}")
            continue
        bad = int((rec[name] >= known).sum())
        if bad:
            problems.append(f"{table.name}: {bad} rows hold {name!r} codes missing from its dictionary")
    if row_keys:
        keys = np.frombuffer(b"".join(row_keys), dtype=">u8").astype(np.uint64)
        misses = int((~bloom.may_contain(keys)).sum())
        if misses:
            problems.append(f"{table.name}: Bloom filter misses {misses} stored keys (false negatives)")
    for d in table._all_derived():
        if d.load_problem:
            problems.append(f"{table.name}: {d.load_problem}")
    for vi in table._indexes.values():
        problems.extend(vi.verify())
    problems.extend(_snapshot_problems(table, problems))
    return problems


def _snapshot_problems(table: Table, known: list[str]) -> list[str]:
    """Derived snapshot files that fail their checks on disk (not already reported by a load)."""
    out: list[str] = []
    fix = "`vecstore verify --repair` rewrites it"

    def reported(name: str) -> bool:
        return any(name in p for p in known)

    path = table._bloom_state.path
    try:
        BloomFilter.load(path)
    except FileNotFoundError:
        pass
    except CorruptionError as e:
        if not reported(path.name):
            out.append(f"{table.name}: Bloom snapshot {path.name} is damaged ({e.message}); {fix}")
    for vi in table._indexes.values():
        for _, snap in vi.snapshots():
            try:
                damage = snapshot_damage(snap)
            except FileNotFoundError:
                continue  # replaced by a newer snapshot meanwhile
            if damage is not None and not reported(snap.name):
                out.append(f"{table.name}: index snapshot {snap.name} is damaged ({damage}); {fix}")
    return out
