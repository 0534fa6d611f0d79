"""Schema files: a store's tables and features written down in TOML.

``vecstore init PATH --schema schema.toml`` creates a store from one, and
``vecstore import --schema`` uses one to override the schema it would infer
from a file.  The format (docs/schema.md, example in docs/schema.example.toml)::

    [store]
    seed = 42                      # optional: XXH3 seed for IDs (creation only)

    [tables.items]
    expected_size = 100_000        # optional: sizes the Bloom filter
    bloom_fpr = 0.01               # optional

    [tables.items.features]
    price = "f32"                  # a bare scalar dtype is a Scalar
    category = "category"          # "category" / "idlist" name the kind
    tags = "idlist"
    popularity = { kind = "scalar", dtype = "f16", default = 0.0 }
    embedding = { kind = "vector", dim = 64, dtype = "i8", metric = "cos",
                  index = { dtype = "i8", connectivity = 16 } }
    raw = { kind = "vector", dim = 8, index = false }   # no HNSW index

Features keep the order they are written in.  Every mistake (an unknown key,
kind or dtype, a missing ``dim``) is a :class:`SchemaError` naming the table
and feature, raised before anything is created.

Example::

    spec = vecstore.load_schema("schema.toml")
    with vecstore.open("shop.vs", seed=spec.seed) as store:
        spec.create_tables(store)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SchemaError, VecstoreError
from .features import HNSW, SCALAR_DTYPES, Category, Feature, IdList, Scalar, Vector
from .schema import check_name, check_new_table

if TYPE_CHECKING:
    from .store import Store
    from .table import Table

__all__ = ["SchemaFile", "TableSpec", "load_schema", "parse_schema"]

_TABLE_KEYS = {"features", "expected_size", "bloom_fpr"}
_FEATURE_KEYS = {
    "scalar": {"kind", "dtype", "default"},
    "category": {"kind"},
    "idlist": {"kind", "max_len"},
    "vector": {"kind", "dim", "dtype", "metric", "index"},
}
_INDEX_KEYS = {"dtype", "connectivity", "expansion_add", "expansion_search"}


@dataclass(frozen=True)
class TableSpec:
    """One table of a schema file: its features (in file order) and Bloom sizing."""

    name: str
    features: dict[str, Feature]
    expected_size: int = 1_000_000
    bloom_fpr: float = 0.01

    def create(self, store: Store, *, exist_ok: bool = False) -> Table:
        """Create this table in ``store`` (``exist_ok``: accept an identical existing one)."""
        return store.create_table(
            self.name, self.features, expected_size=self.expected_size, bloom_fpr=self.bloom_fpr, exist_ok=exist_ok
        )


@dataclass(frozen=True)
class SchemaFile:
    """A parsed schema file: the store's seed (or None) and its tables."""

    tables: dict[str, TableSpec]
    seed: int | None = None
    source: str = "<string>"
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self, name: str) -> TableSpec:
        """The spec of table ``name``; SchemaError if the file does not define it."""
        try:
            return self.tables[name]
        except KeyError:
            raise SchemaError(
                f"{self.source} defines no table {name!r} (it has: {', '.join(self.tables) or 'none'})",
                hint=f"add a [tables.{name}.features] section",
            ) from None

    def create_tables(self, store: Store, *, exist_ok: bool = False) -> list[Table]:
        """Create every table in ``store``, in file order."""
        return [spec.create(store, exist_ok=exist_ok) for spec in self.tables.values()]


def load_schema(path: str | os.PathLike[str]) -> SchemaFile:
    """Read and validate a TOML schema file.

    Example::

        spec = vecstore.load_schema("docs/schema.example.toml")
        print(list(spec.tables))
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(f"schema file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SchemaError(f"cannot read schema file {p}: {e}") from None
    return parse_schema(text, source=str(p))


def parse_schema(text: str, *, source: str = "<string>") -> SchemaFile:
    """Parse schema TOML from a string (see the module docstring for the format)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SchemaError(f"{source} is not valid TOML: {e}") from None
    unknown = set(doc) - {"store", "tables"}
    if unknown:
        raise SchemaError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}", hint="use [store] and [tables.NAME]")
    store = doc.get("store", {})
    if not isinstance(store, dict) or set(store) - {"seed"}:
        raise SchemaError(f"{source}: [store] takes only 'seed'")
    seed = store.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise SchemaError(f"{source}: store seed must be an integer in [0, 2**64), got {seed!r}")
    tables_doc = doc.get("tables", {})
    if not isinstance(tables_doc, dict) or not tables_doc:
        raise SchemaError(f"{source} defines no tables", hint="add a [tables.NAME.features] section")
    tables = {name: _table(source, name, t) for name, t in tables_doc.items()}
    return SchemaFile(tables=tables, seed=seed, source=source)


