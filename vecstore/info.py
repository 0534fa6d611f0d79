"""Typed, read-only reports: what ``Table.info()`` and ``Store.info()`` return.

Each report is a frozen dataclass with a ``to_dict()`` for JSON output (the
CLI's ``--json``) and field names that say their unit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BloomInfo", "FeatureInfo", "IndexInfo", "StoreInfo", "TableInfo"]


@dataclass(frozen=True)
class FeatureInfo:
    """One feature: its kind, storage dtype and stored bytes per row (0 for ID lists)."""

    name: str
    kind: str
    dtype: str
    bytes_per_row: int
    spec: dict[str, Any]


@dataclass(frozen=True)
class BloomInfo:
    """A table's Bloom filter: configured rate, size, fill and estimated false-positive rate."""

    configured_fpr: float
    estimated_fpr: float
    capacity: int
    count: int
    num_filters: int
    bytes: int
    seq: int


@dataclass(frozen=True)
class IndexInfo:
    """A vector feature's HNSW index: parameters, size and how far it is behind the rows.

    ``loaded`` says whether this process holds the index; when it does not,
    the figures describe the newest snapshot file (``vectors`` and
    ``tombstones`` are then -1 when no snapshot exists).  ``behind`` counts
    change-log entries the index has not absorbed yet (it catches up on the
    next search).  ``tombstones`` are removed vectors whose memory usearch has
    not reclaimed; a rebuild (automatic past ``tombstones > live / 4``, or
    ``rebuild_index``/``vecstore compact``) drops them.
    """

    feature: str
    dtype: str
    metric: str
    connectivity: int
    expansion_add: int
    expansion_search: int
    loaded: bool
    view: bool
    vectors: int
    tombstones: int
    memory_bytes: int
    file_bytes: int
    seq: int
    behind: int


@dataclass(frozen=True)
class TableInfo:
    """A table: row count, bytes in LMDB, per-feature layout and its Bloom filter."""

    name: str
    table_id: int
    rows: int
    record_bytes: int
    lmdb_bytes: int
    features: list[FeatureInfo]
    bloom: BloomInfo
    log_entries: int
    expected_size: int
    indexes: list[IndexInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StoreInfo:
    """A store: format, hashing, file and map sizes, free pages, the feature log and every table."""

    path: str
    format_version: int
    seed: int
    hash_bits: int
    uuid: str
    file_bytes: int
    map_size: int
    page_size: int
    readers: int  # reader slots LMDB has used so far (its high-water mark), not current readers
    tables: list[TableInfo] = field(default_factory=list)
    pages_total: int = 0  # pages up to LMDB's last used page
    pages_free: int = 0  # of those, pages no B-tree uses: reused before the file grows; `compact` returns them
    derived_bytes: int = 0  # Bloom and HNSW snapshot files (bloom/, index/)
    log: dict[str, Any] | None = None  # the feature log's LogInfo.to_dict(), None when nothing was logged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
