"""RESCALE and CAST: hand-checked goldens (rounding modes, unsigned zero points, int48
scale16), the official reference model as oracle over every type pair and rounding mode
(ranks 0..6, per-channel, both impls), the kernel against its spec twin, ERROR_IF and REQUIRE."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tosaint
from tosaint import DType
from tosaint.builder import GraphBuilder
from tosaint.errors import ErrorIfViolation, UnpredictableError
from tosaint.kernels import namespace
from tosaint.schema.definition import RoundingMode as R

from .helpers import check

IMPLS = ["numba", "spec"]
I8, I16, I32, I48, BOOL = DType.INT8, DType.INT16, DType.INT32, DType.INT48, DType.BOOL
NP = {BOOL: np.bool_, I8: np.int8, I16: np.int16, I32: np.int32, I48: np.int64}
BITS = {I8: 8, I16: 16, I32: 32, I48: 48}


def rescale_graph(shape, in_t, out_t, m, s, **kw):
    b = GraphBuilder()
    x = b.input(shape, in_t, name="x")
    b.output(b.rescale(x, m, s, out_t, **kw))
    return b.build()


def run1(g, arrays, impl):
    r = tosaint.run_tosa(g, arrays, impl=impl)
    return r[g.outputs[0]]


# ---- goldens ------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_rounding_mode_goldens(impl):
    # x / 8 (multiplier 2^30, shift 33): 0.5 1.5 2.5 -0.5 -1.5 -2.5 and 2.25
    x = np.array([4, 12, 20, -4, -12, -20, 18], np.int32)
    want = {R.SINGLE_ROUND: [1, 2, 3, 0, -1, -2, 2],      # half up
            R.DOUBLE_ROUND: [1, 2, 3, -1, -2, -3, 2],     # halves away from zero (shift > 31)
            R.INEXACT_ROUND: [0, 2, 2, 0, -2, -2, 2]}     # fp32 rint: ties to even
    for mode, w in want.items():
        g = rescale_graph((7,), I32, I8, 1 << 30, 33, rounding_mode=mode)
        check(run1(g, [x], impl), np.array(w, np.int8))


@pytest.mark.parametrize("impl", IMPLS)
def test_unsigned_goldens(impl):
    unity = (1 << 30, 30)
    # uint8 input with zp 128 -> int8: 200 (stored as -56) - 128 = 72; 0 - 128 = -128
    g = rescale_graph((3,), I8, I8, *unity, input_zp=-128, input_unsigned=True)
    check(run1(g, [np.array([-56, 0, -1], np.int8)], impl), np.array([72, -128, 127], np.int8))
    # int8 -> uint8 with output zp 128: -5 -> 123; 127 -> 255 (stored as -1); clipped at 0
    g = rescale_graph((3,), I8, I8, *unity, output_zp=-128, output_unsigned=True)
    check(run1(g, [np.array([-5, 127, -128], np.int8)], impl), np.array([123, -1, 0], np.int8))
    # uint16 input with zp 32768: 40000 (stored -25536) -> 7232; 0 -> -32768
    g = rescale_graph((2,), I16, I16, *unity, input_zp=-32768, input_unsigned=True)
    check(run1(g, [np.array([-25536, 0], np.int16)], impl), np.array([7232, -32768], np.int16))
    # int16 -> uint16 output, zp 32768
    g = rescale_graph((2,), I16, I16, *unity, output_zp=-32768, output_unsigned=True)
    check(run1(g, [np.array([-32768, 32767], np.int16)], impl), np.array([0, -1], np.int16))


@pytest.mark.parametrize("impl", IMPLS)
def test_int48_scale16_golden(impl):
    # (v * 2^14 + 2^23) >> 24 = v / 2^10 rounded half up
    v = np.array([2 ** 40 + 512, 2 ** 40 + 511, -(2 ** 40) - 512, -(2 ** 41)], np.int64)
    g = rescale_graph((4,), I48, I32, 1 << 14, 24, scale32=False)
    check(run1(g, [v], impl), np.array([2 ** 30 + 1, 2 ** 30, -(2 ** 30), -(2 ** 31)],
                                         np.int32))
    g = rescale_graph((4,), I48, I16, 1 << 14, 24, scale32=False)
    check(run1(g, [v], impl), np.array([32767, 32767, -32768, -32768], np.int16))


@pytest.mark.parametrize("impl", IMPLS)
def test_per_channel_golden(impl):
    x = np.array([[[8, 8, 8], [-8, -8, -8]]], np.int16)
    g = rescale_graph((1, 2, 3), I16, I16, [1 << 30, 1 << 30, 3 << 29], [30, 31, 32],
                      per_channel=True)
    check(run1(g, [x], impl), np.array([[[8, 4, 3], [-8, -4, -3]]], np.int16))


# ---- REQUIRE -------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_requires(impl):
    x = np.array([5], np.int32)
    for m, s in ((1 << 30, 1), (1 << 30, 63), (-5, 30)):
        with pytest.raises(UnpredictableError, match="apply_scale_32"):
            run1(rescale_graph((1,), I32, I8, m, s), [x], impl)
    with pytest.raises(UnpredictableError, match="value"):      # |v| >= 2^(shift-1)
        run1(rescale_graph((1,), I32, I32, 1 << 30, 30), [np.array([1 << 29], np.int32)], impl)
    with pytest.raises(UnpredictableError, match="apply_scale_16"):
        run1(rescale_graph((1,), I48, I32, 1 << 14, 14, scale32=False),
             [np.array([2 ** 40], np.int64)], impl)
    # scaled + output_zp outside int32 (scale16 can reach 2^31 - 1)
    with pytest.raises(UnpredictableError, match="output_zp"):
        run1(rescale_graph((1,), I48, I8, 1 << 14, 14, scale32=False, output_zp=1),
             [np.array([2 ** 31 - 1], np.int64)], impl)
    # INEXACT_ROUND: the reference model computes in fp32 without the helper's checks
    r = tosaint.run_tosa(rescale_graph((2,), I32, I32, 1 << 30, 1,
                                       rounding_mode=R.INEXACT_ROUND),
                         [np.array([5, 0], np.int32)], impl=impl)
    check(r[r.output_names[0]], np.array([-2 ** 31, 0], np.int32))
    assert r.diagnostics and r.diagnostics[0].count == 2
    # nothing fails on an empty tensor
    out = run1(rescale_graph((0, 3), I32, I8, 1, 1), [np.zeros((0, 3), np.int32)], impl)
    assert out.shape == (0, 3) and out.dtype == np.int8


# ---- ERROR_IF -------------------------------------------------------------------------------
ERROR_CASES = [
    ("scale32 with an i48", dict(in_t=I48, out_t=I16, scale32=True)),
    ("DOUBLE_ROUND without scale32", dict(in_t=I16, out_t=I8, scale32=False,
                                          rounding_mode=R.DOUBLE_ROUND)),
    ("both set", dict(in_t=I8, out_t=I8, input_unsigned=True, output_unsigned=True)),
    ("input_unsigned with an i32 output", dict(in_t=I8, out_t=I32, input_unsigned=True)),
    ("output_unsigned with an i32 input", dict(in_t=I32, out_t=I8, output_unsigned=True)),
    ("output_unsigned with an i48 input", dict(in_t=I48, out_t=I8, scale32=False,
                                               output_unsigned=True)),
    ("input_unsigned with an i48", dict(in_t=I48, out_t=I8, scale32=False,
                                        input_unsigned=True)),
    ("input_unsigned with an i32 input", dict(in_t=I32, out_t=I16, input_unsigned=True)),
    ("input_zp 3 != 0", dict(in_t=I16, out_t=I8, input_zp=3)),
    ("output_zp 3 != 0", dict(in_t=I8, out_t=I32, output_zp=3)),
    ("input_zp 5 of a u16", dict(in_t=I16, out_t=I8, input_unsigned=True, input_zp=5)),
    ("output_zp 7 of a u16", dict(in_t=I8, out_t=I16, output_unsigned=True, output_zp=7)),
    ("rank 0", dict(in_t=I8, out_t=I8, shape=(), per_channel=True, m=[1], s=[2])),
    ("multiplier has 2 values", dict(in_t=I8, out_t=I8, shape=(2, 3), per_channel=True,
                                     m=[1, 1], s=[2, 2, 2])),
    ("shift has 2 values", dict(in_t=I8, out_t=I8, shape=(2, 3), per_channel=False,
                                m=[1], s=[2, 2])),
    ("rounding_mode 0", dict(in_t=I8, out_t=I8, rounding_mode=0)),
]


@pytest.mark.parametrize("match,kw", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_if(match, kw):
    kw = dict(kw)
    in_t, out_t = kw.pop("in_t"), kw.pop("out_t")
    shape = kw.pop("shape", (2, 3))
    m, s = kw.pop("m", 1 << 30), kw.pop("s", 33)
    b = GraphBuilder()
    x = b.input(shape, in_t, name="x")
    rm = kw.pop("rounding_mode", R.SINGLE_ROUND)
    y = b.rescale(x, m, s, out_t, **kw)
    b.block.operators[-1].attrs["rounding_mode"] = rm
    b.output(y)
    with pytest.raises(ErrorIfViolation, match=match):
        tosaint.prepare(b.build())


def test_error_if_multiplier_type():
    b = GraphBuilder()
    x = b.input((2,), I8, name="x")
    y = b.rescale(x, 1 << 14, 14, I8, scale32=True)
    b.block.operators[-1].attrs["scale32"] = False        # i32 multiplier with scale16
    b.output(y)
    with pytest.raises(ErrorIfViolation, match="multiplier"):
        tosaint.prepare(b.build())


# ---- the kernel against its spec twin ---------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.sampled_from([(I8, 0), (I8, 0xFF), (I16, 0), (I16, 0xFFFF), (I32, 0), (I48, 0)]),
       st.sampled_from([0, 1, 2, 3, 4]), st.integers(0, 2 ** 31 - 1), st.integers(2, 62),
       st.integers(-300, 300), st.integers(0, 2 ** 32))
def test_rescale_kernel_matches_twin(in_kind, mode, mult, shift, zp, seed):
    in_t, mask = in_kind
    if mode in (0, 4):
        mult &= 0x7FFF
    elif in_t == I48:          # scale32 with an int48 input is an ERROR_IF (v * m needs 80 bits)
        mode = 0
        mult &= 0x7FFF
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (BITS[in_t] - 1)), (1 << (BITS[in_t] - 1)) - 1
    x = rng.integers(lo, hi, (3, 4), endpoint=True).astype(NP[in_t])
    m = np.full(4, mult, np.int64)
    s = np.full(4, shift, np.int64)
    s[1] = max(2, shift - 3)
    pow2 = np.array([2.0 ** -int(v) for v in s], np.float64).astype(np.float32)
    outs = []
    for k in (namespace("numba"), namespace("spec")):
        out = np.zeros((3, 4), np.int32)
        n = k.rescale(x, mask, zp, zp // 2, m, s, pow2, mode, -128, 127, out)
        outs.append((out, tuple(int(v) for v in n)))
    assert outs[0][1] == outs[1][1]
    if mode >= 3 or outs[0][1][0] == 0:     # values are defined
        check(outs[0][0], outs[1][0])


# ---- the reference model as oracle --------------------------------------------------------
def _oracle(g, arrays):
    ref = pytest.importorskip("tosaint.oracle")
    pytest.importorskip("tosa_reference_model")
    status, outs = ref.reference_run(g, arrays)
    for impl in IMPLS:
        if status == "TOSA_VALID":
            check(run1(g, arrays, impl), outs[g.outputs[0]])
        elif status == "TOSA_UNPREDICTABLE":
            with pytest.raises(UnpredictableError):
                run1(g, arrays, impl)
        else:
            with pytest.raises(ErrorIfViolation):
                tosaint.prepare(g, impl=impl)
    return status


def _random_case(rng, in_t, out_t, mode):
    scale32 = in_t != I48
    rank = int(rng.integers(0, 7))
    shape = tuple(int(d) for d in rng.integers(1, 4, rank))
    per_channel = rank > 0 and rng.random() < 0.5
    nc = shape[-1] if per_channel else 1
    if scale32:
        m = rng.integers(1 << 30, 1 << 31, nc)
        s = rng.integers(32, 46, nc) if in_t == I32 else rng.integers(20, 46, nc)
    else:
        m = rng.integers(1 << 14, 1 << 15, nc)
        s = rng.integers(34, 47, nc) if in_t == I48 else rng.integers(10, 30, nc)
    in_u = in_t in (I8, I16) and out_t != I32 and rng.random() < 0.3
    out_u = not in_u and in_t in (I8, I16) and out_t in (I8, I16) and rng.random() < 0.3
    izp = 0
    if in_t == I8:
        izp = int(rng.integers(-128, 128))
    elif in_t == I16 and in_u:
        izp = int(rng.choice([0, -32768]))
    ozp = 0
    if out_t == I8:
        ozp = int(rng.integers(-128, 128))
    elif out_t == I16 and out_u:
        ozp = int(rng.choice([0, -32768]))
    lo, hi = -(1 << (BITS[in_t] - 1)), (1 << (BITS[in_t] - 1)) - 1
    if in_t == I48:
        lo, hi = -(1 << 44), 1 << 44
    x = rng.integers(lo, hi, shape, endpoint=True).astype(NP[in_t])
    x = np.asarray(x, NP[in_t])
    g = rescale_graph(shape, in_t, out_t, m, s, scale32=scale32, rounding_mode=mode,
                      per_channel=per_channel, input_unsigned=in_u, output_unsigned=out_u,
                      input_zp=izp, output_zp=ozp)
    return g, x


PAIRS = [(i, o) for i in (I8, I16, I32) for o in (I8, I16, I32)]


@pytest.mark.parametrize("in_t,out_t", PAIRS, ids=[f"{i.name}-{o.name}" for i, o in PAIRS])
def test_rescale_vs_reference(in_t, out_t):
    rng = np.random.default_rng(BITS[in_t] * 100 + BITS[out_t])
    for mode in (R.SINGLE_ROUND, R.DOUBLE_ROUND, R.INEXACT_ROUND):
        for _ in range(4):
            g, x = _random_case(rng, in_t, out_t, mode)
            assert _oracle(g, [x]) == "TOSA_VALID"


@pytest.mark.parametrize("out_t", [I8, I16, I32])
def test_rescale_int48_vs_reference(out_t):
    """int48 inputs need the reference model's command-line binary (the binding cannot pass
    them): two graphs per output type, SINGLE and INEXACT."""
    rng = np.random.default_rng(BITS[out_t])
    for mode in (R.SINGLE_ROUND, R.INEXACT_ROUND):
        g, x = _random_case(rng, I48, out_t, mode)
        assert _oracle(g, [x]) == "TOSA_VALID"


def test_rescale_unpredictable_vs_reference():
    x = np.array([1 << 29, 3], np.int32)
    assert _oracle(rescale_graph((2,), I32, I32, 1 << 30, 30), [x]) == "TOSA_UNPREDICTABLE"
    assert _oracle(rescale_graph((2,), I32, I8, 1 << 30, 1), [x]) == "TOSA_UNPREDICTABLE"
    # INEXACT with a huge result: fp32 -> int32 gives INT32_MIN in the reference model
    assert _oracle(rescale_graph((2,), I32, I16, 1 << 30, 20, rounding_mode=R.INEXACT_ROUND),
                   [x]) == "TOSA_VALID"


# ---- CAST ---------------------------------------------------------------------------------
CASTS = [(BOOL, I8), (BOOL, I16), (BOOL, I32), (I8, BOOL), (I16, BOOL), (I32, BOOL),
         (I8, I16), (I8, I32), (I16, I8), (I16, I32), (I32, I8), (I32, I16)]


@pytest.mark.parametrize("impl", IMPLS)
def test_cast_goldens(impl):
    def cast(x, in_t, out_t):
        b = GraphBuilder()
        t = b.input(x.shape, in_t, name="x")
        b.output(b.cast(t, out_t))
        return run1(b.build(), [x], impl)
    check(cast(np.array([300, 40000, -1, 0], np.int32), I32, I8),
          np.array([44, 64, -1, 0], np.int8))                                 # truncates
    check(cast(np.array([300, 40000, -1], np.int32), I32, I16),
          np.array([300, -25536, -1], np.int16))
    check(cast(np.array([-128, 0, 5], np.int8), I8, BOOL), np.array([True, False, True]))
    check(cast(np.array([True, False]), BOOL, I16), np.array([1, 0], np.int16))
    check(cast(np.array(-3, np.int8), I8, I32), np.array(-3, np.int32))       # rank 0


@pytest.mark.parametrize("in_t,out_t", CASTS, ids=[f"{i.name}-{o.name}" for i, o in CASTS])
def test_cast_vs_reference(in_t, out_t):
    rng = np.random.default_rng(BITS.get(in_t, 1) + 7 * BITS.get(out_t, 1))
    for rank in (0, 1, 3, 6):
        shape = tuple(int(d) for d in rng.integers(1, 4, rank))
        if in_t == BOOL:
            x = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            lo, hi = -(1 << (BITS[in_t] - 1)), (1 << (BITS[in_t] - 1)) - 1
            x = rng.integers(lo, hi, shape, endpoint=True).astype(NP[in_t])
            x.reshape(-1)[:1] = 0
        x = np.asarray(x)
        b = GraphBuilder()
        t = b.input(shape, in_t, name="x")
        b.output(b.cast(t, out_t))
        assert _oracle(b.build(), [x]) == "TOSA_VALID"


def test_cast_error_if():
    b = GraphBuilder()
    t = b.input((2,), I8, name="x")
    b.output(b.op(tosaint.Op.CAST, [t], (3,), I16))
    with pytest.raises(ErrorIfViolation, match="output shape"):
        tosaint.prepare(b.build())
    b = GraphBuilder()
    t = b.input((2,), I8, name="x")
    b.output(b.cast(t, I8))
    with pytest.raises(ErrorIfViolation, match="not supported"):
        tosaint.prepare(b.build())


def test_rescale_inexact_ties_vs_reference():
    """INEXACT_ROUND on exact halves (power-of-two scales) and on values that fp32 cannot hold
    exactly: the reference model's fp32 product and rint (ties to even) are copied bit for bit."""
    rng = np.random.default_rng(99)
    x = np.concatenate([np.arange(-40, 40), rng.integers(-2 ** 31, 2 ** 31, 200),
                        (2 ** 24 + np.arange(-5, 6)) * 3]).astype(np.int32)
    for m, s in ((1 << 30, 31), (1 << 30, 33), (3 << 29, 35), (2 ** 31 - 1, 40),
                 (1234567891, 45)):
        g = rescale_graph(x.shape, I32, I32, m, s, rounding_mode=R.INEXACT_ROUND)
        assert _oracle(g, [x]) == "TOSA_VALID"
    y = np.arange(-32768, 32768, 7, dtype=np.int16)
    g = rescale_graph(y.shape, I16, I8, 16385, 17, scale32=False,
                      rounding_mode=R.INEXACT_ROUND, output_zp=3)
    assert _oracle(g, [y]) == "TOSA_VALID"


