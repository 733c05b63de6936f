"""AVG_POOL2D, MAX_POOL2D, ARGMAX: hand-checkable goldens (AVG_POOL2D rounding), the official
reference model as oracle, the Numba kernels against their spec twins (hypothesis), and the
ERROR_IF / REQUIRE / LEVEL_CHECK cases."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tosaint
from tosaint import DType, Op
from tosaint.builder import GraphBuilder
from tosaint.errors import ErrorIfViolation, LevelLimitError
from tosaint.kernels import namespace

from .helpers import check, reference, run1

IMPLS = ["numba", "spec"]
NP = {DType.INT8: np.int8, DType.INT16: np.int16}


def rand(shape, dtype, rng, lo=None, hi=None):
    info = np.iinfo(NP[dtype])
    lo = info.min if lo is None else lo
    hi = info.max if hi is None else hi
    return rng.integers(lo, hi, shape, endpoint=True).astype(NP[dtype])


def pool_graph(kind, shape, dtype, kernel, stride=1, pad=0, input_zp=0, output_zp=0):
    b = GraphBuilder()
    x = b.input(shape, dtype, name="x")
    if kind == "avg":
        y = b.avg_pool2d(x, kernel, stride=stride, pad=pad, input_zp=input_zp,
                         output_zp=output_zp)
    else:
        y = b.max_pool2d(x, kernel, stride=stride, pad=pad)
    b.output(y)
    return b.build()


# ---- goldens ------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_avg_pool_rounding_goldens(impl):
    # count 2: multiplier ((2^30+1)<<1)//2 = 2^30+1, shift 31, i.e. slightly above 1/2, so
    # (acc*(2^30+1) + 2^30) >> 31 rounds exact halves AWAY from zero: -1.5 -> -2, +1.5 -> 2,
    # -0.5 -> -1 (round-half-up would give -1, -1 and 0 for those)
    cases = [([-1, -2], -2), ([1, 2], 2), ([-1, 0], -1), ([1, 0], 1), ([-3, -4], -4),
             ([3, 4], 4), ([-2, -2], -2), ([-32768, -32767], -32768), ([32767, 32766], 32767)]
    for vals, want in cases:
        g = pool_graph("avg", (1, 1, 2, 1), DType.INT16, (1, 2))
        got = run1(g, np.array(vals, np.int16).reshape(1, 1, 2, 1), impl)
        assert got.reshape(-1).tolist() == [want], (vals, got)
    # count 3: multiplier (2^32+4)//3 = 1431655766, shift 32: 6/3 -> 2, -6/3 -> -2,
    # 4/3 -> 1, -4/3 -> -1 (floor(-0.83))
    for vals, want in [([1, 2, 3], 2), ([-1, -2, -3], -2), ([1, 1, 2], 1), ([-1, -1, -2], -1)]:
        g = pool_graph("avg", (1, 1, 3, 1), DType.INT8, (1, 3))
        got = run1(g, np.array(vals, np.int8).reshape(1, 1, 3, 1), impl)
        assert got.reshape(-1).tolist() == [want], (vals, got)


@pytest.mark.parametrize("impl", IMPLS)
def test_avg_pool_padding_counts_only_valid_taps(impl):
    # 2x2 input, 3x3 kernel, pad 1: every window sees all 4 values (count 4, not 9)
    x = np.array([10, 20, 30, 40], np.int16).reshape(1, 2, 2, 1)
    g = pool_graph("avg", (1, 2, 2, 1), DType.INT16, 3, pad=1)
    assert run1(g, x, impl).reshape(-1).tolist() == [25, 25, 25, 25]
    # int8 zero points: avg(v - 5) + (-3), clipped to int8
    x8 = np.array([15, 25, 127, 127], np.int8).reshape(1, 1, 4, 1)
    g = pool_graph("avg", (1, 1, 4, 1), DType.INT8, (1, 2), stride=(1, 2), input_zp=5,
                   output_zp=-3)
    assert run1(g, x8, impl).reshape(-1).tolist() == [12, 119]   # (10+20)/2-3, (122+122)/2-3
    g = pool_graph("avg", (1, 1, 4, 1), DType.INT8, (1, 2), stride=(1, 2), input_zp=-128,
                   output_zp=100)
    assert run1(g, x8, impl).reshape(-1).tolist() == [127, 127]   # clipped


@pytest.mark.parametrize("impl", IMPLS)
def test_max_pool_golden(impl):
    x = np.array([[-5, 3, -128], [7, -1, 2]], np.int8).reshape(1, 2, 3, 1)
    g = pool_graph("max", (1, 2, 3, 1), DType.INT8, 2, pad=(0, 1, 0, 1))
    assert run1(g, x, impl).reshape(2, 3).tolist() == [[7, 3, 2], [7, 2, 2]]


# ---- the reference model as oracle --------------------------------------------------------
POOL_CASES = [  # shape, kernel, stride, pad
    ((1, 7, 9, 5), (3, 3), (1, 1), (1, 1, 1, 1)),
    ((2, 8, 6, 3), (2, 3), (2, 1), (0, 0, 1, 1)),
    ((1, 9, 9, 4), (3, 2), (3, 2), (2, 1, 1, 0)),
    ((1, 5, 11, 2), (5, 4), (2, 3), (4, 2, 3, 2)),
    ((1, 4, 4, 3), (4, 4), (1, 1), (0, 0, 0, 0)),
    ((3, 1, 1, 6), (1, 1), (1, 1), (0, 0, 0, 0)),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [DType.INT8, DType.INT16])
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_pools_match_reference_model(kind, dtype, impl):
    rng = np.random.default_rng(int(dtype) * 10 + len(kind))
    for i, (shape, kernel, stride, pad) in enumerate(POOL_CASES):
        zps = (0, 0)
        if kind == "avg" and dtype == DType.INT8:
            zps = [(0, 0), (-128, 127), (17, -9)][i % 3]
        g = pool_graph(kind, shape, dtype, kernel, stride, pad, *zps)
        x = rand(shape, dtype, rng)
        outs, status = reference(g, [x])
        assert status == "TOSA_VALID"
        check(run1(g, x, impl), outs[0])


@pytest.mark.parametrize("impl", IMPLS)
def test_avg_pool_int32_accumulator_wraps_like_reference(impl):
    # 67600 taps of 32767 leave int32 (the spec calls it unpredictable; the reference model's
    # int32 accumulator wraps and returns values): tosaint returns the same and a diagnostic
    shape = (1, 260, 260, 1)
    g = pool_graph("avg", shape, DType.INT16, (260, 260))
    x = np.full(shape, 32767, np.int16)
    res = tosaint.run_tosa(g, [x], impl=impl)
    assert res.diagnostics and "accumulator" in res.diagnostics[0].condition
    outs, status = reference(g, [x])
    assert status == "TOSA_VALID"
    check(res[g.outputs[0]], outs[0])
    with pytest.raises(tosaint.UnpredictableError):
        tosaint.run_tosa(g, [x], impl=impl, on_unpredictable="raise")


def argmax_graph(shape, dtype, axis):
    b = GraphBuilder()
    x = b.input(shape, dtype, name="x")
    out = tuple(shape[:axis]) + tuple(shape[axis + 1:])
    b.output(b.op(Op.ARGMAX, [x], out, DType.INT32, dict(axis=axis, nan_mode=1)))
    return b.build()


@pytest.mark.parametrize("impl", IMPLS)
def test_argmax_golden(impl):
    x = np.array([[3, 7, 7, -1], [-128, -128, -128, -128]], np.int8)
    g = argmax_graph((2, 4), DType.INT8, 1)
    check(run1(g, x, impl), np.array([1, 0], np.int32))      # first maximum wins
    g = argmax_graph((2, 4), DType.INT8, 0)
    check(run1(g, x, impl), np.array([0, 0, 0, 0], np.int32))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [DType.INT8, DType.INT16])
def test_argmax_matches_reference_model(dtype, impl):
    rng = np.random.default_rng(5)
    shapes = [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 4), (1, 2, 3, 2, 3), (2, 1, 2, 3, 1, 2)]
    for shape in shapes:
        for axis in range(len(shape)):
            g = argmax_graph(shape, dtype, axis)
            x = rand(shape, dtype, rng, -3, 3)          # many ties
            outs, status = reference(g, [x])
            assert status == "TOSA_VALID"
            check(run1(g, x, impl), outs[0])


# ---- numba kernels against the spec twins --------------------------------------------------
NB, SPEC = namespace("numba"), namespace("spec")


@st.composite
def pool_params(draw):
    ky, kx = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sy, sx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pad = [draw(st.integers(0, ky - 1)), draw(st.integers(0, ky - 1)),
           draw(st.integers(0, kx - 1)), draw(st.integers(0, kx - 1))]
    oh, ow = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ih = (oh - 1) * sy + ky - pad[0] - pad[1]
    iw = (ow - 1) * sx + kx - pad[2] - pad[3]
    if ih < 1 or iw < 1:
        ih, iw, pad = (oh - 1) * sy + ky, (ow - 1) * sx + kx, [0, 0, 0, 0]
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.int8, np.int16]))
    seed = draw(st.integers(0, 2**32 - 1))
    return (n, ih, iw, c), (n, oh, ow, c), (ky, kx), (sy, sx), pad, dtype, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool_params(), st.booleans(), st.integers(-128, 127), st.integers(-128, 127))
def test_pool_kernels_match_twins(p, check_acc, in_zp, out_zp):
    shape, oshape, (ky, kx), (sy, sx), pad, dtype, seed = p
    info = np.iinfo(dtype)
    x = np.random.default_rng(seed).integers(info.min, info.max, shape, endpoint=True)
    x = x.astype(dtype)
    if dtype == np.int16:
        in_zp = out_zp = 0
    got, want = np.empty(oshape, dtype), np.empty(oshape, dtype)
    r1 = NB.avg_pool2d(x, got, ky, kx, sy, sx, pad[0], pad[2], in_zp, out_zp, info.min,
                       info.max, check_acc)
    r2 = SPEC.avg_pool2d(x, want, ky, kx, sy, sx, pad[0], pad[2], in_zp, out_zp, info.min,
                         info.max, check_acc)
    check(got, want)
    assert tuple(r1) == tuple(r2) == (0, 0)
    NB.max_pool2d(x, got, ky, kx, sy, sx, pad[0], pad[2])
    SPEC.max_pool2d(x, want, ky, kx, sy, sx, pad[0], pad[2])
    check(got, want)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**32 - 1),
       st.sampled_from([np.int8, np.int16]), st.integers(1, 300))
def test_argmax_kernel_matches_twin(left, a, right, seed, dtype, spread):
    x = np.random.default_rng(seed).integers(-spread, spread, (left, a, right)).astype(dtype)
    got, want = np.empty((left, right), np.int32), np.empty((left, right), np.int32)
    NB.argmax(x, got)
    SPEC.argmax(x, want)
    check(got, want)
    check(got, np.argmax(x, axis=1).astype(np.int32))


# ---- ERROR_IF, LEVEL_CHECK -------------------------------------------------------------------
def raw_pool(op, shape, out_shape, dtype=DType.INT8, kernel=(2, 2), stride=(1, 1),
             pad=(0, 0, 0, 0), input_zp=0, output_zp=0, acc_type=DType.INT32):
    b = GraphBuilder()
    x = b.input(shape, dtype, name="x")
    attrs = dict(kernel=kernel, stride=stride, pad=pad)
    if op == Op.AVG_POOL2D:
        ins = [x, b.zero_point(input_zp, dtype), b.zero_point(output_zp, dtype)]
        attrs["acc_type"] = acc_type
    else:
        ins = [x]
        attrs["nan_mode"] = 1
    b.output(b.op(op, ins, out_shape, dtype, attrs))
    return b.build()


ERROR_CASES = [  # (kwargs, message fragment)
    (dict(kernel=(0, 2), out_shape=(1, 9, 7, 2)), "kernel_y 0"),
    (dict(stride=(1, 0)), "stride_x 0"),
    (dict(pad=(0, -1, 0, 0)), "< 0"),
    (dict(kernel=(2, 2), pad=(2, 0, 0, 0), out_shape=(1, 9, 7, 2)), "pad_top 2"),
    (dict(kernel=(2, 2), pad=(0, 0, 0, 2), out_shape=(1, 7, 9, 2)), "pad_right 2"),
    (dict(out_shape=(1, 6, 7, 2)), "output height 6 != "),
    (dict(out_shape=(1, 7, 8, 2)), "output width 8 != "),
    (dict(kernel=(3, 2), stride=(2, 1), out_shape=(1, 3, 7, 2)), "5/2 is not an integer"),
    (dict(out_shape=(2, 7, 7, 2)), "output batch 2 != input batch 1"),
    (dict(out_shape=(1, 7, 7, 3)), "output channels 3"),
    (dict(shape=(1, 8, 8, 2, 1), out_shape=(1, 7, 7, 2, 1)), "input rank 5 != 4"),
    (dict(kernel=(2, 2, 1)), "kernel has 3 values"),
]


@pytest.mark.parametrize("op", [Op.AVG_POOL2D, Op.MAX_POOL2D])
@pytest.mark.parametrize("kw,msg", ERROR_CASES)
def test_pool_error_if(op, kw, msg):
    kw = dict(kw)
    shape = kw.pop("shape", (1, 8, 8, 2))
    out_shape = kw.pop("out_shape", (1, 7, 7, 2))
    g = raw_pool(op, shape, out_shape, **kw)
    with pytest.raises(ErrorIfViolation, match=msg):
        tosaint.prepare(g)


def test_avg_pool_zero_point_and_acc_type_error_if():
    with pytest.raises(ErrorIfViolation, match="input_zp 3 != 0"):
        tosaint.prepare(raw_pool(Op.AVG_POOL2D, (1, 8, 8, 2), (1, 7, 7, 2), DType.INT16,
                                 input_zp=3))
    with pytest.raises(ErrorIfViolation, match="output_zp -1 != 0"):
        tosaint.prepare(raw_pool(Op.AVG_POOL2D, (1, 8, 8, 2), (1, 7, 7, 2), DType.INT16,
                                 output_zp=-1))
    with pytest.raises(ErrorIfViolation, match="acc_type INT48 != INT32"):
        tosaint.prepare(raw_pool(Op.AVG_POOL2D, (1, 8, 8, 2), (1, 7, 7, 2),
                                 acc_type=DType.INT48))
    # int8 zero points are fine
    tosaint.prepare(raw_pool(Op.AVG_POOL2D, (1, 8, 8, 2), (1, 7, 7, 2), input_zp=-128,
                             output_zp=127))


def test_pool_level_check():
    g = raw_pool(Op.MAX_POOL2D, (1, 8200, 1, 1), (1, 1, 1, 1), kernel=(8200, 1))
    tosaint.prepare(g)                                   # level none: fine
    with pytest.raises(LevelLimitError, match="MAX_KERNEL 8192"):
        tosaint.prepare(g, level="8K")
    g = raw_pool(Op.MAX_POOL2D, (1, 8195, 1, 1), (1, 2, 1, 1), kernel=(2, 1), stride=(8193, 1))
    tosaint.prepare(g)
    with pytest.raises(LevelLimitError, match="MAX_STRIDE 8192"):
        tosaint.prepare(g, level="8K")


def test_argmax_error_if():
    def graph(shape, out, axis, dtype=DType.INT8, out_dtype=DType.INT32):
        b = GraphBuilder()
        x = b.input(shape, dtype, name="x")
        b.output(b.op(Op.ARGMAX, [x], out, out_dtype, dict(axis=axis, nan_mode=1)))
        return b.build()
    for shape, out, axis, msg in [((3, 4), (3,), 2, "axis 2 is outside"),
                                  ((3, 4), (3,), -1, "axis -1 is outside"),
                                  ((3, 4), (3, 1), 1, "output shape"),
                                  ((3, 4), (4,), 1, "output shape"),
                                  ((1,) * 7, (1,) * 6, 0, "rank 7 > 6")]:
        with pytest.raises(ErrorIfViolation, match=msg):
            tosaint.prepare(graph(shape, out, axis))
    with pytest.raises(ErrorIfViolation, match="type signature"):
        tosaint.prepare(graph((3, 4), (3,), 1, out_dtype=DType.INT16))


_THREADS_SCRIPT = """
import sys
import numpy as np
import tosaint
from tosaint import DType
from tosaint.builder import GraphBuilder
b = GraphBuilder()
x = b.input((2, 13, 11, 24), DType.INT16, name="x")
b.output(b.avg_pool2d(x, 3, stride=1, pad=1), b.max_pool2d(x, (2, 3), stride=(1, 2),
                                                              pad=(0, 1, 1, 1)))
