"""Property tests: random sequences of puts, partial updates and deletes agree with a dict model."""

from __future__ import annotations

import math
import tempfile

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

import vecstore

DIM = 6
SCHEMA = {
    "f32": vecstore.Scalar("f32"),
    "f16": vecstore.Scalar("f16"),
    "u8": vecstore.Scalar("u8"),
    "i64": vecstore.Scalar("i64"),
    "flag": vecstore.Scalar("bool"),
    "cat": vecstore.Category(),
    "tags": vecstore.IdList(),
    "v32": vecstore.Vector(DIM, dtype="f32"),
    "v16": vecstore.Vector(DIM, dtype="f16"),
    "v8": vecstore.Vector(DIM, dtype="i8"),
    "vb": vecstore.Vector(DIM, dtype="b1"),
}

ids = st.one_of(st.text(max_size=6), st.integers(-(2**63), 2**63 - 1), st.binary(min_size=1, max_size=4))
small_float = st.floats(-1e4, 1e4, allow_nan=False, width=32)
vector = st.lists(small_float, min_size=DIM, max_size=DIM)


def _value(feature: str):
    spec = SCHEMA[feature]
    if feature == "f32":
        return small_float
    if feature == "f16":
        return st.floats(-60000, 60000, allow_nan=False, width=16)
    if feature == "u8":
        return st.integers(0, 255)
    if feature == "i64":
        return st.integers(-(2**63), 2**63 - 1)
    if feature == "flag":
        return st.booleans()
    if feature == "cat":
        return st.one_of(st.none(), st.sampled_from(["a", "b", "ünï", ""]))
    if feature == "tags":
        return st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=3), st.integers(-5, 5)), max_size=3))
    assert isinstance(spec, vecstore.Vector)
    return vector


@st.composite
def batches(draw):
    feats = draw(st.lists(st.sampled_from(sorted(SCHEMA)), unique=True, min_size=1, max_size=len(SCHEMA)))
    batch_ids = draw(st.lists(ids, min_size=1, max_size=8))
    cols = {f: draw(st.lists(_value(f), min_size=len(batch_ids), max_size=len(batch_ids))) for f in feats}
    return batch_ids, cols


def _key(x):
    # str and bytes of equal bytes are one entity.
    return ("s", x.encode()) if isinstance(x, str) else ("s", x) if isinstance(x, bytes) else ("i", x)


def _close(spec, got, want) -> bool:
    if want is None:
        return got is None or (isinstance(got, float) and math.isnan(got))
    if isinstance(spec, vecstore.Vector):
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        if spec.dtype == "f32":
            return np.allclose(got, want, rtol=1e-6)
        if spec.dtype == "f16":
            return np.allclose(got, want, rtol=2**-11, atol=2**-24)
        if spec.dtype == "i8":
            return np.abs(got - want).max() <= np.abs(want).max() / 254 * (1 + 1e-5) + 1e-30
        return np.array_equal(got > 0, want >= 0)
    if spec.kind == "scalar" and spec.dtype == "f16":
        return abs(got - want) <= abs(want) * 2**-11 + 2**-24
    if spec.kind == "scalar" and spec.dtype == "f32":
        return got == np.float32(want)
    return got == want


class TableModel(RuleBasedStateMachine):
    stored = Bundle("stored")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.store = vecstore.open(self.dir.name + "/s.vs", seed=3)
        self.table = self.store.create_table("t", SCHEMA, expected_size=64)
        self.model: dict = {}

    @rule(target=stored, batch=batches())
    def put(self, batch):
        batch_ids, cols = batch
        self.table.put(batch_ids, {f: (np.array(v, dtype=np.float32) if isinstance(SCHEMA[f], vecstore.Vector) else v)
                                   for f, v in cols.items()})
        for i, x in enumerate(batch_ids):
            row = self.model.setdefault(_key(x), {"id": x})
            for f, v in cols.items():
                row[f] = v[i]
        return batch_ids[-1]

    @rule(x=stored)
    def delete(self, x):
        existed = _key(x) in self.model
        assert self.table.delete([x]) == int(existed)
        self.model.pop(_key(x), None)

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def reopen(self):
        self.store.close()
        self.store = vecstore.open(self.dir.name + "/s.vs")
        self.table = self.store.table("t")

    @invariant()
    def agrees_with_model(self):
        assert len(self.table) == len(self.model)
        if not self.model:
            return
        rows_ids = [r["id"] for r in self.model.values()]
        rows = self.table.get(rows_ids)
        assert rows.found.all()
        assert self.table.contains(rows_ids).all()
        assert self.table.may_contain(rows_ids).all()
        for j, row in enumerate(self.model.values()):
            for f, spec in SCHEMA.items():
                want = row.get(f)
                present = bool(rows.present(f)[j])
                if f not in row or (f in ("cat", "tags") and want is None):
                    assert not present, (f, row)
                    continue
                assert present
                assert _close(spec, rows[f][j], want), (f, rows[f][j], want)
        scanned = sum(len(r) for r in self.table.scan(batch_size=3))
        assert scanned == len(self.model)

    def teardown(self):
        self.store.close()
        self.dir.cleanup()


TestTableModel = TableModel.TestCase
TestTableModel.settings = settings(
    max_examples=40, stateful_step_count=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
