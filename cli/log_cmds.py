"""``vecstore logs``: export, summarize, compare and prune the feature log."""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Any

import click

from .common import (
    echo_json,
    human_bytes,
    json_option,
    open_store,
    parse_time,
    print_table,
)

__all__ = ["logs"]

TIME_HELP = "now, an age (7d, 12h, 30m), Unix seconds or ISO 8601 (UTC unless it has an offset)"
stage_option = click.option("--stage", type=click.Choice(["retrieval", "ranking"]), help="Only this stage (default: both).")


@click.group()
def logs() -> None:
    """Export, summarize, compare and prune the feature log (docs/feature-logging.md).

    Times are now, an age (7d, 12h, 30m), Unix seconds or ISO 8601 (UTC
    unless it has an offset).

    \b
    Example:
      vecstore logs stats ./shop.vs --stage ranking --feature price --start 1d
    """


@logs.command("export")
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@stage_option
@click.option("--start", help="First time to include (default: everything).")
@click.option("--end", help="Time to stop before (default: now and later).")
@click.option("--table", help="Only calls logged for this table.")
@click.option("--no-labels", is_flag=True, help="Do not join labels onto the rows.")
@click.option("--exist-ok", is_flag=True, help="Add files to a non-empty OUT directory.")
@json_option
def logs_export(path: str, out: str, stage: str | None, start: str | None, end: str | None, table: str | None,
                no_labels: bool, exist_ok: bool, as_json: bool) -> None:
    """Write logged calls with their labels as a Hive-partitioned Parquet dataset under OUT.

    \b
    Example:
      vecstore logs export ./shop.vs ./train --stage ranking --start 7d
    """
    lo, hi = _ordered(parse_time(start), parse_time(end), "--start/--end")
    with open_store(path, readonly=True) as store:
        if table is not None:
            store.table(table)  # a typo would otherwise export nothing and succeed
        result = store.log.export(out, stage=stage, start=lo, end=hi, table=table,
                                  join_labels=not no_labels, exist_ok=exist_ok)
    summary = {"path": result.path, "files": result.files, "rows": result.rows, "rows_by_stage": result.rows_by_stage,
               "calls": result.calls, "labels_joined": result.labels_joined, "seconds": result.seconds,
               "problems": result.problems}
    for problem in result.problems:  # damage that left records out: never only in the JSON
        click.echo(f"warning: {problem}", err=True)
    if as_json:
        echo_json(summary)
        return
    by_stage = ", ".join(f"{n:,} {s}" for s, n in result.rows_by_stage.items()) or (
        "nothing readable: see the warnings above" if result.problems else "nothing logged in the window")
    click.echo(f"exported {result.rows:,} rows ({by_stage}) from {result.calls:,} calls, "
               f"{result.labels_joined:,} labels joined, into {len(result.files)} file(s) under {result.path} "
               f"in {result.seconds:.2f} s")


@logs.command("stats")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--stage", type=click.Choice(["retrieval", "ranking"]), required=True, help="Which stage's rows.")
@click.option("--feature", "features", multiple=True, required=True, help="A logged numeric feature (repeatable).")
@click.option("--table", help="The table, when several log the same feature name.")
@click.option("--start", help="Window start (default: the beginning).")
@click.option("--end", help="Window end (default: now and later).")
@json_option
def logs_stats(path: str, stage: str, features: tuple[str, ...], table: str | None, start: str | None, end: str | None,
               as_json: bool) -> None:
    """Count, mean, std, min, max and quantiles of logged features over a time window.

    Weighted by 1/propensity, so sampled candidates stand for all they represent.

    \b
    Example:
      vecstore logs stats ./shop.vs --stage ranking --feature price --feature ctr_7d --start 1d
    """
    lo, hi = _ordered(parse_time(start), parse_time(end), "--start/--end")
    with open_store(path, readonly=True) as store:
        reports = [store.log.stats(stage=stage, feature=f, table=table, start=lo, end=hi) for f in features]
    if as_json:
        echo_json([r.to_dict() for r in reports])
        return
    rows = [[r.feature, r.of, r.count, r.missing, r.mean, r.std, r.min, r.quantiles.get(0.5), r.quantiles.get(0.99), r.max]
            for r in reports]
    print_table(["feature", "of", "count", "missing", "mean", "std", "min", "p50", "p99", "max"], rows,
                right=list(range(2, 10)))


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ordered(start: float | None, end: float | None, what: str) -> tuple[float | None, float | None]:
    """Refuse a window that ends before it starts (``--start 1d --end 2d`` reads backwards)."""
    if start is not None and end is not None and end <= start:
        raise click.BadParameter(f"the window ends ({_iso(end)}) before it starts ({_iso(start)}); "
                                 "ages count back from now, so the older time (e.g. 2d) comes first", param_hint=what)
    return start, end