# ---- the branch-free RESCALE fast path agrees with the general kernel ------------------------
@pytest.mark.parametrize("impl", ["numba", "spec"])
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_rescale_fast_path_matches_general_kernel(impl, mode):
    from tosaint.kernels import namespace
    k = namespace(impl)
    rng = np.random.default_rng(mode)
    cols = 7
    bits = 48 if mode == 0 else 32
    x = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(50, cols), dtype=np.int64)
    x[0, :] = [-(1 << (bits - 1)), (1 << (bits - 1)) - 1, 0, -1, 1, 2, -2]
    mult = rng.integers(0, 1 << (15 if mode == 0 else 31), size=cols).astype(np.int64)
    shift = rng.integers(2, 63, size=cols).astype(np.int64)
    shift[:3] = [30, 33, 40]
    rnd_pos = np.array([1 << (int(s) - 1) for s in shift], np.int64)
    rnd_neg = rnd_pos.copy()
    if mode == 2:
        rnd_pos += np.where(shift > 31, 1 << 30, 0)
        rnd_neg -= np.where(shift > 31, 1 << 30, 0)
    half = np.full(cols, 1 << 62, np.int64) if mode == 0 else rnd_pos * 0 + \
        np.array([1 << (int(s) - 1) for s in shift], np.int64)
    pow2 = np.zeros(cols, np.float32)
    for in_zp, out_zp, (qmin, qmax) in ((0, 0, (-32768, 32767)), (0, 5, (-128, 127))):
        fast = np.empty(x.shape, np.int16)
        bad = k.rescale_exact(x, in_zp, out_zp, mult, rnd_pos, rnd_neg, shift, half, qmin, qmax,
                              fast)
        ref = np.empty(x.shape, np.int32)
        n_s, n_z = k.rescale(x, 0, in_zp, out_zp, mult, shift, pow2, mode, qmin, qmax, ref)
        assert bad == n_s + n_z
        ok = np.ones(x.shape, bool)
        if bad:   # where no REQUIRE failed the values agree; elsewhere the general kernel rules
            ok = ref != 0
        assert np.array_equal(fast[ok], ref[ok].astype(np.int16))
    assert bad > 0, "the inputs must exercise the REQUIRE failures too"
    # and with every REQUIRE holding (large shifts), the two agree everywhere
    shift = np.full(cols, 40, np.int64)
    rnd_pos = np.full(cols, 1 << 39, np.int64)
    rnd_neg = rnd_pos - (1 << 30) if mode == 2 else rnd_pos.copy()
    if mode == 2:
        rnd_pos = rnd_pos + (1 << 30)
    half = np.full(cols, 1 << 62 if mode == 0 else 1 << 39, np.int64)
    fast = np.empty(x.shape, np.int16)
    assert k.rescale_exact(x, 0, 0, mult, rnd_pos, rnd_neg, shift, half, -32768, 32767,
                           fast) == 0
    ref = np.empty(x.shape, np.int32)
    assert k.rescale(x, 0, 0, 0, mult, shift, pow2, mode, -32768, 32767, ref) == (0, 0)
    assert np.array_equal(fast, ref.astype(np.int16))


