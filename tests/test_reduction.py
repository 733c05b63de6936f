"""REDUCE_ALL/ANY/MAX/MIN/SUM: goldens, the official reference model as oracle (ranks 1..6,
every axis), the Numba kernels against their spec twins (hypothesis), REDUCE_SUM overflow
(UNPREDICTABLE in the reference model, checked at every step) and the ERROR_IF cases."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tosaint
from tosaint import DType, Op
from tosaint.builder import GraphBuilder
from tosaint.errors import ErrorIfViolation, UnpredictableError
from tosaint.kernels import namespace

from .helpers import check, reference, run1

IMPLS = ["numba", "spec"]
NP = {DType.BOOL: np.bool_, DType.INT8: np.int8, DType.INT16: np.int16, DType.INT32: np.int32}
OPS = [(Op.REDUCE_SUM, DType.INT32), (Op.REDUCE_MAX, DType.INT8), (Op.REDUCE_MAX, DType.INT16),
       (Op.REDUCE_MAX, DType.INT32), (Op.REDUCE_MIN, DType.INT8), (Op.REDUCE_MIN, DType.INT16),
       (Op.REDUCE_MIN, DType.INT32), (Op.REDUCE_ALL, DType.BOOL), (Op.REDUCE_ANY, DType.BOOL)]


def rand(shape, dtype, rng, lo=None, hi=None):
    if dtype == DType.BOOL:
        return rng.random(shape) < 0.7            # mostly true: REDUCE_ALL is not always false
    info = np.iinfo(NP[dtype])
    lo = info.min if lo is None else lo
    hi = info.max if hi is None else hi
    return rng.integers(lo, hi, shape, endpoint=True).astype(NP[dtype])


def reduce_graph(op, shape, dtype, axis, out_shape=None):
    b = GraphBuilder()
    x = b.input(shape, dtype, name="x")
    if out_shape is None:
        out_shape = list(shape)
        out_shape[axis] = 1
    attrs = dict(axis=axis)
    if op in (Op.REDUCE_MAX, Op.REDUCE_MIN):
        attrs["nan_mode"] = 1
    b.output(b.op(op, [x], out_shape, dtype, attrs))
    return b.build()


@pytest.mark.parametrize("impl", IMPLS)
def test_goldens(impl):
    x = np.array([[3, -7, 5], [-1, 2, 100]], np.int32)
    for op, axis, want in [(Op.REDUCE_SUM, 0, [[2, -5, 105]]), (Op.REDUCE_SUM, 1, [[1], [101]]),
                           (Op.REDUCE_MAX, 1, [[5], [100]]), (Op.REDUCE_MIN, 0, [[-1, -7, 5]])]:
        g = reduce_graph(op, x.shape, DType.INT32, axis)
        check(run1(g, x, impl), np.array(want, np.int32))
    b = np.array([[True, False], [True, True]])
    g = reduce_graph(Op.REDUCE_ALL, b.shape, DType.BOOL, 1)
    check(run1(g, b, impl), np.array([[False], [True]]))
    g = reduce_graph(Op.REDUCE_ANY, b.shape, DType.BOOL, 0)
    check(run1(g, b, impl), np.array([[True, True]]))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op,dtype", OPS, ids=lambda v: getattr(v, "name", str(v)))
def test_matches_reference_model(op, dtype, impl):
    rng = np.random.default_rng(int(op) * 7 + int(dtype))
    shapes = [(5,), (3, 4), (2, 3, 4), (2, 1, 3, 4), (1, 2, 3, 2, 3), (2, 1, 2, 3, 1, 2)]
    for shape in shapes:
        for axis in range(len(shape)):
            g = reduce_graph(op, shape, dtype, axis)
            if op == Op.REDUCE_SUM:
                x = rand(shape, dtype, rng, -(1 << 28), 1 << 28)
            else:
                x = rand(shape, dtype, rng)
            outs, status = reference(g, [x])
            assert status == "TOSA_VALID"
            check(run1(g, x, impl), outs[0])


@pytest.mark.parametrize("impl", IMPLS)
def test_reduce_sum_overflow_is_unpredictable(impl):
    # the final sum fits, but the running sum leaves int32 at the second step: apply_add_s's
    # REQUIRE fails; the reference model checks every step too and reports UNPREDICTABLE
    x = np.array([2**31 - 1, 1, -1], np.int32)
    g = reduce_graph(Op.REDUCE_SUM, (3,), DType.INT32, 0)
    outs, status = reference(g, [x])
    assert status == "TOSA_UNPREDICTABLE"
    with pytest.raises(UnpredictableError, match="REDUCE_SUM"):
        run1(g, x, impl)
    # the same values in another order never leave int32
    y = np.array([2**31 - 1, -1, 1], np.int32)
    outs, status = reference(g, [y])
    assert status == "TOSA_VALID"
    check(run1(g, y, impl), outs[0])
    check(outs[0], np.array([2**31 - 1], np.int32))


# ---- numba kernels against the spec twins ----------------------------------------------------
NB, SPEC = namespace("numba"), namespace("spec")


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**32 - 1),
       st.sampled_from([np.int8, np.int16, np.int32]), st.booleans())
def test_kernels_match_twins(left, a, right, seed, dtype, is_max):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, (left, a, right), endpoint=True).astype(dtype)
    got, want = np.empty((left, right), dtype), np.empty((left, right), dtype)
    NB.reduce_minmax(x, got, is_max)
    SPEC.reduce_minmax(x, want, is_max)
    check(got, want)
    check(got, x.max(axis=1) if is_max else x.min(axis=1))
    # int32 sums, including overflowing ones: same values and the same overflow count
    s = rng.integers(-(1 << 31), 1 << 31, (left, a, right)).astype(np.int32)
    got, want = np.empty((left, right), np.int32), np.empty((left, right), np.int32)
    assert NB.reduce_sum(s, got) == SPEC.reduce_sum(s, want)
    check(got, want)
    bx = rng.random((left, a, right)) < 0.8
    got, want = np.empty((left, right), np.bool_), np.empty((left, right), np.bool_)
    NB.reduce_bool(bx, got, is_max)
    SPEC.reduce_bool(bx, want, is_max)
    check(got, want)
    check(got, bx.all(axis=1) if is_max else bx.any(axis=1))


# ---- ERROR_IF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("op,dtype", OPS, ids=lambda v: getattr(v, "name", str(v)))
def test_error_if(op, dtype):
    cases = [((3, 4), 2, (3, 1), "axis 2 is outside"),
             ((3, 4), -1, (3, 1), "axis -1 is outside"),
             ((3, 4), 1, (3, 4), r"output shape\[1\] = 4 != 1"),
             ((3, 4), 1, (3,), "output rank 1 != input rank 2"),
             ((3, 4), 1, (2, 1), "output shape"),
             ((1,) * 7, 0, (1,) * 7, "rank 7 > 6"),
             ((), 0, (), "rank 0 < 1")]
    for shape, axis, out_shape, msg in cases:
        with pytest.raises(ErrorIfViolation, match=msg):
            tosaint.prepare(reduce_graph(op, shape, dtype, axis, out_shape))
    other = DType.INT8 if dtype != DType.INT8 else DType.INT16
    b = GraphBuilder()
    x = b.input((3, 4), dtype)
    b.output(b.op(op, [x], (3, 1), other, dict(axis=1)))
    with pytest.raises(ErrorIfViolation, match="type signature"):
        tosaint.prepare(b.build())


@pytest.mark.parametrize("op", [Op.REDUCE_MAX, Op.REDUCE_MIN])
def test_nan_mode_must_name_a_mode(op):
    # the reference model rejects UNKNOWN (0, the schema default) even for integers
    for mode in (0, 3):
        b = GraphBuilder()
        x = b.input((3, 4), DType.INT16)
        b.output(b.op(op, [x], (3, 1), DType.INT16, dict(axis=1, nan_mode=mode)))
        with pytest.raises(ErrorIfViolation, match=f"nan_mode {mode}"):
            tosaint.prepare(b.build())