def _table(source: str, name: str, doc: Any) -> TableSpec:
    where = f"{source}: table {name!r}"
    if not isinstance(doc, dict):
        raise SchemaError(f"{where} must be a table ([tables.{name}])")
    unknown = set(doc) - _TABLE_KEYS
    if unknown:
        raise SchemaError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", hint=f"use {', '.join(sorted(_TABLE_KEYS))}")
    feats = doc.get("features")
    if not isinstance(feats, dict) or not feats:
        hint = (f"list at least one feature under [tables.{name}.features]" if isinstance(feats, dict)
                else f"add a [tables.{name}.features] section")
        raise SchemaError(f"{where} has no features", hint=hint)
    features = {fname: _feature(f"{where}, feature {fname!r}", spec) for fname, spec in feats.items()}
    try:
        # Names are checked here, not at create time, so `vecstore init` creates nothing for a bad one.
        check_new_table(name, features)
        for fname in features:
            check_name(fname, "feature")
    except SchemaError as e:
        raise SchemaError(f"{where}: {e.message}", hint=e.hint) from None
    kwargs: dict[str, Any] = {}
    if "expected_size" in doc:
        v = doc["expected_size"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SchemaError(f"{where}: expected_size must be a positive integer, got {v!r}")
        kwargs["expected_size"] = v
    if "bloom_fpr" in doc:
        v = doc["bloom_fpr"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
            raise SchemaError(f"{where}: bloom_fpr must be a number in (0, 1), got {v!r}")
        kwargs["bloom_fpr"] = float(v)
    return TableSpec(name, features, **kwargs)


def _feature(where: str, spec: Any) -> Feature:
    if isinstance(spec, str):
        if spec in SCALAR_DTYPES:
            return Scalar(spec)
        if spec == "category":
            return Category()
        if spec == "idlist":
            return IdList()
        raise SchemaError(
            f"{where}: {spec!r} is neither a scalar dtype nor 'category'/'idlist'",
            hint='vectors need a table: { kind = "vector", dim = 64 }',
        )
    if not isinstance(spec, dict):
        raise SchemaError(f"{where}: expected a string or an inline table, got {spec!r}")
    kind = spec.get("kind")
    if kind not in _FEATURE_KEYS:
        raise SchemaError(f"{where}: unknown kind {kind!r}", hint=f"use one of {', '.join(_FEATURE_KEYS)}")
    unknown = set(spec) - _FEATURE_KEYS[kind]
    if unknown:
        raise SchemaError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} for a {kind}")
    try:
        if kind == "scalar":
            return Scalar(spec.get("dtype", "f32"), default=spec.get("default"))
        if kind == "category":
            return Category()
        if kind == "idlist":
            return IdList(max_len=spec.get("max_len"))
        if "dim" not in spec:
            raise SchemaError("a vector needs dim")
        index = spec.get("index", True)
        hnsw: HNSW | None
        if index is True:
            hnsw = HNSW()
        elif index is False:
            hnsw = None
        elif isinstance(index, dict):
            bad = set(index) - _INDEX_KEYS
            if bad:
                raise SchemaError(f"unknown index key(s) {', '.join(sorted(bad))}", hint=f"use {', '.join(sorted(_INDEX_KEYS))}")
            hnsw = HNSW(**index)
        else:
            raise SchemaError(f"index must be true, false or an inline table, got {index!r}")
        return Vector(spec["dim"], dtype=spec.get("dtype", "f32"), metric=spec.get("metric", "cos"), index=hnsw)
    except VecstoreError as e:
        if e.message.startswith(where):
            raise
        raise SchemaError(f"{where}: {e.message}", hint=e.hint) from None
