"""A feature table: entities keyed by ID, with typed, compact features.

Each table owns four LMDB sub-databases (``t<ID>.rows``, ``.var``, ``.dict``,
``.log``; docs/format.md) and a Bloom filter derived from them.  Every
``put`` and ``delete`` is one LMDB write transaction that validates
everything first, writes rows (each with its original ID), ID lists,
category codes and a change-log entry together, and commits: all of it or
none of it.

Example::

    items = store.table("items")
    items.put(["item-1", "item-2"], {"price": [9.5, 3.0], "category": ["books", "toys"]})
    rows = items.get(["item-1", "item-3"], features=["price"])
    rows.found        # array([ True, False])
    items.may_contain(["item-1", "item-3"])   # array([ True, False]) (Bloom filter only)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from operator import eq, itemgetter
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from . import changelog
from .codecs import encode_scalar, encode_vectors
from .derived import LOG_SOFT_LIMIT, BloomState, Derived
from .errors import (
    CorruptionError,
    IdCollisionError,
    InvalidValueError,
    StoreClosedError,
    TableNotFoundError,
    UnknownFeatureError,
)
from .features import Category, IdList, Scalar, Vector
from .filters import FilterColumns
from .hashing import IdBatch, decode_id, normalize_ids, same_entity
from .info import BloomInfo, FeatureInfo, IndexInfo, TableInfo
from .records import (
    assemble_values,
    check_idlist,
    from_arrow,
    key_bytes,
    provided,
    sort_keep_last,
    unpack_records,
)
from .rows import Rows
from .schema import PRESENT, TableSchema
from .search import SearchResult, search, search_by_id
from .vector_index import VectorIndex
from .verify import verify_table

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Table", "table_db_names"]

# A category string is part of an LMDB key (511 bytes at most) in the dictionary.
MAX_CATEGORY_BYTES = 500

_SUFFIXES = (b"rows", b"var", b"dict", b"log")


def _pick(seq: list[Any], idx: np.ndarray) -> list[Any]:
    """``[seq[i] for i in idx]`` at C speed."""
    if len(idx) == 1:
        return [seq[int(idx[0])]]
    return list(itemgetter(*idx.tolist())(seq)) if len(idx) else []


def table_db_names(table_id: int) -> list[bytes]:
    """The LMDB sub-database names of table ``table_id``."""
    return [b"t%d.%s" % (table_id, s) for s in _SUFFIXES]


class Table:
    """A feature table; get one from ``store.create_table`` or ``store.table``."""

    def __init__(self, store: Store, schema: TableSchema) -> None:
        self._store = store
        self._env = store._env
        self.schema = schema
        self.name = schema.name
        self._valid = True
        names = table_db_names(schema.table_id)
        self._dbn = dict(zip(("rows", "var", "dict", "log"), names))
        self._h: dict[str, Any] = {}
        self._hgen = -1
        self._cat_lock = threading.Lock()
        self._cat_codes: dict[str, dict[str, int]] = {n: {} for n, s in schema.features.items() if isinstance(s, Category)}
        self._cat_values: dict[str, np.ndarray] = {n: np.array([None], dtype=object) for n in self._cat_codes}
        self._bloom_state = BloomState(self)
        self._indexes = {
            n: VectorIndex(self, n) for n, s in schema.features.items() if isinstance(s, Vector) and s.index is not None
        }
        self._filter_state = FilterColumns(self)

    # -- plumbing ------------------------------------------------------------

    def _open(self) -> None:
        """Fetch this table's sub-database handles; call before beginning a transaction (see Env.db)."""
        self._env.raw  # noqa: B018 - a forked child reopens LMDB here, bumping the generation
        gen = self._env.generation
        if self._h and self._hgen == gen:
            return
        handles = {}
        for which, name in self._dbn.items():
            h = self._env.db(name)
            if h is None:
                raise TableNotFoundError(f"table {self.name!r} was dropped", hint="reopen it with store.table(name)")
            handles[which] = h
        self._h, self._hgen = handles, gen

    def _db(self, which: str) -> Any:
        try:
            return self._h[which]
        except KeyError:
            raise TableNotFoundError(f"table {self.name!r} was dropped", hint="reopen it with store.table(name)") from None

    def _reset_locks(self) -> None:
        self._cat_lock = threading.Lock()
        for d in self._all_derived():
            d.reset_locks()

    def _invalidate(self) -> None:
        self._valid = False
        self._h = {}

    def _check_valid(self, txn: Any) -> None:
        if self._env._closed:
            raise StoreClosedError(f"store at {self._store.path} is closed")
        self._store._sync_schemas(txn)
        if not self._valid:
            raise TableNotFoundError(f"table {self.name!r} was dropped", hint="reopen it with store.table(name)")

    def _ids(self, ids: Any) -> IdBatch:
        return normalize_ids(ids, self._store.seed, self._store.hash_bits)

    def _all_derived(self) -> list[Derived]:
        return [self._bloom_state, *self._indexes.values(), self._filter_state]

    def _consumer_keys(self) -> list[bytes]:
        return [d.consumer_key for d in self._all_derived() if d.persistent]

    def __len__(self) -> int:
        self._open()
        with self._env.read() as txn:
            self._check_valid(txn)
            return txn.stat(self._db("rows"))["entries"]

    def __repr__(self) -> str:
        return f"<vecstore.Table {self.name!r} features={list(self.schema.features)}>"

    @property
    def features(self) -> dict[str, Any]:
        """The schema: feature name -> spec (Scalar, Category, IdList or Vector)."""
        return dict(self.schema.features)

    # -- writes --------------------------------------------------------------

    def _encode_columns(self, columns: Mapping[str, Any], n: int, scalar: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate and encode every column before any write: (fixed fields, raw category/idlist values)."""
        if not isinstance(columns, Mapping):
            raise InvalidValueError(
                f"put() takes a mapping of feature name -> column (or a pyarrow Table), got {type(columns).__name__}"
            )
        fixed: dict[str, Any] = {}
        other: dict[str, Any] = {}
        for name, values in columns.items():
            spec = self.schema.features.get(name)
            if spec is None:
                raise UnknownFeatureError(
                    f"table {self.name!r} has no feature {name!r} (features: {', '.join(self.schema.features)})"
                )
            if scalar:
                values = [values]
            if isinstance(spec, Scalar):
                fixed[name] = encode_scalar(spec, name, values, n)
            elif isinstance(spec, Vector):
                fixed.update(encode_vectors(spec, name, values, n))
            else:
                vals = values.tolist() if isinstance(values, np.ndarray) else values
                if isinstance(vals, (str, bytes)) or not hasattr(vals, "__len__") or len(vals) != n:
                    got = len(vals) if hasattr(vals, "__len__") and not isinstance(vals, (str, bytes)) else "a scalar"
                    raise InvalidValueError(f"feature {name!r}: expected {n} values (one per ID), got {got}")
                if isinstance(spec, Category):
                    for i, v in enumerate(vals):
                        if v is None:
                            continue
                        if not isinstance(v, str):
                            raise InvalidValueError(f"feature {name!r} (Category) needs str or None, row {i} holds {v!r}")
                        try:
                            size = len(v.encode("utf-8"))
                        except UnicodeEncodeError:
                            raise InvalidValueError(f"feature {name!r}: row {i} is not valid Unicode") from None
                        if size > MAX_CATEGORY_BYTES:
                            raise InvalidValueError(
                                f"feature {name!r}: row {i} is {size} bytes; categories hold at most {MAX_CATEGORY_BYTES}",
                                hint="categories are labels; store long text elsewhere",
                            )
                    other[name] = list(vals)
                else:
                    other[name] = [check_idlist(name, spec, v, i) for i, v in enumerate(vals)]
        return fixed, other

    def put(self, ids: Any, columns: Mapping[str, Any]) -> int:
        """Insert or update rows: one ID or a batch, with one column per feature.

        Columns are arrays or lists with one value per ID (vectors: a 2-D array).
        Features left out keep their stored values (partial rows merge); a
        ``None`` category or ID list clears that value.  An ID repeated in the
        batch keeps its last values.  The whole call is one transaction: on any
        error nothing is written.  Returns the number of distinct IDs written.

        Raises InvalidIdError, UnknownFeatureError, InvalidValueError and
        IdCollisionError (two different IDs with the same 64-bit key).

        Example::

            items.put(["a", "b"], {"price": np.array([1.0, 2.0]), "embedding": vecs})
        """
        batch = self._ids(ids)
        n = len(batch)
        columns = from_arrow(columns, self.schema)
        fixed, other = self._encode_columns(columns, n, batch.scalar)
        if n == 0:
            return 0
        keys = batch.keys
        # Sort by key (LMDB inserts in key order touch far fewer pages) and keep
        # the last occurrence of a repeated key, like a dict update.
        sel, skeys = sort_keep_last(keys)
        if len(sel) < n:
            self._check_batch_collisions(keys, batch.encoded())
        m = len(sel)
        kb = key_bytes(skeys)
        id_parts = batch.packed()
        selected = sel.tolist()
        others = {f: list(itemgetter(*selected)(v)) if m > 1 else [v[selected[0]]] for f, v in other.items()}
        # Fixed fields go into records in input order; the byte matrix is then
        # reordered once (cheaper than reordering every column).
        base = np.zeros(n, dtype=self.schema.record_dtype)
        for f, arr in fixed.items():
            base[f] = arr
        provided = set(columns)
        partial = any(f not in provided for f in self.schema.fixed_features)
        W = self.schema.record_size
        dtype = self.schema.record_dtype
        # mask: the features this put carries (for the change log); pmask: the
        # presence bits it decides (the rest come from stored rows).
        mask = bytearray((len(self.schema.features) + 7) // 8)
        pmask = np.zeros(dtype[PRESENT].shape[0], dtype=np.uint8)
        for f in provided:
            i = self.schema.feature_index[f]
            mask[i >> 3] |= 1 << (i & 7)
            bit = self.schema.presence_bit.get(f)
            if bit is not None:
                pmask[bit >> 3] |= np.uint8(1 << (bit & 7))
        new_codes: dict[str, dict[str, int]] = {}
        seq = [0]

        def write(txn: Any) -> int:
            new_codes.clear()
            self._check_valid(txn)
            rows_db = self._db("rows")
            cur = txn.cursor(rows_db)
            # np.take of whole rows is several times faster than fancy indexing here.
            rec = np.take(base.view(np.uint8).reshape(n, W), sel, axis=0).view(dtype).ravel()
            present = rec[PRESENT]
            present |= pmask
            for f, vals in others.items():
                if isinstance(self.schema.features[f], Category):
                    codes, clear = self._assign_codes(txn, f, vals, new_codes.setdefault(f, {}))
                    rec[f] = codes
                    bit = self.schema.presence_bit[f]
                    if clear.any():
                        present[clear, bit >> 3] &= np.uint8(0xFF ^ (1 << (bit & 7)))
            rec_bytes = rec.view(np.uint8).reshape(m, W)
            if txn.stat(rows_db)["entries"] == 0:
                # Bulk load into an empty table: keys are sorted and unique, so
                # LMDB can append, filling pages instead of splitting them.
                cur.putmulti(zip(kb, assemble_values(rec_bytes, sel, id_parts)), append=True)
            else:
                # One lookup pass in key order tells new rows from existing ones,
                # so every value is built once, in the form it is written.
                haves = list(map(cur.get, kb))
                exists = np.fromiter(map(bool, haves), dtype=bool, count=m)
                new = np.flatnonzero(~exists)
                if len(new) == m:
                    cur.putmulti(zip(kb, assemble_values(rec_bytes, sel, id_parts)))
                else:
                    if len(new):
                        cur.putmulti(zip(_pick(kb, new), assemble_values(rec_bytes[new], sel[new], id_parts)))
                    self._merge_existing(cur, kb, np.flatnonzero(exists), haves, rec, partial, pmask, sel, id_parts)
            for f, vals in others.items():
                if isinstance(self.schema.features[f], IdList):
                    self._write_idlists(txn, kb, f, vals)
            seq[0] = changelog.append(txn, self._db("log"), changelog.OP_PUT, skeys, bytes(mask))
            return m

        self._open()
        written = self._env.write(write, action=f"writing {m} rows to table {self.name!r}")
        self._merge_new_codes(new_codes)
        self._after_write(seq[0])
        return written

    def _merge_existing(
        self, cur: Any, kb: list[bytes], ex: np.ndarray, haves: list[Any], rec: np.ndarray, partial: bool,
        pmask: np.ndarray, sel: np.ndarray, id_parts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """Rewrite rows ``ex`` (positions in key order) that already existed.

        Their stored IDs must name the same entities (else IdCollisionError);
        a partial put keeps the stored values of the features it does not
        carry.  Comparisons run as C-level maps and the merge in numpy; only
        rows whose stored ID is spelled differently get per-row attention.
        """
        W = self.schema.record_size
        old_vals = _pick(haves, ex)
        if partial:
            merged = np.frombuffer(b"".join(map(itemgetter(slice(0, W)), old_vals)), dtype=self.schema.record_dtype).copy()
            new = rec[ex]
            for f in self.schema.record_dtype.names:
                if f != PRESENT and provided(f, pmask, self.schema):
                    merged[f] = new[f]
            merged[PRESENT] = (merged[PRESENT] & ~pmask) | (new[PRESENT] & pmask)
        else:
            merged = rec[ex]
        out = assemble_values(merged.view(np.uint8).reshape(len(ex), W), sel[ex], id_parts)
        cut_id = itemgetter(slice(W, None))
        same_id = np.fromiter(map(eq, map(cut_id, old_vals), map(cut_id, out)), dtype=bool, count=len(ex))
        for j in np.flatnonzero(~same_id).tolist():
            stored_id, new_id = old_vals[j][W:], out[j][W:]
            if not same_entity(stored_id, new_id):
                k = kb[int(ex[j])]
                raise IdCollisionError(int.from_bytes(k, "big"), decode_id(stored_id), decode_id(new_id), table=self.name)
            out[j] = out[j][:W] + stored_id  # keep the stored spelling (str vs bytes of one entity)
        cur.putmulti(zip(_pick(kb, ex), out))

    def _check_batch_collisions(self, keys: np.ndarray, encoded: list[bytes]) -> None:
        first: dict[int, bytes] = {}
        for k, e in zip(keys.tolist(), encoded):
            seen = first.setdefault(k, e)
            if seen is not e and seen != e and not same_entity(seen, e):
                raise IdCollisionError(k, decode_id(seen), decode_id(e), table=self.name)

    def _write_idlists(self, txn: Any, kb: list[bytes], name: str, vals: list[Any]) -> None:
        var = self._db("var")
        slot = self.schema.var_slot[name].to_bytes(2, "big")
        for k, v in zip(kb, vals):
            if v is None:
                txn.delete(k + slot, db=var)
            else:
                txn.put(k + slot, msgpack.packb(v), db=var)

    def _assign_codes(
        self, txn: Any, name: str, vals: list[str | None], fresh: dict[str, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dictionary codes for category strings, adding unseen ones in this transaction."""
        dict_db = self._db("dict")
        slot = self.schema.feature_index[name].to_bytes(2, "big")
        known = self._cat_codes[name]
        lookup: dict[str | None, int] = {None: 0}
        for v in set(vals):
            if v in lookup:
                continue
            code = known.get(v)  # type: ignore[arg-type]
            if code is None:
                raw = txn.get(slot + b"s" + v.encode("utf-8"), db=dict_db)  # type: ignore[union-attr]
                if raw is None:
                    nxt = int.from_bytes(txn.get(slot + b"n", db=dict_db) or b"\x01\x00\x00\x00", "little")
                    code = nxt
                    txn.put(slot + b"s" + v.encode("utf-8"), code.to_bytes(4, "little"), db=dict_db)  # type: ignore[union-attr]
                    txn.put(slot + b"c" + code.to_bytes(4, "big"), v.encode("utf-8"), db=dict_db)  # type: ignore[union-attr]
                    txn.put(slot + b"n", (code + 1).to_bytes(4, "little"), db=dict_db)
                else:
                    code = int.from_bytes(raw, "little")
                fresh[v] = code  # type: ignore[index]
            lookup[v] = code
        codes = np.fromiter((lookup[v] for v in vals), dtype=np.uint32, count=len(vals))
        return codes, codes == 0

    def _merge_new_codes(self, new_codes: dict[str, dict[str, int]]) -> None:
        with self._cat_lock:
            for name, fresh in new_codes.items():
                self._cat_codes[name].update(fresh)

    def _categories(self, name: str, codes: np.ndarray) -> np.ndarray:
        values = self._cat_values[name]
        if len(codes) and int(codes.max()) >= len(values):
            values = self._load_categories(name)
        return values[codes]

    def _category_code(self, name: str, value: str) -> int | None:
        """The dictionary code of a category string, or None when no row ever held it."""
        code = self._cat_codes[name].get(value)
        if code is None:
            self._load_categories(name)
            code = self._cat_codes[name].get(value)
        return code

    def _load_categories(self, name: str) -> np.ndarray:
        slot = self.schema.feature_index[name].to_bytes(2, "big")
        prefix = slot + b"c"
        out: list[str | None] = [None]
        self._open()
        with self._env.read() as txn:
            cur = txn.cursor(self._db("dict"))
            if cur.set_range(prefix):
                for k, v in cur:
                    if not k.startswith(prefix):
                        break
                    code = int.from_bytes(k[3:], "big")
                    if code != len(out):
                        raise CorruptionError(f"table {self.name!r}: category dictionary of {name!r} has a gap at code {len(out)}")
                    out.append(v.decode("utf-8"))
        values = np.array(out, dtype=object)
        with self._cat_lock:
            self._cat_values[name] = values
            self._cat_codes[name].update({s: i for i, s in enumerate(out) if s is not None})
        return values

    def delete(self, ids: Any) -> int:
        """Delete rows by ID; returns how many existed.  Absent IDs are ignored.

        Deleted IDs may still test positive in ``may_contain`` until
        ``vecstore compact`` rebuilds the Bloom filter.
        """
        batch = self._ids(ids)
        if len(batch) == 0:
            return 0
        first, skeys = sort_keep_last(batch.keys)
        kb = key_bytes(skeys)
        enc = batch.encoded()
        # Every requested ID per key: with colliding IDs in one batch, any of them may be the stored one.
        wants: dict[int, list[bytes]] = {}
        for k, e in zip(batch.keys.tolist(), enc):
            wants.setdefault(k, []).append(e)
        want = [wants[k] for k in skeys.tolist()]
        seq = [0]

        def write(txn: Any) -> int:
            self._check_valid(txn)
            rows_db, var_db = self._db("rows"), self._db("var")
            W = self.schema.record_size
            slots = [s.to_bytes(2, "big") for s in self.schema.var_slot.values()]
            gone: list[int] = []
            for i, (k, ws) in enumerate(zip(kb, want)):
                have = txn.get(k, db=rows_db)
                if have is None or not any(same_entity(have[W:], w) for w in ws):
                    continue  # absent, or another entity's row under a colliding key
                txn.delete(k, db=rows_db)
                for s in slots:
                    txn.delete(k + s, db=var_db)
                gone.append(i)
            if gone:
                seq[0] = changelog.append(txn, self._db("log"), changelog.OP_DELETE, skeys[gone])
            return len(gone)

        self._open()
        count = self._env.write(write, action=f"deleting from table {self.name!r}")
        if count:
            self._after_write(seq[0])
        return count

    # -- reads ---------------------------------------------------------------

    def _resolve_features(self, features: Any) -> list[str]:
        if features is None:
            return list(self.schema.features)
        if isinstance(features, str):
            features = [features]
        out = list(features)
        for f in out:
            if f not in self.schema.features:
                raise UnknownFeatureError(
                    f"table {self.name!r} has no feature {f!r} (features: {', '.join(self.schema.features)})"
                )
        return out

    def get(self, ids: Any, features: Any = None, *, raw: bool = False) -> Rows:
        """Read rows for one ID or a batch, in input order; absent IDs have ``found=False``.

        ``features`` limits what is read (default: all).  Values come back as
        float32 (dequantized) unless ``raw=True``; see :class:`Rows` for the
        defaults that fill missing values.

        Example::

            rows = items.get(ids, features=["price", "embedding"])
            prices = rows["price"][rows.found]
        """
        batch = self._ids(ids)
        feats = self._resolve_features(features)
        n = len(batch)
        W = self.schema.record_size
        # Look keys up in ascending order: neighbouring lookups share B-tree
        # pages, which makes a random batch markedly faster than input order.
        order = np.argsort(batch.keys) if n > 1 else np.zeros(n, dtype=np.intp)
        skb = key_bytes(batch.keys[order])
        var: dict[str, list[Any]] = {}
        self._open()
        with self._env.read() as txn:
            self._check_valid(txn)
            vals = list(map(txn.cursor(self._db("rows")).get, skb))
            if self._store.hash_bits < 64:
                enc = batch.encoded()
                vals = [v if v is not None and same_entity(v[W:], enc[i]) else None for v, i in zip(vals, order.tolist())]
            var_slot = self.schema.var_slot
            var_feats = [f for f in feats if f in var_slot] if var_slot else []
            vget = txn.cursor(self._db("var")).get if var_feats else None
            for f in var_feats:
                slot = var_slot[f].to_bytes(2, "big")
                var[f] = [None if v is None else msgpack.unpackb(vget(k + slot) or b"\xc0") for k, v in zip(skb, vals)]
        found, records = unpack_records(vals, order, self.schema.record_dtype)
        if var and n > 1:
            inverse = np.empty(n, dtype=np.intp)
            inverse[order] = np.arange(n)
            var = {f: list(itemgetter(*inverse.tolist())(col)) for f, col in var.items()}
        return Rows(self.schema, batch.ids, batch.keys, found, records, var, feats, raw=raw, categories=self._categories)

    def contains(self, ids: Any) -> Any:
        """Exact membership (reads LMDB): a bool for one ID, a bool array for a batch."""
        batch = self._ids(ids)
        kb = key_bytes(batch.keys)
        enc = batch.encoded()
        self._open()
        with self._env.read() as txn:
            self._check_valid(txn)
            stored = list(map(txn.cursor(self._db("rows")).get, kb))
        W = self.schema.record_size
        out = np.fromiter(
            (s is not None and same_entity(s[W:], e) for s, e in zip(stored, enc)), dtype=bool, count=len(kb)
        )
        return bool(out[0]) if batch.scalar else out

    def may_contain(self, ids: Any) -> Any:
        """Bloom-filter membership: False means surely absent; True means probably present.

        Never a false negative for a committed row, whoever wrote it; no
        per-ID LMDB read.  A bool for one ID, a bool array for a batch.
        """
        batch = self._ids(ids)
        bloom = self._sync_bloom()
        out = bloom.may_contain(batch.keys)
        return bool(out[0]) if batch.scalar else out

    def scan(self, batch_size: int = 10_000, features: Any = None, *, raw: bool = False) -> Iterator[Rows]:
        """Iterate over all rows in key order, ``batch_size`` rows at a time.

        Each batch is read in its own short transaction (so a long scan does
        not pin old pages): rows written during the scan may or may not appear.
        ``rows.ids`` holds the original IDs.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InvalidValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        feats = self._resolve_features(features)
        start: bytes | None = None
        while True:
            self._open()
            with self._env.read() as txn:
                self._check_valid(txn)
                cur = txn.cursor(self._db("rows"))
                if not (cur.first() if start is None else cur.set_range(start)):
                    return
                kb: list[bytes] = []
                vals: list[bytes] = []
                for k, v in cur:
                    kb.append(k)
                    vals.append(v)
                    if len(kb) == batch_size:
                        break
                W = self.schema.record_size
                ids = [decode_id(v[W:]) for v in vals]
                vals = [v[:W] for v in vals]
                var: dict[str, list[Any]] = {}
                for f in feats:
                    if f in self.schema.var_slot:
                        slot = self.schema.var_slot[f].to_bytes(2, "big")
                        vget = txn.cursor(self._db("var")).get
                        var[f] = [None if (b := vget(k + slot)) is None else msgpack.unpackb(b) for k in kb]
            keys = np.frombuffer(b"".join(kb), dtype=">u8").astype(np.uint64)
            records = np.frombuffer(b"".join(vals), dtype=self.schema.record_dtype)
            yield Rows(
                self.schema, ids, keys, np.ones(len(kb), dtype=bool), records, var, feats,
                raw=raw, categories=self._categories,
            )
            last = int(keys[-1])
            if len(kb) < batch_size or last == (1 << 64) - 1:
                return
            start = (last + 1).to_bytes(8, "big")

    def ids(self, batch_size: int = 100_000) -> Iterator[list[Any]]:
        """Iterate over the original IDs in key order, in lists of up to ``batch_size``."""
        for rows in self.scan(batch_size=batch_size, features=[]):
            yield list(rows.ids)

    # -- derived state (docs/format.md: change log and consumers) -------------

    def _sync_bloom(self) -> Any:
        return self._bloom_state.sync().bloom  # type: ignore[attr-defined]

    def _index(self, feature: str) -> VectorIndex:
        return self._indexes[feature]

    def _after_write(self, log_seq: int) -> None:
        """Keep derived state moving after a commit, so the change log stays short.

        A Bloom filter this process already holds absorbs the commit now; other
        consumers (and a filter not built yet) catch up lazily on their next
        read, except that once ``LOG_SOFT_LIMIT`` entries pile up a writer
        brings every persistent consumer up to date and saves it, because only
        saved snapshots let the log be trimmed.
        """
        for d in self._all_derived():
            if not d.persistent:
                continue
            behind = log_seq - max(d.saved_seq, 0) >= LOG_SOFT_LIMIT
            if behind or (d is self._bloom_state and d.ready):
                d.sync()
                d.persist(force=behind and log_seq - max(d.saved_seq, 0) >= LOG_SOFT_LIMIT)

    def _persist_derived(self, *, force: bool) -> None:
        """Save derived snapshots that have something new and are worth saving (all with ``force``)."""
        for d in self._all_derived():
            d.persist(force=force or d.save_on_close)

    def _record_consumer(self, key: bytes, seq: int) -> None:
        """Record a consumer's saved position and trim the log up to the slowest consumer."""
        meta = self._env.db(b"meta")
        keys = self._consumer_keys()

        def record(txn: Any) -> None:
            self._check_valid(txn)
            txn.put(key, seq.to_bytes(8, "little"), db=meta)
            upto = min(int.from_bytes(txn.get(k, db=meta) or b"\0" * 8, "little") for k in keys)
            changelog.truncate(txn, self._db("log"), upto)

        self._open()
        try:
            self._env.write(record, action=f"recording a derived snapshot of table {self.name!r}")
        except TableNotFoundError:
            self._remove_derived_files()  # dropped elsewhere meanwhile: leave no orphan file
            raise

    def _remove_derived_files(self) -> None:
        for d in self._all_derived():
            d.remove_files()

    # -- vector search -------------------------------------------------------

    def search(
        self,
        query: Any,
        k: int = 10,
        *,
        feature: str | None = None,
        ef: int | None = None,
        exact: bool = False,
        rerank: int | None = None,
        where: Mapping[str, Any] | None = None,
        among: Any = None,
        threads: int = 0,
    ) -> SearchResult:
        """The ``k`` rows nearest to ``query`` (1-D vector) or to each row of a 2-D batch.

        ``feature`` names the vector feature (default: the table's only one).
        ``ef`` widens the HNSW search (recall for speed); ``exact=True``
        searches exactly over the stored vectors; ``rerank`` (default 4 for an
        i8 index, 16 for b1, else off) fetches ``k * rerank`` candidates and
        reorders them by exact distance.  ``where`` filters on scalar and
        category features (see vecstore.filters), ``among`` restricts to an
        allow-list of IDs; a filtered search still returns ``k`` hits whenever
        ``k`` rows match.  ``threads`` parallelizes a batch (0: all cores).
        The index first catches up with every commit, from any process.

        Example::

            hits = items.search(user_vec, k=10, where={"category": "books", "price": ("<", 20.0)})
            hits.ids, hits.distances
        """
        return search(
            self, query, k, feature=feature, ef=ef, exact=exact, rerank=rerank, where=where, among=among, threads=threads
        )

    def search_by_id(self, id: Any, k: int = 10, **kwargs: Any) -> SearchResult:
        """The ``k`` rows nearest to a stored row's vector, excluding that row.

        Takes the keyword arguments of :meth:`search`; raises IdNotFoundError
        when the ID has no row.

        Example::

            similar = items.search_by_id("item-42", k=5)
        """
        return search_by_id(self, id, k, **kwargs)

    def rebuild_index(self, feature: str | None = None, *, progress: Any = None) -> IndexInfo:
        """Rebuild a vector feature's HNSW index from the rows and save it.

        Drops the memory of removed vectors (tombstones).  ``progress`` is
        called as ``progress(rows_done, rows_total)`` while it builds.

        Example::

            items.rebuild_index("embedding", progress=lambda done, total: print(done, total))
        """
        name = feature if feature is not None else next(iter(self._indexes), None)
        if name is None or name not in self._indexes:
            raise UnknownFeatureError(
                f"table {self.name!r} has no indexed vector feature {feature!r} (indexed: {', '.join(self._indexes) or 'none'})"
            )
        vi = self._indexes[name]
        vi.rebuild(progress)
        return self._index_infos([name])[0]

    def _index_infos(self, names: list[str] | None = None) -> list[IndexInfo]:
        self._open()
        with self._env.read() as txn:
            self._check_valid(txn)
            head = changelog.head(txn, self._db("log"))
        return [self._indexes[n].info(head) for n in (names if names is not None else self._indexes)]

    # -- reports -------------------------------------------------------------

    def info(self) -> TableInfo:
        """Row count, bytes, per-feature layout and the Bloom filter's state."""
        bloom = self._sync_bloom()
        self._open()
        with self._env.read() as txn:
            self._check_valid(txn)
            stats = [txn.stat(self._db(w)) for w in ("rows", "var", "dict", "log")]
        nbytes = sum((s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]) * s["psize"] for s in stats)
        feats = [
            FeatureInfo(
                name=n,
                kind=s.kind,
                dtype=getattr(s, "dtype", "utf8" if isinstance(s, Category) else "ids"),
                bytes_per_row=self.schema.feature_bytes(n),
                spec=s.to_dict(),
            )
            for n, s in self.schema.features.items()
        ]
        return TableInfo(
            name=self.name,
            table_id=self.schema.table_id,
            rows=stats[0]["entries"],
            record_bytes=self.schema.record_size,
            lmdb_bytes=nbytes,
            features=feats,
            bloom=BloomInfo(
                configured_fpr=self.schema.bloom_fpr,
                estimated_fpr=bloom.estimated_fpr(),
                capacity=sum(f["capacity"] for f in bloom.filters_info()),
                count=bloom.count,
                num_filters=bloom.num_filters,
                bytes=bloom.nbytes,
                seq=self._bloom_state.seq,
            ),
            log_entries=stats[3]["entries"],
            expected_size=self.schema.expected_size,
            indexes=self._index_infos(),
        )

    def verify(self) -> list[str]:
        """Check rows, ID lists, category dictionaries, the Bloom filter and every index
        against each other; return one line per problem found (empty: healthy).

        Example::

            assert items.verify() == []
        """
        return verify_table(self)

    def rebuild_bloom(self) -> BloomInfo:
        """Rebuild the Bloom filter from the rows (drops deleted IDs) and persist it."""
        self._bloom_state.rebuild()
        return self.info().bloom
