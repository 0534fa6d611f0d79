"""A table's schema and the fixed-width record layout derived from it.

Scalars, categories and vectors of a row live in one fixed-width record: a
presence bitmap (one bit per fixed feature, so a partial row and a missing
integer can be told apart) followed by each feature's stored bytes, packed,
little-endian, in schema order.  Because every record of a table has the same
width, a batch of records decodes with one ``np.frombuffer`` into a numpy
structured array, with no per-row Python work.  ID lists are variable length
and live in their own sub-database, one value per (row, feature).

docs/format.md describes the layout byte by byte.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SchemaError
from .features import Category, Feature, IdList, Scalar, Vector, feature_from_dict

__all__ = ["PRESENT", "TableSchema", "check_name"]

PRESENT = "__present__"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}$")


# Feature names a table cannot use: "id" is the entity ID's column in
# Rows.to_arrow(), exports and imports.
RESERVED_FEATURES = frozenset({"id"})


def features_differ(have: Mapping[str, Any], given: Mapping[str, Any], resolved: Mapping[str, Any]) -> list[str]:
    """Feature names whose stored spec (``have``) is neither the ``given`` one nor its ``resolved`` form.

    ``resolved`` is ``check_new_table``'s result for ``given`` (index dtypes
    filled in); a table created before that resolution stored specs as
    given, so either form matches.  A name on one side only differs too.
    """
    return [
        n for n in dict.fromkeys([*given, *have])
        if n not in have or n not in given or have[n].to_dict() not in (given[n].to_dict(), resolved[n].to_dict())
    ]


def check_features_match(table: str, have: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """SchemaError when ``given`` specs (meant to shape a new table) contradict an existing table's ``have``.

    Used by imports into an existing table: ignoring them silently would
    leave a user who asked for, say, an i8 vector with float32 ones and no
    word about it.  Specs equal to the table's, as given or once resolved,
    and a subset of its features, pass.
    """
    unknown = [n for n in given if n not in have]
    if unknown:
        raise SchemaError(
            f"table {table!r} exists and has no feature {', '.join(map(repr, unknown))}; an import cannot add features",
            hint="leave them out of the schema, or import into a new table",
        )
    differ = [n for n in features_differ(have, given, check_new_table(table, dict(given))) if n in given]
    if differ:
        detail = "; ".join(f"{n}: stored {have[n]!r}, given {given[n]!r}" for n in differ)
        raise SchemaError(
            f"table {table!r} exists with other specs for {', '.join(map(repr, differ))} ({detail})",
            hint="drop the schema for an existing table (its own specs apply), or import into a new table",
        )


def check_new_table(name: Any, features: Any) -> Any:
    """Checks for a table about to be created; returns its features, index dtypes resolved.

    Checks its name and that feature names are not reserved.  An int8 HNSW
    index suits only ``cos``: usearch scales every vector to unit length when
    it quantizes, so under ``ip`` and ``l2`` the graph would rank by direction
    alone and reranking cannot find what it misses.  So an explicit
    ``HNSW(dtype="i8")`` under those metrics is refused, and an ``i8``-stored
    vector under them gets an ``f16`` index by default.  (Stored schemas are
    not re-checked on open, so older stores still open.)
    """
    check_name(name, "table")
    if not isinstance(features, dict):
        return features
    out = dict(features)
    for fname, spec in features.items():
        if fname in RESERVED_FEATURES:
            raise SchemaError(
                f"feature name {fname!r} is reserved: it is the entity ID's column in to_arrow() and exports",
                hint=f"rename the feature, e.g. '{name}_{fname}' or 'external_{fname}'",
            )
        if isinstance(spec, Vector) and spec.index is not None and spec.metric in ("ip", "l2"):
            if spec.index.dtype == "i8":
                raise SchemaError(
                    f"feature {fname!r}: an i8 HNSW index normalizes vectors, so it cannot serve metric {spec.metric!r}",
                    hint="use HNSW(dtype='f16') (or 'f32'); i8 indexes suit metric 'cos'",
                )
            if spec.index.dtype is None and spec.dtype == "i8":
                out[fname] = dataclasses.replace(spec, index=dataclasses.replace(spec.index, dtype="f16"))
    return out


def check_name(name: Any, what: str) -> str:
    """Validate a table or feature name: letters, digits, ``_`` and ``-``, at most 128 chars."""
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith("__"):
        raise SchemaError(
            f"invalid {what} name {name!r}",
            hint="use letters, digits, '_' and '-', starting with a letter or '_' (at most 128 characters, not '__...')",
        )
    return name


@dataclass
class TableSchema:
    """A table's name, features and options, plus the derived record layout."""

    name: str
    table_id: int
    features: dict[str, Feature]
    expected_size: int = 1_000_000
    bloom_fpr: float = 0.01
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        check_name(self.name, "table")
        if not isinstance(self.features, dict) or not self.features:
            raise SchemaError(f"table {self.name!r} needs a dict of at least one feature")
        for fname, spec in self.features.items():
            check_name(fname, "feature")
            if not isinstance(spec, (Scalar, Category, IdList, Vector)):
                raise SchemaError(
                    f"feature {fname!r}: expected Scalar, Category, IdList or Vector, got {type(spec).__name__}",
                    hint="for example vecstore.Scalar('f32')",
                )
        if isinstance(self.expected_size, bool) or not isinstance(self.expected_size, int) or self.expected_size < 1:
            raise SchemaError(f"expected_size must be a positive integer, got {self.expected_size!r}")
        if not (isinstance(self.bloom_fpr, float | int) and 0.0 < self.bloom_fpr < 0.5):
            raise SchemaError(f"bloom_fpr must be in (0, 0.5), got {self.bloom_fpr!r}")
        self._build_layout()

    def _build_layout(self) -> None:
        fixed = [n for n, s in self.features.items() if not isinstance(s, IdList)]
        self.fixed_features: list[str] = fixed
        self.var_features: list[str] = [n for n, s in self.features.items() if isinstance(s, IdList)]
        self.vector_features: tuple[str, ...] = tuple(n for n, s in self.features.items() if isinstance(s, Vector))
        self.presence_bit: dict[str, int] = {n: i for i, n in enumerate(fixed)}
        self.var_slot: dict[str, int] = {n: i for i, n in enumerate(self.var_features)}
        self.feature_index: dict[str, int] = {n: i for i, n in enumerate(self.features)}
        pbytes = max(1, (len(fixed) + 7) // 8)
        fields: list[tuple[Any, ...]] = [(PRESENT, "u1", (pbytes,))]
        for n in fixed:
            spec = self.features[n]
            if isinstance(spec, Scalar):
                fields.append((n, spec.storage_dtype))
            elif isinstance(spec, Category):
                fields.append((n, "<u4"))
            else:
                assert isinstance(spec, Vector)
                if spec.dtype == "f32":
                    fields.append((n, "<f4", (spec.dim,)))
                elif spec.dtype == "f16":
                    fields.append((n, "<f2", (spec.dim,)))
                elif spec.dtype == "i8":
                    fields.append((n, "i1", (spec.dim,)))
                    fields.append((n + ".scale", "<f4"))
                else:
                    fields.append((n, "u1", ((spec.dim + 7) // 8,)))
        self.record_dtype = np.dtype(fields)
        self.record_size = self.record_dtype.itemsize

    def feature_bytes(self, name: str) -> int:
        """Stored bytes per row of one fixed feature (0 for ID lists, which vary)."""
        spec = self.features[name]
        if isinstance(spec, IdList):
            return 0
        if isinstance(spec, Vector):
            return spec.nbytes
        if isinstance(spec, Category):
            return 4
        return spec.storage_dtype.itemsize

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "table_id": self.table_id,
            "features": [[n, s.to_dict()] for n, s in self.features.items()],
            "expected_size": self.expected_size,
            "bloom_fpr": float(self.bloom_fpr),
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableSchema:
        return cls(
            name=d["name"],
            table_id=d["table_id"],
            features={n: feature_from_dict(s, stored=True) for n, s in d["features"]},
            expected_size=d["expected_size"],
            bloom_fpr=d["bloom_fpr"],
            created=d["created"],
        )
