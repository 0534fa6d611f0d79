"""Bulk import of feature tables from Parquet, CSV, JSON Lines and ``.npy`` files.

:func:`import_file` streams a file into a table in batches of ``batch_size``
rows, each written with ``Table.put``, so a file larger than memory loads
with bounded memory.  A missing table is created from the vecstore schema an
exported Parquet file carries, else from the Arrow types
(:func:`infer_features`), with ``features=`` overriding per column.  A null
is "no value": nothing is written for that cell.  Everything checkable is
checked before the first write; an error in a later batch keeps the batches
already committed and says so.  docs/import-export.md has the full rules.

Example::

    res = vecstore.import_file(store, "items", "items.parquet", id_column="item_id")
    print(res.rows, res.created, res.rows_per_s)
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .derived import catch_up
from .errors import (
    ImportFileError,
    InvalidIdError,
    InvalidValueError,
    SchemaError,
    UnknownFeatureError,
    VecstoreError,
)
from .features import Category, Feature, IdList, Scalar, Vector
from .import_sources import (
    csv_first_non_int,
    csv_header,
    detect_format,
    explain_read_error,
    open_csv,
    open_jsonl,
    open_npy,
    open_parquet,
    read_guarded,
    rebatch,
)
from .rows import idlist_values, is_mixed_id_type, unmix_ids
from .schema import check_features_match
from .table_export import schema_from_metadata

if TYPE_CHECKING:
    from .store import Store
    from .table import Table

__all__ = ["ImportResult", "import_file", "infer_features"]

_INT_NAMES = {8: "i8", 16: "i16", 32: "i32", 64: "i64"}
_OVERRIDE_HINT = "give the column a feature with features= (CLI: --schema), or leave it out with columns="


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_file` did.

    ``rows``: rows read from the file and written; ``batches``: ``put`` batches;
    ``created``: whether the table was created; ``features``: its schema when
    created (else None); ``seconds`` and ``rows_per_s``: wall time and rate.
    """

    table: str
    rows: int
    batches: int
    created: bool
    features: dict[str, Feature] | None
    seconds: float
    rows_per_s: float  # of the load itself, index building left out
    index_seconds: float = 0.0  # bringing indexes and the Bloom filter up to date afterwards

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["features"] = None if self.features is None else {n: s.to_dict() for n, s in self.features.items()}
        return out


# -- schema inference ----------------------------------------------------------


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or t == getattr(pa, "string_view", pa.string)()