# ---- the interval the fused RESCALE epilogue checks ------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0, 1, 2]), st.integers(0, (1 << 31) - 1), st.integers(2, 62),
       st.integers(-(1 << 31), (1 << 31) - 1), st.integers(0, 2 ** 32 - 1))
def test_no_require_range_is_exactly_where_no_require_fails(mode, mult, shift, out_zp, seed):
    """[lo, hi] from no_require_range holds exactly the inputs for which the branch-free
    RESCALE flags nothing (checked at the bounds, just outside them and at random)."""
    from tosaint.kernels import namespace
    from tosaint.ops.type_conversion import no_require_range
    k = namespace("numba")
    in_bits = 48 if mode == 0 else 32
    if mode == 0:
        mult &= (1 << 15) - 1
    base = 1 << (shift - 1)
    extra = (1 << 30) if mode == 2 and shift > 31 else 0
    rp, rn = np.array([base + extra]), np.array([base - extra])
    half = np.array([1 << 62 if mode == 0 else base])
    m, s = np.array([mult]), np.array([shift])
    lo, hi = (int(v[0]) for v in no_require_range(m, s, rp, rn, half, out_zp, in_bits))
    vmin, vmax = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    rng = np.random.default_rng(seed)
    cand = {vmin, vmax, 0, -1, 1, lo - 1, lo, lo + 1, hi - 1, hi, hi + 1}
    cand |= set(int(v) for v in rng.integers(vmin, vmax, 20))
    vals = np.array(sorted(v for v in cand if vmin <= v <= vmax), np.int64).reshape(-1, 1)
    out = np.empty(vals.shape, np.int32)
    for i, v in enumerate(vals[:, 0]):
        bad = k.rescale_exact(vals[i:i + 1], 0, out_zp, m, rp, rn, s, half, -(1 << 31),
                              (1 << 31) - 1, out[i:i + 1])
        assert (bad == 0) == (lo <= v <= hi), (int(v), lo, hi)
