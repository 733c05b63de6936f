"""run_tosa itself: inputs, outputs, capture, plans, errors, diagnostics plumbing."""
import numpy as np
import pytest

import tosaint
from tosaint import DType, Op
from tosaint.builder import GraphBuilder
from tosaint.errors import ErrorIfViolation, InputError, SchemaError, UnsupportedOp


def identity_graph(shape=(2, 3), dtype=DType.INT16):
    b = GraphBuilder()
    x = b.input(shape, dtype, name="x")
    y = b.identity(x, name="y")
    z = b.identity(y, name="z")
    b.output(z)
    return b.build()


def test_dict_and_list_inputs():
    g = identity_graph()
    x = np.arange(6, dtype=np.int16).reshape(2, 3)
    for inputs in ({"x": x}, [x]):
        out = tosaint.run_tosa(g, inputs)
        assert list(out) == ["z"]
        assert out["z"].shape == (2, 3) and out["z"].dtype == np.int16
        assert np.array_equal(out["z"], x)


def test_graph_from_bytes_and_path(tmp_path):
    g = identity_graph()
    x = np.ones((2, 3), np.int16)
    p = tmp_path / "g.tosa"
    tosaint.save(g, p)
    for src in (g.to_bytes(), p, str(p)):
        assert np.array_equal(tosaint.run_tosa(src, {"x": x})["z"], x)


@pytest.mark.parametrize("bad, why", [
    ({"x": np.ones((2, 3), np.int32)}, "dtype"),
    ({"x": np.ones((3, 2), np.int16)}, "shape"),
    ({}, "missing"),
    ({"x": np.ones((2, 3), np.int16), "q": np.ones(1)}, "not graph inputs"),
    ([np.ones((2, 3), np.int16)] * 2, "inputs given"),
    ({"x": [[1, 2, 3], [4, 5, 6]]}, "numpy array"),
])
def test_bad_inputs(bad, why):
    with pytest.raises(InputError, match=why):
        tosaint.run_tosa(identity_graph(), bad)


def test_int48_input_range():
    g = identity_graph((4,), DType.INT48)
    ok = np.array([-(1 << 47), 0, 1, (1 << 47) - 1], np.int64)
    assert np.array_equal(tosaint.run_tosa(g, [ok])["z"], ok)
    with pytest.raises(InputError, match="INT48 range"):
        tosaint.run_tosa(g, [np.array([1 << 47, 0, 0, 0], np.int64)])


def test_capture_returns_intermediates():
    g = identity_graph()
    x = np.ones((2, 3), np.int16)
    out = tosaint.run_tosa(g, {"x": x}, capture=True)
    assert set(out) == {"x", "y", "z"}
    assert out.outputs.keys() == {"z"}
    assert out.diagnostics == []


def test_plan_is_prepared_once():
    g = identity_graph()
    p1 = tosaint.prepare(g)
    tosaint.run_tosa(g, [np.ones((2, 3), np.int16)])
    assert tosaint.prepare(g) is p1
    assert tosaint.prepare(g, impl="spec") is not p1


def test_unsupported_op_and_signature():
    b = GraphBuilder()
    x = b.input((2,), DType.INT16, name="x")
    b.output(b.op(Op.SIGMOID, [x], (2,), DType.INT16))
    with pytest.raises(UnsupportedOp, match="SIGMOID"):
        tosaint.prepare(b.build())
    b = GraphBuilder()
    x = b.input((2,), DType.INT16, name="x")
    b.output(b.op(Op.IDENTITY, [x], (2,), DType.INT8))
    with pytest.raises(ErrorIfViolation, match=r"IDENTITY .*\(i16, i8\)"):
        tosaint.prepare(b.build())


def test_declared_output_shape_is_enforced():
    b = GraphBuilder()
    x = b.input((2, 3), DType.INT8, name="x")
    b.output(b.op(Op.IDENTITY, [x], (3, 2), DType.INT8, name="y"))
    with pytest.raises(ErrorIfViolation, match="IDENTITY y"):
        tosaint.run_tosa(b.build(), [np.ones((2, 3), np.int8)])


def test_dangling_input_is_a_schema_error():
    g = identity_graph()
    g.main.operators[0].inputs = ["nowhere"]
    with pytest.raises(SchemaError, match="nowhere"):
        tosaint.load(g.to_bytes())