def _window(text: str, what: str) -> tuple[float | None, float | None]:
    if ".." not in text:
        raise click.BadParameter(f"use START..END, e.g. 14d..7d (either side may be empty); times are {TIME_HELP}",
                                 param_hint=f"--{what}")
    a, b = text.split("..", 1)
    return _ordered(parse_time(a or None), parse_time(b or None), f"--{what}")


@logs.command("drift")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--baseline", required=True, metavar="START..END", help="Reference window, e.g. 14d..7d.")
@click.option("--current", default="1d..", show_default=True, metavar="START..END", help="Window compared with it.")
@click.option("--feature", "features", multiple=True, help="Features to compare (default: every numeric one logged).")
@click.option("--stage", type=click.Choice(["retrieval", "ranking"]), default="ranking", show_default=True,
              help="Which stage's rows to compare.")
@click.option("--table", help="Only this table's features.")
@click.option("--fail-on-drift", is_flag=True, help="Exit 1 when any feature drifted (for cron and CI).")
@json_option
def logs_drift(path: str, baseline: str, current: str, features: tuple[str, ...], stage: str, table: str | None,
               fail_on_drift: bool, as_json: bool) -> None:
    """PSI and Kolmogorov-Smirnov distance of logged features between two time windows.

    Statistics are kept per time bucket (one hour by default), so each window
    is widened to whole buckets: windows that meet inside a bucket share it.

    \b
    Example:
      vecstore logs drift ./shop.vs --baseline 14d..7d --current 7d.. --fail-on-drift
    """
    with open_store(path, readonly=True) as store:
        report = store.log.drift(list(features) or None, baseline=_window(baseline, "baseline"),
                                 current=_window(current, "current"), stage=stage, table=table)
    if as_json:
        echo_json(report.to_dict())
    else:
        rows: list[list[Any]] = [[f.feature, f.baseline_count, f.current_count, f.baseline_mean, f.current_mean, f.psi,
                                  f.ks, f.ks_pvalue, "DRIFT" if f.drifted else (f.reason or "ok")] for f in report.features]
        if rows:
            print_table(["feature", "n_base", "n_cur", "mean_base", "mean_cur", "psi", "ks", "ks_p", "verdict"], rows,
                        right=list(range(1, 8)))
        else:
            click.echo(f"no numeric features logged at the {stage} stage")
    if fail_on_drift and report.drifted:
        raise click.ClickException(f"drift in {len(report.drifted)} feature(s): {', '.join(report.drifted)}")


@logs.command("prune")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--before", help="Delete what was logged before this time.")
@click.option("--keep-days", type=click.FloatRange(0, min_open=True), help="Keep only the last DAYS days.")
@json_option
def logs_prune(path: str, before: str | None, keep_days: float | None, as_json: bool) -> None:
    """Delete feature-log records older than a time and reclaim their space.

    \b
    Example:
      vecstore logs prune ./shop.vs --keep-days 30
      vecstore logs prune ./shop.vs --before 2026-01-01
    """
    if (before is None) == (keep_days is None):
        raise click.UsageError("give exactly one of --before, --keep-days")
    cutoff = time.time() - keep_days * 86400 if keep_days is not None else parse_time(before)
    if (Path(path) / "data.mdb").exists() and not (Path(path) / "logs").is_dir():
        click.echo(f"{path} has no feature log; nothing to prune")
        return
    with open_store(path) as store:
        report = store.log.prune(before=cutoff)
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(f"removed {report.records_removed:,} records in {report.segments_removed} segment(s) "
               f"({report.segments_rewritten} rewritten, {report.segments_busy} still being written); "
               f"log {human_bytes(report.bytes_before)} -> {human_bytes(report.bytes_after)}")
