"""``log.export``: the log as a Hive-partitioned Parquet dataset, labels joined.

Layout (what Spark, DuckDB, Ray and ``pyarrow.dataset`` read as is)::

    <path>/stage=retrieval/date=2026-11-23/part-<export id>-00000.parquet
    <path>/stage=ranking/date=2026-11-23/part-<export id>-00001.parquet

``stage`` and ``date`` (the UTC date of ``ts``) come from the directory
names, as Hive partitioning has it; every file holds the same columns, in
this order (docs/feature-logging.md pins the schema):

=================  ==========================  =======================================
column             type                        meaning
=================  ==========================  =======================================
request_id         string, not null            the request
ts                 timestamp[us, UTC], not null when the call was logged
user               string                      user ID (ints in decimal)
table              string, not null            the feature table
item               string, not null            candidate / ranked item ID
position           int32, not null             index in the retrieved list; rank position
score              float64, not null           the stage's score
source             string                      e.g. "ann"
sample_prob        float64, not null           probability the row's features were logged
sampled            bool, not null              whether they were (ranking rows: always)
shown              bool                        ranking: shown to the user; null if not said
label_<name>       float64                     one per label name; null if none arrived
<feature>          by feature type             dequantized; null when not sampled or absent
ctx_<key>          by value type               request context
=================  ==========================  =======================================

Feature types: f16/f32 scalars float32, f64 float64, integers their own
type, bool bool, categories string, ID lists list<string>, vectors
fixed_size_list<float32>[dim].  A feature named like a fixed or partition
column (``stage``, ``date``), or starting with ``label_``, ``ctx_`` or
``feature_``, is written as ``feature_<name>``: the same in every export.

The export streams: segments are read frame by frame, rows buffered per
partition up to ``row_group_rows`` and written as one row group, and labels
are looked up per request in the index, so memory stays bounded by the row
group size times the partitions open at once (``max_open_files``).
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import ExportError, InvalidValueError, TableNotFoundError
from .columns import decode_ids_text, decode_scores, id_text, unpack_objects
from .delta import Call
from .frames import KIND_HEADER, KIND_OF_STAGE, ScanResult, next_good_frame
from .inputs import to_time
from .segments import scan_frames
from .stats import check_stage

if TYPE_CHECKING:
    from .log import FeatureLog
    from .view import View

__all__ = ["FIXED_SCHEMA", "ExportResult", "export", "feature_type"]

FIXED_SCHEMA = pa.schema([
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("user", pa.string()),
    pa.field("table", pa.string(), nullable=False),
    pa.field("item", pa.string(), nullable=False),
    pa.field("position", pa.int32(), nullable=False),
    pa.field("score", pa.float64(), nullable=False),
    pa.field("source", pa.string()),
    pa.field("sample_prob", pa.float64(), nullable=False),
    pa.field("sampled", pa.bool_(), nullable=False),
    pa.field("shown", pa.bool_()),
])

_SCALAR_TYPES = {
    "f16": pa.float32(), "f32": pa.float32(), "f64": pa.float64(), "bool": pa.bool_(),
    "i8": pa.int8(), "i16": pa.int16(), "i32": pa.int32(), "i64": pa.int64(),
    "u8": pa.uint8(), "u16": pa.uint16(), "u32": pa.uint32(), "u64": pa.uint64(),
}
_CTX_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}


def feature_type(spec: dict[str, Any]) -> pa.DataType:
    """The export column type of a feature spec (as stored in a table schema)."""
    kind = spec["kind"]
    if kind == "scalar":
        return _SCALAR_TYPES[spec["dtype"]]
    if kind == "category":
        return pa.string()
    if kind == "idlist":
        return pa.list_(pa.string())
    return pa.list_(pa.float32(), spec["dim"])


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.  It is path-like: ``pyarrow.dataset.dataset(result)`` works."""

    path: str
    files: list[str]
    rows: int
    rows_by_stage: dict[str, int]
    calls: int
    labels_joined: int
    seconds: float
    schema: pa.Schema = field(repr=False)
    # Damage that cut a segment short (good frames after a bad one): those
    # records are not in the export; store.log.verify() reports the same.
    problems: list[str] = field(default_factory=list)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path


_RESERVED = frozenset(f.name for f in FIXED_SCHEMA) | {"stage", "date"}  # + the Hive partition columns


def _feature_column_name(name: str) -> str:
    """A feature's export column: its name, or ``feature_<name>`` when that could clash.

    The rule depends on the name alone (not on what else the window holds), so
    a feature has the same column in every export: a name that is a fixed or
    partition column, or starts with ``label_``, ``ctx_`` or ``feature_`` (so
    no renamed column can meet an unrenamed one), gets the prefix.
    """
    if name in _RESERVED or name.startswith(("label_", "ctx_", "feature_")):
        return f"feature_{name}"
    return name


