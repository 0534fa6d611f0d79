"""Export a feature table to one Parquet file, streamed.

:func:`export_table` reads the table with ``Table.scan`` in batches and
writes them with ``pyarrow.parquet.ParquetWriter``, so memory stays bounded
by ``row_group_size`` rows whatever the table's size.  The file is written
under a temporary name in the target's directory and renamed into place
only when complete: a reader never sees half a file, and a failed export
leaves nothing behind.

Columns: ``id`` first, then one column per feature, missing values as nulls.
The file's key-value metadata (key ``vecstore.schema``) holds the table's
feature specs as JSON, so :func:`vecstore.import_file` recreates the exact
schema (codecs, HNSW parameters, defaults) from it.

Example::

    res = vecstore.export_table(store, "items", "items.parquet", features=["price", "embedding"])
    print(res.rows, res.bytes)
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import pyarrow as pa

from .errors import ExportError, ImportFileError, InvalidValueError, SchemaError
from .features import Category, Feature, IdList, Scalar, Vector, feature_from_dict
from .rows import MIXED_ID_TYPE, arrow_id_type, convert_ids, id_kinds

if TYPE_CHECKING:
    from .rows import Rows
    from .store import Store
    from .table import Table

__all__ = ["MIXED_ID_TYPE", "SCHEMA_METADATA_KEY", "TableExportResult", "export_table", "schema_from_metadata"]

# The Parquet key-value metadata entry that carries a table's vecstore schema
# (written here, read back by import_file), and the version of its JSON document.
SCHEMA_METADATA_KEY = b"vecstore.schema"
METADATA_VERSION = 1
# IDs of a table (or ID list) that mixes int and str/bytes IDs: each value
# sets the one field of its kind, so no two entities are merged.


@dataclass(frozen=True)
class TableExportResult:
    """What :func:`export_table` wrote: ``rows`` rows of ``table`` into ``path`` (``bytes`` on disk)."""

    table: str
    path: str
    rows: int
    bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "path": self.path, "rows": self.rows, "bytes": self.bytes, "seconds": self.seconds}


def schema_from_metadata(metadata: Mapping[bytes, bytes] | None) -> dict[str, Any] | None:
    """The vecstore schema document an exported Parquet file carries, or None.

    ``{"features": {name: Feature}, "expected_size": int | None, "bloom_fpr": float | None}``.
    """
    raw = (metadata or {}).get(SCHEMA_METADATA_KEY)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        # stored=True: a file exported from an older store keeps that store's defaults.
        feats = {n: feature_from_dict(d, stored=True) for n, d in doc["features"].items()}
    except (ValueError, KeyError, TypeError, SchemaError) as e:
        raise ImportFileError(f"the file's vecstore schema metadata is damaged: {e}") from None
    return {"features": feats, "expected_size": doc.get("expected_size"), "bloom_fpr": doc.get("bloom_fpr")}


# -- fixing the column types before the first batch ------------------------------------


def _survey(table: Table, idlists: list[str], batch_size: int) -> tuple[set[str], dict[str, set[str]]]:
    """One pass over the IDs (and ID lists) to learn their types: Parquet needs them before the first row."""
    ids: set[str] = set()
    lists: dict[str, set[str]] = {f: set() for f in idlists}
    for rows in table.scan(batch_size=batch_size, features=idlists):
        id_kinds(rows.ids, ids)
        for f in idlists:
            for v in rows[f]:
                if v:
                    id_kinds(v, lists[f])
    return ids, lists


def _feature_type(spec: Feature, list_type: pa.DataType | None) -> pa.DataType:
    if isinstance(spec, Scalar):
        return pa.from_numpy_dtype(spec.value_dtype)
    if isinstance(spec, Category):
        return pa.string()
    if isinstance(spec, IdList):
        assert list_type is not None
        return pa.list_(list_type)
    assert isinstance(spec, Vector)
    return pa.list_(pa.float32(), int(spec.dim))


# -- batches ----------------------------------------------------------------------------


def _column(rows: Rows, name: str, spec: Feature, typ: pa.DataType) -> pa.Array:
    if isinstance(spec, Vector):
        present = rows.present(name)
        flat = pa.array(np.ascontiguousarray(rows[name], dtype=np.float32).reshape(-1))
        mask = None if present.all() else pa.array(~present)
        return pa.FixedSizeListArray.from_arrays(flat, int(spec.dim), mask=mask)
    if isinstance(spec, Scalar):
        present = rows.present(name)
        return pa.array(rows[name], type=typ, mask=None if present.all() else ~present)
    if isinstance(spec, Category):
        return pa.array(rows[name].tolist(), type=typ)
    item = typ.value_type
    values = rows[name].tolist()
    if item == MIXED_ID_TYPE or not pa.types.is_int64(item) and any(
        isinstance(x, (bytes if pa.types.is_string(item) else str)) for v in values if v for x in v
    ):
        values = [None if v is None else convert_ids(v, item) for v in values]
    return pa.array(values, type=typ)


def _batch(rows: Rows, schema: pa.Schema, specs: dict[str, Feature]) -> pa.RecordBatch:
    cols = [pa.array(convert_ids(rows.ids, schema.field(0).type), type=schema.field(0).type)]
    cols += [_column(rows, n, specs[n], schema.field(n).type) for n in specs]
    return pa.RecordBatch.from_arrays(cols, schema=schema)


# -- the public function ----------------------------------------------------------------------


@overload
def export_table(
    source: Table, table_or_path: str | os.PathLike[str], path: None = None, *,
    features: Sequence[str] | None = None, batch_size: int = 10_000, row_group_size: int = 100_000,
    compression: str = "zstd", progress: Callable[[int, int | None], None] | None = None, overwrite: bool = False,
) -> TableExportResult: ...


@overload
def export_table(
    source: Store, table_or_path: str, path: str | os.PathLike[str], *,
    features: Sequence[str] | None = None, batch_size: int = 10_000, row_group_size: int = 100_000,
    compression: str = "zstd", progress: Callable[[int, int | None], None] | None = None, overwrite: bool = False,
) -> TableExportResult: ...


def export_table(
    source: Any,
    table_or_path: Any,
    path: Any = None,
    *,
    features: Sequence[str] | None = None,
    batch_size: int = 10_000,
    row_group_size: int = 100_000,
    compression: str = "zstd",
    progress: Callable[[int, int | None], None] | None = None,
    overwrite: bool = False,
) -> TableExportResult:
    """Write a table (or the ``features`` subset of it) to a Parquet file.

    Called as ``export_table(table, path)`` or ``export_table(store, "name", path)``.

    Columns: ``id`` (int64 when every ID is an int, string when they are str
    or UTF-8 bytes, binary when some bytes ID is not UTF-8; a table mixing int
    and str/bytes IDs gets a struct of ``int``, ``str`` and ``bytes`` fields,
    one set per row, which import reads back), then each feature: scalars as their
    ``get`` dtype (f16 as float32), categories as strings, ID lists as lists
    (element type chosen as for ``id``), vectors as fixed-size lists of
    float32, dequantized as ``get`` returns them.  A value the row lacks is
    a null.  Before writing, one pass over the IDs (and ID lists) fixes
    those column types.

    Rows are read ``batch_size`` at a time and written in row groups of
    ``row_group_size`` rows with ``compression``; ``progress(rows_done,
    rows_total)`` is called after each batch.  The file appears at ``path``
    only when complete; an existing ``path`` raises ExportError unless
    ``overwrite=True``.

    Example::

        res = vecstore.export_table(store, "items", "items.parquet")
        res2 = vecstore.export_table(store.table("users"), "users.parquet", features=["age"], overwrite=True)
    """
    t0 = time.perf_counter()
    if path is None:
        table, target = source, table_or_path
    else:
        table, target = source.table(table_or_path), path
    for name, v in (("batch_size", batch_size), ("row_group_size", row_group_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InvalidValueError(f"{name} must be a positive integer, got {v!r}")
    feats = table._resolve_features(features)
    specs = {n: table.schema.features[n] for n in feats}
    out = Path(target)
    if out.is_dir():
        raise ExportError(f"{out} is a directory; export writes one Parquet file", hint="give a file path such as items.parquet")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists", hint="pass overwrite=True (CLI: --overwrite) or pick another path")
    if not out.parent.is_dir():
        raise ExportError(f"directory {out.parent} does not exist")

    idlists = [n for n, s in specs.items() if isinstance(s, IdList)]
    id_kinds, list_kinds = _survey(table, idlists, batch_size)
    id_type = arrow_id_type(id_kinds)
    list_types = {f: arrow_id_type(k) for f, k in list_kinds.items()}
    doc = {
        "version": METADATA_VERSION,
        "table": table.name,
        "id_column": "id",
        "features": {n: s.to_dict() for n, s in specs.items()},
        "expected_size": table.schema.expected_size,
        "bloom_fpr": table.schema.bloom_fpr,
    }
    fields = [pa.field("id", id_type, nullable=False)]
    fields += [pa.field(n, _feature_type(s, list_types.get(n))) for n, s in specs.items()]
    schema = pa.schema(fields, metadata={SCHEMA_METADATA_KEY: json.dumps(doc).encode()})

    total = len(table)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    rows_done = 0
    try:
        rows_done = _write(table, tmp, schema, specs, feats, batch_size, row_group_size, compression, progress, total)
        _publish(tmp, out, overwrite)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(e, (pa.ArrowException, OSError)) and not isinstance(e, FileNotFoundError | FileExistsError):
            raise ExportError(f"writing {out} failed: {e}") from e
        raise
    seconds = time.perf_counter() - t0
    return TableExportResult(table=table.name, path=str(out), rows=rows_done, bytes=out.stat().st_size, seconds=seconds)


def _write(
    table: Table, tmp: Path, schema: pa.Schema, specs: dict[str, Feature], feats: list[str], batch_size: int,
    row_group_size: int, compression: str, progress: Callable[[int, int | None], None] | None, total: int,
) -> int:
    import pyarrow.parquet as pq

    done = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    try:
        writer = pq.ParquetWriter(tmp, schema, compression=compression)
    except (ValueError, pa.ArrowException) as e:
        raise ExportError(f"cannot write Parquet with compression={compression!r}: {e}") from None
    with writer:
        for rows in table.scan(batch_size=batch_size, features=feats):
            try:
                pending.append(_batch(rows, schema, specs))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                # The survey fixed the types; a writer that added other kinds of IDs meanwhile ends here.
                raise ExportError(f"table {table.name!r} changed during the export: {e}", hint="export again") from None
            pending_rows += len(rows)
            done += len(rows)
            # Whole row groups only, so memory holds at most one group plus one batch.
            while pending_rows >= row_group_size:
                group = pa.Table.from_batches(pending, schema=schema)
                writer.write_table(group.slice(0, row_group_size), row_group_size=row_group_size)
                rest = group.slice(row_group_size)
                pending, pending_rows = rest.to_batches(), rest.num_rows
            if progress is not None:
                progress(done, total)
        if pending_rows:
            writer.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=row_group_size)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())  # the data is on disk before the name points at it
    return done


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, out)
    else:
        # link() refuses an existing name atomically: a file that appeared
        # during the export is not clobbered.
        try:
            os.link(tmp, out)
        except FileExistsError:
            raise ExportError(f"{out} already exists (created during the export)", hint="pass overwrite=True (CLI: --overwrite)") from None
        except OSError:
            if out.exists():
                raise ExportError(f"{out} already exists", hint="pass overwrite=True (CLI: --overwrite)") from None
            os.replace(tmp, out)  # a filesystem without hard links
        else:
            tmp.unlink()
    with contextlib.suppress(OSError):
        fd = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
