"""Row-level commands: import, export, get, put, delete, search."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

import vecstore
from vecstore.features import Category, IdList, Vector
from vecstore.schema_file import load_schema

from .common import (
    echo_json,
    human_bytes,
    json_option,
    open_store,
    parse_ids,
    parse_where,
    print_table,
    progress_bar,
    quiet_option,
    require_store,
    split_names,
)

__all__ = ["delete", "export", "get", "import_", "put", "search"]

int_ids_option = click.option("--int-ids", is_flag=True, help="The IDs given are integers (default: strings).")


def _int_ids_hint(missing: list[str], int_ids: bool) -> str:
    """The hint for IDs not found that were all digits, looked up as str: the table may hold them as ints."""
    if int_ids or not all(re.fullmatch(r"-?[0-9]+", m) for m in missing):
        return ""
    # A CSV column of plain integers or an integer Parquet column imports as int IDs, and 42 and "42" differ.
    return " (hint: if the table's IDs are integers, add --int-ids)"


def _file_seed(path: str, spec: Any) -> int | None:
    """The schema file's seed where it applies: only to a store being created (docs/schema.md)."""
    return spec.seed if spec is not None and not (Path(path) / "data.mdb").exists() else None


def _created_store(path: str) -> bool:
    """True when PATH holds no store yet, so a failed command should remove what it created."""
    return not (Path(path) / "data.mdb").exists() and not (Path(path).exists() and any(Path(path).iterdir()))


def _holds_rows(path: str) -> bool:
    """Whether the store at ``path`` may hold rows; when unsure (it cannot be read), yes: never delete data."""
    if not (Path(path) / "data.mdb").exists():
        return False
    try:
        with vecstore.open(path, create=False) as store:
            return any(len(store.table(name)) for name in store.tables())
    except (vecstore.VecstoreError, OSError):
        return True


def _remove_new_store(path: str, new: bool) -> None:
    if new and Path(path).is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _only_vector(store: vecstore.Store, table: str, features: Any) -> str:
    """The vector feature a .npy import fills when --vector-feature is not given."""
    specs = store.table(table).features if table in store else (features or {})
    names = [n for n, f in specs.items() if isinstance(f, Vector)]
    if len(names) != 1:
        raise click.UsageError(
            "name the vector feature the .npy file holds with --vector-feature"
            + (f" (the table has {', '.join(names)})" if names else "")
        )
    return names[0]


@click.command("import")
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("table")
@click.argument("file", type=click.Path(exists=True))
@click.option("--id-column", default="id", show_default=True, help="Column holding the entity IDs.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "jsonl", "npy"]),
              help="Input format (default: from the suffix; a directory is a Parquet dataset).")
@click.option("--schema", "schema_path", type=click.Path(dir_okay=False, exists=True),
              help="TOML schema file whose [tables.TABLE] overrides the inferred features.")
@click.option("--columns", help="Import only these columns (comma-separated; the ID column is implied).")
@click.option("--vector-feature", help="The vector feature a .npy file holds (default: the table's only vector feature).")
@click.option("--ids", "ids_file", type=click.Path(dir_okay=False, exists=True),
              help="For .npy: the rows' IDs, a .npy array or a text file with one ID per line, "
                   "ints if every line is an integer (default: row numbers).")
