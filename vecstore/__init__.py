"""vecstore: an embedded feature store and vector database for recommender systems.

One directory per store, LMDB underneath: feature tables keyed by entity IDs
(hashed to stable 64-bit keys), compact quantized features, a Bloom filter per
table, and derived structures that catch up after crashes and writes by other
processes.

Example::

    import numpy as np
    import vecstore

    with vecstore.open("shop.vs") as store:
        items = store.create_table("items", {
            "price": vecstore.Scalar("f32"),
            "category": vecstore.Category(),
            "embedding": vecstore.Vector(64, dtype="i8", metric="cos"),
        })
        items.put(["item-1"], {"price": [9.5], "category": ["books"],
                               "embedding": np.ones((1, 64), np.float32)})
        rows = items.get(["item-1"])
        print(rows["price"], rows["category"])
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    CorruptionError,
    ExportError,
    FormatVersionError,
    ImportFileError,
    IdCollisionError,
    IdNotFoundError,
    InvalidIdError,
    InvalidValueError,
    NotAStoreError,
    ReadOnlyError,
    SchemaError,
    StorageError,
    StoreBusyError,
    StoreClosedError,
    StoreNotFoundError,
    TableExistsError,
    TableNotFoundError,
    UnknownFeatureError,
    VecstoreError,
)
from .featurelog import (  # noqa: E402
    DriftReport,
    ExportResult,
    FeatureDrift,
    FeatureLog,
    LogInfo,
    LogStats,
    PruneReport,
)
from .features import HNSW, Category, IdList, Scalar, Vector  # noqa: E402
from .hashing import hash_ids  # noqa: E402
from .info import BloomInfo, FeatureInfo, IndexInfo, StoreInfo, TableInfo  # noqa: E402
from .remote import (  # noqa: E402
    AuthenticationError,
    OpStats,
    ProtocolError,
    RemoteError,
    ServerConnectionError,
    ServerStats,
    ServerTimeoutError,
    UnsupportedOperationError,
    aconnect,
    connect,
)
from .maintenance import BackupReport, CompactReport, RepairReport, StoreSizes, backup, compact, repair  # noqa: E402
from .rows import Rows  # noqa: E402
from .table_export import TableExportResult, export_table  # noqa: E402
from .table_import import ImportResult, import_file, infer_features  # noqa: E402
from .schema_file import SchemaFile, TableSpec, load_schema  # noqa: E402
from .search import SearchResult  # noqa: E402
from .store import FORMAT_VERSION, Store, open  # noqa: E402
from .table import Table  # noqa: E402

__all__ = [
    "AuthenticationError",
    "BackupReport",
    "BloomInfo",
    "Category",
    "CompactReport",
    "CorruptionError",
    "DriftReport",
    "ExportError",
    "ExportResult",
    "FORMAT_VERSION",
    "FeatureDrift",
    "FeatureInfo",
    "FeatureLog",
    "FormatVersionError",
    "HNSW",
    "IdCollisionError",
    "IdList",
    "IdNotFoundError",
    "ImportFileError",
    "ImportResult",
    "IndexInfo",
    "InvalidIdError",
    "InvalidValueError",
    "LogInfo",
    "LogStats",
    "NotAStoreError",
    "OpStats",
    "ProtocolError",
    "PruneReport",
    "ReadOnlyError",
    "RemoteError",
    "RepairReport",
    "Rows",
    "Scalar",
    "SchemaError",
    "SchemaFile",
    "SearchResult",
    "ServerConnectionError",
    "ServerStats",
    "ServerTimeoutError",
    "StorageError",
    "Store",
    "StoreBusyError",
    "StoreClosedError",
    "StoreInfo",
    "StoreNotFoundError",
    "StoreSizes",
    "Table",
    "TableExistsError",
    "TableExportResult",
    "TableInfo",
    "TableNotFoundError",
    "TableSpec",
    "UnknownFeatureError",
    "UnsupportedOperationError",
    "VecstoreError",
    "Vector",
    "__version__",
    "aconnect",
    "backup",
    "compact",
    "connect",
    "export_table",
    "hash_ids",
    "import_file",
    "infer_features",
    "load_schema",
    "open",
    "repair",
]
