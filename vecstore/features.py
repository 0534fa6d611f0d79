"""Feature types: what a column of a table holds and how it is stored.

A table schema maps feature names to one of these specs:

* :class:`Scalar` -- one number per row (``f32``, ``f16`` stored quantized,
  ``f64``, signed/unsigned integers, ``bool``).
* :class:`Category` -- one string per row, dictionary-encoded as a u32 code.
* :class:`IdList` -- a variable-length list of entity IDs (str or int).
* :class:`Vector` -- a dense vector with a storage codec (``f32``, ``f16``,
  ``i8`` with a per-vector scale, ``b1`` sign bits) and a metric.

Scalars, categories and vectors are fixed width and live in the row record
(decoded for a whole batch at once with ``np.frombuffer``); ID lists are
variable length and stored beside it.  Specs are frozen dataclasses and
serialize to plain dicts stored in the store, so reopening needs no schema.

Example::

    schema = {
        "price": vecstore.Scalar("f32"),
        "category": vecstore.Category(),
        "embedding": vecstore.Vector(64, dtype="i8", metric="cos"),
    }
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .errors import SchemaError

__all__ = ["HNSW", "Category", "Feature", "IdList", "Scalar", "Vector", "feature_from_dict"]

SCALAR_DTYPES: dict[str, str] = {
    "f32": "<f4",
    "f64": "<f8",
    "f16": "<f2",
    "i8": "i1",
    "i16": "<i2",
    "i32": "<i4",
    "i64": "<i8",
    "u8": "u1",
    "u16": "<u2",
    "u32": "<u4",
    "u64": "<u8",
    "bool": "?",
}
VECTOR_DTYPES = ("f32", "f16", "i8", "b1")
INDEX_DTYPES = ("f32", "f16", "i8", "b1")
METRICS = ("cos", "l2", "ip")


@dataclass(frozen=True)
class HNSW:
    """Parameters of a usearch HNSW index over a vector feature (used by vector search).

    ``dtype`` is the index's own scalar type (``None``: the vector's storage
    dtype); ``i8`` and ``b1`` indexes are small and fast, and search reranks
    their candidates exactly against the stored vectors (docs/vector-search.md).
    ``connectivity`` is HNSW's M (edges per node), ``expansion_add`` and
    ``expansion_search`` the candidate-list sizes at build and query time.

    Example::

        vecstore.Vector(384, dtype="f16", index=vecstore.HNSW(dtype="i8", expansion_search=128))
    """

    dtype: str | None = None
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 64

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in INDEX_DTYPES:
            raise SchemaError(f"unknown HNSW index dtype {self.dtype!r}", hint=f"use one of {', '.join(INDEX_DTYPES)} or None")
        for name, lo in (("connectivity", 2), ("expansion_add", 1), ("expansion_search", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= 4096:
                raise SchemaError(f"HNSW {name} must be an integer in [{lo}, 4096], got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "connectivity": self.connectivity,
            "expansion_add": self.expansion_add,
            "expansion_search": self.expansion_search,
        }


@dataclass(frozen=True)
class Scalar:
    """One number per row.

    ``dtype``: ``f32`` (default), ``f64``, ``f16`` (stored as half precision,
    read back as float32), ``i8``..``i64``, ``u8``..``u64`` or ``bool``.
    ``default``: what ``get`` returns for a row that lacks the feature
    (NaN for floats, 0 for integers, False for bool, unless given).
    """

    dtype: str = "f32"
    default: float | int | bool | None = None

    kind = "scalar"

    def __post_init__(self) -> None:
        if self.dtype not in SCALAR_DTYPES:
            raise SchemaError(
                f"unknown scalar dtype {self.dtype!r}", hint=f"use one of {', '.join(SCALAR_DTYPES)}"
            )
        if isinstance(self.default, np.generic):
            # A numpy scalar works as a default but not in the stored (msgpack) schema.
            object.__setattr__(self, "default", self.default.item())
        if self.default is not None:
            self._check_default(self.default)

    def _check_default(self, d: Any) -> None:
        # get() fills missing rows with the default: one that the dtype cannot
        # hold would make every read of such a row fail, so refuse it here.
        bad = SchemaError(
            f"default {d!r:.60} does not fit scalar dtype {self.dtype}",
            hint="True or False for bool, a number in the dtype's range otherwise",
        )
        if self.dtype == "bool":
            if not isinstance(d, (bool, np.bool_)):
                raise bad
            return
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, float, np.integer, np.floating)):
            raise bad
        if self.dtype[0] in "iu":
            info = np.iinfo(np.dtype(SCALAR_DTYPES[self.dtype]))
            if isinstance(d, float) and not (math.isfinite(d) and d.is_integer()):
                raise bad
            if not info.min <= d <= info.max:
                raise bad
            return
        try:
            finite = math.isfinite(d)
        except OverflowError:  # an int too big for a float
            raise bad from None
        if finite and abs(d) > float(np.finfo(np.dtype(SCALAR_DTYPES[self.dtype])).max):
            raise bad

    @property
    def fill_value(self) -> Any:
        if self.default is not None:
            return self.default
        if self.dtype == "bool":
            return False
        if self.dtype[0] == "f":
            return math.nan
        return 0

    @property
    def storage_dtype(self) -> np.dtype:
        return np.dtype(SCALAR_DTYPES[self.dtype])

    @property
    def value_dtype(self) -> np.dtype:
        """What ``get`` returns: float32 for f16 (dequantized), else the storage dtype."""
        return np.dtype(np.float32) if self.dtype == "f16" else self.storage_dtype.newbyteorder("=")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "scalar", "dtype": self.dtype, "default": self.default}


@dataclass(frozen=True)
class Category:
    """One string per row (e.g. ``"books"``), stored as a u32 dictionary code.

    Missing values read back as ``None``.  Codes are assigned on first sight
    and never reused, so a table's dictionary only grows (``vecstore compact``
    does not renumber them).
    """

    kind = "category"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "category"}


@dataclass(frozen=True)
class IdList:
    """A variable-length list of entity IDs (str, bytes or int) per row.

    ``max_len`` (optional) rejects longer lists with a clear error instead of
    silently truncating them.  Missing values read back as ``None``.
    """

    max_len: int | None = None

    kind = "idlist"

    def __post_init__(self) -> None:
        m = self.max_len
        if m is not None and (isinstance(m, (bool, np.bool_)) or not isinstance(m, (int, np.integer)) or m < 1):
            raise SchemaError(f"IdList max_len must be a whole number >= 1, got {m!r}")
        if isinstance(m, np.integer):
            object.__setattr__(self, "max_len", int(m))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "idlist", "max_len": self.max_len}


@dataclass(frozen=True)
class Vector:
    """A dense vector of ``dim`` components.

    ``dtype`` is the storage codec: ``f32`` (exact), ``f16`` (relative error
    <= 2**-11 per component), ``i8`` (symmetric int8 with one float32 scale per
    vector), ``b1`` (sign bits).  ``metric`` (``cos``, ``l2``, ``ip``) is the
    distance vector search uses.  ``get`` returns float32 by default and the
    stored codes with ``raw=True``; docs/concepts.md gives each codec's error.

    ``index`` configures the HNSW index built over the feature by vector
    search; ``None`` stores vectors without an index.
    """

    dim: int
    dtype: str = "f32"
    metric: str = "cos"
    index: HNSW | None = field(default_factory=HNSW)

    kind = "vector"

    def __post_init__(self) -> None:
        if not isinstance(self.dim, (int, np.integer)) or isinstance(self.dim, bool) or not 1 <= self.dim <= 65536:
            raise SchemaError(f"vector dim must be an integer in [1, 65536], got {self.dim!r}")
        if self.dtype not in VECTOR_DTYPES:
            raise SchemaError(
                f"unknown vector dtype {self.dtype!r}", hint=f"use one of {', '.join(VECTOR_DTYPES)}"
            )
        if self.metric not in METRICS:
            raise SchemaError(f"unknown metric {self.metric!r}", hint=f"use one of {', '.join(METRICS)}")
        if self.index is not None and not isinstance(self.index, HNSW):
            raise SchemaError("Vector(index=) takes a vecstore.HNSW(...) or None")

    @property
    def nbytes(self) -> int:
        """Stored bytes per vector (codes plus the i8 scale)."""
        if self.dtype == "f32":
            return 4 * self.dim
        if self.dtype == "f16":
            return 2 * self.dim
        if self.dtype == "i8":
            return self.dim + 4
        return (self.dim + 7) // 8

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "vector",
            "dim": int(self.dim),
            "dtype": self.dtype,
            "metric": self.metric,
            "index": None if self.index is None else self.index.to_dict(),
        }


Feature = Union[Scalar, Category, IdList, Vector]


def feature_from_dict(d: dict[str, Any], *, stored: bool = False) -> Feature:
    """Rebuild a feature spec from its dict (inverse of ``to_dict``).

    ``stored=True`` for a schema read back from a store: a scalar default
    that today's checks refuse (stores written before they existed) is kept
    as it is rather than making the whole store fail to open.
    """
    kind = d.get("kind")
    if kind == "scalar":
        try:
            return Scalar(d["dtype"], default=d.get("default"))
        except SchemaError:
            if not stored or d.get("dtype") not in SCALAR_DTYPES:
                raise
            legacy = Scalar(d["dtype"])
            object.__setattr__(legacy, "default", d.get("default"))
            return legacy
    if kind == "category":
        return Category()
    if kind == "idlist":
        m = d.get("max_len")
        if stored and isinstance(m, float) and not isinstance(m, bool) and math.isfinite(m) and m >= 1:
            # Written before max_len was checked to be whole: keep the table
            # readable, with the limit as it acted (a length <= m passed).
            m = math.floor(m)
        return IdList(max_len=m)
    if kind == "vector":
        idx = d.get("index")
        return Vector(d["dim"], dtype=d["dtype"], metric=d["metric"], index=None if idx is None else HNSW(**idx))
    raise SchemaError(f"unknown feature kind {kind!r} in stored schema")