@click.option("--batch-size", default=10_000, show_default=True, type=click.IntRange(1), help="Rows per write transaction.")
@quiet_option
@json_option
def import_(path: str, table: str, file: str, id_column: str, fmt: str | None, schema_path: str | None,
            columns: str | None, vector_feature: str | None, ids_file: str | None, batch_size: int, quiet: bool,
            as_json: bool) -> None:
    """Load rows from a Parquet file or dataset directory, CSV, JSON lines or .npy into TABLE.

    The file is streamed in batches, so files larger than memory load with
    bounded memory. A missing store or table is created, the table from the
    file's schema: floats and integers become Scalar, strings Category,
    lists of strings IdList, fixed-size lists of floats Vector (see
    docs/import-export.md); --schema overrides that.

    \b
    Example:
      vecstore import ./shop.vs items items.parquet --id-column item_id
      vecstore import ./shop.vs items vectors.npy --vector-feature embedding --ids ids.txt
    """
    from vecstore.table_import import import_file

    features = None
    spec = None
    sizing: dict[str, Any] = {}
    if schema_path is not None:
        spec = load_schema(schema_path)
        tspec = spec.table(table)
        # The file's other columns are still inferred; these specs win for the ones named.
        features = tspec.features
        sizing = {"expected_size": tspec.expected_size, "bloom_fpr": tspec.bloom_fpr}
    is_npy = fmt == "npy" or (fmt is None and file.lower().endswith(".npy"))
    if not is_npy and (vector_feature is not None or ids_file is not None):
        raise click.UsageError("--vector-feature and --ids apply to .npy files only")
    new = _created_store(path)
    try:
        with vecstore.open(path, seed=_file_seed(path, spec)) as store:
            if is_npy and vector_feature is None:
                vector_feature = _only_vector(store, table, features)
            with progress_bar(f"importing {Path(file).name}", quiet=quiet) as loading, \
                    progress_bar("building the index", quiet=quiet) as indexing:

                def index_progress(done: int, total: int) -> None:
                    loading.close()  # the load is over: finish its line before the next bar
                    indexing(done, total)

                result = import_file(store, table, file, id_column=id_column, format=fmt, features=features,
                                     columns=split_names(columns), batch_size=batch_size, progress=loading,
                                     vector_feature=vector_feature, ids=ids_file, index_progress=index_progress,
                                     **sizing)
    except BaseException:
        # A store this command created goes again only if nothing reached it:
        # after a late error (or Ctrl-C) the committed batches stay, as the
        # error message says.
        _remove_new_store(path, new and not _holds_rows(path))
        raise
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(f"imported {result.rows:,} row{'' if result.rows == 1 else 's'} into {table} in {result.seconds - result.index_seconds:.2f} s "
               f"({result.rows_per_s:,.0f} rows/s){', table created' if result.created else ''}")
    if result.index_seconds >= 0.01:
        click.echo(f"brought the index and Bloom filter up to date in {result.index_seconds:.2f} s")


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("table")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--features", help="Export only these features (comma-separated; default all).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@quiet_option
@json_option
def export(path: str, table: str, out: str, features: str | None, overwrite: bool, quiet: bool, as_json: bool) -> None:
    """Write TABLE to a Parquet file, streamed, with its schema in the file's metadata.

    `vecstore import` of that file recreates the same table (same codecs,
    index parameters and values).

    \b
    Example:
      vecstore export ./shop.vs items items.parquet --features price,embedding
    """
    from vecstore.table_export import export_table

    if out == "-" or Path(out).suffix.lower() not in (".parquet", ".pq"):
        raise click.BadParameter("export writes a Parquet file: give OUT a .parquet (or .pq) name", param_hint="OUT")
    with open_store(path, readonly=True) as store:
        t = store.table(table)
        with progress_bar(f"exporting {table}", quiet=quiet) as progress:
            result = export_table(t, out, features=split_names(features), overwrite=overwrite, progress=progress)
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(f"exported {result.rows:,} rows of {table} to {out} ({human_bytes(result.bytes)}) in {result.seconds:.2f} s")


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("table")
@click.argument("ids", nargs=-1, required=True)
@click.option("--features", help="Only these features (comma-separated; default all).")
@int_ids_option
@json_option
def get(path: str, table: str, ids: tuple[str, ...], features: str | None, int_ids: bool, as_json: bool) -> None:
    """Print the stored features of each ID (exit 1 if any ID is not stored). Use - to read IDs from stdin.

    \b
    Example:
      vecstore get ./shop.vs items item-1 item-2 --features price,category
      vecstore get ./shop.vs users 42 --int-ids --json
      cut -f1 ids.tsv | vecstore get ./shop.vs items - --json
    """
    values = [line.strip() for line in sys.stdin if line.strip()] if ids == ("-",) else list(ids)
    with open_store(path, readonly=True) as store:
        rows = store.table(table).get(parse_ids(values, as_int=int_ids), split_names(features))
        found = rows.found.tolist()
        records = rows.to_pylist()
    if as_json:
        echo_json([{"found": f, **r} for f, r in zip(found, records)])
    else:
        names = list(records[0]) if records else ["id"]
        # A row that is not stored, or lacks a feature, shows "-"; a stored NaN shows "nan".
        print_table(names, [[r[n] if f or n == "id" else None for n in names] for f, r in zip(found, records)], nan="nan")
    missing = [str(r["id"]) for f, r in zip(found, records) if not f]
    if missing:
        raise click.ClickException(
            f"{len(missing)} of {len(found)} ID(s) not stored in {table}: {', '.join(missing[:10])}"
            + _int_ids_hint(missing, int_ids)
        )