def _is_list(t: pa.DataType) -> bool:  # variable size
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _starts_with(path: Path, prefix: bytes) -> bool:
    """Whether the file's first non-blank bytes (after a UTF-8 BOM) are ``prefix``."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(prefix)


def _check_id_type(t: pa.DataType, id_column: str) -> None:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        # What text readers infer for a column with no values at all.
        raise ImportFileError(f"ID column {id_column!r} holds no values: the file has no data rows, or no IDs in them")
    if not (pa.types.is_integer(t) or _is_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t) or is_mixed_id_type(t)):
        raise ImportFileError(
            f"ID column {id_column!r} has type {t}; IDs must be strings or integers",
            hint="pick another column with id_column= (CLI: --id-column)",
        )


def _infer_one(name: str, t: pa.DataType, sample: pa.RecordBatch | None) -> Feature:
    if pa.types.is_floating(t):
        return Scalar({16: "f16", 32: "f32", 64: "f64"}[t.bit_width])
    if pa.types.is_integer(t):
        return Scalar(("i" if pa.types.is_signed_integer(t) else "u") + _INT_NAMES[t.bit_width][1:])
    if pa.types.is_boolean(t):
        return Scalar("bool")
    if _is_string(t) or (pa.types.is_dictionary(t) and _is_string(t.value_type)):
        return Category()
    if _is_list(t) and (_is_string(t.value_type) or pa.types.is_integer(t.value_type) or is_mixed_id_type(t.value_type)):
        return IdList()
    if pa.types.is_fixed_size_list(t) and pa.types.is_floating(t.value_type):
        return Vector(t.list_size, dtype="f32")
    if _is_list(t) and pa.types.is_floating(t.value_type):
        # A variable-size list is a vector only if the sample shows one length:
        # JSON has no fixed-size lists, so this is how JSONL vectors arrive.
        lengths: set[int] = set()
        if sample is not None and name in sample.schema.names:
            col = sample.column(name)
            lengths = set(col.drop_null().value_lengths().to_numpy(zero_copy_only=False).tolist())
        if len(lengths) == 1 and 0 not in lengths:
            return Vector(lengths.pop(), dtype="f32")
        seen = "no sample rows" if not lengths else f"lengths {sorted(lengths)[:5]}"
        raise SchemaError(
            f"column {name!r} is a variable-size list of floats ({t}) and the first rows show {seen}, "
            "so it cannot be taken as a vector",
            hint="give it a Vector(dim) with features= (CLI: --schema), write it as a fixed-size list, "
            "or leave it out with columns=",
        )
    if pa.types.is_null(t):
        raise SchemaError(f"column {name!r} holds no values in the first rows to infer a feature type from", hint=_OVERRIDE_HINT)
    raise SchemaError(f"column {name!r} has type {t}, which no vecstore feature holds", hint=_OVERRIDE_HINT)


def infer_features(
    schema: pa.Schema, *, id_column: str, sample: pa.RecordBatch | None = None
) -> dict[str, Feature]:
    """The feature spec of every column of an Arrow schema except the ID column.

    ==========================================  ==================================
    Arrow type                                  feature
    ==========================================  ==================================
    float16 / float32 / float64                 ``Scalar("f16" / "f32" / "f64")``
    int8..int64, uint8..uint64                  ``Scalar("i8".."u64")``, same width
    bool                                        ``Scalar("bool")``
    string, large_string, dictionary<string>    ``Category()``
    list / large_list of string or integer      ``IdList()``
    fixed_size_list<float*>[d]                  ``Vector(d, dtype="f32")`` (default HNSW index)
    list<float*>                                ``Vector(d)`` if every row of ``sample``
                                                has length d, else SchemaError
    ==========================================  ==================================

    Anything else (timestamps, structs, nested lists, all-null columns) raises
    SchemaError naming the column and its type.  The ID column must exist and
    hold strings or integers (ImportFileError otherwise).

    Example::

        schema = pa.schema([("id", pa.string()), ("price", pa.float32())])
        infer_features(schema, id_column="id")   # {'price': Scalar(dtype='f32', default=None)}
    """
    if id_column not in schema.names:
        raise ImportFileError(
            f"the file has no ID column {id_column!r} (columns: {', '.join(schema.names) or 'none'})",
            hint="name the ID column with id_column= (CLI: --id-column)",
        )
    _check_id_type(schema.field(id_column).type, id_column)
    return {f.name: _infer_one(f.name, f.type, sample) for f in schema if f.name != id_column}


def _check_column_type(name: str, spec: Feature, t: pa.DataType) -> None:
    """Refuse, before anything is written, a column whose Arrow type cannot hold its feature."""
    if pa.types.is_null(t):
        return  # all nulls: nothing will be written for it
    if pa.types.is_dictionary(t):
        t = t.value_type
    ok: bool
    if isinstance(spec, Scalar):
        ok = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
    elif isinstance(spec, Category):
        ok = _is_string(t)
    elif isinstance(spec, IdList):
        v = t.value_type if _is_list(t) else None
        ok = v is not None and (
            _is_string(v) or pa.types.is_integer(v) or pa.types.is_binary(v) or pa.types.is_null(v) or is_mixed_id_type(v)
        )
    else:
        assert isinstance(spec, Vector)
        if pa.types.is_fixed_size_list(t) and t.list_size != spec.dim:
            raise SchemaError(f"column {name!r} holds vectors of dimension {t.list_size}; feature {name!r} has dim {spec.dim}")
        ok = (_is_list(t) or pa.types.is_fixed_size_list(t)) and (
            pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)
        )
    if not ok:
        raise SchemaError(
            f"column {name!r} has type {t}, which cannot hold feature {name!r} ({spec.to_dict()})",
            hint="convert the column in the file, or leave it out with columns= (CLI: --columns)",
        )


# -- reading files in batches ---------------------------------------------------


def _arrow_type(spec: Feature) -> pa.DataType | None:
    """The type a text reader should parse a column as, so ``features=`` decides, not guessing."""
    if isinstance(spec, Scalar):
        # Parse wide and let put check the range: its error names the row and value.
        if spec.dtype == "bool":
            return pa.bool_()
        return pa.uint64() if spec.dtype == "u64" else pa.float64() if spec.dtype[0] == "f" else pa.int64()
    if isinstance(spec, Category):
        return pa.string()
    return None


def _ids_as_ints(existing: Table | None, odd: tuple[str, str] | None) -> bool:
    """Whether a text file's IDs become int IDs (else str); ``odd`` is its first ID that is no plain integer.

    A file with such an ID holds str IDs.  A file of integers only gives int
    IDs, except into a table of str IDs: a file of updates names the rows it
    updates ("42" stays "42").  The table's kind is judged on up to 1,000
    stored IDs (key order is hash order: a fair sample).  Where a guess could
    add a second kind of ID to a table, this raises ImportFileError instead:
    a str ID into a table of int IDs, or digits into a table of both kinds.
    """
    stored = next(existing.ids(batch_size=1000), []) if existing is not None else []
    kinds = {"int" if isinstance(x, int) else "str" for x in stored}
    if odd is not None:
        if kinds == {"int"}:
            assert existing is not None
            raise ImportFileError(
                f"ID {odd[1]!r} at {odd[0]} is not an integer (written plainly, as in 42 or -5), "
                f"but table {existing.name!r} holds int IDs",
                hint="fix that ID; if the table should hold str IDs, write them to a JSON Lines or Parquet file",
            )
        return False
    if len(kinds) > 1:
        assert existing is not None
        raise ImportFileError(
            f"table {existing.name!r} holds both int and str IDs, so the file's IDs (all digits) could be either",
            hint='write the IDs to a JSON Lines or Parquet file, where 42 and "42" are different values',
        )
    return kinds != {"str"}


def _with_int_ids(batch: pa.RecordBatch, id_column: str, path: Path) -> pa.RecordBatch:
    """``batch`` with its text ID column as int64 (every ID was checked to be a plain integer before the import began)."""
    try:
        ints = pc.cast(batch.column(id_column), pa.int64())
    except pa.ArrowInvalid:
        raise ImportFileError(f"{path} changed during the import: an ID that was an integer is not any more") from None
    return batch.set_column(batch.schema.get_field_index(id_column), id_column, ints)


# -- turning batches into puts ------------------------------------------------------


def _ids_of(col: pa.Array, start: int, id_column: str) -> Any:
    if col.null_count:
        bad = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        err = ImportFileError(f"ID column {id_column!r} is empty at row {start + bad}", hint="every row needs an ID")
        err.row = start + bad  # type: ignore[attr-defined]
        raise err
    if pa.types.is_integer(col.type):
        return col.to_numpy(zero_copy_only=False)
    # An explicit empty string is an ID like any other, as in put() (so an
    # exported table imports back); an empty CSV cell reads as null, above.
    values = unmix_ids(col.to_pylist()) if is_mixed_id_type(col.type) else col.to_pylist()
    return np.array(values + [None], dtype=object)[:-1]  # the None keeps bytes/str objects 1-D


def _column_values(name: str, spec: Feature, col: pa.Array) -> Any:
    """One null-free Arrow column as ``put`` takes it."""
    if isinstance(spec, Vector):
        if _is_list(col.type):
            lengths = col.value_lengths().to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lengths != spec.dim)
            if len(bad):
                i = int(bad[0])
                raise InvalidValueError(f"feature {name!r} expects vectors of dimension {spec.dim}, row {i} has {lengths[i]}")
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(col), spec.dim)
    if isinstance(spec, Scalar):
        return col.to_numpy(zero_copy_only=False)
    if isinstance(spec, IdList):
        return idlist_values(col)
    return col.to_pylist()


def _null_groups(
    batch: pa.RecordBatch, names: list[str], repeats: bool = False
) -> list[tuple[np.ndarray | None, list[str]]]:
    """Split a batch by which columns are null: ``[(row positions or None for all, columns to write)]``.

    A put writes a feature for all its rows, so rows that lack different
    features go into different puts; most batches have no nulls and stay one put.
    When an ID repeats in the batch (``repeats``), the puts are runs of
    consecutive rows in file order instead, so a later row's values win over
    an earlier row's, as within one put.
    """
    nullable = [n for n in names if batch.column(n).null_count]
    if not nullable:
        return [(None, names)]
    mask = np.stack([batch.column(n).is_null().to_numpy(zero_copy_only=False) for n in nullable], axis=1)
    patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    cols = [[n for n, is_null in zip(nullable, pat) if is_null] for pat in patterns]
    cols = [[n for n in names if n not in nulls] for nulls in map(set, cols)]
    if repeats:
        cuts = [0, *(np.flatnonzero(np.diff(inverse)) + 1).tolist(), len(inverse)]
        return [(np.arange(a, b), cols[inverse[a]]) for a, b in itertools.pairwise(cuts)]
    return [(np.flatnonzero(inverse == g), cols[g]) for g in range(len(patterns))]


def _prepare(table: Table, batch: pa.RecordBatch, ids: Any, rows: np.ndarray | None, names: list[str]) -> tuple[Any, dict[str, Any]]:
    sub = batch if rows is None else batch.take(pa.array(rows))
    sub_ids = ids if rows is None else ids[rows]
    specs = table.schema.features
    return sub_ids, {n: _column_values(n, specs[n], sub.column(n)) for n in names}


def _check_or_pin(table: Table, batch: pa.RecordBatch, ids: Any, rows: np.ndarray | None, names: list[str], start: int) -> None:
    """Run put's checks on a group without writing; on failure raise the first bad row's error, naming its file row.

    Bisects on prefixes of the group (only on the error path), then restates
    the error of that row alone, whose message says "row 0", with the row's
    number in the file.
    """

    def error(sel: np.ndarray) -> VecstoreError | None:
        try:
            sub_ids, cols = _prepare(table, batch, ids, sel, names)
            table._encode_columns(cols, len(table._ids(sub_ids)), False)
        except VecstoreError as e:
            return e
        return None

    rows = np.arange(batch.num_rows) if rows is None else rows
    if error(rows) is None:
        return
    lo, hi = 1, len(rows)  # the shortest failing prefix is in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if error(rows[:mid]) is not None else (mid + 1, hi)
    pos = int(rows[lo - 1])
    err = error(np.array([pos]))
    if err is None:
        return
    row = start + pos
    text = re.sub(r"\brow 0\b", f"row {row}", err.message)
    raise _restate(err, text if text != err.message else f"row {row}: {text}", row=row)


def _restate(e: VecstoreError, message: str, **attrs: Any) -> VecstoreError:
    """The same error class with a new message (works for classes with custom constructors too)."""
    new = type(e).__new__(type(e))
    new.__dict__.update(e.__dict__)
    new.__dict__.update(attrs)
    new.message = message
    new.args = (message,)
    return new


def _put_batch(table: Table, batch: pa.RecordBatch, start: int, id_column: str, names: list[str], done: list[int]) -> None:
    """Write one batch (one put per null pattern); ``done[0]`` counts rows as they commit."""
    ids = _ids_of(batch.column(id_column), start, id_column)
    groups = _null_groups(batch, names)
    if len(groups) > 1:
        keys = table._ids(ids).keys
        if len(np.unique(keys)) < len(keys):
            groups = _null_groups(batch, names, repeats=True)
    if len(groups) > 1:
        # Several puts: check every group first so a bad value writes nothing of the batch.
        for rows, cols in groups:
            _check_or_pin(table, batch, ids, rows, cols, start)
    for rows, cols in groups:
        try:
            table.put(*_prepare(table, batch, ids, rows, cols))
        except (InvalidValueError, InvalidIdError):
            # put wrote nothing of this group; find the bad value's row in the file.
            _check_or_pin(table, batch, ids, rows, cols, start)
            raise
        done[0] += batch.num_rows if rows is None else len(rows)


def _spec_types(specs: Mapping[str, Feature]) -> dict[str, pa.DataType]:
    return {n: t for n, s in specs.items() if (t := _arrow_type(s)) is not None}


def import_file(
    store: Store,
    table: str,
    path: str | os.PathLike[str],
    *,
    id_column: str = "id",
    format: str | None = None,
    features: Mapping[str, Feature] | None = None,
    columns: Sequence[str] | None = None,
    batch_size: int = 10_000,
    progress: Callable[[int, int | None], None] | None = None,
    vector_feature: str | None = None,
    ids: Sequence[Any] | np.ndarray | str | os.PathLike[str] | None = None,
    expected_size: int | None = None,
    bloom_fpr: float | None = None,
    build_indexes: bool = True,
    index_progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Stream a Parquet file or directory, CSV, JSON Lines or ``.npy`` file into a table.

    ``format`` (``parquet``, ``csv``, ``jsonl``, ``npy``) defaults to the
    suffix's, a directory being a Parquet dataset.  ``id_column`` holds the
    IDs (strings or integers); ``columns`` limits the features read.  A new
    table takes its specs from an exported file's metadata, else from
    :func:`infer_features`, with ``features`` overriding or adding specs per
    column; ``expected_size`` and ``bloom_fpr`` size its Bloom filter.  An
    existing table must have a feature for every column read.  A ``.npy``
    file's 2-D float array is the ``vector_feature``, with IDs from ``ids``
    (a sequence, a ``.npy`` file or a text file of one ID per line) or else
    the row numbers ``0..n-1``.  After each batch of ``batch_size`` rows,
    ``progress(rows_done, rows_total or None)`` is called.  Then, with
    ``build_indexes`` (default), the table's HNSW indexes and Bloom filter
    are brought up to date and saved (``index_progress(done, total)`` while
    an index is built), so the first search does not pay for the build.

    Raises ImportFileError, SchemaError and UnknownFeatureError before
    anything is written; put's errors (InvalidValueError, InvalidIdError,
    IdCollisionError) come restated with the file row and the rows imported
    before it (attributes ``row``, ``rows_imported``).  docs/import-export.md
    has the rules for nulls, IDs and errors.

    Example::

        res = vecstore.import_file(store, "items", "items.csv", id_column="item_id",
                                   features={"zip": vecstore.Category()})
        res.rows, res.created
    """
    t0 = time.perf_counter()
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    p = Path(path)
    if not p.exists():
        raise ImportFileError(f"{p} does not exist")
    fmt = detect_format(p, format)
    existing = store.table(table) if table in store else None
    if existing is not None and features:
        check_features_match(existing.name, existing.schema.features, features)
    # How to parse text columns: an existing table's own features decide (features=
    # only shapes a table being created), so a schema file never turns a column
    # into a type the table does not store, or adds columns the file lacks.
    hints: dict[str, Feature] = dict(existing.schema.features) if existing is not None else dict(features or {})
    try:
        if fmt == "parquet":
            src = open_parquet(p, batch_size)
        elif fmt == "csv":
            # The ID column is read as text and turned into ints below, where
            # that is safe: Arrow's own guess would read "007" and "7" as one ID.
            src = open_csv(p, {**_spec_types(hints), id_column: pa.string()})
        elif fmt == "jsonl":
            src = open_jsonl(p, _spec_types(hints))
        else:
            # A text IDs file of integers gives int IDs, as a CSV ID column does (see above).
            src = open_npy(p, id_column=id_column, vector_feature=vector_feature, ids=ids, batch_size=batch_size,
                            int_text=lambda odd: _ids_as_ints(existing, odd))
    except (pa.ArrowException, OSError) as e:
        # (A CSV reader reads its first block on opening: type errors there too.)
        text, hint = explain_read_error(e, fmt, csv_header(p) if fmt == "csv" else [])
        if not isinstance(e, pa.ArrowInvalid):
            hint = None  # a missing or unreadable file: the message says it all
        if fmt == "jsonl" and _starts_with(p, b"["):
            hint = "JSON Lines holds one JSON object per line, not a JSON array"
        raise ImportFileError(f"cannot read {p} as {fmt}: {text}", hint=hint) from None

    names = src.schema.names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ImportFileError(
            f"{p} has more than one column named {', '.join(map(repr, repeated))}",
            hint="rename the repeated columns in the file's header so each name appears once",
        )
    if id_column not in names:
        raise ImportFileError(
            f"{p} has no ID column {id_column!r} (columns: {', '.join(names) or 'none'})",
            hint="name the ID column with id_column= (CLI: --id-column)",
        )
    if not (existing is not None and pa.types.is_null(src.schema.field(id_column).type)):
        # (A header-only text file into an existing table: no rows, nothing to type.)
        _check_id_type(src.schema.field(id_column).type, id_column)
    if columns is not None:
        missing = [c for c in columns if c not in names]
        if missing:
            raise ImportFileError(f"{p} has no column(s) {', '.join(map(repr, missing))} (columns: {', '.join(names)})")
        wanted = [n for n in names if n in set(columns) and n != id_column]
    else:
        wanted = [n for n in names if n != id_column]

    batches = read_guarded(rebatch(src.batches, batch_size), p, fmt, src.schema.names)
    first = next(batches, None)
    if fmt == "csv" and first is None and existing is None:
        raise ImportFileError(f"ID column {id_column!r} holds no values: the file has no data rows, or no IDs in them")
    # Nothing of the file is written before the whole ID column is known to be integers or not.
    int_ids = fmt == "csv" and first is not None and _ids_as_ints(existing, csv_first_non_int(p, id_column))

    created_specs: dict[str, Feature] | None = None
    meta: dict[str, Any] | None = None
    if existing is not None:
        unknown = [n for n in wanted if n not in existing.schema.features]
        if unknown:
            raise UnknownFeatureError(
                f"table {table!r} has no feature(s) {', '.join(map(repr, unknown))} for the file's column(s) "
                f"(features: {', '.join(existing.schema.features)}); nothing was imported",
                hint="leave those columns out with columns= (CLI: --columns), or import into a new table",
            )
        specs = {n: existing.schema.features[n] for n in wanted}
    else:
        meta = schema_from_metadata(src.metadata)
        given = dict(meta["features"]) if meta else {}
        given.update(features or {})
        sample = first.select(wanted) if first is not None else None
        specs = {
            n: given[n] if n in given else _infer_one(n, src.schema.field(n).type, sample) for n in wanted
        }
        # Specs given for columns the file lacks add features with no values yet.
        created_specs = {**specs, **{n: s for n, s in (features or {}).items() if n not in specs}}
    if fmt == "npy" and vector_feature in specs and not isinstance(specs[vector_feature], Vector):
        where = f"table {table!r}" if existing is not None else "features="
        raise ImportFileError(
            f"feature {vector_feature!r} ({specs[vector_feature].to_dict()['kind']} in {where}) is not a vector "
            "feature, so a .npy array cannot fill it",
            hint="name a vector feature with vector_feature= (CLI: --vector-feature)",
        )
    for n in wanted:
        _check_column_type(n, specs[n], src.schema.field(n).type)

    created = False
    if existing is None:
        assert created_specs is not None
        if not created_specs:
            raise ImportFileError(f"{p} has no feature columns besides the ID column {id_column!r}")
        size = expected_size or (meta or {}).get("expected_size") or (src.total if src.total else None) or 1_000_000
        fpr = bloom_fpr or (meta or {}).get("bloom_fpr") or 0.01
        tbl = store.create_table(table, created_specs, expected_size=max(int(size), 1), bloom_fpr=float(fpr))
        created = True
    else:
        tbl = existing

    done = [0]
    nbatches = 0
    start = 0
    batch = first
    try:
        while batch is not None:
            if int_ids:
                batch = _with_int_ids(batch, id_column, p)
            _put_batch(tbl, batch.select([id_column, *wanted]), start, id_column, wanted, done)
            start += batch.num_rows
            nbatches += 1
            if progress is not None:
                progress(done[0], src.total)
            batch = next(batches, None)
    except BaseException as e:
        if created and done[0] == 0:
            # Nothing of the file went in: leave no half-made table behind.
            store.drop_table(table)
            note = f"nothing was imported and the new table {table!r} was dropped again"
        if not isinstance(e, VecstoreError):
            raise
        if not (created and done[0] == 0):
            row = getattr(e, "row", None)
            where = f"at row {row}" if row is not None else f"in the batch starting at row {start}"
            note = f"{done[0]} rows were imported before the error {where} (committed batches stay in table {table!r})"
        raise _restate(e, f"{e.message}; {note}", rows_imported=done[0]) from e
    t_index = time.perf_counter()
    if build_indexes and done[0]:
        catch_up(tbl, index_progress)
    index_seconds = time.perf_counter() - t_index
    seconds = time.perf_counter() - t0
    return ImportResult(
        table=table,
        rows=done[0],
        batches=nbatches,
        created=created,
        features=dict(tbl.schema.features) if created else None,
        seconds=seconds,
        rows_per_s=done[0] / (seconds - index_seconds) if seconds > index_seconds else 0.0,
        index_seconds=index_seconds,
    )


