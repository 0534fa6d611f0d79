"""Quantization error of each codec, bounded as documented in docs/concepts.md."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import vecstore
from vecstore.codecs import dequantize_b1, dequantize_i8, quantize_b1, quantize_i8

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32)


def _cos(a, b):
    # float64: squares of tiny float32 components underflow otherwise.
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 300)), elements=finite))
def test_i8_componentwise_error_is_at_most_half_a_step(x):
    codes, scale = quantize_i8(x)
    back = dequantize_i8(codes, scale)
    assert (np.abs(back - x) <= scale[:, None] / 2 * (1 + 1e-5) + 1e-30).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 1024), st.integers(0, 2**32 - 1))
def test_i8_cosine_bound_for_unit_vectors(d, seed):
    x = np.random.default_rng(seed).normal(size=(4, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    codes, scale = quantize_i8(x)
    cos = _cos(x, dequantize_i8(codes, scale))
    bound = np.sqrt(max(0.0, 1 - d / 254**2))
    assert (cos >= bound - 1e-6).all()


def test_i8_cosine_at_64_dims_typical(rng):
    x = rng.normal(size=(1000, 64)).astype(np.float32)
    codes, scale = quantize_i8(x)
    assert _cos(x, dequantize_i8(codes, scale)).min() > 0.9995


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 200)), elements=finite))
def test_b1_cosine_is_l1_over_sqrt_d_l2(x):
    x = x[np.linalg.norm(x, axis=1) > 0]
    if len(x) == 0:
        return
    d = x.shape[1]
    back = dequantize_b1(quantize_b1(x), d)
    x = x.astype(np.float64)  # exact reference values, no float32 underflow
    assert np.allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-5)
    expected = np.abs(x).sum(1) / (np.sqrt(d) * np.linalg.norm(x, axis=1))
    np.testing.assert_allclose(_cos(x, back), expected, rtol=1e-4, atol=1e-5)
    assert (_cos(x, back) >= 1 / np.sqrt(d) - 1e-5).all()
    np.testing.assert_array_equal(back >= 0, x >= 0)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 64)),
                  elements=st.floats(-65504, 65504, allow_nan=False, width=32)))
def test_f16_relative_error(x):
    back = x.astype(np.float16).astype(np.float32)
    assert (np.abs(back - x) <= np.abs(x) * 2**-11 + 2**-25).all()


@pytest.mark.parametrize("dtype", ["f32", "f16", "i8", "b1"])
def test_vector_codecs_through_a_table(tmp_path, rng, dtype):
    with vecstore.open(tmp_path / f"{dtype}.vs") as s:
        t = s.create_table("v", {"e": vecstore.Vector(100, dtype=dtype)})
        x = rng.normal(size=(50, 100)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        t.put(np.arange(50), {"e": x})
        back = t.get(np.arange(50))["e"]
        cos = _cos(x, back)
        floor = {"f32": 1.0 - 1e-6, "f16": 0.99999, "i8": np.sqrt(1 - 100 / 254**2), "b1": 0.6}[dtype]
        assert cos.min() >= floor
        raw = t.get(np.arange(50), raw=True)["e"]
        expected_raw = {"f32": np.float32, "f16": np.float16, "b1": np.uint8}.get(dtype)
        if dtype == "i8":
            assert raw[0].dtype == np.int8 and raw[1].dtype == np.float32
        else:
            assert raw.dtype == expected_raw
        assert t.info().features[0].bytes_per_row == {"f32": 400, "f16": 200, "i8": 104, "b1": 13}[dtype]


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_scalar_round_trips_every_dtype(tmp_path_factory, data):
    dtypes = ["f32", "f64", "f16", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "bool"]
    dt = data.draw(st.sampled_from(dtypes))
    spec = vecstore.Scalar(dt)
    np_dt = spec.storage_dtype
    if dt == "bool":
        elems = st.booleans()
    elif np_dt.kind == "f":
        elems = st.floats(allow_nan=False, allow_infinity=False, width=min(32, np_dt.itemsize * 8))
    else:
        info = np.iinfo(np_dt)
        elems = st.integers(int(info.min), int(info.max))
    values = data.draw(st.lists(elems, min_size=1, max_size=30))
    path = tmp_path_factory.mktemp("scalar") / "s.vs"
    with vecstore.open(path) as s:
        t = s.create_table("t", {"v": spec})
        arr = np.array(values, dtype=np_dt)
        t.put(np.arange(len(values)), {"v": arr})
        back = t.get(np.arange(len(values)))["v"]
        np.testing.assert_array_equal(back, arr.astype(spec.value_dtype))


def test_f16_to_f32_is_exact_on_both_paths():
    # Large arrays go through a lookup table, small ones through astype; every
    # float16 code (NaNs included, compared as bits) must convert identically.
    from vecstore.codecs import f16_to_f32

    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    expected = every.astype(np.float32).view(np.uint32)
    np.testing.assert_array_equal(f16_to_f32(every).view(np.uint32), expected)
    small = every[::97]
    assert small.size < 8192
    np.testing.assert_array_equal(f16_to_f32(small).view(np.uint32), small.astype(np.float32).view(np.uint32))


def test_f32_to_f16_rounds_exactly_like_numpy():
    # Large arrays are cast by Arrow; every float16 value, its float32
    # neighbours and the halfway points between float16 values (ties to even)
    # must round exactly as numpy's astype does.
    from vecstore.codecs import _ARROW_F16_MIN, f32_to_f16

    h = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    h = h[np.isfinite(h)].astype(np.float32)
    wide = h.astype(np.float64)
    mids = ((wide[:-1] + wide[1:]) / 2).astype(np.float32)
    near = [np.nextafter(h, np.float32(np.inf)), np.nextafter(h, np.float32(-np.inf))]
    rng = np.random.default_rng(0)
    random = rng.integers(0, 2**32, 1 << 19, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = np.concatenate([h, mids, *near, random])
    values = values[np.isfinite(values) & (np.abs(values) <= 65504)]
    assert values.size >= _ARROW_F16_MIN
    got = f32_to_f16(values.reshape(-1, 1))
    assert got.shape == (values.size, 1)
    np.testing.assert_array_equal(got.view(np.uint16).ravel(), values.astype(np.float16).view(np.uint16))
