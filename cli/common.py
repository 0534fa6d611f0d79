"""What every ``vecstore`` command shares: opening stores, printing tables and
JSON, progress bars and parsing IDs, times and filters from the command line.

Commands stay thin: parse, open, call one library method, print.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np

import vecstore
from vecstore.features import Category, Scalar

__all__ = [
    "Progress",
    "echo_json",
    "human_bytes",
    "json_option",
    "open_store",
    "parse_ids",
    "parse_time",
    "parse_where",
    "print_table",
    "progress_bar",
    "quiet_option",
    "require_store",
    "split_names",
]

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bar (it is also off when stdout is not a terminal).")


def require_store(path: str, hint: str | None = None) -> None:
    """Fail unless a store is at ``path``: "no store" for a missing one, the library's error for a damaged one.

    For commands that would otherwise create a store, or that open it their
    own way, so a store that lost its data file is reported as damaged.
    """
    if (Path(path) / "data.mdb").exists():
        return
    try:
        vecstore.open(path, create=False, readonly=True).close()  # raises, saying why
    except vecstore.StoreNotFoundError:
        raise click.ClickException(f"no store at {path}" + (f"; {hint}" if hint else "")) from None


def open_store(path: str, *, readonly: bool = False) -> vecstore.Store:
    """Open an existing store; a missing one is an error (only init/import/put create stores)."""
    return vecstore.open(path, create=False, readonly=readonly)


def _plain(x: Any) -> Any:
    """JSON-safe: numpy to Python, non-finite floats to null, paths and bytes to text."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return _plain(x.item())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, bytes):
        return x.decode("utf-8", "backslashreplace")
    if isinstance(x, Path):
        return str(x)
    return x


def echo_json(obj: Any) -> None:
    """Print ``obj`` as indented, strictly valid JSON (NaN becomes null)."""
    click.echo(json.dumps(_plain(obj), indent=2, allow_nan=False))


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _cell(v: Any, nan: str = "-") -> str:
    if v is None:
        return "-"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return nan if math.isnan(v) else str(v)
        return f"{v:.6g}"
    if isinstance(v, (list, np.ndarray)):
        items = list(v)
        shown = ", ".join(_cell(x, nan) for x in items[:6])
        return f"[{shown}{', ...' if len(items) > 6 else ''}]" + (f" ({len(items)})" if len(items) > 6 else "")
    return str(v)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[int] = (), nan: str = "-") -> None:
    """Print rows as aligned columns under a header line (numbers right-aligned where asked).

    None prints as ``-``, and so does NaN unless ``nan`` says otherwise: in a
    summary a NaN means "nothing to compute", in stored values it is a value.
    """
    cells = [[_cell(v, nan) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(vals: Sequence[str]) -> str:
        out = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths))]
        return "  ".join(out).rstrip()

    click.echo(line(headers))
    for r in cells:
        click.echo(line(r))


