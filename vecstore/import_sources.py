"""Where an import's record batches come from: the file readers, and the checks on what they read.

One reader per format (Parquet files and datasets, CSV, JSON Lines, ``.npy``
with IDs beside it), each giving a :class:`Source`: the Arrow schema, the row
count when known, and an iterator of record batches.  :func:`rebatch` cuts
them to the import's batch size and :func:`read_guarded` turns a reader's
failure into :class:`~vecstore.errors.ImportFileError` naming the file, the
column and the rows, and refuses a CSV value that spans lines (the mark of a
quote left open).  ``table_import.py`` turns the batches into puts.

Example::

    src = open_csv(Path("items.csv"), {})
    for batch in read_guarded(rebatch(src.batches, 10_000), Path("items.csv"), "csv", src.schema.names):
        ...
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ImportFileError

__all__ = [
    "BLOCK_BYTES", "FORMATS", "SUFFIXES", "Source", "csv_first_non_int", "csv_header", "detect_format",
    "explain_read_error", "first_line", "open_csv", "open_jsonl", "open_npy", "open_parquet", "read_guarded",
    "rebatch", "text_ints",
]


FORMATS = ("parquet", "csv", "jsonl", "npy")


SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".json": "jsonl", ".npy": "npy"}


# Text readers parse in blocks of this many bytes: large enough for rows with
# long vectors, small enough to keep memory bounded.
BLOCK_BYTES = 8 << 20


@dataclass
class Source:
    schema: pa.Schema
    total: int | None
    metadata: Mapping[bytes, bytes] | None
    batches: Iterator[pa.RecordBatch]


def detect_format(path: Path, format: str | None) -> str:
    if format is not None:
        fmt = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet"}.get(format, format)
        if fmt not in FORMATS:
            raise ImportFileError(f"unknown format {format!r}", hint=f"use one of {', '.join(FORMATS)}")
        return fmt
    if path.is_dir():
        return "parquet"
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ImportFileError(
            f"cannot tell the format of {path} from its suffix {path.suffix!r}",
            hint=f"pass format= (CLI: --format), one of {', '.join(FORMATS)}; suffixes: {', '.join(SUFFIXES)}",
        )
    return fmt


def _decode_dictionaries(batch: pa.RecordBatch) -> pa.RecordBatch:
    # Dictionary columns from different files or row groups may carry different
    # dictionaries, which cannot be concatenated; decoded they always can.
    if not any(pa.types.is_dictionary(t) for t in batch.schema.types):
        return batch
    cols = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def open_parquet(path: Path, batch_size: int) -> Source:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    dataset = ds.dataset(path, format="parquet")  # a file, or a directory's files as one table
    schema = dataset.schema

    def gen() -> Iterator[pa.RecordBatch]:
        # Row group by row group, each with a fresh reader: one reader over a
        # whole file keeps memory for nested columns (vectors) until it is done
        # (pyarrow 26), and a dataset scan reads ahead.  This holds one row group.
        for name in dataset.files:
            f = pq.ParquetFile(name)
            cols = [c for c in schema.names if c in f.schema_arrow.names]
            for rg in range(f.num_row_groups):
                for b in f.iter_batches(batch_size=batch_size, row_groups=[rg], columns=cols):
                    # Files of a dataset may lack columns: those rows hold nulls (nothing written).
                    yield pa.RecordBatch.from_arrays(
                        [b.column(c) if c in cols else pa.nulls(b.num_rows, t) for c, t in zip(schema.names, schema.types)],
                        schema=schema.remove_metadata(),
                    )

    return Source(schema, dataset.count_rows(), schema.metadata, gen())


def open_csv(path: Path, types: dict[str, pa.DataType]) -> Source:
    import pyarrow.csv as pacsv

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
        # An empty cell is a null (no value) in every column; a quoted "" stays an
        # empty string.  Nothing else is a null: pyarrow's default markers (NA,
        # null, NaN, N/A, ...) would drop real values such as the country code
        # "NA", and a float NaN is a value.
        convert_options=pacsv.ConvertOptions(
            column_types=types, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    return Source(reader.schema, None, None, iter(reader))


def open_jsonl(path: Path, types: dict[str, pa.DataType]) -> Source:
    import pyarrow.json as pajson

    parse = pajson.ParseOptions(
        explicit_schema=pa.schema(list(types.items())) if types else None, unexpected_field_behavior="infer"
    )
    reader = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES), parse_options=parse)
    return Source(reader.schema, None, None, iter(reader))


# An integer written plainly: no sign but "-", no leading zeros and no "-0"
# (so "007" and "7", or "-0" and "0", stay two IDs), at most 19 digits (the
# int64 range is checked after).  CSV ID columns and text IDs files follow
# this one rule: their IDs are ints only when every one of them is such an
# integer (and the table agrees, see table_import._ids_as_ints).
_INT_TEXT = r"(0|-?[1-9][0-9]{0,18})"
_INT_LINE = re.compile(_INT_TEXT)


def _plain(col: pa.Array) -> pa.Array:
    """Per value: is it an integer written plainly (nulls count as yes: they are reported as missing IDs)."""
    return pc.fill_null(pc.match_substring_regex(col, f"^{_INT_TEXT}$"), True)


def _in_int64(text: str) -> bool:
    return -(1 << 63) <= int(text) < (1 << 63)


def text_ints(col: pa.Array) -> pa.Array | None:
    """A text column of IDs as int64 when every value is an integer written plainly, else None."""
    if len(col) and not pc.all(_plain(col)).as_py():
        return None
    try:
        return pc.cast(col, pa.int64())
    except pa.ArrowInvalid:  # 19 digits past the int64 range
        return None


def csv_first_non_int(path: Path, id_column: str) -> tuple[str, str] | None:
    """``("row N", ID)`` of the first ID in a CSV file's ID column that is not an integer written plainly; None if none.

    One pass over the file, reading only that column, before the import
    writes anything: the whole column decides whether its IDs are ints, as if
    it had been read at once.  Read errors are reported here as the import's
    own pass would report them.
    """
    import pyarrow.csv as pacsv

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(
            include_columns=[id_column], column_types={id_column: pa.string()}, null_values=[""],
            strings_can_be_null=True, quoted_strings_can_be_null=False,
        ),
    )
    start = 0
    for b in read_guarded(reader, path, "csv", csv_header(path)):
        col = b.column(0)
        if text_ints(col) is None:
            plain = _plain(col).to_numpy(zero_copy_only=False)
            for i, v in enumerate(col.to_pylist()):
                if v is not None and not (plain[i] and _in_int64(v)):
                    return f"row {start + i}", v
        start += b.num_rows
    return None


def _text_ids(path: Path, lines: list[str], as_ints: Callable[[tuple[str, str] | None], bool]) -> np.ndarray:
    """IDs from a text file, one per line: ints or strs as ``as_ints`` decides, given the first line that is no plain integer."""
    for i, line in enumerate(lines):
        if not line:
            raise ImportFileError(f"the IDs file {path} has an empty line {i + 1}", hint="every vector needs an ID")
    odd = next(((f"line {i + 1} of {path.name}", x) for i, x in enumerate(lines)
                if not (_INT_LINE.fullmatch(x) and _in_int64(x))), None)
    if lines and as_ints(odd):
        return np.array([int(x) for x in lines], dtype=np.int64)
    return np.array([*lines, None], dtype=object)[:-1]


def _npy_ids(ids: Any, n: int, int_text: Callable[[tuple[str, str] | None], bool]) -> Callable[[int, int], pa.Array]:
    """A slicer ``(start, stop) -> Arrow array`` of IDs for an ``.npy`` import."""
    if ids is None:
        return lambda a, b: pa.array(np.arange(a, b, dtype=np.int64))
    if isinstance(ids, (str, os.PathLike)):
        p = Path(ids)
        if p.suffix.lower() == ".npy":
            arr = _load_npy(p)  # memory-mapped like the vectors
        else:
            try:  # a text file is read whole: use a .npy file of IDs for huge imports
                lines = p.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise ImportFileError(f"cannot read the IDs file {p}: {e}") from None
            arr = _text_ids(p, lines, int_text)
    elif isinstance(ids, np.ndarray) and ids.dtype.kind != "O":
        arr = ids
    else:
        # A Python sequence: one kind of ID only, never numpy's silent int -> str coercion.
        lst = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
        if all(isinstance(x, int) and not isinstance(x, bool) for x in lst):
            arr = np.array(lst, dtype=np.int64)
        elif all(isinstance(x, str) for x in lst) or all(isinstance(x, bytes) for x in lst):
            arr = np.array(lst + [None], dtype=object)[:-1]
        else:
            raise ImportFileError("ids= must be all str, all bytes or all int IDs for a .npy import")
    if arr.ndim != 1 or len(arr) != n:
        raise ImportFileError(f"the .npy file holds {n} vectors but {len(arr) if arr.ndim == 1 else arr.shape} IDs were given")
    if arr.dtype.kind not in "iuUO":
        raise ImportFileError(f"IDs for the .npy import must be integers or strings, got dtype {arr.dtype}")
    return lambda a, b: pa.array(arr[a:b].tolist() if arr.dtype.kind in "UO" else np.asarray(arr[a:b]))


def _load_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic != b"\x93NUMPY":
            # np.load takes any other file for a pickle and says so, which misleads.
            raise ImportFileError(
                f"{path} is not a .npy file (it does not start with the .npy magic bytes)",
                hint="save arrays with numpy.save; a CSV, JSON Lines or Parquet file needs its format named: format= (CLI: --format)",
            )
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:  # EOFError: an empty or truncated file
        raise ImportFileError(f"cannot read {path} as a .npy array: {e}") from None


def open_npy(
    path: Path, *, id_column: str, vector_feature: str | None, ids: Any, batch_size: int,
    int_text: Callable[[tuple[str, str] | None], bool] = lambda odd: odd is None,
) -> Source:
    """A ``.npy`` array of vectors and their IDs; ``int_text`` decides whether a text IDs file's IDs are ints (see _text_ids)."""
    if not vector_feature:
        raise ImportFileError(
            f"{path} is a .npy array: name the vector feature it holds with vector_feature=",
            hint='for example import_file(store, "items", "emb.npy", vector_feature="embedding")',
        )
    arr = _load_npy(path)  # memory-mapped: pages are read as batches need them
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise ImportFileError(f"{path} holds a {arr.ndim}-D {arr.dtype} array; a .npy import needs a 2-D float array")
    n, d = arr.shape
    id_slice = _npy_ids(ids, n, int_text)
    first_ids = id_slice(0, min(n, 1))
    schema = pa.schema([(id_column, first_ids.type if n else pa.int64()), (vector_feature, pa.list_(pa.float32(), d))])

    def gen() -> Iterator[pa.RecordBatch]:
        for a in range(0, n, batch_size):
            b = min(n, a + batch_size)
            flat = pa.array(np.ascontiguousarray(arr[a:b], dtype=np.float32).reshape(-1))
            vecs = pa.FixedSizeListArray.from_arrays(flat, d)
            yield pa.RecordBatch.from_arrays([id_slice(a, b), vecs], schema=schema)

    return Source(schema, n, None, gen())