def _jsonl_runs(
    stream: Any, id_field: str, batch_size: int, clearable: frozenset[str] = frozenset()
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Consecutive stdin lines with the same fields, at most ``batch_size`` of them, with the first line's number.

    Runs keep the input order, so a later line for an ID always wins (grouping
    equal field sets across the whole batch would reorder updates).
    """
    run: list[dict[str, Any]] = []
    first = 0
    for lineno, line in enumerate(stream, 1):
        if lineno == 1:
            line = line.removeprefix("\ufeff")  # a UTF-8 byte order mark, as editors on Windows write
        if not line.strip():
            continue
        problem = None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problem = f"stdin line {lineno} is not JSON: {e.msg}"
        else:
            if not isinstance(obj, dict) or id_field not in obj:
                problem = f"stdin line {lineno} must be a JSON object with an {id_field!r} field"
        if problem is not None:
            if run:  # the lines before this one are written first, as --help promises
                yield first, run
            raise click.ClickException(problem)
        # null on a scalar or vector: no value, the stored one stays (as in
        # `vecstore import`); on a category or ID list it clears the value, as
        # None does in Table.put (the only way to clear one from here).
        obj = {k: v for k, v in obj.items() if v is not None or k == id_field or k in clearable}
        if run and (len(run) >= batch_size or obj.keys() != run[0].keys()):
            yield first, run
            run = []
        if not run:
            first = lineno
        run.append(obj)
    if run:
        yield first, run


def _columns(table: vecstore.Table, group: list[dict[str, Any]], id_field: str) -> dict[str, Any]:
    cols: dict[str, Any] = {}
    for name in group[0]:
        if name == id_field:
            continue
        vals = [r[name] for r in group]
        spec = table.features.get(name)
        if isinstance(spec, Vector):
            try:
                cols[name] = np.asarray(vals, dtype=np.float32)
            except (ValueError, TypeError):
                raise click.ClickException(f"feature {name!r} needs lists of {spec.dim} numbers") from None
        else:
            cols[name] = vals
    return cols


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("table")
@click.option("--id-field", default="id", show_default=True, help="JSON field holding each row's ID.")
@click.option("--schema", "schema_path", type=click.Path(dir_okay=False, exists=True),
              help="TOML schema file to create TABLE (and the store) from when missing.")
@click.option("--batch-size", default=10_000, show_default=True, type=click.IntRange(1), help="Rows per transaction.")
@json_option
def put(path: str, table: str, id_field: str, schema_path: str | None, batch_size: int, as_json: bool) -> None:
    """Insert or update rows read as JSON lines from stdin: {"id": ..., "feature": value, ...}.

    Fields left out keep their stored values. null on a scalar or vector
    keeps the stored value, as import does; null on a category or ID list
    clears it (the one way to clear those here). Vectors are JSON lists.
    Consecutive lines with the same fields (up to --batch-size) are written in
    one transaction, in input order. A bad line stops the command: what came
    before its run of lines stays written, and the message says how much.

    \b
    Example:
      echo '{"id": "item-1", "price": 9.5, "category": "books"}' | vecstore put ./shop.vs items
    """
    spec = load_schema(schema_path) if schema_path is not None else None
    if spec is None:
        require_store(path, "pass --schema to create it")
    new = _created_store(path)
    written = 0
    created_table = False
    try:
        with vecstore.open(path, create=spec is not None, seed=_file_seed(path, spec)) as store:
            if table not in store:
                if spec is None:
                    store.table(table)  # raises TableNotFoundError with the list of tables
                spec.table(table).create(store)  # type: ignore[union-attr]
                created_table = True
            t = store.table(table)
            clearable = frozenset(n for n, f in t.features.items() if isinstance(f, (Category, IdList)))
            runs = _jsonl_runs(sys.stdin, id_field, batch_size, clearable)
            while True:
                try:
                    first, run = next(runs)
                except StopIteration:
                    break
                except click.ClickException as e:  # an unreadable line: say what was written before it
                    raise click.ClickException(
                        f"{e.format_message()}; {written:,} row(s) from earlier lines were written"
                    ) from None
                try:
                    written += t.put([r[id_field] for r in run], _columns(t, run, id_field))
                except (vecstore.VecstoreError, click.ClickException) as e:
                    msg = e.format_message() if isinstance(e, click.ClickException) else str(e)
                    lines = f"line {first}" if len(run) == 1 else f"lines {first}-{first + len(run) - 1} (rows count from 0)"
                    raise click.ClickException(
                        f"stdin {lines}: {msg}; {written:,} row(s) from earlier lines were written, none from these"
                    ) from None
    except BaseException:
        if written == 0:
            _remove_new_store(path, new)
            if created_table and not new:
                with vecstore.open(path) as store:  # leave no empty table behind either
                    store.drop_table(table)
        raise
    if as_json:
        echo_json({"table": table, "rows": written})
    else:
        click.echo(f"wrote {written:,} row{'s' if written != 1 else ''} to {table}")


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("table")
@click.argument("ids", nargs=-1, required=True)
@int_ids_option
@json_option
def delete(path: str, table: str, ids: tuple[str, ...], int_ids: bool, as_json: bool) -> None:
    """Delete the rows of the given IDs (IDs not stored are ignored). Use - to read IDs from stdin, one per line.

    \b
    Example:
      vecstore delete ./shop.vs items item-1 item-2
      cut -f1 gone.tsv | vecstore delete ./shop.vs items -
    """
    values = [line.strip() for line in sys.stdin if line.strip()] if ids == ("-",) else list(ids)
    with open_store(path) as store:
        n = store.table(table).delete(parse_ids(values, as_int=int_ids))
    if as_json:
        echo_json({"table": table, "requested": len(values), "deleted": n})
    else:
        click.echo(f"deleted {n:,} of {len(values):,} ID(s) from {table}")


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("table")
@click.option("--id", "by_id", help="Find the rows nearest to this stored row (itself excluded).")
@click.option("--vector", help="A query vector as a JSON list of numbers.")
@click.option("--vectors", type=click.Path(dir_okay=False, exists=True), help="A .npy file of query vectors (2-D).")
@click.option("-k", default=10, show_default=True, type=click.IntRange(1, 100_000), help="Hits per query.")
@click.option("--where", multiple=True, metavar="EXPR",
              help="Filter: price<20, category=books, category in books,toys, or a JSON object. Repeat to AND.")
@click.option("--feature", help="Vector feature to search (default: the table's only one).")
@click.option("--ef", type=click.IntRange(1), help="HNSW candidate list size (recall for speed).")
@click.option("--exact", is_flag=True, help="Exact search over the stored vectors instead of HNSW.")
@int_ids_option
@json_option
def search(path: str, table: str, by_id: str | None, vector: str | None, vectors: str | None, k: int,
           where: tuple[str, ...], feature: str | None, ef: int | None, exact: bool, int_ids: bool, as_json: bool) -> None:
    """Nearest neighbours of a stored row, a vector or a file of vectors.

    Give exactly one of --id, --vector, --vectors.

    \b
    Example:
      vecstore search ./shop.vs items --id item-42 -k 5
      vecstore search ./shop.vs items --vector '[0.1, 0.2, 0.3]' --where 'price<20'
      vecstore search ./shop.vs items --vectors queries.npy -k 100 --json
    """
    if sum(x is not None for x in (by_id, vector, vectors)) != 1:
        raise click.UsageError("give exactly one of --id, --vector, --vectors")
    query: Any = None
    if vector is not None:
        try:
            query = np.asarray(json.loads(vector), dtype=np.float32)
        except (json.JSONDecodeError, ValueError, TypeError):
            raise click.BadParameter("must be a JSON list of numbers, e.g. '[0.1, 0.2]'", param_hint="--vector") from None
        if query.ndim != 1:
            raise click.BadParameter("must be one flat list of numbers", param_hint="--vector")
    elif vectors is not None:
        try:
            query = np.load(vectors, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise click.ClickException(f"cannot read {vectors}: {e}") from None
        if query.ndim != 2:
            raise click.ClickException(f"{vectors} holds a {query.ndim}-D array; --vectors needs a 2-D (queries x dim) array")
    with open_store(path, readonly=True) as store:
        t = store.table(table)
        kw: dict[str, Any] = {"feature": feature, "ef": ef, "exact": exact, "where": parse_where(where, t.features)}
        if by_id is not None:
            qid = parse_ids([by_id], as_int=int_ids)[0]
            try:
                hits = t.search_by_id(qid, k, **kw)
            except vecstore.IdNotFoundError as e:
                if not (hint := _int_ids_hint([by_id], int_ids)):
                    raise
                raise click.ClickException(e.message + hint) from None
        else:
            hits = t.search(query, k, **kw)
        rows = hits.to_arrow().to_pylist()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no hits")
        return
    headers = [h for h in ("query", "rank", "id", "distance") if h in rows[0]]
    # People count hits from 1 (JSON keeps the 0-based rank of the API).
    print_table(headers, [[r[h] + 1 if h == "rank" else r[h] for h in headers] for r in rows],
                right=[i for i, h in enumerate(headers) if h != "id"])