class _Plan:
    """The export's one schema: fixed columns, labels, features, context."""

    def __init__(self, view: View, lo: float, hi: float, table: str | None, join_labels: bool, order: dict[str, list[str]]) -> None:
        fields = list(FIXED_SCHEMA)
        self.labels = {n: f"label_{n}" for n in sorted(view.label_names())} if join_labels else {}
        fields += [pa.field(c, pa.float64()) for c in self.labels.values()]
        ctx = view.context_types(lo, hi)
        self.ctx = {k: (f"ctx_{k}", _CTX_TYPES[ctx[k]]) for k in sorted(ctx)}
        self.features: dict[str, tuple[str, pa.DataType]] = {}
        for tname, feats in sorted(view.tables(lo, hi).items()):
            if table is not None and tname != table:
                continue
            # The table's current schema order, then features it no longer has, as first logged.
            known = order.get(tname, [])
            names = [f for f in known if f in feats] + [f for f in feats if f not in known]
            for fname in names:
                for spec in feats[fname]:
                    typ = feature_type(spec)
                    have = self.features.get(fname)
                    if have is None:
                        self.features[fname] = (_feature_column_name(fname), typ)
                    elif have[1] != typ:
                        raise ExportError(
                            f"feature {fname!r} was logged as {have[1]} and as {typ} (different tables or schemas)",
                            hint="export one table at a time (table=...) or a time window with one schema",
                        )
        fields += [pa.field(c, t) for c, t in self.features.values()]
        fields += [pa.field(c, t) for c, t in self.ctx.values()]
        self.schema = pa.schema(fields)
        # Dictionary-encode only the columns with few distinct values per row
        # group: it makes them smaller, while trying it on items, scores and
        # features costs time (measured: 3.25M against 2.53M rows/s) and bytes.
        self.dictionary = ["request_id", "user", "table", "source"] + [
            f.name for f in fields[len(FIXED_SCHEMA) :] if pa.types.is_string(f.type) or pa.types.is_boolean(f.type)
        ]