# ---- int48 DEPTHWISE_CONV2D + RESCALE epilogue fusion ----------------------------------------
def _dw_rescale_graph(bias_value, shift=20, per_channel=True, double=False):
    rng = np.random.default_rng(3)
    b = GraphBuilder()
    x = b.input((1, 9, 7, 3), DType.INT16, name="x")
    w = b.const(rng.integers(-128, 128, (3, 3, 3, 2)), DType.INT8)     # C=3, M=2
    bias = b.const(np.full(6, bias_value), DType.INT48)
    y = b.depthwise_conv2d(x, w, bias, pad=1, name="acc48")
    m = rng.integers(1 << 13, 1 << 15, 6 if per_channel else 1)
    b.output(b.rescale(y, m, [shift] * len(m), DType.INT16, name="y"))
    return b.build()


@pytest.mark.parametrize("impl", ["numba", "spec"])
@pytest.mark.parametrize("bias_value, shift", [(0, 20), (12345, 14), (-(1 << 47) + 5, 40),
                                                ((1 << 47) - 5, 40)])
def test_depthwise_rescale_fusion_is_invisible(impl, bias_value, shift):
    g = _dw_rescale_graph(bias_value, shift)
    plan = tosaint.prepare(g, impl=impl)
    assert len(plan.main.fused) == len(plan.main.steps) - 1      # the two ops became one step
    rng = np.random.default_rng(4)
    for x in (rng.integers(-32768, 32768, (1, 9, 7, 3)).astype(np.int16),
              np.full((1, 9, 7, 3), -32768, np.int16), np.full((1, 9, 7, 3), 32767, np.int16)):
        fused = plan.run([x])                          # fused steps
        full = plan.run([x], capture=True)             # every step, the int48 tensor stored
        assert "acc48" in full and "acc48" not in fused
        assert fused["y"].dtype == np.int16
        assert np.array_equal(fused["y"], full["y"])
        assert [str(d) for d in fused.diagnostics] == [str(d) for d in full.diagnostics]
    if abs(bias_value) > (1 << 46):      # saturation: the fallback reports it like the op does
        assert fused.diagnostics and "CONV2D" in str(fused.diagnostics[0])


@pytest.mark.parametrize("impl", ["numba", "spec"])
def test_depthwise_rescale_fusion_keeps_rescale_require(impl):
    """apply_scale_16 result outside int32 is UNPREDICTABLE (the reference model reports it),
    fused or not."""
    g = _dw_rescale_graph(-(1 << 47) + 5, 20)
    x = np.zeros((1, 9, 7, 3), np.int16)
    for capture in (False, True):
        with pytest.raises(tosaint.UnpredictableError, match="RESCALE y"):
            tosaint.run_tosa(g, [x], impl=impl, capture=capture)


@pytest.mark.parametrize("kw, sx, dx, pads", [(3, 1, 1, (1, 1, 1, 1)), (5, 1, 1, (2, 2, 2, 2)),
                                              (7, 2, 1, (3, 3, 3, 2)), (4, 1, 2, (0, 1, 3, 2)),
                                              (6, 3, 2, (1, 0, 0, 4)), (1, 1, 1, (0, 0, 0, 0)),
                                              (3, 2, 3, (0, 0, 5, 5))])
def test_depthwise_grouped_taps_fused_and_unfused(kw, sx, dx, pads):
    """M == 1: the kernel takes three horizontal taps per pass where all three are inside the
    input and single taps near the edges; fused with RESCALE or not, it equals the spec twin."""
    rng = np.random.default_rng(kw * 100 + sx * 10 + dx)
    ow = 11
    iw = (ow - 1) * sx + (kw - 1) * dx + 1 - pads[2] - pads[3]
    ih = 6
    b = GraphBuilder()
    x = b.input((2, ih, iw, 20), DType.INT16, name="x")
    w = b.const(rng.integers(-128, 128, (3, kw, 20, 1)), DType.INT8)
    bias = b.const(rng.integers(-(1 << 40), 1 << 40, 20), DType.INT48)
    y = b.depthwise_conv2d(x, w, bias, pad=pads, stride=(1, sx), dilation=(1, dx), name="acc48")
    m = rng.integers(1 << 13, 1 << 15, 20)
    b.output(b.rescale(y, m, [34] * 20, DType.INT16, name="y"))
    g = b.build()
    xv = rng.integers(-32768, 32768, (2, ih, iw, 20)).astype(np.int16)
    want = tosaint.run_tosa(g, [xv], impl="spec", capture=True)
    for capture in (False, True):
        got = tosaint.run_tosa(g, [xv], capture=capture)
        assert np.array_equal(got["y"], want["y"])
        if capture:
            assert np.array_equal(got["acc48"], want["acc48"])
        assert not got.diagnostics


