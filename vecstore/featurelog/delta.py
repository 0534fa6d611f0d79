"""What a stretch of a segment adds to the log's index: statistics, labels, catalog.

The same :class:`Delta` is filled by the writer as calls are logged, and by
the scanner that catches the index up on a segment whose writer died before
its last checkpoint (:func:`absorb`).  Both paths feed it the very bytes that
went into the segment, so the index cannot tell them apart.

Statistics are kept cheap in the serving path: a call only appends its
logged record bytes to a pending list; every ``FOLD_ROWS`` rows (and at each
checkpoint) the pending records are decoded a whole batch at a time and
folded into one :class:`~.sketch.Summary` per (stage, table, feature, time
bucket).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xxhash

from ..schema import TableSchema
from .columns import Layout, SegmentContext, id_text, layout_for
from .frames import KIND_DICT, KIND_LABEL, KIND_SCHEMA, STAGE_OF_KIND, Frame
from .sketch import Summary

__all__ = ["Call", "Delta", "SegInfo", "declare", "feed", "label_key", "merge_delta", "parse_call", "unify_tags"]

FOLD_ROWS = 1 << 16
_MAX_KEY_ITEM = 400


def unify_tags(a: str | None, b: str) -> str:
    """The export type of a context key seen with value types ``a`` and ``b``."""
    if a is None or a == b:
        return b
    if {a, b} == {"int", "float"}:
        return "float"
    return "str"


def value_tag(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return "str"


def label_key(request_id: str, name: str, item: str) -> bytes:
    """Key of a label in the index: request, name, item (long items by their XXH3-128)."""
    raw = item.encode("utf-8")
    if len(raw) > _MAX_KEY_ITEM:
        raw = b"\x01#" + xxhash.xxh3_128_digest(raw)
    return request_id.encode("utf-8") + b"\x00" + name.encode("utf-8") + b"\x00" + raw


class SegInfo:
    """Catalog entry of one segment: how far the index covers it and what it holds."""

    __slots__ = ("covered", "ctx", "max_ts", "min_ts", "records", "rows", "size", "tables")

    def __init__(self) -> None:
        self.covered = 0
        self.size = 0
        self.records: dict[int, int] = {}
        self.rows: dict[str, int] = {}
        self.min_ts = math.inf
        self.max_ts = -math.inf
        self.tables: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.ctx: dict[str, str] = {}

    def merge(self, o: SegInfo) -> None:
        for k, v in o.records.items():
            self.records[k] = self.records.get(k, 0) + v
        for k2, v2 in o.rows.items():
            self.rows[k2] = self.rows.get(k2, 0) + v2
        self.min_ts = min(self.min_ts, o.min_ts)
        self.max_ts = max(self.max_ts, o.max_ts)
        for t, feats in o.tables.items():
            mine = self.tables.setdefault(t, {})
            for f, specs in feats.items():
                have = mine.setdefault(f, [])
                have.extend(s for s in specs if s not in have)
        for key, tag in o.ctx.items():
            self.ctx[key] = unify_tags(self.ctx.get(key), tag)

    def to_dict(self) -> dict[str, Any]:
        return {
            "covered": self.covered, "size": self.size, "records": self.records, "rows": self.rows,
            "min_ts": self.min_ts, "max_ts": self.max_ts, "tables": self.tables, "ctx": self.ctx,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegInfo:
        s = cls()
        s.covered, s.size = d["covered"], d["size"]
        s.records = {int(k): v for k, v in d["records"].items()}
        s.rows, s.min_ts, s.max_ts = dict(d["rows"]), d["min_ts"], d["max_ts"]
        s.tables, s.ctx = d["tables"], d["ctx"]
        return s


class Delta:
    """Pending additions to the index from offsets ``start`` to ``end`` of one segment."""

    def __init__(self, start: int = 0, *, bucket_seconds: int = 3600) -> None:
        self.start = start
        self.end = start
        self.bucket_seconds = bucket_seconds
        self.info = SegInfo()
        self.stats: dict[tuple[str, str, str, int], Summary] = {}
        self.labels: dict[bytes, tuple[float, float, str]] = {}
        self.label_names: set[str] = set()
        self._pending: dict[tuple[str, str, int, int], tuple[Layout, list[np.ndarray], list[float]]] = {}
        self._pending_rows = 0
        self._seen_layouts: set[tuple[str, int]] = set()

    def __bool__(self) -> bool:
        return bool(self.info.records) or self.end != self.start

    def bucket(self, ts: float) -> int:
        return math.floor(ts / self.bucket_seconds) * self.bucket_seconds

    def add_frame(self, kind: int, ts: float) -> None:
        info = self.info
        info.records[kind] = info.records.get(kind, 0) + 1
        if kind in STAGE_OF_KIND or kind == KIND_LABEL:  # header and schema frames carry no event time
            info.min_ts = min(info.min_ts, ts)
            info.max_ts = max(info.max_ts, ts)

    def add_call(
        self, kind: int, ts: float, table: str, layout: Layout, mat: np.ndarray | None, weight: float,
        n_rows: int, context: dict[str, Any] | None,
    ) -> None:
        """One retrieval or ranking call: ``mat`` holds the logged records (k rows) of its featured rows."""
        stage = STAGE_OF_KIND[kind]
        self.add_frame(kind, ts)
        info = self.info
        info.rows[stage] = info.rows.get(stage, 0) + n_rows
        seen = (table, id(layout))
        if seen not in self._seen_layouts:
            self._seen_layouts.add(seen)
            feats = info.tables.setdefault(table, {})
            for f in layout.features:
                spec = layout.schema.features[f].to_dict()
                have = feats.setdefault(f, [])
                if spec not in have:
                    have.append(spec)
        if context:
            for k, v in context.items():
                tag = value_tag(v)
                if tag is not None and info.ctx.get(k) != tag:
                    info.ctx[k] = unify_tags(info.ctx.get(k), tag)
        if mat is not None and len(mat) and layout.numeric and weight > 0:
            key = (stage, table, self.bucket(ts), id(layout))
            entry = self._pending.get(key)
            if entry is None:
                entry = self._pending[key] = (layout, [], [])
            entry[1].append(mat)
            entry[2].append(weight)
            self._pending_rows += len(mat)
            if self._pending_rows >= FOLD_ROWS:
                self.fold()

    def add_label(self, request_id: str, item: str, name: str, value: float, ts: float) -> None:
        self.add_frame(KIND_LABEL, ts)
        key = label_key(request_id, name, item)
        old = self.labels.get(key)
        if old is None or ts >= old[1]:
            self.labels[key] = (value, ts, item)
        self.label_names.add(name)

    def fold(self) -> None:
        """Decode pending records a batch at a time into the per-bucket summaries."""
        pending, self._pending, self._pending_rows = self._pending, {}, 0
        for (stage, table, bucket, _), (layout, mats, ws) in pending.items():
            mat = mats[0] if len(mats) == 1 else np.concatenate(mats)
            rec = layout.records(mat, len(mat))
            weights = np.repeat(np.asarray(ws, dtype=np.float64), [len(m) for m in mats])
            for f in layout.numeric:
                present = layout.present(rec, f)
                vals = layout.numbers(rec, f)
                key = (stage, table, f, bucket)
                s = self.stats.get(key)
                if s is None:
                    s = self.stats[key] = Summary()
                if present.all():
                    s.add(vals, weights)
                else:
                    s.add(vals[present], weights[present], missing=int((~present).sum()))


class Call:
    """A retrieval or ranking frame, parsed (its buffers are views of the frame's payload)."""

    __slots__ = ("bufs", "ctx", "kind", "layout", "meta", "schema", "ts")

    def __init__(self, frame: Frame, ctx: SegmentContext) -> None:
        self.kind = frame.kind
        self.ts = frame.ts
        self.ctx = ctx
        self.meta, self.bufs = frame.parts()
        self.schema = ctx.schemas[self.meta["ti"]]
        self.layout = layout_for(self.schema, tuple(self.meta["f"]))

    @property
    def stage(self) -> str:
        return STAGE_OF_KIND[self.kind]

    @property
    def k(self) -> int:
        return self.meta["k"]

    def weight(self) -> float:
        p = self.meta["p"]
        return 1.0 / p if p > 0 else 0.0

    def mat(self) -> np.ndarray | None:
        if not self.k:
            return None
        return np.frombuffer(self.bufs["rec"], dtype=np.uint8).reshape(self.k, self.layout.dtype.itemsize)


def parse_call(frame: Frame, ctx: SegmentContext) -> Call:
    return Call(frame, ctx)


def declare(ctx: SegmentContext, frame: Frame) -> None:
    """Record what a schema or dictionary frame declares for the frames after it."""
    meta = frame.meta()
    if frame.kind == KIND_SCHEMA:
        ctx.schemas[meta["ti"]] = TableSchema.from_dict(meta["schema"])
    elif frame.kind == KIND_DICT:
        ctx.add_dict(meta["ti"], meta["f"], meta["codes"], meta["strs"])


def feed(delta: Delta, frame: Frame, ctx: SegmentContext) -> None:
    """Add one loaded frame to ``delta`` (the recovery path; the writer feeds calls directly)."""
    if frame.kind in STAGE_OF_KIND:
        call = parse_call(frame, ctx)
        delta.add_call(
            frame.kind, frame.ts, call.meta["t"], call.layout, call.mat(), call.weight(), call.meta["n"], call.meta.get("c")
        )
    elif frame.kind == KIND_LABEL:
        m = frame.meta()
        delta.add_label(m["r"], id_text(m["i"]), m["nm"], m["v"], frame.ts)
    else:
        delta.add_frame(frame.kind, frame.ts)


def merge_delta(into: Delta, d: Delta) -> None:
    """Fold ``d``'s statistics, labels and label names into ``into`` (catalogs stay per segment)."""
    d.fold()
    for key, s in d.stats.items():
        have = into.stats.get(key)
        if have is None:
            into.stats[key] = s
        else:
            have.merge(s)
    for key, lab in d.labels.items():
        old = into.labels.get(key)
        if old is None or lab[1] >= old[1]:
            into.labels[key] = lab
    into.label_names |= d.label_names