class _Part:
    """Rows of one partition (stage, date) waiting to be written as one row group, and its file."""

    def __init__(self, plan: _Plan, root: Path, stage: str, date: str, export_id: str, seq: int) -> None:
        self.plan = plan
        self.dir = root / f"stage={stage}" / f"date={date}"
        self.name = f"part-{export_id}-{seq:05d}.parquet"
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.written = 0
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.rec: list[tuple[Any, ...]] = []  # request_id, ts, user, table, source, p, nrows, context
        self.items: list[pa.Array] = []
        self.pos: list[np.ndarray] = []
        self.score: list[np.ndarray] = []
        self.sampled: list[np.ndarray] = []
        self.shown: list[np.ndarray | None] = []
        self.feat: dict[str, list[tuple[np.ndarray, Any]]] = {}
        self.lab: dict[str, tuple[list[int], list[float]]] = {}

    def add(self, call: Call, labels: dict[str, dict[str, float]]) -> int:
        """Buffer one call's rows; returns how many label values were joined."""
        m, bufs, n, k = call.meta, call.bufs, call.meta["n"], call.meta["k"]
        base = self.rows
        items = decode_ids_text(m["ik"], [bufs["id0"], bufs.get("id1")], n)
        self.items.append(items)
        self.score.append(decode_scores(m["sc"], bufs["sc"]))
        self.pos.append(np.frombuffer(bufs["pos"], dtype="<i4") if "pos" in bufs else np.arange(n, dtype=np.int32))
        if "idx" in bufs:
            idx = np.frombuffer(bufs["idx"], dtype="<u4").astype(np.int64)
        else:
            idx = np.arange(n if k == n else 0, dtype=np.int64)
        sampled = np.zeros(n, dtype=bool)
        sampled[idx] = True
        self.sampled.append(sampled)
        self.shown.append(np.frombuffer(bufs["sh"], dtype=np.uint8).astype(bool) if "sh" in bufs else None)
        self.rec.append((m["r"], call.ts, m["u"], m["t"], m["s"], m["p"], n, m.get("c")))
        if k:
            lay = call.layout
            rec = lay.records(bufs["rec"], k)
            for f in lay.fixed:
                col = self.plan.features.get(f)
                if col is None:
                    continue
                present = lay.present(rec, f)
                vals = lay.values(rec, f)
                self.feat.setdefault(col[0], []).append((base + idx[present], vals[present]))
            for f in lay.categories:
                col = self.plan.features.get(f)
                if col is None:
                    continue
                present = lay.present(rec, f)
                strings = call.ctx.strings(m["ti"], f, rec[f][present])
                self.feat.setdefault(col[0], []).append((base + idx[present], strings))
            for f in lay.idlists:
                col = self.plan.features.get(f)
                if col is None:
                    continue
                objs = unpack_objects(bufs["o:" + f])
                keep = np.fromiter((v is not None for v in objs), dtype=bool, count=len(objs))
                self.feat.setdefault(col[0], []).append((base + idx[keep], [v for v in objs if v is not None]))
        joined = 0
        if labels:
            ints = np.frombuffer(bufs["id0"], dtype="<" + m["ik"]) if m["ik"] in ("i4", "i8") else None
            for item, names in labels.items():
                if ints is not None:  # int IDs: compare numbers, not their decimal strings
                    value = _int_of_text(item)
                    hits = np.flatnonzero(ints == value) if value is not None else np.zeros(0, np.int64)
                else:
                    hits = np.flatnonzero(pc.equal(items, item).to_numpy(zero_copy_only=False))
                for name, value in names.items():
                    col_name = self.plan.labels.get(name)
                    if col_name is None or not len(hits):
                        continue
                    slot = self.lab.setdefault(col_name, ([], []))
                    slot[0].extend((base + hits).tolist())
                    slot[1].extend([value] * len(hits))
                    joined += len(hits)
        self.rows += n
        return joined

    def table(self) -> pa.Table:
        """The buffered rows as one table of the plan's schema; empties the buffer."""
        N, plan = self.rows, self.plan
        counts = np.fromiter((r[6] for r in self.rec), dtype=np.int64, count=len(self.rec))
        rep = pa.array(np.repeat(np.arange(len(self.rec)), counts))

        def per_call(i: int, typ: pa.DataType, conv: Any = None) -> pa.Array:
            vals = [r[i] if conv is None or r[i] is None else conv(r[i]) for r in self.rec]
            if pa.types.is_string(typ):
                return _repeat_strings(vals, counts)
            return pa.array(vals, type=typ).take(rep)

        ts_us = np.rint(np.repeat(np.array([r[1] for r in self.rec], dtype=np.float64), counts) * 1e6).astype(np.int64)
        shown = np.zeros(N, dtype=bool)
        shown_null = np.zeros(N, dtype=bool)
        at = 0
        for c, s in zip(counts.tolist(), self.shown):
            if s is None:
                shown_null[at : at + c] = True
            else:
                shown[at : at + c] = s
            at += c
        cols: dict[str, pa.Array] = {
            "request_id": per_call(0, pa.string()),
            "ts": pa.array(ts_us, type=pa.timestamp("us", tz="UTC")),
            "user": per_call(2, pa.string(), id_text),
            "table": per_call(3, pa.string()),
            "item": pa.concat_arrays(self.items) if self.items else pa.array([], pa.string()),
            "position": pa.array(np.concatenate(self.pos) if self.pos else np.zeros(0, np.int32), type=pa.int32()),
            "score": pa.array(np.concatenate(self.score) if self.score else np.zeros(0)),
            "source": per_call(4, pa.string()),
            "sample_prob": pa.array(np.repeat(np.array([r[5] for r in self.rec], dtype=np.float64), counts)),
            "sampled": pa.array(np.concatenate(self.sampled) if self.sampled else np.zeros(0, bool)),
            "shown": pa.array(shown, mask=shown_null),
        }
        for col in plan.labels.values():
            vals = np.zeros(N)
            valid = np.zeros(N, dtype=bool)
            if col in self.lab:
                idx, v = self.lab[col]
                vals[idx] = v
                valid[idx] = True
            cols[col] = pa.array(vals, mask=~valid)
        for col, typ in plan.features.values():
            cols[col] = _feature_column(N, typ, self.feat.get(col, []))
        for key, (col, typ) in plan.ctx.items():
            conv = {pa.string(): _ctx_str, pa.float64(): float}.get(typ)
            vals = [None if r[7] is None else r[7].get(key) for r in self.rec]
            vals = [v if v is None or conv is None else conv(v) for v in vals]
            cols[col] = _repeat_strings(vals, counts) if typ == pa.string() else pa.array(vals, type=typ).take(rep)
        out = pa.Table.from_arrays([cols[f.name] for f in plan.schema], schema=plan.schema)
        self._reset()
        return out

    def flush(self, row_group_rows: int) -> int:
        if not self.rows:
            return 0
        tbl = self.table()
        if self.writer is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(
                self.dir / f".{self.name}.tmp", self.plan.schema, compression="zstd", use_dictionary=self.plan.dictionary
            )
        self.writer.write_table(tbl, row_group_size=row_group_rows)
        self.written += tbl.num_rows
        return tbl.num_rows

    def close(self, row_group_rows: int) -> str | None:
        self.flush(row_group_rows)
        if self.writer is None:
            return None
        self.writer.close()
        os.replace(self.dir / f".{self.name}.tmp", self.dir / self.name)
        self.writer = None
        return str(self.dir / self.name)


