"""A store: one directory holding an LMDB environment and the files derived from it.

The directory layout (docs/format.md)::

    shop.vs/
      data.mdb, lock.mdb     LMDB: metadata, schemas, rows, IDs, change logs
      bloom/t<ID>.bloom      Bloom filter snapshots, derived from LMDB
      vecstore.lock          flock: shared by every open Store, exclusive while compacting

Everything a store needs to reopen (format version, hash seed, every table's
schema) is in LMDB, so ``vecstore.open(path)`` needs no arguments.

Example::

    with vecstore.open("shop.vs") as store:
        items = store.create_table("items", {"price": vecstore.Scalar("f32")})
        items.put(["item-1", "item-2"], {"price": [9.5, 3.0]})
        print(items.get("item-1")["price"])    # [9.5]
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from . import __version__
from .dirlock import LOCK_NAME, DirLock
from .env import Env
from .errors import (
    CorruptionError,
    FormatVersionError,
    InvalidValueError,
    NotAStoreError,
    SchemaError,
    StoreNotFoundError,
    TableExistsError,
    TableNotFoundError,
)
from .featurelog import FeatureLog
from .features import Feature
from .hashing import hash_ids
from .info import StoreInfo
from .schema import TableSchema, check_new_table, features_differ
from .table import Table, table_db_names

__all__ = ["FORMAT_VERSION", "Store", "open"]

FORMAT_VERSION = 1

_META = b"meta"
_SCHEMAS = b"schemas"
_K_STORE = b"store"
_K_SCHEMA_GEN = b"schema_gen"
_K_NEXT_TABLE = b"next_table_id"


_live_stores: weakref.WeakSet[Store] = weakref.WeakSet()


def _reset_locks_in_child() -> None:
    # A lock held by another thread at fork time stays held forever in the child.
    for store in list(_live_stores):
        store._lock = threading.RLock()
        for t in store._tables.values():
            t._reset_locks()


os.register_at_fork(after_in_child=_reset_locks_in_child)


def _u64(b: bytes | None) -> int:
    return int.from_bytes(b, "little") if b else 0


class Store:
    """An open store.  Create with :func:`vecstore.open`; close with ``close()`` or ``with``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        readonly: bool = False,
        map_size: int | None = None,
        sync: bool = True,
        seed: int | None = None,
        hash_bits: int = 64,
        max_tables: int = 256,
        max_readers: int = 126,
        lock_timeout: float | None = None,
        _locked: bool = False,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        exists = (self.path / "data.mdb").exists()
        # bloom/, index/ and logs/ appear only after a store has been created:
        # with any of them, a data file without metadata is a damaged store,
        # never one to initialise afresh (which would hide the loss).
        derived = any((self.path / d).is_dir() for d in ("bloom", "index", "logs"))
        if exists and derived and (self.path / "data.mdb").stat().st_size == 0:
            raise CorruptionError(
                f"{self.path} is a store whose data file (data.mdb) is empty",
                hint="its rows are gone (a restore onto a full disk?): restore the store from a backup",
            )
        self._derived_files = derived
        if not exists:
            if self.path.exists() and not self.path.is_dir():
                raise NotAStoreError(f"{self.path} is a file, not a store directory")
            # A lock file alone is what a creator racing with us leaves before LMDB's files.
            if self.path.is_dir() and any(p.name != LOCK_NAME for p in self.path.iterdir()):
                if (self.path / "lock.mdb").exists() or derived:
                    # vecstore's own files without data.mdb: a damaged store, not a wrong path.
                    raise CorruptionError(
                        f"{self.path} is a store whose data file (data.mdb) is missing",
                        hint="its rows are gone: restore the store from a backup",
                    )
                raise NotAStoreError(
                    f"{self.path} is a non-empty directory without a store in it",
                    hint="pick a new path; vecstore creates the directory itself",
                )
            if readonly or not create:
                raise StoreNotFoundError(
                    f"no store at {self.path}", hint="create it with vecstore.open(path) or `vecstore init`"
                )
            if not 8 <= hash_bits <= 64:
                raise SchemaError(f"hash_bits must be in [8, 64], got {hash_bits}")
            self.path.mkdir(parents=True, exist_ok=True)
        # Shared while open; `vecstore compact` takes it exclusively (vecstore/dirlock.py).
        # ``_locked``: the caller (maintenance) already holds it exclusively.
        self._dirlock = None if _locked else DirLock.shared(self.path, timeout=lock_timeout, readonly=readonly)
        try:
            self._env = Env(
                str(self.path),
                readonly=readonly,
                map_size=map_size,
                sync=sync,
                max_dbs=8 + 8 * max_tables,
                max_readers=max_readers,
            )
        except BaseException:
            self._release_dirlock()
            raise
        self._lock = threading.RLock()
        self._tables: dict[str, Table] = {}
        self._schema_gen = -1
        self._log: FeatureLog | None = None
        try:
            self._load_or_init_meta(seed, hash_bits)
        except BaseException:
            self._env.close()
            self._release_dirlock()
            raise
        _live_stores.add(self)

    def _release_dirlock(self) -> None:
        lock, self._dirlock = self._dirlock, None
        if lock is not None:
            lock.release()

    # -- metadata ------------------------------------------------------------

    def _load_or_init_meta(self, seed: int | None, hash_bits: int) -> None:
        meta_db = self._env.db(_META)
        meta = None
        if meta_db is not None:
            with self._env.read() as txn:
                raw = txn.get(_K_STORE, db=meta_db)
                meta = self._decode_meta(raw) if raw else None
        if meta is None:
            # Derived files, or table schemas, exist only after the metadata was
            # committed: then this is a store that lost it, and a new seed would
            # make every stored row unreachable (and reuse table IDs).
            schemas_db = self._env.db(_SCHEMAS)
            if schemas_db is not None:
                with self._env.read() as txn:
                    has_tables = txn.stat(schemas_db)["entries"] > 0
            else:
                has_tables = False
            if self._derived_files or has_tables:
                raise CorruptionError(
                    f"{self.path} is a store whose data file (data.mdb) has lost its metadata",
                    hint="its rows are keyed by the lost seed, so they cannot be read: restore the store from a backup",
                )
            if self.readonly:
                raise NotAStoreError(f"{self.path} holds an LMDB environment but no vecstore metadata")
            meta = {
                "format_version": FORMAT_VERSION,
                "seed": secrets.randbits(64) if seed is None else int(seed) & ((1 << 64) - 1),
                "hash_bits": hash_bits,
                "uuid": uuid.uuid4().hex,
                "created": time.time(),
                "created_by": f"vecstore {__version__}",
            }

            def init(txn: Any) -> None:
                m = self._env.raw.open_db(_META, txn=txn, create=True)
                s = self._env.raw.open_db(_SCHEMAS, txn=txn, create=True)
                if txn.get(_K_STORE, db=m) is None:  # another process may have won the race
                    txn.put(_K_STORE, msgpack.packb(meta), db=m)
                    txn.put(_K_SCHEMA_GEN, (0).to_bytes(8, "little"), db=m)
                    txn.put(_K_NEXT_TABLE, (1).to_bytes(8, "little"), db=m)
                del s

            self._env.write(init, action="creating the store")
            self._env.forget_dbs([_META, _SCHEMAS])
            meta_db = self._env.db(_META)
            with self._env.read() as txn:
                meta = self._decode_meta(txn.get(_K_STORE, db=meta_db))
        self._env.db(_SCHEMAS)  # open before any transaction needs it (see Env.db)
        version = meta.get("format_version", 0)
        if version > FORMAT_VERSION:
            raise FormatVersionError(
                f"store at {self.path} has format version {version}; this vecstore {__version__} reads up to {FORMAT_VERSION}",
                hint="upgrade vecstore (pip install -U vecstore)",
            )
        self.format_version: int = version
        if seed is not None and int(seed) & ((1 << 64) - 1) != meta["seed"]:
            # Silently using the stored seed would hash the caller's IDs to
            # keys that no store built with their seed agrees on.
            raise InvalidValueError(
                f"store at {self.path} has the hash seed {meta['seed']}, not {seed}",
                hint="a store's seed is fixed when it is created: leave seed out to open it, or create a new store",
            )
        self.seed: int = meta["seed"]
        self.hash_bits: int = meta["hash_bits"]
        self.uuid: str = meta["uuid"]
        self.created: float = meta["created"]

    def _decode_meta(self, raw: bytes) -> dict[str, Any]:
        """The store's metadata record, or CorruptionError if damage made it unreadable."""
        try:
            meta = msgpack.unpackb(raw)
            ok = isinstance(meta, dict) and all(
                isinstance(meta.get(k), t) for k, t in (("seed", int), ("hash_bits", int), ("uuid", str), ("created", float))
            )
        except (ValueError, TypeError):  # (msgpack's unpack errors are ValueErrors)
            ok = False
        if not ok:
            raise CorruptionError(
                f"{self.path} is a store whose metadata record is damaged",
                hint="restore the store from a backup (its seed, which maps IDs to keys, cannot be guessed)",
            )
        return meta  # type: ignore[no-any-return]

    def _sync_schemas(self, txn: Any) -> None:
        """Reload table schemas if another call or process changed them."""
        gen = _u64(txn.get(_K_SCHEMA_GEN, db=self._env.db(_META)))
        if gen == self._schema_gen:
            return
        with self._lock:
            schemas = {}
            for name, raw in txn.cursor(db=self._env.db(_SCHEMAS)):
                try:
                    s = TableSchema.from_dict(msgpack.unpackb(raw))
                    schemas[name.decode()] = s
                except (ValueError, TypeError, KeyError, AttributeError):
                    raise CorruptionError(
                        f"{self.path} is a store whose schema record of table {name.decode(errors='replace')!r} is damaged",
                        hint="restore the store from a backup",
                    ) from None
            for name, t in list(self._tables.items()):
                s = schemas.get(name)
                if s is None or s.table_id != t.schema.table_id:
                    t._invalidate()
                    self._env.forget_dbs(table_db_names(t.schema.table_id))
                    del self._tables[name]
            for name, s in schemas.items():
                if name not in self._tables:
                    self._tables[name] = Table(self, s)
            self._schema_gen = gen

    def _refresh(self) -> None:
        with self._env.read() as txn:
            self._sync_schemas(txn)

    # -- tables --------------------------------------------------------------

    def create_table(
        self,
        name: str,
        features: Mapping[str, Feature],
        *,
        expected_size: int = 1_000_000,
        bloom_fpr: float = 0.01,
        exist_ok: bool = False,
    ) -> Table:
        """Create a table of entities keyed by ID, with the given features.

        ``expected_size`` and ``bloom_fpr`` size the table's Bloom filter (it grows
        past ``expected_size`` by itself).  With ``exist_ok=True`` an existing table
        of the same schema is returned instead of raising TableExistsError.

        Example::

            items = store.create_table("items", {
                "price": vecstore.Scalar("f32"),
                "embedding": vecstore.Vector(64, dtype="i8", metric="cos"),
            }, expected_size=100_000)
        """
        as_given = dict(features) if isinstance(features, dict) else features
        features = check_new_table(name, features)
        draft = TableSchema(name, 0, dict(features), expected_size, bloom_fpr)
        self._refresh()
        existing = self._tables.get(name)
        if existing is not None:
            differ = features_differ(existing.schema.features, as_given, draft.features)
            if exist_ok and not differ and list(existing.schema.features) == list(draft.features):
                return existing
            if exist_ok:
                detail = f" with a different schema (features that differ: {', '.join(differ) or 'their order'})"
            else:
                detail = ""
            raise TableExistsError(
                f"table {name!r} already exists{detail}",
                hint="use store.table(name) to open it, or drop_table(name) first",
            )
        opened: dict[bytes, Any] = {}

        def create(txn: Any) -> TableSchema:
            opened.clear()
            meta_db, schemas_db = self._env.db(_META), self._env.db(_SCHEMAS)
            if txn.get(name.encode(), db=schemas_db) is not None:
                raise TableExistsError(f"table {name!r} already exists", hint="use store.table(name) to open it")
            table_id = _u64(txn.get(_K_NEXT_TABLE, db=meta_db))
            schema = TableSchema(name, table_id, draft.features, expected_size, float(bloom_fpr), draft.created)
            for dbname in table_db_names(table_id):
                opened[dbname] = self._env.raw.open_db(dbname, txn=txn, create=True)
            txn.put(name.encode(), msgpack.packb(schema.to_dict()), db=schemas_db)
            txn.put(_K_NEXT_TABLE, (table_id + 1).to_bytes(8, "little"), db=meta_db)
            gen = _u64(txn.get(_K_SCHEMA_GEN, db=meta_db))
            txn.put(_K_SCHEMA_GEN, (gen + 1).to_bytes(8, "little"), db=meta_db)
            return schema

        try:
            self._env.write(create, action=f"creating table {name!r}")
        except TableExistsError:
            if not exist_ok:
                raise
            # Another process created it between the check above and this
            # write: judge its schema as if it had been there all along.
            return self.create_table(name, as_given, expected_size=expected_size, bloom_fpr=bloom_fpr, exist_ok=True)
        for dbname, handle in opened.items():
            self._env.remember_db(dbname, handle)
        return self.table(name)

    def table(self, name: str) -> Table:
        """The named table; TableNotFoundError if there is none."""
        self._refresh()  # notices a drop or re-create by another process
        t = self._tables.get(name) if isinstance(name, str) else None
        if t is None:
            known = ", ".join(sorted(self._tables)) or "none"
            raise TableNotFoundError(
                f"no table {name!r} in store {self.path} (tables: {known})",
                hint="create it with store.create_table()",
            )
        return t

    def __getitem__(self, name: str) -> Table:
        return self.table(name)

    def __contains__(self, name: object) -> bool:
        self._refresh()
        return name in self._tables

    def tables(self) -> list[str]:
        """Names of all tables, sorted."""
        self._refresh()
        return sorted(self._tables)

    def drop_table(self, name: str) -> None:
        """Delete a table, its rows and its derived files.  Irreversible."""
        t = self.table(name)
        table_id = t.schema.table_id
        t._open()

        def drop(txn: Any) -> None:
            schemas_db, meta_db = self._env.db(_SCHEMAS), self._env.db(_META)
            raw = txn.get(name.encode(), db=schemas_db)
            if raw is None or msgpack.unpackb(raw)["table_id"] != table_id:
                raise TableNotFoundError(f"no table {name!r} in store {self.path}")
            for which in ("rows", "var", "dict", "log"):
                txn.drop(t._db(which), delete=True)
            txn.delete(name.encode(), db=schemas_db)
            for k in t._consumer_keys():
                txn.delete(k, db=meta_db)
            gen = _u64(txn.get(_K_SCHEMA_GEN, db=meta_db))
            txn.put(_K_SCHEMA_GEN, (gen + 1).to_bytes(8, "little"), db=meta_db)

        self._env.write(drop, action=f"dropping table {name!r}")
        with self._lock:
            t._invalidate()
            self._env.forget_dbs(table_db_names(table_id))
            self._tables.pop(name, None)
        t._remove_derived_files()

    # -- misc ----------------------------------------------------------------

    def hash_ids(self, ids: Any) -> np.ndarray:
        """The u64 keys this store uses for ``ids`` (its own seed and hash width)."""
        return hash_ids(ids, seed=self.seed, hash_bits=self.hash_bits)

    def info(self) -> StoreInfo:
        """Store-wide figures plus every table's :class:`TableInfo`."""
        self._refresh()
        env_info, env_stat = self._env.info(), self._env.stat()
        pages = self._env.page_usage()
        data = self.path / "data.mdb"
        return StoreInfo(
            path=str(self.path),
            format_version=self.format_version,
            seed=self.seed,
            hash_bits=self.hash_bits,
            uuid=self.uuid,
            file_bytes=data.stat().st_size if data.exists() else 0,
            map_size=env_info["map_size"],
            page_size=env_stat["psize"],
            readers=env_info["num_readers"],
            tables=[self._tables[n].info() for n in sorted(self._tables)],
            pages_total=pages["total"],
            pages_free=pages["free"],
            derived_bytes=sum(
                f.stat().st_size for d in ("bloom", "index") if (self.path / d).is_dir() for f in (self.path / d).iterdir() if f.is_file()
            ),
            log=self.log.info().to_dict() if (self.path / "logs").is_dir() else None,
        )

    def verify(self) -> list[str]:
        """Check every table: rows decode, IDs and rows agree, no Bloom false negatives.

        Returns one line per problem found; an empty list means healthy.
        """
        problems: list[str] = []
        for name in self.tables():
            problems.extend(self._tables[name].verify())
        return problems

    @property
    def log(self) -> FeatureLog:
        """The store's feature log, created on first use (docs/feature-logging.md).

        Example::

            store.log.retrieval("req-1", ids, scores, table="items", sample=0.01)
        """
        log = self._log
        if log is None:
            with self._lock:
                if self._log is None:
                    self._log = FeatureLog(self)
                log = self._log
        return log

    def flush(self) -> None:
        """Persist derived files (Bloom and index snapshots) and fsync LMDB and the feature log.

        Never needed for durability of rows (each commit is durable when
        ``sync=True``); it makes the next open faster.  Only what this process
        has loaded is saved: a Bloom filter or index it never used has nothing
        newer than its snapshot file (or has none yet: the first
        ``may_contain`` or ``search`` builds it).  For the feature log it
        is ``store.log.flush()``: what was logged survives an OS crash.
        """
        if self._log is not None:
            self._log.flush()
        self._refresh()
        for t in list(self._tables.values()):
            try:
                t._persist_derived(force=True)
            except TableNotFoundError:
                pass  # dropped by another process meanwhile
        self._env.sync_to_disk()

    def close(self) -> None:
        """Save derived files that are worth saving and close.  Further use raises StoreClosedError.

        Bloom filters are saved; an index snapshot only when it is far behind
        (a short replay of the change log on the next open is cheaper than
        rewriting a large index).  :meth:`flush` saves every snapshot.
        """
        if self._env._closed:
            return
        if self._log is not None:
            self._log.close()  # its last records and its index first; a failure leaves the store open to retry
            self._log = None
        if not self.readonly:
            try:
                self._refresh()
                for t in list(self._tables.values()):
                    try:
                        t._persist_derived(force=False)
                    except TableNotFoundError:
                        pass  # dropped by another process meanwhile
            finally:
                self._env.close()
                self._release_dirlock()
        else:
            self._env.close()
            self._release_dirlock()
        for t in self._tables.values():
            t._invalidate()

    @property
    def closed(self) -> bool:
        return self._env._closed

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables())

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("read-only" if self.readonly else "open")
        return f"<vecstore.Store {str(self.path)!r} {state}>"


