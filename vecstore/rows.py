"""``Rows``: the columnar result of ``Table.get`` and ``Table.scan``.

Rows hold the raw fixed-width records of a batch as one numpy structured
array and decode a feature only when it is asked for, so a ``get`` that reads
ten features but uses two pays for two.

Missing values (an ID that is not stored, or a row that never had the
feature) read back as the feature's documented default:

=============  ==========================================
feature        missing value
=============  ==========================================
float scalar   NaN (or ``Scalar(default=...)``)
int scalar     0 (or ``Scalar(default=...)``)
bool scalar    False (or ``Scalar(default=...)``)
Category       None
IdList         None
Vector         a row of NaN (float32); zeros with raw=True
=============  ==========================================

``rows.present(name)`` tells a stored value from a default.

Example::

    rows = items.get(["item-1", "nope"], features=["price"])
    rows.found            # array([ True, False])
    rows["price"]         # array([9.5, nan], dtype=float32)
    rows.to_pylist()      # [{'id': 'item-1', 'price': 9.5}, {'id': 'nope', 'price': None}]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .codecs import decode_vectors, f16_to_f32
from .errors import InvalidValueError, UnknownFeatureError
from .features import Category, IdList, Scalar, Vector
from .schema import PRESENT, TableSchema

__all__ = [
    "MIXED_ID_TYPE", "Rows", "arrow_id_type", "arrow_ids", "convert_ids", "id_kinds", "idlist_values", "is_mixed_id_type",
    "unmix_ids",
]

# Cache key of the per-feature "every row has it" flags (names starting with
# "__" are not valid feature names, so this cannot clash with one).
_FULL = "__full__"


# An Arrow column of IDs that mix ints with strings (or bytes) keeps each ID's
# kind: 42 and "42" are two entities, which one typed column would merge.
MIXED_ID_TYPE = pa.struct([("int", pa.int64()), ("str", pa.string()), ("bytes", pa.binary())])


def id_kinds(values: Any, kinds: set[str]) -> None:
    """Add the kinds of IDs in ``values`` to ``kinds``: "int", "str" or "bytes" (bytes that are not UTF-8)."""
    for v in values:
        if isinstance(v, str):
            kinds.add("str")
        elif isinstance(v, bytes):
            try:
                v.decode("utf-8")
                kinds.add("str")  # b"abc" and "abc" are one entity: a string column keeps it
            except UnicodeDecodeError:
                kinds.add("bytes")
        else:
            kinds.add("int")


def arrow_id_type(kinds: set[str]) -> pa.DataType:
    """The Arrow type for IDs of these kinds (see :func:`id_kinds`); export_table writes the same."""
    if "int" in kinds and kinds - {"int"}:
        # 42 and "42" are two entities: one typed column would merge them, so
        # each ID goes in the struct field of its kind.
        return MIXED_ID_TYPE
    if kinds == {"int"}:
        return pa.int64()
    return pa.binary() if "bytes" in kinds else pa.string()


def convert_ids(values: Sequence[Any], typ: pa.DataType) -> list[Any]:
    """IDs as Python values for a column of type ``typ`` (a struct item per ID for MIXED_ID_TYPE)."""
    if typ == MIXED_ID_TYPE:
        return [{"str" if isinstance(v, str) else "bytes" if isinstance(v, bytes) else "int": v} for v in values]
    if pa.types.is_string(typ):
        return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
    if pa.types.is_binary(typ):
        return [v.encode("utf-8") if isinstance(v, str) else v for v in values]
    return list(values)


def is_mixed_id_type(t: pa.DataType) -> bool:
    """Whether ``t`` is MIXED_ID_TYPE, or a struct of some of its fields (as other writers may leave out one)."""
    return pa.types.is_struct(t) and 0 < t.num_fields and all(
        t.field(i).name in MIXED_ID_TYPE.names and t.field(i).type == MIXED_ID_TYPE.field(t.field(i).name).type
        for i in range(t.num_fields)
    )


def unmix_ids(values: list[dict[str, Any] | None]) -> list[Any]:
    """Inverse of :func:`convert_ids` for MIXED_ID_TYPE: each struct must set exactly one field."""
    out = []
    for d in values:
        got = [v for v in (d or {}).values() if v is not None]
        if len(got) != 1:
            raise InvalidValueError(f"a mixed-type ID must set exactly one of int/str/bytes, got {d!r}")
        out.append(got[0])
    return out


def idlist_values(col: pa.Array) -> list[Any]:
    """An Arrow ID-list column as Python lists (None for a null), ints and strings un-mixed."""
    values = col.to_pylist()
    if is_mixed_id_type(getattr(col.type, "value_type", pa.null())):
        return [None if v is None else unmix_ids(v) for v in values]
    return values


def arrow_ids(ids: Any) -> pa.Array:
    """An Arrow column of original IDs, typed as export_table types them.

    int64, string or binary for one kind; ``MIXED_ID_TYPE`` when ints and
    strings meet, so that the int 42 and the str "42" stay two entities (and
    pyarrow does not turn str IDs beside bytes into bytes).
    """
    if isinstance(ids, np.ndarray):
        return pa.array(ids)
    ids = list(ids)
    kinds: set[str] = set()
    id_kinds(ids, kinds)
    typ = arrow_id_type(kinds)
    return pa.array(convert_ids(ids, typ), type=typ)


class Rows:
    """A batch of rows: ``found``, ``ids``, ``keys`` and one column per feature."""

    def __init__(
        self,
        schema: TableSchema,
        ids: Sequence[Any],
        keys: np.ndarray,
        found: np.ndarray,
        records: np.ndarray,
        var: dict[str, list[Any]],
        features: list[str],
        *,
        raw: bool = False,
        categories: Callable[[str, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self._schema = schema
        self.ids = ids
        self.keys = keys
        self.found = found
        self.features = features
        self._records = records
        self._var = var
        self._raw = raw
        self._categories = categories
        self._cache: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, name: object) -> bool:
        return name in self.features

    def __repr__(self) -> str:
        return f"<Rows {len(self)} rows, {int(self.found.sum())} found, features={self.features}>"

    def _check(self, name: str) -> None:
        if name not in self.features:
            raise UnknownFeatureError(
                f"feature {name!r} was not read into these rows (read: {', '.join(self.features)})",
                hint="pass it in get(..., features=[...])",
            )

    def present(self, name: str) -> np.ndarray:
        """Bool mask of rows that hold a stored value of ``name`` (not a default)."""
        self._check(name)
        if name in self._var:
            return np.fromiter((v is not None for v in self._var[name]), dtype=bool, count=len(self))
        bits = self._cache.get(PRESENT)
        if bits is None:
            # Unpack every presence bit once; each feature's mask is then a column view.
            bits = np.unpackbits(self._records[PRESENT], axis=1, bitorder="little").view(bool)
            self._cache[PRESENT] = bits
        return bits[:, self._schema.presence_bit[name]]

    def _all_present(self, name: str) -> bool:
        """Whether every row holds ``name`` (the usual case: no default to fill in)."""
        full = self._cache.get(_FULL)
        if full is None:
            self.present(name)
            full = self._cache[_FULL] = self._cache[PRESENT].all(axis=0)
        return bool(full[self._schema.presence_bit[name]])

    def __getitem__(self, name: str) -> np.ndarray:
        """One feature as a numpy array (float32 dequantized unless read with raw=True)."""
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        out = self.raw(name) if self._raw else self._decode(name)
        self._cache[name] = out
        return out

    def _decode(self, name: str) -> np.ndarray:
        self._check(name)
        spec = self._schema.features[name]
        if isinstance(spec, IdList):
            out = np.empty(len(self), dtype=object)
            out[:] = self._var[name]
            return out
        col = self._records[name]
        complete = self._all_present(name)
        if isinstance(spec, Scalar):
            out = col.astype(spec.value_dtype) if spec.dtype != "f16" else f16_to_f32(col)
            if not complete:
                out[~self.present(name)] = spec.fill_value
            return out
        if isinstance(spec, Category):
            assert self._categories is not None
            return self._categories(name, col if complete else np.where(self.present(name), col, 0))
        assert isinstance(spec, Vector)
        scale = self._records[name + ".scale"] if spec.dtype == "i8" else None
        out = decode_vectors(spec, col, scale)
        if not complete:
            out[~self.present(name)] = np.nan
        return out

    def raw(self, name: str) -> Any:
        """The stored form of a feature, without dequantization.

        f16 features as float16; i8 vectors as a tuple ``(codes int8 (n, dim),
        scales float32 (n,))``; b1 vectors as packed sign bits uint8; categories
        as their u32 dictionary codes (0 = missing).  Other features as ``rows[name]``.
        """
        self._check(name)
        spec = self._schema.features[name]
        if isinstance(spec, IdList):
            return self._decode(name)
        if isinstance(spec, Scalar) and spec.dtype != "f16":
            return self._decode(name)
        present = self.present(name)
        col = np.array(self._records[name])
        col[~present] = 0
        if isinstance(spec, Vector) and spec.dtype == "i8":
            scale = np.array(self._records[name + ".scale"])
            scale[~present] = 0
            return col, scale
        return col

    def to_dict(self) -> dict[str, np.ndarray]:
        """``{feature: column}`` for every feature read."""
        return {n: self[n] for n in self.features}

    def _arrow_ids(self) -> pa.Array:
        return arrow_ids(self.ids)

    def to_arrow(self) -> pa.Table:
        """A pyarrow Table: an ``id`` column, then one column per feature read.

        Missing values are nulls; vectors are fixed-size lists of float32
        (dequantized), ID lists are lists.
        """
        cols: dict[str, pa.Array] = {"id": self._arrow_ids()}
        for name in self.features:
            spec = self._schema.features[name]
            mask = ~self.present(name)
            if isinstance(spec, Vector):
                values = self._decode(name)
                flat = pa.array(values.reshape(-1), type=pa.float32())
                arr = pa.FixedSizeListArray.from_arrays(flat, spec.dim, mask=pa.array(mask))
            elif isinstance(spec, Category):
                arr = pa.array(self._decode(name).tolist(), type=pa.string())
            elif isinstance(spec, IdList):
                # Typed as export_table types them, so that put() reads them back
                # as the same entities: int64, string, binary, or MIXED_ID_TYPE
                # when ints and strings meet (never ints turned into text).
                lists = self._decode(name).tolist()
                kinds: set[str] = set()
                for v in lists:
                    if v:
                        id_kinds(v, kinds)
                item = arrow_id_type(kinds)
                arr = pa.array([None if v is None else convert_ids(v, item) for v in lists], type=pa.list_(item))
            else:
                arr = pa.array(self._decode(name), mask=mask)
            cols[name] = arr
        return pa.table(cols)

    def to_pylist(self) -> list[dict[str, Any]]:
        """One dict per row (``id`` plus each feature; None where missing).

        Built from the Python values, not through Arrow, so every ID keeps its
        kind: the int ``1``, the str ``"1"`` and bytes stay what they were.
        """
        ids = self.ids.tolist() if isinstance(self.ids, np.ndarray) else list(self.ids)
        cols: dict[str, list[Any]] = {}
        for name in self.features:
            spec = self._schema.features[name]
            values = self._decode(name)
            if isinstance(spec, (Scalar, Vector)):
                present = self.present(name).tolist()
                cols[name] = [v if p else None for v, p in zip(values.tolist(), present)]
            else:
                cols[name] = values.tolist() if isinstance(values, np.ndarray) else list(values)
        return [{"id": i, **{name: col[row] for name, col in cols.items()}} for row, i in enumerate(ids)]