def _repeat_strings(values: list[str | None], counts: np.ndarray) -> pa.Array:
    """A string array holding ``values[i]`` ``counts[i]`` times each, built from buffers (no per-row object)."""
    enc = [None if v is None else v.encode("utf-8") for v in values]
    lens = np.fromiter((0 if e is None else len(e) for e in enc), dtype=np.int64, count=len(enc))
    data = b"".join(e * c for e, c in zip(enc, counts.tolist()) if e is not None)
    n = int(counts.sum())
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.repeat(lens, counts), out=offsets[1:])
    nulls = np.fromiter((e is None for e in enc), dtype=bool, count=len(enc))
    bitmap = None
    if nulls.any():
        bitmap = pa.py_buffer(np.packbits(~np.repeat(nulls, counts), bitorder="little"))
    if offsets[-1] >= 2**31:
        return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), bitmap).cast(pa.string())
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data), bitmap)


def _int_of_text(text: str) -> int | None:
    """The int whose export text (decimal, see ``id_text``) is ``text``, if any."""
    if not text.lstrip("-").isdigit():
        return None
    value = int(text)
    return value if str(value) == text and -(1 << 63) <= value < (1 << 63) else None


def _ctx_str(v: Any) -> str:
    return v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def _feature_column(N: int, typ: pa.DataType, parts: list[tuple[np.ndarray, Any]]) -> pa.Array:
    """A column of N rows holding ``values`` at ``rows`` for each (rows, values) part, null elsewhere."""
    if not parts:
        return pa.nulls(N, type=typ)
    rows = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    if pa.types.is_fixed_size_list(typ) or pa.types.is_string(typ) or pa.types.is_list(typ):
        # The few values as one short array, spread out by a take whose null
        # indices give null rows: no Python object per row.
        if pa.types.is_fixed_size_list(typ):
            flat = np.concatenate([np.asarray(v, dtype=np.float32).reshape(-1) for _, v in parts])
            short = pa.FixedSizeListArray.from_arrays(pa.array(flat), typ.list_size)
        elif pa.types.is_list(typ):
            short = pa.array([[id_text(x) for x in lst] for _, v in parts for lst in v], type=typ)
        else:
            short = pa.array([x for _, v in parts for x in v], type=typ)
        where = np.full(N, -1, dtype=np.int64)
        where[rows] = np.arange(len(rows))
        return short.take(pa.array(where, mask=where < 0))
    vals = np.zeros(N, dtype=typ.to_pandas_dtype())
    valid = np.zeros(N, dtype=bool)
    for idx, v in parts:
        vals[idx] = v
        valid[idx] = True
    return pa.array(vals, mask=~valid, type=typ)