def open(  # noqa: A001 - mirrors the builtin on purpose: vecstore.open(path)
    path: str | os.PathLike[str],
    *,
    create: bool = True,
    readonly: bool = False,
    map_size: int | None = None,
    sync: bool = True,
    seed: int | None = None,
    hash_bits: int = 64,
    max_tables: int = 256,
    max_readers: int = 126,
    lock_timeout: float | None = None,
) -> Store:
    """Open the store at ``path``, creating the directory if it is missing.

    * ``create=False`` or ``readonly=True``: fail with StoreNotFoundError instead of creating.
    * ``map_size``: initial LMDB map size in bytes (default 256 MiB); the map
      grows by itself when a write needs more, so this is only a hint.
    * ``sync=False`` skips fsync on commit: a process crash loses nothing, a
      power loss or OS crash may lose the last commits (never corrupts).
    * ``seed`` (creation only): the XXH3 seed for IDs; random when omitted.
      Stores that must agree on keys can share a seed.  Given for an existing
      store, it must be that store's seed (InvalidValueError otherwise).
    * ``hash_bits`` (creation only, **testing hook**): keep only this many bits
      of each key, to force ID collisions in tests.  Never use it in production.
    * ``max_tables``: how many tables the store can hold (LMDB sub-database slots).
    * ``lock_timeout``: how long to wait, in seconds, while ``vecstore compact``
      holds the store's lock before raising StoreBusyError (default 5, or the
      ``VECSTORE_LOCK_TIMEOUT`` environment variable; docs/operations.md).

    Example::

        with vecstore.open("shop.vs") as store:
            print(store.tables())
    """
    return Store(
        path,
        create=create,
        readonly=readonly,
        map_size=map_size,
        sync=sync,
        seed=seed,
        hash_bits=hash_bits,
        max_tables=max_tables,
        max_readers=max_readers,
        lock_timeout=lock_timeout,
    )