def rebatch(it: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of record batches into batches of exactly ``size`` rows (the last may be shorter)."""
    buf: list[pa.RecordBatch] = []
    have = 0
    for b in it:
        if not b.num_rows:
            continue
        buf.append(_decode_dictionaries(b))
        have += b.num_rows
        while have >= size:
            whole = _concat(buf)
            yield whole.slice(0, size)
            rest = whole.slice(size)
            buf, have = ([rest] if rest.num_rows else []), rest.num_rows
    if have:
        yield _concat(buf)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_guarded(it: Iterator[pa.RecordBatch], path: Path, fmt: str, names: list[str]) -> Iterator[pa.RecordBatch]:
    """Turn a reader's failure (a malformed row, a value that does not parse) into ImportFileError."""
    rows = 0
    while True:
        try:
            b = next(it)
            if fmt in ("csv", "jsonl"):
                # Arrow's text readers pass invalid UTF-8 through; full validation
                # catches it here, naming the rows, instead of deep inside a put.
                b.validate(full=True)
        except StopIteration:
            return
        except (pa.ArrowException, OSError, UnicodeDecodeError) as e:
            # (No exact row: the readers name none, so the error carries no `row`.)
            text, hint = explain_read_error(e, fmt, names)
            raise ImportFileError(f"cannot read {path} as {fmt} at or after row {rows}: {text}", hint=hint) from None
        if fmt == "csv":
            _refuse_line_breaks(b, path, rows)
        rows += b.num_rows
        yield b


def explain_read_error(e: BaseException, fmt: str, names: list[str]) -> tuple[str, str | None]:
    """A reader's error as ``(text, hint)``: columns named as in the file, and what to check."""
    # pyarrow names a CSV column by its index: name it as the file does.
    text = re.sub(r"CSV column #(\d+)", lambda m: f"column {names[int(m[1])]!r}" if int(m[1]) < len(names) else m[0],
                  first_line(e))
    if "UTF8" in text or isinstance(e, UnicodeDecodeError):
        return text, "text files must be UTF-8; convert it first (e.g. iconv -f latin1 -t utf-8)"
    if fmt == "csv" and "CSV parse error" in text:
        return text, "check the quotes around that row: a quote left open joins the lines after it into one value"
    if fmt in ("csv", "jsonl"):
        return text, ("text formats take each column's type from the first rows; give the type with features= "
                      "(CLI: --schema) if later rows differ")
    return text, None


def csv_header(path: Path) -> list[str]:
    """The column names on a CSV file's first line (empty if it cannot be read)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _refuse_line_breaks(b: pa.RecordBatch, path: Path, rows: int) -> None:
    # A quote left open swallows every later line into one value, silently;
    # values with line breaks are refused so that cannot pass for data.
    for name, col in zip(b.schema.names, b.columns):
        broken = pc.match_substring_regex(col, "[\r\n]") if pa.types.is_string(col.type) else None
        if broken is not None and pc.any(broken).as_py():
            i = int(np.flatnonzero(pc.fill_null(broken, False).to_numpy(zero_copy_only=False))[0])
            err = ImportFileError(
                f"{path}: the value of column {name!r} at row {rows + i} spans several lines (a quote left open?)",
                hint="close the quote; for values with line breaks use Parquet or JSON lines",
            )
            err.row = rows + i  # type: ignore[attr-defined]
            raise err