class Progress:
    """A ``progress(done, total)`` callback drawing a one-line bar with a rate on stderr.

    Drawn only when stdout is a terminal and not ``quiet``, so pipes and
    scripts get clean output; redrawn at most ten times a second.  ``close()``
    ends the line (it is idempotent, so a later phase can close an earlier one).
    """

    def __init__(self, label: str, *, quiet: bool = False, unit: str = "rows") -> None:
        self.label, self.unit = label, unit
        self.enabled = not quiet and sys.stdout.isatty()
        self.t0 = time.perf_counter()
        self.drawn_at = 0.0
        self.done = 0
        self.closed = False

    def _draw(self, total: int | None, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.drawn_at < 0.1:
            return
        self.drawn_at = now
        done, unit = self.done, self.unit
        rate = done / max(now - self.t0, 1e-9)
        if total:
            frac = min(done / total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"{self.label} [{bar:<30}] {done:,}/{total:,} {unit} {frac:4.0%}  {rate:,.0f} {unit}/s"
        else:
            text = f"{self.label} {done:,} {unit}  {rate:,.0f} {unit}/s"
        click.echo(f"\r{text}\x1b[K", nl=final, err=True)

    def __call__(self, done: int, total: int | None) -> None:
        self.done = done
        if self.enabled and not self.closed:
            self._draw(total)

    def close(self) -> None:
        if self.enabled and self.done and not self.closed:
            self._draw(None, final=True)
        self.closed = True


@contextmanager
def progress_bar(label: str, *, quiet: bool = False, unit: str = "rows") -> Iterator[Progress]:
    """A :class:`Progress` closed on the way out."""
    bar = Progress(label, quiet=quiet, unit=unit)
    try:
        yield bar
    finally:
        bar.close()


def split_names(value: str | None) -> list[str] | None:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; None stays None."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter("give at least one name")
    return names


def parse_ids(ids: Sequence[str], *, as_int: bool) -> list[Any]:
    """Command-line IDs: strings, or integers with ``--int-ids``."""
    if not as_int:
        return list(ids)
    out = []
    for v in ids:
        try:
            out.append(int(v))
        except ValueError:
            raise click.BadParameter(f"{v!r} is not an integer", param_hint="--int-ids") from None
    return out


_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str | None, *, now: float | None = None) -> float | None:
    """A time from the command line: ``now``, an age like ``7d``/``12h``/``30m``
    (that long ago), Unix seconds, or an ISO 8601 date/time (UTC unless it has
    an offset).  None stays None (unbounded)."""
    if text is None:
        return None
    t = text.strip().lower()
    now = time.time() if now is None else now
    if t == "now":
        return now
    m = _AGO.match(t)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return float(t)
    except ValueError:
        pass
    try:
        d = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a time: use now, 7d, 12h, 30m, Unix seconds or ISO 8601") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.UTC)
    return d.timestamp()


_OPS = ("<=", ">=", "!=", "==", "<", ">", "=")
_WHERE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(<=|>=|!=|==|<|>|=| not in | in )\s*(.*?)\s*$")


def _value(spec: Any, text: str, feature: str) -> Any:
    if isinstance(spec, Category):
        return text
    if isinstance(spec, Scalar):
        if spec.dtype == "bool":
            low = text.lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise click.BadParameter(f"{feature} is bool; {text!r} is not true/false", param_hint="--where")
        try:
            if spec.dtype[0] in "iu":
                try:
                    return int(text)  # exact, however large
                except ValueError:
                    v = float(text)  # 1e3, or a bound between integers such as clicks>=1.5
                    return int(v) if v.is_integer() and abs(v) < 2**63 else v
            return float(text)
        except (ValueError, OverflowError):
            raise click.BadParameter(f"{feature} is a {spec.dtype} scalar; {text!r} is not a number", param_hint="--where") from None
    raise click.BadParameter(f"{feature!r} cannot be filtered on (only scalar and category features)", param_hint="--where")


def parse_where(exprs: Sequence[str], features: dict[str, Any]) -> dict[str, Any] | None:
    """``--where`` expressions to a ``where`` mapping (all must hold).

    Each is ``FEATURE OP VALUE`` with OP one of = == != < <= > >=, or
    ``FEATURE in A,B,C`` / ``FEATURE not in A,B``, or a JSON object in the
    Python API's form (``{"price": ["<", 20]}``).  Values are typed by the
    feature: numbers for scalars, text for categories.
    """
    if not exprs:
        return None
    where: dict[str, Any] = {}
    for e in exprs:
        if e.lstrip().startswith("{"):
            try:
                obj = json.loads(e)
            except json.JSONDecodeError as err:
                raise click.BadParameter(f"not valid JSON: {err}", param_hint="--where") from None
            if not isinstance(obj, dict):
                raise click.BadParameter("a JSON --where must be an object", param_hint="--where")
            for k, v in obj.items():
                where[k] = tuple(v) if isinstance(v, list) and v and v[0] in (*_OPS, "between", "in", "not in") else v
            continue
        m = _WHERE.match(e)
        if not m:
            raise click.BadParameter(f"cannot parse {e!r}: use FEATURE<OP>VALUE (e.g. price<20, category=books)", param_hint="--where")
        name, op, raw = m.group(1), m.group(2).strip(), m.group(3)
        if name not in features:
            raise click.BadParameter(f"no feature {name!r} (features: {', '.join(features)})", param_hint="--where")
        spec = features[name]
        if op in ("in", "not in"):
            vals = [_value(spec, v.strip(), name) for v in raw.split(",") if v.strip()]
            where[name] = (op, vals)
        else:
            v = _value(spec, raw, name)
            where[name] = v if op in ("=", "==") else (op, v)
    return where
