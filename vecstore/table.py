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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from . import changelog
from .bloom import BloomFilter
from .codecs import encode_scalar, encode_vectors
from .errors import (
    CorruptionError,
    IdCollisionError,
    InvalidIdError,
    InvalidValueError,
    StoreClosedError,
    TableNotFoundError,
    UnknownFeatureError,
)
from .features import Category, IdList, Scalar, Vector
from .hashing import IdBatch, decode_id, normalize_ids, same_entity
from .info import BloomInfo, FeatureInfo, TableInfo
from .rows import Rows
from .records import assemble_values, from_arrow, check_idlist, key_bytes, provided, sort_keep_last, unpack_records
from .schema import PRESENT, TableSchema

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Table", "table_db_names"]

# A category string is part of an LMDB key (511 bytes at most) in the dictionary.
MAX_CATEGORY_BYTES = 500

# Change-log entries a writer lets accumulate before it builds and persists the
# Bloom filter (which lets the log be trimmed) even if nothing asked for it.
_LOG_SOFT_LIMIT = 1024

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
        self._bloom_lock = threading.RLock()
        self._bloom: BloomFilter | None = None
        self._bloom_seq = 0
        self._bloom_txnid = -1
        self._bloom_saved_seq = -1
        self._unsaved_keys = 0

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
        self._bloom_lock = threading.RLock()

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

    def _consumer_keys(self) -> list[bytes]:
        return [b"consumer:%d:bloom" % self.schema.table_id]

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
            rec = base.view(np.uint8).reshape(n, W)[sel].view(dtype).ravel()
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
            for f in feats:
                if f in self.schema.var_slot:
                    slot = self.schema.var_slot[f].to_bytes(2, "big")
                    vget = txn.cursor(self._db("var")).get
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

    # -- Bloom filter --------------------------------------------------------

    def _bloom_path(self) -> Path:
        return self._store.path / "bloom" / f"t{self.schema.table_id}.bloom"

    def _sync_bloom(self) -> BloomFilter:
        """Bring this process's Bloom filter up to the newest commit (cheap when nothing changed)."""
        txnid = self._env.last_txnid()
        bloom = self._bloom
        if bloom is not None and txnid == self._bloom_txnid:
            return bloom
        self._open()
        with self._bloom_lock, self._env.read() as txn:
            self._check_valid(txn)
            # Record the snapshot this transaction reads, not the txnid read above:
            # a commit can show in the meta page before a new reader sees it.
            txnid = txn.id()
            log = self._db("log")
            head, first = changelog.head(txn, log), changelog.first(txn, log)
            stale = self._bloom is None or self._bloom_seq > head or (first > self._bloom_seq + 1 and self._bloom_seq < head)
            if stale:
                self._load_or_rebuild_bloom(txn, head, first)
            assert self._bloom is not None
            if self._bloom_seq < head:
                for entry in changelog.entries(txn, log, self._bloom_seq):
                    if entry.op == changelog.OP_PUT:
                        self._unsaved_keys += self._bloom.add(entry.keys)
                self._bloom_seq = head
            self._bloom_txnid = txnid
            return self._bloom

    def _load_or_rebuild_bloom(self, txn: Any, head: int, first: int) -> None:
        try:
            bloom, meta = BloomFilter.load(self._bloom_path())
            seq = int(meta.get("seq", -1))
            usable = (
                meta.get("store_uuid") == self._store.uuid
                and meta.get("table_id") == self.schema.table_id
                and 0 <= seq <= head
                and (seq >= first - 1 or seq == head)
            )
        except (FileNotFoundError, CorruptionError):
            usable = False
        if usable:
            self._bloom, self._bloom_seq, self._bloom_saved_seq = bloom, seq, seq
            self._unsaved_keys = 0
            return
        # Rebuild from the rows: LMDB is the source of truth.
        keys = np.frombuffer(
            b"".join(txn.cursor(self._db("rows")).iternext(keys=True, values=False)), dtype=">u8"
        ).astype(np.uint64)
        capacity = max(self.schema.expected_size, len(keys) + len(keys) // 2)
        bloom = BloomFilter(capacity=capacity, fpr=self.schema.bloom_fpr)
        bloom.add(keys)
        self._bloom, self._bloom_seq, self._bloom_saved_seq = bloom, head, -1
        self._unsaved_keys = len(keys)

    def _after_write(self, log_seq: int) -> None:
        """Keep derived state moving after a commit, so the change log stays short.

        The filter is built lazily by the first ``may_contain``; a process that
        only writes still builds it once the log holds ``_LOG_SOFT_LIMIT``
        unabsorbed entries, because only a persisted snapshot lets the log be trimmed.
        """
        if self._bloom is None and log_seq - max(self._bloom_saved_seq, 0) < _LOG_SOFT_LIMIT:
            return
        bloom = self._sync_bloom()
        if self._unsaved_keys > max(100_000, bloom.count // 20) or self._bloom_seq - self._bloom_saved_seq >= _LOG_SOFT_LIMIT:
            self._persist_derived(force=True)

    def _persist_derived(self, *, force: bool) -> None:
        """Save the Bloom snapshot and trim change-log entries every derived file has absorbed."""
        if self._store.readonly or not self._valid or self._bloom is None:
            return
        with self._bloom_lock:
            if self._bloom_saved_seq == self._bloom_seq and not force:
                return
            if self._bloom_saved_seq == self._bloom_seq:
                return
            seq = self._bloom_seq
            self._bloom.save(
                self._bloom_path(), {"seq": seq, "table_id": self.schema.table_id, "store_uuid": self._store.uuid}
            )
            self._bloom_saved_seq = seq
            self._unsaved_keys = 0
        meta_key = self._consumer_keys()[0]
        meta = self._env.db(b"meta")

        def record(txn: Any) -> None:
            self._check_valid(txn)
            txn.put(meta_key, seq.to_bytes(8, "little"), db=meta)
            upto = min(int.from_bytes(txn.get(k, db=meta) or b"\0" * 8, "little") for k in self._consumer_keys())
            changelog.truncate(txn, self._db("log"), upto)

        self._open()
        try:
            self._env.write(record, action=f"recording the Bloom snapshot of table {self.name!r}")
        except TableNotFoundError:
            self._remove_derived_files()  # dropped elsewhere meanwhile: leave no orphan file
            raise

    def _remove_derived_files(self) -> None:
        self._bloom_path().unlink(missing_ok=True)

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
                seq=self._bloom_seq,
            ),
            log_entries=stats[3]["entries"],
            expected_size=self.schema.expected_size,
        )

    def verify(self) -> list[str]:
        """Check every row decodes and sits under its ID's hash, ID lists belong to rows,
        and the Bloom filter has no false negative; return the problems found (empty: healthy)."""
        problems: list[str] = []
        bloom = self._sync_bloom()
        W = self.schema.record_size
        self._open()
        with self._env.read() as txn:
            self._check_valid(txn)
            row_keys: list[bytes] = []
            stored_ids: list[Any] = []
            records: list[bytes] = []
            for k, v in txn.cursor(self._db("rows")):
                row_keys.append(k)
                if len(v) <= W:
                    problems.append(f"{self.name}: row {k.hex()} has {len(v)} bytes, expected {W} plus its ID")
                    continue
                records.append(v[:W])
                try:
                    stored_ids.append((k, decode_id(v[W:])))
                except (InvalidIdError, UnicodeDecodeError, IndexError):
                    problems.append(f"{self.name}: stored ID of key {k.hex()} does not decode")
            if stored_ids:
                expect = self._ids([i for _, i in stored_ids]).keys
                got = np.frombuffer(b"".join(k for k, _ in stored_ids), dtype=">u8").astype(np.uint64)
                for j in np.flatnonzero(expect != got)[:10].tolist():
                    problems.append(f"{self.name}: ID {stored_ids[j][1]!r} is stored under key {int(got[j]):#x}, not its hash")
            rowset = set(row_keys)
            for k, v in txn.cursor(self._db("var")):
                if k[:8] not in rowset:
                    problems.append(f"{self.name}: ID list entry for missing row {k[:8].hex()}")
                try:
                    if not isinstance(msgpack.unpackb(v), list):
                        raise ValueError("not a list")
                except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                    problems.append(f"{self.name}: ID list of row {k[:8].hex()} does not decode")
        rec = np.frombuffer(b"".join(records), dtype=self.schema.record_dtype)
        for name in self._cat_codes:
            try:
                known = len(self._load_categories(name))
            except CorruptionError as e:
                problems.append(f"{self.name}: {e.message}")
                continue
            bad = int((rec[name] >= known).sum())
            if bad:
                problems.append(f"{self.name}: {bad} rows hold {name!r} codes missing from its dictionary")
        if row_keys:
            keys = np.frombuffer(b"".join(row_keys), dtype=">u8").astype(np.uint64)
            misses = int((~bloom.may_contain(keys)).sum())
            if misses:
                problems.append(f"{self.name}: Bloom filter misses {misses} stored keys (false negatives)")
        return problems

    def rebuild_bloom(self) -> BloomInfo:
        """Rebuild the Bloom filter from the rows (drops deleted IDs) and persist it."""
        self._open()
        with self._bloom_lock, self._env.read() as txn:
            self._check_valid(txn)
            log = self._db("log")
            self._bloom_saved_seq = -2
            bloom_path = self._bloom_path()
            bloom_path.unlink(missing_ok=True)
            self._load_or_rebuild_bloom(txn, changelog.head(txn, log), changelog.first(txn, log))
            self._bloom_txnid = -1
        self._persist_derived(force=True)
        return self.info().bloom
