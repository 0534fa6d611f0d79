"""Store-level commands: init, info, verify, compact, backup."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import click

import vecstore
from vecstore.schema_file import load_schema

from .common import (
    echo_json,
    human_bytes,
    json_option,
    open_store,
    print_table,
    progress_bar,
    quiet_option,
    require_store,
)

__all__ = ["backup", "compact", "info", "init", "verify"]


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--schema", "schema_path", required=True, type=click.Path(dir_okay=False),
              help="TOML file describing the tables (docs/schema.md).")
@click.option("--seed", type=click.IntRange(0, 2**64 - 1),
              help="XXH3 seed for IDs (overrides the file's [store] seed; random when neither gives one).")
@click.option("--exist-ok", is_flag=True, help="Accept an existing store; tables already in it must match the file.")
def init(path: str, schema_path: str, seed: int | None, exist_ok: bool) -> None:
    """Create a store at PATH with the tables a TOML schema file describes.

    The schema is validated completely before anything is created.

    \b
    Example:
      vecstore init ./shop.vs --schema docs/schema.example.toml
    """
    spec = load_schema(schema_path)
    existed = (Path(path) / "data.mdb").exists()
    if existed and not exist_ok:
        raise click.ClickException(f"{path} already holds a store (pass --exist-ok to add the file's missing tables)")
    # --seed is checked against an existing store's; the file's seed applies only to a new one.
    with vecstore.open(path, seed=seed if seed is not None else None if existed else spec.seed) as store:
        before = set(store.tables())
        tables = spec.create_tables(store, exist_ok=exist_ok)
    made = [t for t in tables if t.name not in before]
    listing = ", ".join(f"{t.name} ({len(t.features)} feature{'' if len(t.features) == 1 else 's'})" for t in made)
    if not existed:
        click.echo(f"created {path}: {listing}")
    elif made:
        click.echo(f"added to {path}: {listing}")
    else:
        click.echo(f"{path} already has every table of {schema_path}; nothing to do")


def _ts(t: float | None) -> str:
    return "-" if t is None else _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("table", required=False)
@json_option
def info(path: str, table: str | None, as_json: bool) -> None:
    """Show tables, rows, sizes, features, Bloom filters, indexes and the feature log.

    Per table: rows, bytes in LMDB, each feature's kind, codec and bytes per
    row, the Bloom filter's size and estimated false-positive rate, each
    vector index's parameters, size and how far it is behind the rows.
    Store-wide: size on disk, LMDB map size and free pages, the log's size
    and time range.

    \b
    Example:
      vecstore info ./shop.vs
      vecstore info ./shop.vs items --json
    """
    with open_store(path, readonly=True) as store:
        if table is not None:
            store.table(table)  # TableNotFoundError names the tables there are
        report = store.info()
    tables = [t for t in report.tables if table is None or t.name == table]
    if as_json:
        d = report.to_dict()
        d["tables"] = [t.to_dict() for t in tables]
        echo_json(d)
        return
    free = report.pages_free * report.page_size
    click.echo(f"store    {report.path}")
    click.echo(f"format   {report.format_version}, seed {report.seed}, uuid {report.uuid}")
    click.echo(f"size     {human_bytes(report.file_bytes)} data.mdb (map {human_bytes(report.map_size)}), "
               f"{human_bytes(report.derived_bytes)} Bloom/index snapshots")
    click.echo(f"pages    {report.pages_total:,} used by the file, {report.pages_free:,} free "
               f"({human_bytes(free)}; `vecstore compact` returns them)")
    log = report.log
    if log is None:
        click.echo("log      empty")
    else:
        click.echo(f"log      {human_bytes(log['bytes'])} in {log['segments']} segment(s), "
                   f"{log['retrieval_calls']:,} retrieval + {log['ranking_calls']:,} ranking calls, "
                   f"{log['labels_logged']:,} labels, {_ts(log['first_ts'])} .. {_ts(log['last_ts'])}")
    for t in tables:
        click.echo(f"\ntable {t.name}: {t.rows:,} rows, {human_bytes(t.lmdb_bytes)} in LMDB, "
                   f"{t.record_bytes} B fixed record per row")
        print_table(
            ["feature", "kind", "codec", "bytes/row"],
            [[f.name, f.kind, f.dtype, f.bytes_per_row if f.kind != "idlist" else "variable"] for f in t.features],
            right=[3],
        )
        b = t.bloom
        click.echo(f"bloom: {human_bytes(b.bytes)} in {b.num_filters} filter(s), {b.count:,} keys, "
                   f"configured fpr {b.configured_fpr:g}, estimated {b.estimated_fpr:.2g}")
        for ix in t.indexes:
            vectors = "no snapshot yet" if ix.vectors < 0 else f"{ix.vectors:,} vectors, {ix.tombstones:,} removed"
            click.echo(f"index {ix.feature}: HNSW {ix.dtype}/{ix.metric} M={ix.connectivity} "
                       f"ef_add={ix.expansion_add} ef={ix.expansion_search}; {vectors}; "
                       f"{human_bytes(max(ix.file_bytes, ix.memory_bytes))}; "
                       + ("up to date" if ix.behind == 0 else f"{ix.behind:,} change(s) behind (caught up on next search)"))


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--repair", is_flag=True, help="Rebuild Bloom filters, indexes and the log index from the rows.")
@quiet_option
@json_option
def verify(path: str, repair: bool, quiet: bool, as_json: bool) -> None:
    """Check that every row decodes and that IDs, Bloom filters, indexes and the
    feature log agree with the rows; exit 1 listing each problem.

    With --repair, derived structures are rebuilt from the rows (LMDB is the
    truth) and the store is checked again.

    \b
    Example:
      vecstore verify ./shop.vs
      vecstore verify ./shop.vs --repair
    """
    from vecstore.maintenance import repair as repair_store

    repaired = None
    with open_store(path, readonly=not repair) as store:
        if repair:
            with progress_bar("repairing", quiet=quiet, unit="steps") as progress:
                repaired = repair_store(store, progress=progress)
            problems, after = repaired.problems_before, repaired.problems_after
        else:
            problems = store.verify()
            if (Path(path) / "logs" / "segments").is_dir():
                problems += [f"feature log: {p}" for p in store.log.verify()]
            after = problems
    if as_json:
        echo_json({"path": path, "ok": not after, "problems": problems,
                   "rebuilt": None if repaired is None else repaired.rebuilt,
                   "problems_after_repair": after if repair else None})
    else:
        for p in problems:
            click.echo(f"problem: {p}")
        if repaired is not None and problems:
            click.echo("rebuilt: " + ("; ".join(repaired.rebuilt) or "nothing"))
            for p in after:
                click.echo(f"still broken: {p}")
        if not after:
            click.echo(f"{path}: ok" + (f" after repairing {len(problems)} problem(s)" if problems else ""))
    if after:
        # Point each kind of problem left at what fixes it, and at nothing else.
        log_damage = sum("vecstore compact" in p for p in after)
        hints = []
        if log_damage < len(after):
            hints.append("what rebuilding cannot fix (rows) must come from a backup" if repair
                         else "`vecstore verify --repair` rebuilds Bloom filters, indexes and the log index from the rows")
        if log_damage:
            hints.append("`vecstore compact` repairs damaged log segments")
        raise click.ClickException(f"{len(after)} problem(s) in {path}; {'; '.join(hints)}")


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--keep-logs", "keep_logs", type=click.FloatRange(0), metavar="DAYS",
              help="Also delete feature-log records older than DAYS days.")
@quiet_option
@json_option
def compact(path: str, keep_logs: float | None, quiet: bool, as_json: bool) -> None:
    """Rewrite the store compactly and rebuild its Bloom filters and indexes.

    Makes an LMDB compacting copy (free pages dropped), swaps it in
    atomically, then rebuilds Bloom filters without deleted IDs and HNSW
    indexes without removed vectors. It needs the store to itself: while a
    server or any other process has it open, it refuses and changes nothing
    (stop the server, compact, start it again).

    \b
    Example:
      vecstore compact ./shop.vs --keep-logs 30
    """
    from vecstore.maintenance import compact as compact_store

    require_store(path)
    with progress_bar("compacting", quiet=quiet, unit="steps") as progress:
        report = compact_store(path, keep_logs_days=keep_logs, progress=progress)
    if as_json:
        echo_json(report.to_dict())
        return
    b, a = report.before, report.after
    change = (f"{human_bytes(report.bytes_reclaimed)} reclaimed" if report.bytes_reclaimed >= 0 else
              f"{human_bytes(-report.bytes_reclaimed)} more: Bloom/index snapshots written for the first time")
    click.echo(f"compacted {path} in {report.seconds:.2f} s: {human_bytes(b.total_bytes)} -> {human_bytes(a.total_bytes)} "
               f"({change})")
    print_table(["part", "before", "after"], [
        ["data.mdb", human_bytes(b.data_bytes), human_bytes(a.data_bytes)],
        ["Bloom/index snapshots", human_bytes(b.derived_bytes), human_bytes(a.derived_bytes)],
        ["feature log", human_bytes(b.log_bytes), human_bytes(a.log_bytes)],
        ["total", human_bytes(b.total_bytes), human_bytes(a.total_bytes)],
    ], right=[1, 2])
    click.echo(f"pages: {report.pages_before:,} -> {report.pages_after:,}; rows kept: "
               + (", ".join(f"{t} {n:,}" for t, n in report.rows.items()) or "no tables"))
    if report.rebuilt:
        click.echo("rebuilt: " + "; ".join(report.rebuilt))
    if report.log_pruned:
        click.echo(f"feature log: {report.log_pruned['records_removed']:,} records older than {keep_logs:g} days removed")
    repaired = (report.log_compacted or {}).get("segments_repaired", 0)
    if repaired:
        click.echo(f"feature log: repaired {repaired} damaged segment(s); "
                   f"{human_bytes(report.log_compacted['damaged_bytes_dropped'])} that failed their checksums dropped")
    if report.temp_dirs_removed:
        click.echo(f"removed {report.temp_dirs_removed} leftover(s) of an interrupted compaction")


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--no-logs", is_flag=True, help="Leave the feature log out of the copy.")
@quiet_option
@json_option
def backup(path: str, dest: str, no_logs: bool, quiet: bool, as_json: bool) -> None:
    """Copy the store at PATH to DEST consistently, while writers keep writing.

    The copy is one LMDB snapshot (compacted), plus the Bloom/index snapshots
    and the feature log; DEST must not exist or be empty. It opens with
    `vecstore info DEST` and passes `vecstore verify DEST`.

    \b
    Example:
      vecstore backup ./shop.vs /backups/shop-$(date +%F).vs
    """
    from vecstore.maintenance import backup as backup_store

    require_store(path)
    with progress_bar("copying", quiet=quiet, unit="bytes") as progress:
        report = backup_store(path, dest, logs=not no_logs, progress=progress)
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(f"backed up {path} to {dest} in {report.seconds:.2f} s: {human_bytes(report.sizes.total_bytes)}, "
               + (", ".join(f"{t} {v['rows']:,} rows" for t, v in report.tables.items()) or "no tables")
               + f"; {report.snapshot_files} Bloom/index snapshot(s), {report.log_files} log segment(s)")