g = b.build()
xv = np.random.default_rng(0).integers(-32768, 32768, (2, 13, 11, 24)).astype(np.int16)
r = tosaint.run_tosa(g, [xv])
np.savez(sys.argv[1], *[r[n] for n in g.outputs])
"""


@pytest.mark.slow
def test_pools_identical_with_one_and_two_threads(tmp_path):
    import os
    import subprocess
    import sys
    got = []
    for threads in ("1", "2"):
        path = str(tmp_path / f"out{threads}.npz")
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, path], env=env, check=True,
                       timeout=300)
        with np.load(path) as z:
            got.append([z["arr_0"], z["arr_1"]])
    for a, b in zip(*got):
        check(a, b)


@pytest.mark.parametrize("nan_mode", [0, 3])
def test_nan_mode_must_name_a_mode(nan_mode):
    # even for integers: the reference model rejects UNKNOWN (0, the schema default) and
    # out-of-range values
    for op, out_shape, out_dt, attrs in [
            (Op.MAX_POOL2D, (1, 3, 3, 1), DType.INT8,
             dict(kernel=(2, 2), stride=(1, 1), pad=(0, 0, 0, 0))),
            (Op.ARGMAX, (1, 4, 4), DType.INT32, dict(axis=3))]:
        b = GraphBuilder()
        x = b.input((1, 4, 4, 1), DType.INT8, name="x")
        b.output(b.op(op, [x], out_shape, out_dt, dict(attrs, nan_mode=nan_mode)))
        with pytest.raises(ErrorIfViolation, match=f"nan_mode {nan_mode}"):
            tosaint.prepare(b.build())
