"""Packaging and public API: package-dir mapping, pinned __all__, library layering."""

from __future__ import annotations

import pathlib
import re
import tomllib

import vecstore

ROOT = pathlib.Path(__file__).resolve().parents[1]

PUBLIC_API = [
    "AuthenticationError", "BackupReport", "BloomInfo", "Category", "CompactReport", "CorruptionError",
    "DriftReport", "ExportError", "ExportResult", "FORMAT_VERSION", "FeatureDrift", "FeatureInfo", "FeatureLog",
    "FormatVersionError", "HNSW", "IdCollisionError", "IdList", "IdNotFoundError", "ImportFileError",
    "ImportResult", "IndexInfo", "InvalidIdError", "InvalidValueError", "LogInfo", "LogStats", "NotAStoreError",
    "OpStats", "ProtocolError", "PruneReport", "ReadOnlyError", "RemoteError", "RepairReport", "Rows", "Scalar",
    "SchemaError", "SchemaFile", "SearchResult", "ServerConnectionError", "ServerStats", "ServerTimeoutError",
    "StorageError", "Store", "StoreBusyError", "StoreClosedError", "StoreInfo", "StoreNotFoundError", "StoreSizes",
    "Table", "TableExistsError", "TableExportResult", "TableInfo", "TableNotFoundError", "TableSpec",
    "UnknownFeatureError", "UnsupportedOperationError", "VecstoreError", "Vector", "__version__", "aconnect",
    "backup", "compact", "connect", "export_table", "hash_ids", "import_file", "infer_features", "load_schema",
    "open", "repair",
]


def test_all_is_sorted_and_pinned():
    assert vecstore.__all__ == sorted(vecstore.__all__)
    assert vecstore.__all__ == PUBLIC_API
    for name in vecstore.__all__:
        assert hasattr(vecstore, name), name


def test_every_error_derives_from_the_base():
    for name in vecstore.__all__:
        obj = getattr(vecstore, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, vecstore.VecstoreError), name


def test_package_dir_lists_every_subpackage_folder():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = cfg["package-dir"]
    packages = set(cfg["packages"])
    assert mapping["vecstore.server"] == "server" and mapping["vecstore.cli"] == "cli"
    assert "server" not in packages and "cli" not in packages
    for prefix, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            dotted = ".".join([prefix, *rel.parts]) if rel.parts else prefix
            assert dotted in packages, f"{init.parent} is not listed in pyproject packages as {dotted}"


def test_library_imports_neither_click_nor_sockets():
    for py in (ROOT / "vecstore").rglob("*.py"):
        text = py.read_text()
        assert not re.search(r"^\s*(import|from)\s+(click|socket|asyncio)\b", text, re.M), py


def test_modules_stay_small():
    for folder in ("vecstore", "server", "cli"):
        for py in (ROOT / folder).rglob("*.py"):
            assert len(py.read_text().splitlines()) <= 800, f"{py} is over 800 lines: split it"
