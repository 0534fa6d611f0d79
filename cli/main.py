"""``vecstore``: create, inspect and exercise stores from a shell.

Each command opens a store, calls one library method and prints the result;
a :class:`vecstore.VecstoreError` becomes a one-line ``Error: ...`` on stderr
and exit status 1 (a traceback only with ``--debug``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

import vecstore
from vecstore.demo import run_demo


class _Group(click.Group):
    """Turns library errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except vecstore.VecstoreError as e:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(str(e)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(vecstore.__version__, prog_name="vecstore")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug: bool) -> None:
    """vecstore: an embedded feature store and vector database.

    \b
    Example:
      vecstore demo ./demo-store
      vecstore info ./demo-store
    """


@main.command()
@click.argument("path", default="demo-store", type=click.Path(file_okay=False))
@click.option("--items", "n_items", default=100_000, show_default=True, help="How many synthetic items to load.")
def demo(path: str, n_items: int) -> None:
    """Build a demo store of synthetic items at PATH and tour the storage engine.

    \b
    Example:
      vecstore demo ./demo-store --items 20000
    """
    if n_items < 1000:
        raise click.BadParameter("use at least 1000 items", param_hint="--items")
    try:
        run_demo(path, n_items=n_items, out=click.echo)
    except FileExistsError as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.argument("table", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(path: str, table: str | None, as_json: bool) -> None:
    """Show a store's tables, row counts, feature layout and Bloom filters.

    \b
    Example:
      vecstore info ./demo-store items --json
    """
    with vecstore.open(path, readonly=True) as store:
        report = store.info()
    tables = [t for t in report.tables if table is None or t.name == table]
    if table is not None and not tables:
        raise click.ClickException(f"no table {table!r} in {path}")
    if as_json:
        d = report.to_dict()
        d["tables"] = [t.to_dict() for t in tables]
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"store   {report.path}  (format {report.format_version}, seed {report.seed}, "
               f"{report.file_bytes / 2**20:.1f} MiB on disk, map {report.map_size / 2**20:.0f} MiB)")
    for t in tables:
        click.echo(f"\ntable   {t.name}  {t.rows:,} rows, {t.lmdb_bytes / 2**20:.1f} MiB, record {t.record_bytes} B")
        for f in t.features:
            size = f"{f.bytes_per_row:6d} B/row" if f.kind != "idlist" else "  variable"
            click.echo(f"  {f.name:20s} {f.kind:9s} {f.dtype:6s} {size}")
        b = t.bloom
        click.echo(f"  bloom: {b.bytes / 1024:.0f} KiB in {b.num_filters} filter(s), {b.count:,} keys, "
                   f"configured fpr {b.configured_fpr}, estimated {b.estimated_fpr:.5f}")


@main.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--unix", "unix", metavar="SOCK", help="Listen on this Unix socket (created with mode 0600).")
@click.option("--host", default="127.0.0.1", show_default=True, help="TCP address (non-loopback needs --token-file).")
@click.option("--port", default=7420, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True),
              help="File holding the shared secret clients must send.")
@click.option("--read-only", is_flag=True, help="Open the store read-only and refuse every write.")
@click.option("--max-frame-bytes", default=64 << 20, show_default=True, type=click.IntRange(1024, (1 << 32) - 1),
              help="Largest request frame; a bigger one is refused and its connection closed.")
@click.option("--max-connections", default=1024, show_default=True, type=click.IntRange(1), help="Concurrent clients.")
def serve(path: str, unix: str | None, host: str, port: int, token_file: str | None, read_only: bool,
          max_frame_bytes: int, max_connections: int) -> None:
    """Serve the store at PATH to other processes (the sidecar server) until SIGTERM/SIGINT.

    \b
    Example:
      vecstore serve ./shop.vs --unix /run/vecstore.sock
      vecstore serve ./shop.vs --host 127.0.0.1 --port 7420 --token-file /etc/vecstore/token
    """
    # Imported here: only this command needs asyncio and sockets.
    from vecstore.server import serve as run_server

    def ready(server: Any) -> None:
        click.echo(f"vecstore {vecstore.__version__} serving {path} on {server.address}"
                   f"{' (read-only)' if server.read_only else ''}", err=True)

    run_server(path, unix=unix, host=host, port=port, token_file=token_file, read_only=read_only,
               max_frame_bytes=max_frame_bytes, max_connections=max_connections, ready=ready)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