def export(
    log: FeatureLog,
    path: str | os.PathLike[str],
    *,
    stage: str | None = None,
    start: Any = None,
    end: Any = None,
    join_labels: bool = True,
    table: str | None = None,
    exist_ok: bool = False,
    row_group_rows: int = 262_144,
    max_open_files: int = 8,
) -> ExportResult:
    """Write the calls logged in ``[start, end)`` (at ``stage``, or both) as Parquet (zstd) under ``path``.

    Labels are joined by (request_id, item) whenever they arrived, before or
    after the window.  ``path`` must be empty or missing unless
    ``exist_ok=True`` (then new files are added beside the old ones).  Files
    appear atomically: each is written under a hidden name and renamed when
    complete.

    Example::

        result = log.export("train/", stage="ranking", start=t0, end=t1)
        pyarrow.dataset.dataset(result, partitioning="hive").to_table()
    """
    t0 = time.perf_counter()
    check_stage(stage, allow_none=True)
    if isinstance(row_group_rows, bool) or not isinstance(row_group_rows, int) or row_group_rows < 1:
        raise InvalidValueError(f"row_group_rows must be a positive integer, got {row_group_rows!r}")
    lo, hi = to_time(start, "start"), to_time(end, "end")
    lo_f, hi_f = (-math.inf if lo is None else lo), (math.inf if hi is None else hi)
    if lo_f > hi_f:
        raise InvalidValueError(f"the window starts after it ends ({lo} > {hi})", hint="pass start <= end")
    root = Path(path)
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not exist_ok)):
        raise ExportError(f"{root} exists and is not an empty directory", hint="pick a new path, or pass exist_ok=True (CLI: --exist-ok) to add files")
    view = log._view()
    if table is not None and not isinstance(table, str):
        raise InvalidValueError(f"table must be a table name, got {table!r}")
    if table is not None and table not in log._store and table not in view.tables(-math.inf, math.inf):
        # Neither a table now nor one ever logged: most likely a typo, not "no rows".
        raise TableNotFoundError(
            f"no table {table!r} in the store or the log", hint=f"logged tables: {', '.join(sorted(view.tables(-math.inf, math.inf))) or 'none'}"
        )
    order: dict[str, list[str]] = {}
    for tname in view.tables(lo_f, hi_f):
        if tname in log._store:
            order[tname] = list(log._store.table(tname).schema.features)
    plan = _Plan(view, lo_f, hi_f, table, join_labels, order)
    kinds = {KIND_OF_STAGE[stage]} if stage is not None else set(KIND_OF_STAGE.values())
    lo_f = max(lo_f, view.watermark)
    export_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
    parts: OrderedDict[tuple[str, str], _Part] = OrderedDict()
    files: list[str] = []
    by_stage: dict[str, int] = {}
    problems: list[str] = []
    calls = joined = seq = 0
    days: dict[int, str] = {}
    root.mkdir(parents=True, exist_ok=True)

    def want(kind: int, ts: float, off: int) -> bool:
        # The header is loaded (so checked) too: a damaged length there would
        # otherwise send the scan past good frames without a word.
        return kind == KIND_HEADER or kind in kinds and lo_f <= ts < hi_f

    for seg in view.segments:
        info = view.entries[seg.name]
        damaged = info.size > info.covered  # read it, if only to report what follows the damage
        if not damaged and (info.max_ts < lo_f or info.min_ts >= hi_f or not any(info.records.get(k) for k in kinds)):
            continue
        env = view.index.env if join_labels else None
        ctx = env.read() if env is not None and view.index._db(b"labels") is not None else None
        txn = ctx.__enter__() if ctx is not None else None
        scanned = ScanResult()
        try:
            for frame, sctx in scan_frames(seg, 0, scanned, load=want):
                if frame.payload is None or frame.kind not in kinds:
                    continue
                call = Call(frame, sctx)
                if table is not None and call.meta["t"] != table:
                    continue
                day = int(frame.ts // 86400)
                date = days.get(day)
                if date is None:
                    date = days[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")
                key = (call.stage, date)
                part = parts.get(key)
                if part is None:
                    if len(parts) >= max_open_files:
                        _, old = parts.popitem(last=False)
                        done = old.close(row_group_rows)
                        if done:
                            files.append(done)
                    part = parts[key] = _Part(plan, root, call.stage, date, export_id, seq)
                    seq += 1
                else:
                    parts.move_to_end(key)
                joined += part.add(call, view.labels(txn, call.meta["r"]) if join_labels else {})
                calls += 1
                by_stage[call.stage] = by_stage.get(call.stage, 0) + call.meta["n"]
                if part.rows >= row_group_rows:
                    part.flush(row_group_rows)
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
        if damaged and scanned.problem is None and next_good_frame(seg, info.covered + 1) is not None:
            # The export read frames (it checks only what it loads) that the
            # index could not: their labels and statistics are missing.
            problems.append(
                f"{seg.name}: damaged at offset {info.covered}, where the log index stopped reading; labels of "
                "the records after it are not joined; `vecstore compact` (log.compact()) repairs the segment"
            )
        elif scanned.problem is not None:
            # A torn tail (a crash mid-write) is routine; good frames after the
            # damage are not: say so rather than export a silently shorter log.
            after = next_good_frame(seg, scanned.valid_end + 1)
            if after is not None:
                problems.append(
                    f"{seg.name}: {scanned.problem}; the records from offset {scanned.valid_end} on are not in "
                    f"the export (good frames resume at {after}); `vecstore compact` (log.compact()) repairs the segment"
                )
    for part in parts.values():
        done = part.close(row_group_rows)
        if done:
            files.append(done)
    return ExportResult(
        path=str(root), files=sorted(files), rows=sum(by_stage.values()), rows_by_stage=by_stage,
        calls=calls, labels_joined=joined, seconds=time.perf_counter() - t0, schema=plan.schema, problems=problems,
    )
