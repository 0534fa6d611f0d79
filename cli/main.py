"""``vecstore``: create, inspect and exercise stores from a shell.

Each command opens a store, calls one library method and prints the result;
a :class:`vecstore.VecstoreError` becomes a one-line ``Error: ...`` on stderr
and exit status 1 (a traceback only with ``--debug``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

import vecstore
from vecstore.demo import run_demo

from .common import open_store
from .data_cmds import delete, export, get, import_, put, search
from .log_cmds import logs
from .store_cmds import backup, compact, info, init, verify

# Library hints name Python calls; on the command line these say what to type.
_CLI_HINTS: dict[type, str] = {
    vecstore.TableNotFoundError: "create it with `vecstore init PATH --schema FILE --exist-ok`, or let `vecstore import` "
    "create it from a file",
    vecstore.StoreNotFoundError: "create it with `vecstore init PATH --schema FILE` or `vecstore import`; "
    "check the path",
    vecstore.TableExistsError: "see its schema with `vecstore info PATH TABLE`; change the schema file to match, "
    "or use another table name",
}


class _Group(click.Group):
    """Turns library errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except vecstore.VecstoreError as e:
            if ctx.params.get("debug"):
                raise
            hint = next((h for cls, h in _CLI_HINTS.items() if isinstance(e, cls)), None)
            text = f"{e.message} (hint: {hint})" if hint else str(e)
            raise click.ClickException(" ".join(text.split())) from None
        except BrokenPipeError:
            # The reader went away (`vecstore info ... | head -1`): not an error.
            # Point stdout at /dev/null so the interpreter's final flush stays quiet.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(0)
        except OSError as e:
            # Disk full, permission denied, a vanished file: say which, in one line.
            if ctx.params.get("debug"):
                raise
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            raise click.ClickException(f"{e.strerror or e}{where}") from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as e:  # the one place every unexpected error becomes one line
            if ctx.params.get("debug"):
                raise
            text = " ".join(str(e).split())[:300]
            raise click.ClickException(
                f"unexpected {type(e).__name__}: {text} (a bug in vecstore or an input it does not handle: "
                "rerun with --debug for the traceback and report it)"
            ) from None


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
@click.option("--items", "n_items", default=100_000, show_default=True, type=click.IntRange(1000),
              help="Synthetic items to load and index.")
@click.option("--users", "n_users", default=10_000, show_default=True, type=click.IntRange(1), help="Synthetic users.")
@click.option("--requests", "n_requests", default=300, show_default=True, type=click.IntRange(2),
              help="Requests to serve through the full loop.")
@click.option("-k", "k", default=500, show_default=True, type=click.IntRange(1), help="Candidates retrieved per request.")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic world and the traffic.")
def demo(path: str, n_items: int, n_users: int, n_requests: int, k: int, seed: int) -> None:
    """Build a demo store at PATH and run a recommender's full serving loop on it.

    Loads synthetic users and items with two-tower-like embeddings, builds
    the HNSW index, then serves requests: ANN retrieval of k candidates
    (some filtered), feature reads, a toy ranking, logging of both stages,
    simulated clicks as labels, and a Parquet export for training. Prints
    rows, latencies and file sizes, and where the files are. A previous demo
    at PATH is replaced; any other directory is refused.

    \b
    Example:
      vecstore demo ./demo-store
      vecstore demo /tmp/small-demo --items 20000 --requests 100
    """
    try:
        run_demo(path, n_items=n_items, n_users=n_users, n_requests=n_requests, k=k, seed=seed, out=click.echo)
    except FileExistsError as e:
        raise click.ClickException(str(e)) from None


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
@click.option("--log-flush-seconds", default=1.0, show_default=True, type=click.FloatRange(0, 86400),
              help="Fsync the feature log this often, in the background (0: only when a client calls flush).")
def serve(path: str, unix: str | None, host: str, port: int, token_file: str | None, read_only: bool,
          max_frame_bytes: int, max_connections: int, log_flush_seconds: float) -> None:
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

    # Opened here (never created: only init/import/put create stores) and closed on the way out.
    with open_store(path, readonly=read_only) as store:
        run_server(store, unix=unix, host=host, port=port, token_file=token_file, read_only=read_only,
                   max_frame_bytes=max_frame_bytes, max_connections=max_connections,
                   log_flush_seconds=log_flush_seconds, ready=ready)


for _cmd in (init, info, import_, export, get, put, delete, search, verify, compact, backup, logs):
    main.add_command(_cmd)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
