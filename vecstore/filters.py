"""Feature predicates for filtered search (``where=``) and the columns they run on.

A ``where`` mapping names scalar or category features and a condition each;
all conditions must hold (AND)::

    {"category": "books"}                        # equality
    {"category": {"books", "toys"}}              # membership (a set, frozenset or list)
    {"price": ("<", 20.0)}                       # ==, !=, <, <=, >, >=
    {"price": ("between", 5.0, 20.0)}            # inclusive range
    {"category": ("not in", ["toys"])}           # in / not in

A row whose value is missing (never written, or cleared) matches no
condition, ``!=`` and ``not in`` included, as NULL does in SQL.

Predicates run vectorized over :class:`FilterColumns`: an in-memory copy of
every scalar and category column of the table (4 to 8 bytes per row and
feature) kept current from the change log like any derived structure, so a
filtered search never scans LMDB.  It is built on the first filtered search.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import changelog
from .derived import Derived, touched_keys
from .errors import InvalidValueError, UnknownFeatureError
from .features import Category, Scalar
from .records import key_bytes
from .schema import PRESENT

if TYPE_CHECKING:
    from .table import Table

__all__ = ["FilterColumns", "compile_where"]

_CMP = {
    "==": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}
_SET_OPS = ("in", "not in")
Clause = tuple[str, str, Any]


def _check_scalar_value(name: str, spec: Scalar, v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            raise InvalidValueError(f"where[{name!r}]: NaN never compares equal; filter on a number")
        if spec.dtype == "f16":
            # Compare with the constant as this column would store it: 0.3 is
            # stored as 0.30004883, which == 0.3 must match (and <= 0.3 too).
            with np.errstate(over="ignore"):
                return float(np.float16(v))
        return float(v)
    raise InvalidValueError(f"where[{name!r}]: expected a number for scalar feature {name!r}, got {type(v).__name__}")


def _check_value(name: str, spec: Any, v: Any) -> Any:
    if isinstance(spec, Category):
        if not isinstance(v, str):
            raise InvalidValueError(f"where[{name!r}]: expected a string for category feature {name!r}, got {type(v).__name__}")
        return v
    return _check_scalar_value(name, spec, v)


def compile_where(where: Any, table: Table) -> list[Clause]:
    """Validate a ``where`` mapping against the schema; return ``(feature, op, value)`` clauses."""
    if where is None:
        return []
    if not isinstance(where, Mapping):
        raise InvalidValueError(f"where must be a dict of feature -> condition, got {type(where).__name__}")
    out: list[Clause] = []
    for name, cond in where.items():
        spec = table.schema.features.get(name)
        if spec is None:
            raise UnknownFeatureError(
                f"table {table.name!r} has no feature {name!r} to filter on (features: {', '.join(table.schema.features)})"
            )
        if not isinstance(spec, (Scalar, Category)):
            raise InvalidValueError(
                f"cannot filter on {spec.kind} feature {name!r}", hint="where= takes scalar and category features"
            )
        if isinstance(cond, (set, frozenset, list)):
            cond = ("in", cond)
        elif not isinstance(cond, tuple):
            cond = ("==", cond)
        if not cond or not isinstance(cond[0], str):
            raise InvalidValueError(f"where[{name!r}]: expected (op, value), got {cond!r}")
        op = cond[0]
        if op in _CMP:
            if len(cond) != 2:
                raise InvalidValueError(f"where[{name!r}]: {op!r} takes one value, e.g. ({op!r}, 10)")
            if isinstance(spec, Category) and op not in ("==", "!="):
                raise InvalidValueError(f"where[{name!r}]: category features support ==, !=, in and not in, not {op!r}")
            out.append((name, op, _check_value(name, spec, cond[1])))
        elif op in _SET_OPS:
            if len(cond) != 2 or isinstance(cond[1], (str, bytes)) or not hasattr(cond[1], "__iter__"):
                raise InvalidValueError(f"where[{name!r}]: {op!r} takes a collection, e.g. ({op!r}, ['a', 'b'])")
            out.append((name, op, [_check_value(name, spec, v) for v in cond[1]]))
        elif op == "between":
            if len(cond) != 3 or isinstance(spec, Category):
                raise InvalidValueError(f"where[{name!r}]: 'between' takes two numbers on a scalar feature, e.g. ('between', 1, 5)")
            out.append((name, op, (_check_value(name, spec, cond[1]), _check_value(name, spec, cond[2]))))
        else:
            raise InvalidValueError(
                f"where[{name!r}]: unknown operator {op!r}", hint="use ==, !=, <, <=, >, >=, in, not in or between"
            )
    return [_to_codes(c, table) for c in out]


def _to_codes(clause: Clause, table: Table) -> Clause:
    """Category strings become dictionary codes (None: a string no row holds).

    Done before the search's read transaction: loading the dictionary opens
    a transaction of its own.
    """
    name, op, value = clause
    if not isinstance(table.schema.features[name], Category):
        return clause
    if op in _SET_OPS:
        return name, op, [table._category_code(name, v) for v in value]
    return name, op, table._category_code(name, value)


class FilterColumns(Derived):
    """Sorted row keys plus every scalar and category column, in memory, for predicates."""

    name = "filters"
    persistent = False

    def __init__(self, table: Table) -> None:
        super().__init__(table)
        schema = table.schema
        self.features = [n for n, s in schema.features.items() if isinstance(s, (Scalar, Category))]
        self.keys = np.empty(0, dtype=np.uint64)
        self.cols: dict[str, np.ndarray] = {}
        self.present: dict[str, np.ndarray] = {}

    def _columns(self, records: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        schema = self.table.schema
        cols, present = {}, {}
        for n in self.features:
            spec = schema.features[n]
            col = records[n]
            cols[n] = col.astype(np.float32) if isinstance(spec, Scalar) and spec.dtype == "f16" else np.array(col)
            bit = schema.presence_bit[n]
            present[n] = (records[PRESENT][:, bit >> 3] >> (bit & 7) & 1).astype(bool)
        return cols, present

    def _rebuild(self, txn: Any, head: int) -> None:
        W = self.table.schema.record_size
        kb: list[bytes] = []
        vals: list[bytes] = []
        for k, v in txn.cursor(self.table._db("rows")):
            kb.append(k)
            vals.append(v[:W])
        self.keys = np.frombuffer(b"".join(kb), dtype=">u8").astype(np.uint64)
        records = np.frombuffer(b"".join(vals), dtype=self.table.schema.record_dtype)
        self.cols, self.present = self._columns(records)

    def _apply(self, txn: Any, entries: list[changelog.LogEntry]) -> None:
        keys = touched_keys(entries)
        if len(keys) == 0:
            return
        W = self.table.schema.record_size
        vals = list(map(txn.cursor(self.table._db("rows")).get, key_bytes(keys)))
        found = np.fromiter(map(bool, vals), dtype=bool, count=len(vals))
        records = np.frombuffer(b"".join(v[:W] for v in vals if v), dtype=self.table.schema.record_dtype)
        new_cols, new_present = self._columns(records)
        keep = ~np.isin(self.keys, keys, assume_unique=True)
        merged = np.concatenate([self.keys[keep], keys[found]])
        order = np.argsort(merged, kind="stable")
        self.keys = merged[order]
        for n in self.features:
            self.cols[n] = np.concatenate([self.cols[n][keep], new_cols[n]])[order]
            self.present[n] = np.concatenate([self.present[n][keep], new_present[n]])[order]

    def match(self, clauses: list[Clause]) -> np.ndarray:
        """Sorted keys of the rows every clause holds for."""
        mask = np.ones(len(self.keys), dtype=bool)
        for name, op, value in clauses:
            col, present = self.cols[name], self.present[name]
            if op in _CMP:
                hit = _CMP[op](col, value) if value is not None else np.full(len(col), op == "!=")
            elif op == "between":
                hit = (col >= value[0]) & (col <= value[1])
            else:
                known = [v for v in value if v is not None]
                hit = np.isin(col, np.array(known)) if known else np.zeros(len(col), dtype=bool)
                if op == "not in":
                    hit = ~hit
            mask &= hit & present
        return self.keys[mask]