# ---- CONV2D (and a8w8 DEPTHWISE) + RESCALE fusion ------------------------------------------
def _conv_rescale_graph(kind, x_dt, stride, ksize, bias_value, shift, out_dt, rng):
    """conv -> RESCALE; int16 inputs give int48 sums (scale16), int8 inputs (zero points -7 and
    3) int32 sums (scale32)."""
    b = GraphBuilder()
    c = 5
    x = b.input((2, 9, 9, c), x_dt, name="x")
    zp = dict(input_zp=-7, weight_zp=3) if x_dt == DType.INT8 else {}
    acc_t = DType.INT32 if x_dt == DType.INT8 else DType.INT48
    if kind == "conv2d":
        oc = 6
        w = b.const(rng.integers(-128, 128, (oc, ksize, ksize, c)), DType.INT8)
    else:
        oc = c
        w = b.const(rng.integers(-128, 128, (ksize, ksize, c, 1)), DType.INT8)
    bias = b.const(np.full(oc, bias_value), acc_t)
    y = getattr(b, kind)(x, w, bias, pad=ksize // 2, stride=stride, name="acc", **zp)
    hi = 1 << 15 if acc_t == DType.INT48 else 1 << 31
    m = rng.integers(hi // 4, hi, oc)
    b.output(b.rescale(y, m, [shift] * oc, out_dt, output_zp=3 if out_dt == DType.INT8 else 0,
                       name="y"))
    return b.build()


_CONV_FUSION = [
    # kind, input type, stride, kernel, bias, shift, output type
    ("conv2d", DType.INT16, 1, 3, 12345, 30, DType.INT16),           # Winograd
    ("conv2d", DType.INT16, 2, 3, -999, 28, DType.INT16),            # im2col + GEMM
    ("conv2d", DType.INT16, 1, 1, 0, 24, DType.INT8),
    ("conv2d", DType.INT16, 1, 3, (1 << 47) - 5, 40, DType.INT16),   # int48 saturation
    ("conv2d", DType.INT16, 1, 3, -(1 << 47) + 5, 12, DType.INT16),  # + RESCALE REQUIRE
    ("conv2d", DType.INT8, 1, 3, 77, 38, DType.INT8),
    ("conv2d", DType.INT8, 2, 3, (1 << 31) - 9, 50, DType.INT8),     # int32 wrap
    ("conv2d", DType.INT8, 1, 1, -5, 20, DType.INT8),                # value-range REQUIRE
    ("depthwise_conv2d", DType.INT8, 1, 3, 1000, 36, DType.INT8),
    ("depthwise_conv2d", DType.INT8, 2, 3, -(1 << 31) + 9, 50, DType.INT16),
]


@pytest.mark.parametrize("impl", ["numba", "spec"])
@pytest.mark.parametrize("kind, x_dt, stride, ksize, bias_value, shift, out_dt", _CONV_FUSION)
def test_conv_rescale_fusion_is_invisible(impl, kind, x_dt, stride, ksize, bias_value, shift,
                                          out_dt):
    """Fused (no capture) and unfused (capture) runs give the same bits and diagnostics, also
    where an accumulator saturates or wraps or a RESCALE REQUIRE fails (the fused step then
    falls back to both ops)."""
    rng = np.random.default_rng(abs(bias_value) % 1000 + shift)
    g = _conv_rescale_graph(kind, x_dt, stride, ksize, bias_value, shift, out_dt, rng)
    plan = tosaint.prepare(g, impl=impl)
    assert len(plan.main.fused) == len(plan.main.steps) - 1
    lo, hi = (-128, 128) if x_dt == DType.INT8 else (-32768, 32768)
    np_t = np.int8 if x_dt == DType.INT8 else np.int16
    for x in (rng.integers(lo, hi, (2, 9, 9, 5)).astype(np_t),
              np.full((2, 9, 9, 5), lo, np_t), np.full((2, 9, 9, 5), hi - 1, np_t)):
        outcome = []
        for capture in (False, True):
            try:
                r = plan.run([x], capture=capture)
                outcome.append((r["y"], [str(d) for d in r.diagnostics]))
            except tosaint.UnpredictableError as e:
                outcome.append((None, str(e)))
        (a, da), (b, db) = outcome
        assert da == db
        if a is not None:
            assert a.dtype == b.dtype and np.array_equal(a, b)


# ---- preparation ------------------------------------------------------------------------------
def test_rescale_bounds_of_many_channels_equal_the_loop():
    """The per-channel interval of the fused RESCALE epilogue, computed in one NumPy pass for
    many channels with shifts up to 30 (as per-channel RESCALEs after convolutions have), is
    the interval the exact Python-integer loop finds for each channel alone: random
    multipliers (all positive, or also 0 and negative), shifts 0..30, rounding constants and
    output zero points at the int32 ends."""
    from tosaint.ops.type_conversion import no_require_range

    def one_by_one(mult, shift, rp, rn, half, out_zp, in_bits):
        lo, hi = [], []
        for i in range(len(shift)):
            a, b = no_require_range(mult[i:i + 1], shift[i:i + 1], rp[i:i + 1], rn[i:i + 1],
                                    half[i:i + 1], out_zp, in_bits)
            lo += a
            hi += b
        return lo, hi

    rng = np.random.default_rng(7)
    for trial in range(400):
        c = int(rng.integers(16, 80))
        s = rng.integers(0, 31, c).tolist()
        m = rng.integers(-(1 << 31) if trial % 5 == 0 else 0, 1 << 31, c)
        if trial % 2:
            m[rng.integers(0, c, 3)] = 0
        m = m.tolist()
        base = [1 << (x - 1) if x > 0 else 0 for x in s]
        rp = [b + int(rng.integers(0, 3)) * (trial % 3 == 0) for b in base]
        rn = [b - int(rng.integers(0, 3)) * (trial % 4 == 0) for b in base]
        half = [1 << 62] * c if trial % 2 else base
        out_zp = int(rng.choice([0, 5, -7, -(1 << 31), (1 << 31) - 1]))
        in_bits = int(rng.choice([8, 16, 32, 48]))
        args = (m, s, rp, rn, half, out_zp, in_bits)
        assert no_require_range(*args) == one_by_one(*args), trial


def test_rescale_bounds_of_many_channels_with_wide_shifts_equal_the_loop():
    """The same for shifts up to 62 (scale16 RESCALEs of int48 sums), where the bounds leave
    int64: channels whose int32 bounds lie far outside the input range take it exactly, the
    others go through the loop; both kinds occur (small shifts with large multipliers bind)."""
    from tosaint.ops.type_conversion import no_require_range

    rng = np.random.default_rng(11)
    near = far = 0
    for trial in range(300):
        c = int(rng.integers(16, 64))
        s = rng.integers(2 if trial % 3 else 31, 63, c)
        m = rng.integers(0 if trial % 4 else -(1 << 15), 1 << (15 if trial % 2 else 31), c)
        base = [1 << (int(x) - 1) for x in s]
        extra = [(1 << 30) if trial % 5 == 0 and x > 31 else 0 for x in s]
        rp = [b + e for b, e in zip(base, extra)]
        rn = [b - e for b, e in zip(base, extra)]
        half = [1 << 62] * c if trial % 2 else base
        out_zp = int(rng.choice([0, 3, -(1 << 31), (1 << 31) - 1]))
        in_bits = int(rng.choice([16, 32, 48]))
        args = (m.tolist(), s.tolist(), rp, rn, half, out_zp, in_bits)
        got = no_require_range(*args)
        want = [], []
        for i in range(c):
            a, b = no_require_range(*(v[i:i + 1] for v in args[:5]), out_zp, in_bits)
            want[0].extend(a)
            want[1].extend(b)
        assert got == want, trial
        vmax = (1 << (in_bits - 1)) - 1
        bound = [b < min(vmax, h - 1) for b, h in zip(want[1], half)]
        near += sum(bound)
        far += len(bound) - sum(bound)
    assert near > 100 and far > 100, (near, far)


# ---- memory release ---------------------------------------------------------------------------
def test_a_dropped_graph_and_its_plan_are_freed_without_the_cyclic_collector():
    """A plan refers to its graph and to itself (through blocks and nodes) weakly, so a
    one-shot graph, its cached plan and the file's bytes go as soon as the caller drops them:
    with the collector off, a loop over large graphs does not grow."""
    import gc
    import weakref
    from pathlib import Path

    import tosaint
    data = bytearray((Path(tosaint.__file__).parent / "examples" / "a16w8_conv.tosa")
                     .read_bytes())
    x = np.load(Path(tosaint.__file__).parent / "examples" / "a16w8_conv_input.npy")
    gc.disable()
    try:
        g = tosaint.load(data)
        res = tosaint.run_tosa(g, [x])
        plan = tosaint.prepare(g)
        refs = [weakref.ref(g), weakref.ref(plan), weakref.ref(plan.main)]
        assert plan.graph is g
        del plan
        assert all(r() is not None for r in refs)       # the graph holds its plan
        del g
        assert [r() for r in refs] == [None] * 3
        assert res[list(res)[0]].size                    # results stay the caller's
        # a plan the caller keeps works without its graph
        plan = tosaint.prepare(tosaint.load(data))
        assert plan.graph is None
        out = plan.run([x])
        assert np.array_equal(out[list(out)[0]], res[list(res)[0]])
    finally:
        gc.enable()
