"""CONV2D, CONV3D, DEPTHWISE_CONV2D, TRANSPOSE_CONV2D and MATMUL: hand-checkable goldens, the
official reference model as oracle (int48 outputs through its CLI, or after a RESCALE to
int16), the reference model's saturation/wrap departures, the Numba side against the spec twin
on random shapes, and every ERROR_IF / LEVEL_CHECK."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tosaint
from tosaint import DType, Op
from tosaint.builder import GraphBuilder
from tosaint.errors import ErrorIfViolation, LevelLimitError, UnpredictableError

from .helpers import check

IMPLS = ["numba", "spec"]
T = DType
NP = {T.INT4: np.int8, T.INT8: np.int8, T.INT16: np.int16, T.INT32: np.int32, T.INT48: np.int64}
RANGE = {T.INT4: (-7, 7), T.INT8: (-128, 127), T.INT16: (-32768, 32767),
         T.INT32: (-(1 << 31), (1 << 31) - 1), T.INT48: (-(1 << 47), (1 << 47) - 1)}
I48_MAX = (1 << 47) - 1


def rand(shape, dtype, rng, lo=None, hi=None):
    a, b = RANGE[dtype]
    return rng.integers(a if lo is None else lo, b if hi is None else hi, shape,
                        endpoint=True).astype(NP[dtype])


def run(g, inputs, impl, **kw):
    return tosaint.run_tosa(g, inputs, impl=impl, **kw)


def conv_graph(kind, x_shape, w, bias, *, x_dt=T.INT8, w_dt=T.INT8, weight_input=False,
               rescale=None, **attrs):
    """One convolution with input x (a graph input) and constant (or input) weights/bias."""
    b = GraphBuilder()
    x = b.input(x_shape, x_dt, name="x")
    wt = b.input(w.shape, w_dt, name="w") if weight_input else b.const(w, w_dt)
    bt = b.const(bias, T.INT48 if x_dt == T.INT16 else T.INT32)
    y = getattr(b, kind)(x, wt, bt, name="y", **attrs)
    if rescale is not None:
        y = b.rescale(y, rescale[0], rescale[1], T.INT16, name="r")
    b.output(y)
    return b.build()


# ---- goldens -----------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_conv2d_golden(impl):
    # 3x3 input 1..9, 3x3 kernel of ones, pad 1: every output is the sum of its neighbourhood
    x = np.arange(1, 10, dtype=np.int8).reshape(1, 3, 3, 1)
    w = np.ones((1, 3, 3, 1), np.int8)
    g = conv_graph("conv2d", x.shape, w, np.array([100]), pad=1)
    want = np.array([[12, 21, 16], [27, 45, 33], [24, 39, 28]]) + 100
    check(run(g, [x], impl)["y"], want.reshape(1, 3, 3, 1).astype(np.int32))
    # zero points: padding contributes 0, not input_zp; weights 1 - (-1) = 2
    g = conv_graph("conv2d", x.shape, w, np.array([0]), pad=1, input_zp=1, weight_zp=-1)
    want = 2 * (np.array([[12, 21, 16], [27, 45, 33], [24, 39, 28]])
                - np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]))
    check(run(g, [x], impl)["y"], want.reshape(1, 3, 3, 1).astype(np.int32))


@pytest.mark.parametrize("impl", IMPLS)
def test_depthwise_transpose_matmul_goldens(impl):
    x = np.array([1, 2, 3, 4], np.int16).reshape(1, 2, 2, 1)
    # depthwise, multiplier 2: channel 0 weight 1, channel 1 weight -3 (a 1x1 kernel)
    w = np.array([1, -3], np.int8).reshape(1, 1, 1, 2)
    g = conv_graph("depthwise_conv2d", x.shape, w, np.array([5, 6]), x_dt=T.INT16)
    out = run(g, [x], impl)["y"]
    check(out, np.stack([x[..., 0] + 5, -3 * x[..., 0] + 6], -1).astype(np.int64))
    # transpose conv, 1x1 kernel of 2, stride 2: inputs land on even positions, zeros between
    g = conv_graph("transpose_conv2d", x.shape, np.full((1, 1, 1, 1), 2, np.int8),
                   np.array([1]), x_dt=T.INT16, stride=2)
    want = np.ones((1, 3, 3, 1), np.int64)
    want[0, ::2, ::2, 0] += 2 * x[0, :, :, 0]
    check(run(g, [x], impl)["y"], want)
    # matmul ([[1,2],[3,4]] - A_zp 1) @ [[5,6],[7,8]] = [[0,1],[2,3]] @ ...
    b = GraphBuilder()
    a = b.input((1, 2, 2), T.INT8, name="a")
    bb = b.input((1, 2, 2), T.INT8, name="b")
    b.output(b.matmul(a, bb, a_zp=1, name="y"))
    g = b.build()
    A = np.array([[[1, 2], [3, 4]]], np.int8)
    B = np.array([[[5, 6], [7, 8]]], np.int8)
    check(run(g, [A, B], impl)["y"], np.array([[[7, 8], [31, 36]]], np.int32))


# ---- the reference model as oracle ---------------------------------------------------------
def _conv_cases():
    """(name, kind, x shape, w shape, x dtype, w dtype, attrs, rescale)."""
    cases = []
    for xd, wd in ((T.INT8, T.INT8), (T.INT8, T.INT4), (T.INT16, T.INT8)):
        zp = dict(input_zp=-5, weight_zp=3) if xd == T.INT8 and wd == T.INT8 else (
            dict(weight_zp=-7) if wd == T.INT8 else {})
        cases += [
            ("conv2d", (2, 8, 6, 5), (4, 3, 2, 5), xd, wd,
             dict(pad=(1, 0, 2, 1), stride=(2, 1), dilation=(1, 2), **zp)),
            ("conv2d", (1, 5, 5, 3), (2, 1, 1, 3), xd, wd, dict(stride=2, **zp)),
            ("depthwise_conv2d", (1, 6, 8, 3), (3, 2, 3, 2), xd, wd,
             dict(pad=(2, 0, 1, 1), stride=(1, 2), dilation=(2, 1), **zp)),
            ("depthwise_conv2d", (2, 5, 4, 4), (2, 2, 4, 1), xd, wd, dict(pad=1, **zp)),
            ("transpose_conv2d", (1, 4, 3, 3), (2, 3, 2, 3), xd, wd,
             dict(out_pad=(0, 1, -1, 2), stride=(2, 3), **zp)),
            ("transpose_conv2d", (2, 3, 3, 2), (3, 2, 3, 2), xd, wd,
             dict(out_pad=(-1, 0, 0, 0), stride=1, **zp)),
            ("conv3d", (1, 4, 5, 4, 2), (3, 2, 2, 3, 2), xd, wd,
             dict(pad=(1, 0, 0, 1, 1, 1), stride=(1, 2, 1), dilation=(2, 1, 1), **zp)),
        ]
    return cases


@pytest.mark.oracle
@pytest.mark.parametrize("impl", IMPLS)
def test_convs_against_reference_model(impl):
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    rng = np.random.default_rng(5)
    failures = []
    for kind, xs, ws, xd, wd, attrs in _conv_cases():
        x = rand(xs, xd, rng)
        w = rand(ws, wd, rng)
        oc = ws[2] * ws[3] if kind == "depthwise_conv2d" else ws[0]
        bias = rand((oc,), T.INT48 if xd == T.INT16 else T.INT32, rng,
                    -(1 << 40), 1 << 40) if rng.random() < 0.5 else np.array([12345])
        g = conv_graph(kind, xs, w, bias, x_dt=xd, w_dt=wd, **attrs)
        status, want = reference_run(g, [x])
        assert status == "TOSA_VALID", (kind, xs, attrs)
        got = run(g, [x], impl)["y"]
        if not (got.shape == want["y"].shape and got.dtype == want["y"].dtype
                and np.array_equal(got, want["y"])):
            failures.append((kind, xs, xd.name, wd.name, attrs))
    assert not failures, failures


@pytest.mark.oracle
@pytest.mark.parametrize("impl", IMPLS)
def test_int16_conv_rescaled_against_reference_binding(impl):
    """int48 -> RESCALE (scale16) -> int16 with the python binding itself (no CLI)."""
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    rng = np.random.default_rng(6)
    x = rand((1, 6, 6, 4), T.INT16, rng)
    w = rand((3, 3, 3, 4), T.INT8, rng)
    g = conv_graph("conv2d", x.shape, w, rand((3,), T.INT48, rng, -2**30, 2**30),
                   x_dt=T.INT16, pad=1, rescale=(1 << 14, 22))
    status, want = reference_run(g, [x], use_cli=False)
    assert status == "TOSA_VALID"
    check(run(g, [x], impl)["r"], want["r"])


def matmul_graph(n, h, c, w, dt, zps):
    """y = MATMUL(a [n,h,c], b [n,c,w]) with zero points ``zps``, both operands graph inputs."""
    b = GraphBuilder()
    a = b.input((n, h, c), dt, name="a")
    bb = b.input((n, c, w), dt, name="b")
    b.output(b.matmul(a, bb, a_zp=zps[0], b_zp=zps[1], name="y"))
    return b.build()


@pytest.mark.oracle
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dt", [T.INT8, T.INT16])
def test_matmul_against_reference_model(impl, dt):
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    rng = np.random.default_rng(int(dt))
    for (n, h, c, w), zps in (((2, 3, 5, 4), (0, 0)), ((1, 7, 33, 2), (-3, 9) if dt == T.INT8
                                                       else (0, 0))):
        g = matmul_graph(n, h, c, w, dt, zps)
        inputs = [rand((n, h, c), dt, rng), rand((n, c, w), dt, rng)]
        status, want = reference_run(g, inputs)
        assert status == "TOSA_VALID"
        check(run(g, inputs, impl)["y"], want["y"])


# ---- extremes and the reference model's departures from the spec ---------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_int16_extremes_and_int48_saturation(impl):
    x = np.full((1, 3, 3, 8), -32768, np.int16)
    w = np.full((2, 3, 3, 8), -128, np.int8)
    full = 72 * 32768 * 128                       # 72 taps of (-32768) * (-128)
    bias = np.array([I48_MAX - full + 1, -5])     # channel 0 exceeds int48 by one
    g = conv_graph("conv2d", x.shape, w, bias, x_dt=T.INT16)
    res = run(g, [x], impl)
    check(res["y"], np.array([I48_MAX, full - 5]).reshape(1, 1, 1, 2))
    assert len(res.diagnostics) == 1 and res.diagnostics[0].count == 1
    assert "saturate" in res.diagnostics[0].condition
    with pytest.raises(UnpredictableError):
        run(g, [x], impl, on_unpredictable="raise")
    # the negative side, and weight 127 (products +-32768*127)
    w2 = np.full((1, 3, 3, 8), 127, np.int8)
    g = conv_graph("conv2d", x.shape, w2, np.array([-(1 << 47) + 100]), x_dt=T.INT16)
    res = run(g, [x], impl)
    check(res["y"], np.array([-(1 << 47)]).reshape(1, 1, 1, 1))
    assert res.diagnostics[0].count == 1


@pytest.mark.oracle
@pytest.mark.parametrize("impl", IMPLS)
def test_saturation_and_wrap_match_reference_model(impl):
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    # int48: bias 2**47 - 10 plus 32767*127 saturates (tosa-facts 2.4)
    x = np.full((1, 1, 1, 1), 32767, np.int16)
    g = conv_graph("depthwise_conv2d", x.shape, np.full((1, 1, 1, 1), 127, np.int8),
                   np.array([I48_MAX - 9]), x_dt=T.INT16)
    status, want = reference_run(g, [x])
    assert status == "TOSA_VALID"
    res = run(g, [x], impl)
    check(res["y"], want["y"])
    assert res["y"].item() == I48_MAX and res.diagnostics[0].count == 1
    # and the negative side: bias -2**47 + 9 plus -32768*127 saturates to -2**47
    x = np.full((1, 1, 1, 1), -32768, np.int16)
    for kind in ("conv2d", "depthwise_conv2d", "transpose_conv2d"):
        g = conv_graph(kind, x.shape, np.full((1, 1, 1, 1), 127, np.int8),
                       np.array([-(1 << 47) + 9]), x_dt=T.INT16)
        status, want = reference_run(g, [x])
        assert status == "TOSA_VALID"
        res = run(g, [x], impl)
        check(res["y"], want["y"])
        assert res["y"].item() == -(1 << 47) and res.diagnostics[0].count == 1
    # int32: bias 2**31 - 100 plus 127*127 wraps to -2147467619
    x = np.full((1, 1, 1, 1), 127, np.int8)
    for kind in ("conv2d", "depthwise_conv2d", "transpose_conv2d"):
        g = conv_graph(kind, x.shape, np.full((1, 1, 1, 1), 127, np.int8),
                       np.array([2**31 - 100]))
        status, want = reference_run(g, [x])
        assert status == "TOSA_VALID"
        res = run(g, [x], impl)
        check(res["y"], want["y"])
        assert res["y"].item() == -2147467619
        assert len(res.diagnostics) == 1 and "wrap" in res.diagnostics[0].condition
    # int32 accumulator wrap inside MATMUL: 2 * 128 * 255 * 255 * ... large C
    c = 40000
    b = GraphBuilder()
    a = b.input((1, 1, c), T.INT8, name="a")
    bb = b.input((1, c, 1), T.INT8, name="b")
    b.output(b.matmul(a, bb, a_zp=-128, b_zp=-128, name="y"))
    g = b.build()
    A = np.full((1, 1, c), 127, np.int8)
    B = np.full((1, c, 1), 127, np.int8)
    status, want = reference_run(g, [A, B])
    assert status == "TOSA_VALID"
    res = run(g, [A, B], impl)
    check(res["y"], want["y"])
    assert res["y"].item() == ((c * 255 * 255 + 2**31) % 2**32) - 2**31
    assert res.diagnostics and res.diagnostics[0].count == 1


@pytest.mark.parametrize("impl", IMPLS)
def test_weights_as_graph_input_and_int4(impl):
    rng = np.random.default_rng(3)
    x = rand((1, 4, 4, 3), T.INT8, rng)
    w = rand((2, 3, 3, 3), T.INT4, rng)
    bias = np.array([1, -1])
    g1 = conv_graph("conv2d", x.shape, w, bias, w_dt=T.INT4, weight_input=True, pad=1,
                    input_zp=7)
    g2 = conv_graph("conv2d", x.shape, w, bias, w_dt=T.INT4, pad=1, input_zp=7)
    check(run(g1, [x, w], impl)["y"], run(g2, [x], "spec")["y"])


def test_blocked_im2col_matches_twin(monkeypatch):
    """Many small im2col blocks (block edges inside rows and batches) give the same result."""
    from tosaint.kernels import compiled as K
    from tosaint.kernels.spec import tensor_ops as S
    rng = np.random.default_rng(9)
    x = rand((2, 5, 7, 3), T.INT16, rng)
    w = rand((4, 2, 3, 3), T.INT8, rng)
    from tosaint.kernels import _threads
    monkeypatch.setattr(_threads, "BLOCK_ELEMS", 18 * 3)  # 3 output rows per block
    args = (np.array([7]), 0, (1, 0, 1, 1), (1, 2), (2, 1), (2, 4, 4, 4), True)
    got = K.conv2d(x, K.conv_weights(w, 0, "conv2d", 32768), *args)
    want = S.conv2d(x, S.conv_weights(w, 0, "conv2d", 32768), *args)
    check(got[0], want[0])
    assert got[1] == want[1] == 0


def test_float_type_choice_is_exact():
    """The float32 path (int8) and the float64 path (large zero points) are both exact."""
    from tosaint.kernels import compiled as K
    from tosaint.kernels.spec import tensor_ops as S
    rng = np.random.default_rng(4)
    x = np.full((1, 4, 4, 64), 127, np.int8)
    for wzp, izp, want_type in ((0, 0, np.float32), (-128, -128, np.float64)):
        w = np.full((3, 3, 3, 64), -128 if wzp == 0 else 127, np.int8)
        w[0] = rand((3, 3, 64), T.INT8, rng)
        absmax = max(abs(-128 - izp), abs(127 - izp))
        prep = K.conv_weights(w, wzp, "conv2d", absmax)
        assert prep.ftype is want_type
        args = (np.array([0]), izp, (1, 1, 1, 1), (1, 1), (1, 1), (1, 4, 4, 3), False)
        got = K.conv2d(x, prep, *args)
        want = S.conv2d(x, S.conv_weights(w, wzp, "conv2d", absmax), *args)
        check(got[0], want[0])
        assert got[1] == want[1]


def test_depthwise_chunked_int32_partial_sums():
    """More taps than an int32 partial sum can hold: the kernel flushes into int64."""
    from tosaint.kernels import compiled as K
    from tosaint.kernels.spec import tensor_ops as S
    x = np.full((1, 25, 25, 2), -32768, np.int16)
    w = np.full((25, 25, 2, 1), -128, np.int8)           # 625 taps of 2**22 > 2**31
    prep = K.depthwise_weights(w, 0, 32768)
    assert prep.chunk == 511
    args = (np.array([0]), 0, (0, 0, 0, 0), (1, 1), (1, 1), (1, 1, 1, 2), True)
    got = K.depthwise_conv2d(x, prep, *args)
    want = S.depthwise_conv2d(x, S.depthwise_weights(w, 0, 32768), *args)
    check(got[0], want[0])
    assert got[0][0, 0, 0, 0] == 625 * 32768 * 128


# ---- numba versus the spec twin on random shapes -------------------------------------------
@st.composite
def conv_params(draw):
    kind = draw(st.sampled_from(["conv2d", "depthwise_conv2d", "transpose_conv2d",
                                 "conv3d"]))
    xd, wd = draw(st.sampled_from([(T.INT8, T.INT8), (T.INT8, T.INT4), (T.INT16, T.INT8)]))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sy, sx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 4))
    oc = draw(st.integers(1, 4))
    attrs = {}
    if xd == T.INT8 and wd == T.INT8:
        attrs.update(input_zp=draw(st.integers(-128, 127)), weight_zp=draw(st.integers(-128, 127)))
    if kind == "transpose_conv2d":
        ih, iw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        attrs.update(stride=(sy, sx), out_pad=tuple(draw(st.integers(-k + 1, 2))
                                                    for k in (kh, kh, kw, kw)))
        return kind, (n, ih, iw, c), (oc, kh, kw, c), xd, wd, attrs
    dy, dx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = [draw(st.integers(0, 3)) for _ in range(4)]
    # choose the input size so that the output size formula divides exactly
    oh, ow = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ih = (oh - 1) * sy + (kh - 1) * dy + 1 - pads[0] - pads[1]
    iw = (ow - 1) * sx + (kw - 1) * dx + 1 - pads[2] - pads[3]
    if ih < 1:
        pads[1] -= 1 - ih
        pads[1] = max(pads[1], 0)
        ih = (oh - 1) * sy + (kh - 1) * dy + 1 - pads[0] - pads[1]
    if iw < 1:
        pads[3] = max(pads[3] - (1 - iw), 0)
        iw = (ow - 1) * sx + (kw - 1) * dx + 1 - pads[2] - pads[3]
    if ih < 1 or iw < 1:
        pads = [0, 0, 0, 0]
        ih = (oh - 1) * sy + (kh - 1) * dy + 1
        iw = (ow - 1) * sx + (kw - 1) * dx + 1
    attrs.update(stride=(sy, sx), dilation=(dy, dx), pad=tuple(pads))
    if kind == "depthwise_conv2d":
        return kind, (n, ih, iw, c), (kh, kw, c, draw(st.integers(1, 3))), xd, wd, attrs
    if kind == "conv3d":
        kd, sd, dd = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
        od = draw(st.integers(1, 3))
        id_ = (od - 1) * sd + (kd - 1) * dd + 1
        attrs.update(stride=(sd, sy, sx), dilation=(dd, dy, dx), pad=(0, 0) + tuple(pads))
        return kind, (n, id_, ih, iw, c), (oc, kd, kh, kw, c), xd, wd, attrs
    return kind, (n, ih, iw, c), (oc, kh, kw, c), xd, wd, attrs


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(conv_params(), st.integers(0, 2**32 - 1), st.booleans())
def test_numba_matches_spec_twin(params, seed, big_bias):
    kind, xs, ws, xd, wd, attrs = params
    rng = np.random.default_rng(seed)
    x = rand(xs, xd, rng)
    w = rand(ws, wd, rng)
    oc = ws[2] * ws[3] if kind == "depthwise_conv2d" else ws[0]
    od = T.INT48 if xd == T.INT16 else T.INT32
    lo, hi = RANGE[od]
    bias = rand((oc,) if rng.random() < 0.7 else (1,), od, rng,
                *((lo, hi) if big_bias else (-1000, 1000)))
    g = conv_graph(kind, xs, w, bias, x_dt=xd, w_dt=wd, **attrs)
    a = run(g, [x], "numba")
    b = run(g, [x], "spec")
    check(a["y"], b["y"])
    assert [d.count for d in a.diagnostics] == [d.count for d in b.diagnostics]


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([T.INT8, T.INT16]), st.integers(1, 3), st.integers(1, 6),
       st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_matmul_numba_matches_spec_twin(dt, n, h, c, w, seed):
    rng = np.random.default_rng(seed)
    zps = (int(rng.integers(-128, 128)), int(rng.integers(-128, 128))) if dt == T.INT8 else (0, 0)
    g = matmul_graph(n, h, c, w, dt, zps)
    inputs = [rand((n, h, c), dt, rng), rand((n, c, w), dt, rng)]
    check(run(g, inputs, "numba")["y"], run(g, inputs, "spec")["y"])


# ---- ERROR_IF and LEVEL_CHECK --------------------------------------------------------------
def _bad_conv(**kw):
    """A CONV2D with explicit output shape and attributes (to build invalid graphs)."""
    x_shape = kw.pop("x_shape", (1, 5, 5, 2))
    w_shape = kw.pop("w_shape", (3, 3, 3, 2))
    out_shape = kw.pop("out_shape", (1, 3, 3, 3))
    bias_n = kw.pop("bias_n", 3)
    xd = kw.pop("x_dt", T.INT8)
    op = kw.pop("op", Op.CONV2D)
    izp, wzp = kw.pop("input_zp", 0), kw.pop("weight_zp", 0)
    acc = kw.pop("acc_type", T.INT48 if xd == T.INT16 else T.INT32)
    out_dt = T.INT48 if xd == T.INT16 else T.INT32
    attrs = dict(pad=(0, 0, 0, 0), stride=(1, 1), dilation=(1, 1), acc_type=acc)
    if op == Op.TRANSPOSE_CONV2D:
        attrs = dict(out_pad=(0, 0, 0, 0), stride=(1, 1), acc_type=acc)
    attrs.update(kw)
    b = GraphBuilder()
    x = b.input(x_shape, xd, name="x")
    w = b.const(np.ones(w_shape), T.INT8)
    bias = b.const(np.zeros(bias_n), out_dt)
    b.output(b.op(op, [x, w, bias, b.zero_point(izp, xd), b.zero_point(wzp, T.INT8)],
                  out_shape, out_dt, attrs, name="y"))
    return b.build()


ERROR_CASES = [
    ("pad", dict(pad=(0, -1, 0, 0)), "pad"),
    ("stride", dict(stride=(0, 1)), "stride"),
    ("dilation", dict(dilation=(1, 0)), "dilation"),
    ("out height", dict(out_shape=(1, 4, 3, 3)), "output height 4"),
    ("idiv_check", dict(stride=(2, 2), out_shape=(1, 2, 2, 3), x_shape=(1, 6, 6, 2)),
     "not divisible"),
    ("bias", dict(bias_n=2), "BC 2"),
    ("ic", dict(w_shape=(3, 3, 3, 4)), "weight IC 4"),
    ("oc", dict(out_shape=(1, 3, 3, 4), bias_n=1), "weight OC 3"),
    ("batch", dict(out_shape=(2, 3, 3, 3)), "batch"),
    ("int16 zp", dict(x_dt=T.INT16, input_zp=1), "input_zp 1"),
    ("acc_type", dict(acc_type=T.INT48), "acc_type"),
    ("acc_type16", dict(x_dt=T.INT16, acc_type=T.INT32), "acc_type"),
    ("rank", dict(x_shape=(1, 5, 5, 2, 1)), "input rank 5"),
    ("pad length", dict(pad=(0, 0, 0)), "pad has 3 values"),
    ("depthwise channels", dict(op=Op.DEPTHWISE_CONV2D, w_shape=(3, 3, 2, 2),
                                out_shape=(1, 3, 3, 3)), "C*M"),
    ("transpose out_pad", dict(op=Op.TRANSPOSE_CONV2D, out_pad=(-3, 0, 0, 0),
                               out_shape=(1, 4, 7, 3)), "out_pad_top -3"),
    ("transpose shape", dict(op=Op.TRANSPOSE_CONV2D, out_shape=(1, 7, 6, 3)),
     "output width 6"),
]


@pytest.mark.parametrize("name,kw,msg", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_if(name, kw, msg):
    g = _bad_conv(**kw)
    with pytest.raises(ErrorIfViolation, match=msg):
        tosaint.prepare(g)


def test_matmul_error_if():
    def mm(dt, a_shape, b_shape, out_shape, a_zp=0, b_zp=0):
        b = GraphBuilder()
        a = b.input(a_shape, dt, name="a")
        bb = b.input(b_shape, dt, name="b")
        out_dt = T.INT48 if dt == T.INT16 else T.INT32
        b.output(b.op(Op.MATMUL, [a, bb, b.zero_point(a_zp, dt), b.zero_point(b_zp, dt)],
                      out_shape, out_dt, name="y"))
        return b.build()
    tosaint.prepare(mm(T.INT8, (1, 2, 3), (1, 3, 4), (1, 2, 4), 5, -5))   # int8 zp: fine
    for args, msg in (((T.INT16, (1, 2, 3), (1, 3, 4), (1, 2, 4), 1), "A_zp 1"),
                      ((T.INT16, (1, 2, 3), (1, 3, 4), (1, 2, 4), 0, -2), "B_zp -2"),
                      ((T.INT8, (1, 2, 3), (1, 4, 4), (1, 2, 4)), "C = 3"),
                      ((T.INT8, (1, 2, 3), (2, 3, 4), (1, 2, 4)), "batch"),
                      ((T.INT8, (1, 2, 3), (1, 3, 4), (1, 2, 5)), "output shape"),
                      ((T.INT8, (1, 2, 3, 1), (1, 3, 4), (1, 2, 4)), "A rank 4")):
        with pytest.raises(ErrorIfViolation, match=msg):
            tosaint.prepare(mm(*args))


def test_level_checks():
    g = _bad_conv(x_shape=(1, 1, 8200, 1), w_shape=(1, 1, 8193, 1), out_shape=(1, 1, 8, 1),
                  bias_n=1)
    tosaint.prepare(g)                                  # no level: fine
    with pytest.raises(LevelLimitError, match="MAX_KERNEL"):
        tosaint.prepare(g, level="8K")
    g = _bad_conv(x_shape=(1, 1, 8195, 1), w_shape=(1, 1, 1, 1), out_shape=(1, 1, 2, 1),
                  stride=(1, 8194), bias_n=1)
    with pytest.raises(LevelLimitError, match="MAX_STRIDE"):
        tosaint.prepare(g, level="8K")


def test_thread_count_does_not_change_results(monkeypatch):
    """1 or 2 worker threads (NUMBA_NUM_THREADS=1 vs 2) give identical outputs."""
    from tosaint.kernels import compiled as K
    rng = np.random.default_rng(12)
    x = rand((2, 9, 8, 5), T.INT16, rng)
    w = rand((6, 3, 3, 5), T.INT8, rng)
    from tosaint.kernels import _threads
    monkeypatch.setattr(_threads, "BLOCK_ELEMS", 45 * 4)  # several blocks per worker
    prep = K.conv_weights(w, 3, "conv2d", 32768)
    args = (rand((6,), T.INT48, rng), 0, (1, 1, 0, 2), (1, 1), (1, 2), (2, 9, 6, 6), True)
    A = rand((3, 17, 9), T.INT16, rng)
    B = rand((3, 9, 4), T.INT16, rng)
    res = []
    for n in (1, 2):
        monkeypatch.setattr(_threads, "threads", lambda n=n: n)
        res.append((K.conv2d(x, prep, *args), K.matmul(A, B, 0, 0, True)))
    (c1, m1), (c2, m2) = res
    check(c1[0], c2[0])
    check(m1[0], m2[0])
    assert c1[1] == c2[1] and m1[1] == m2[1]


@pytest.mark.oracle
@pytest.mark.parametrize("impl", IMPLS)
def test_int32_accumulator_wrap_in_conv_matches_reference_model(impl):
    """40000 taps of 255*255 overflow the int32 accumulator itself (not only the bias add)."""
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    c = 40000
    x = np.full((1, 1, 1, c), 127, np.int8)
    g = conv_graph("conv2d", x.shape, np.full((1, 1, 1, c), 127, np.int8), np.array([5]),
                   input_zp=-128, weight_zp=-128)
    status, want = reference_run(g, [x])
    assert status == "TOSA_VALID"
    res = run(g, [x], impl)
    check(res["y"], want["y"])
    assert res["y"].item() == ((c * 255 * 255 + 5 + 2**31) % 2**32) - 2**31
    assert len(res.diagnostics) == 1 and res.diagnostics[0].count == 1


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 2), st.integers(1, 9), st.integers(1, 9), st.integers(1, 5),
       st.integers(1, 4), st.tuples(*[st.integers(0, 2)] * 4), st.booleans(), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_winograd_3x3_matches_spec_twin(n, ih, iw, c, oc, pads, i16, bc1, seed):
    """3x3 stride-1 CONV2D on the float64 path uses exact integer-scaled Winograd F(2x2,3x3)."""
    from tosaint.kernels import compiled as K
    from tosaint.kernels.spec import tensor_ops as S
    oh, ow = ih + pads[0] + pads[1] - 2, iw + pads[2] + pads[3] - 2
    if oh < 1 or ow < 1 or oh * ow < 16:
        return
    rng = np.random.default_rng(seed)
    x = rand((n, ih, iw, c), T.INT16 if i16 else T.INT8, rng)
    w = rand((oc, 3, 3, c), T.INT8, rng)
    izp = 0 if i16 else int(rng.integers(-128, 128))
    wzp = int(rng.integers(-128, 128))
    xa = 32768 if i16 else max(abs(-128 - izp), abs(127 - izp))
    prep = K.conv_weights(w, wzp, "conv2d", xa)
    out_t = T.INT48 if i16 else T.INT32
    bias = rand((1,) if bc1 else (oc,), out_t, rng)
    args = (bias, izp, pads, (1, 1), (1, 1), (n, oh, ow, oc), i16)
    got = K.conv2d(x, prep, *args)
    want = S.conv2d(x, S.conv_weights(w, wzp, "conv2d", xa), *args)
    assert (prep._wino is not None) == (prep.ftype is np.float64)
    check(got[0], want[0])
    assert got[1] == want[1]


@pytest.mark.parametrize("impl", IMPLS)
def test_winograd_int8_large_zero_points(impl):
    """int8 with zero points -128/127 and 40 channels needs float64, so Winograd runs."""
    from tosaint.kernels import compiled as K
    rng = np.random.default_rng(21)
    x = rand((1, 6, 7, 40), T.INT8, rng)
    w = rand((3, 3, 3, 40), T.INT8, rng)
    assert K.conv_weights(w, 127, "conv2d", 255).winograd() is not None
    g = conv_graph("conv2d", x.shape, w, rand((3,), T.INT32, rng), pad=(1, 0, 0, 1),
                   input_zp=-128, weight_zp=127)
    check(run(g, [x], impl)["y"], run(g, [x], "spec")["y"])
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    status, want = reference_run(g, [x])
    assert status == "TOSA_VALID"
    check(run(g, [x], impl)["y"], want["y"])


def test_int4_weight_zero_point_must_be_zero():
    w = np.ones((2, 1, 1, 3), np.int8)
    for kind in ("conv2d", "depthwise_conv2d", "transpose_conv2d"):
        ws = (1, 1, 3, 2) if kind == "depthwise_conv2d" else (2, 1, 1, 3)
        g = conv_graph(kind, (1, 2, 2, 3), w.reshape(ws), np.array([0]), w_dt=T.INT4,
                       weight_zp=1)
        with pytest.raises(ErrorIfViolation, match="weight_zp 1 != 0 for INT4"):
            tosaint.prepare(g)


@pytest.mark.parametrize("impl", IMPLS)
def test_winograd_saturates_both_sides(impl):
    x = np.full((1, 6, 6, 2), -32768, np.int16)
    w = np.full((2, 3, 3, 2), 127, np.int8)
    full = 18 * 32768 * 127                       # |acc| of every output (no padding)
    g = conv_graph("conv2d", x.shape, w, np.array([-(1 << 47) + full - 1, I48_MAX]),
                   x_dt=T.INT16)
    res = run(g, [x], impl)
    want = np.empty((1, 4, 4, 2), np.int64)
    want[..., 0] = -(1 << 47)                     # -full + (-2**47 + full - 1) saturates
    want[..., 1] = I48_MAX - full                 # no saturation
    check(res["y"], want)
    assert res.diagnostics[0].count == 16
    g = conv_graph("conv2d", x.shape, -w, np.array([I48_MAX - full + 1]), x_dt=T.INT16)
    res = run(g, [x], impl)
    check(res["y"], np.full((1, 4, 4, 2), I48_MAX, np.int64))
    assert res.diagnostics[0].count == 32


def test_depthwise_chunked_saturation_counted_once():
    """Flushed int64 sums beyond int48 saturate, and each saturated value is counted once,
    as in the spec twin."""
    from tosaint.kernels import compiled as K
    from tosaint.kernels.spec import tensor_ops as S
    x = np.full((1, 25, 25, 2), -32768, np.int16)
    w = np.full((25, 25, 2, 1), -128, np.int8)
    args = (np.array([(1 << 47) - 100]), 0, (0, 0, 0, 0), (1, 1), (1, 1), (1, 1, 1, 2), True)
    got = K.depthwise_conv2d(x, K.depthwise_weights(w, 0, 32768), *args)
    want = S.depthwise_conv2d(x, S.depthwise_weights(w, 0, 32768), *args)
    check(got[0], want[0])
    assert got[1] == want[1] == 2
