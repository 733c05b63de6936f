"""Data layout (CONCAT, PAD, RESHAPE, REVERSE, SLICE, TILE, TRANSPOSE) and GATHER/SCATTER:
goldens, the official reference model as oracle (ranks 0..6), spec twins versus the fast side,
and the ERROR_IF / REQUIRE cases."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tosaint
from tosaint import DType, Op
from tosaint.builder import GraphBuilder
from tosaint.errors import ErrorIfViolation, LevelLimitError, UnpredictableError
from tosaint.kernels import namespace

from .helpers import check

IMPLS = ["numba", "spec"]
TYPES = [DType.BOOL, DType.INT8, DType.INT16, DType.INT32]
NP = {DType.BOOL: np.bool_, DType.INT8: np.int8, DType.INT16: np.int16, DType.INT32: np.int32}


def rand(shape, dtype, rng):
    if dtype == DType.BOOL:
        return rng.integers(0, 2, shape).astype(np.bool_)
    info = np.iinfo(NP[dtype])
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(NP[dtype])


def one_op_graph(dtype, shape, make):
    b = GraphBuilder()
    x = b.input(shape, dtype, name="x")
    b.output(make(b, x))
    return b.build()


def run(g, inputs, impl):
    return tosaint.run_tosa(g, inputs, impl=impl)


# ---- goldens (hand-checkable) -------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_goldens(impl):
    x = np.array([[1, 2, 3], [4, 5, 6]], np.int16)
    cases = [
        (lambda b, t: b.pad(t, [(1, 0), (0, 2)], pad_const=-7),
         [[-7, -7, -7, -7, -7], [1, 2, 3, -7, -7], [4, 5, 6, -7, -7]]),
        (lambda b, t: b.reshape(t, (3, 2)), [[1, 2], [3, 4], [5, 6]]),
        (lambda b, t: b.op(Op.REVERSE, [t], (2, 3), DType.INT16, dict(axis=1)),
         [[3, 2, 1], [6, 5, 4]]),
        (lambda b, t: b.slice(t, [1, 1], [1, 2]), [[5, 6]]),
        (lambda b, t: b.tile(t, [1, 2]), [[1, 2, 3, 1, 2, 3], [4, 5, 6, 4, 5, 6]]),
        (lambda b, t: b.transpose(t, [1, 0]), [[1, 4], [2, 5], [3, 6]]),
        (lambda b, t: b.concat([t, t], 0), [[1, 2, 3], [4, 5, 6], [1, 2, 3], [4, 5, 6]]),
    ]
    for make, want in cases:
        g = one_op_graph(DType.INT16, (2, 3), make)
        check(run(g, [x], impl)[g.outputs[0]], np.array(want, np.int16))


@pytest.mark.parametrize("impl", IMPLS)
def test_rank0_goldens(impl):
    # the spec allows rank 0 (the reference model only instantiates PAD/TILE for ranks 1..6)
    x = np.array(-3, np.int8)
    for make in (lambda b, t: b.pad(t, np.zeros((0, 2), np.int64)),
                 lambda b, t: b.tile(t, []), lambda b, t: b.reshape(t, (1, 1)),
                 lambda b, t: b.transpose(t, []), lambda b, t: b.slice(t, [], [])):
        g = one_op_graph(DType.INT8, (), make)
        out = run(g, [x], impl)[g.outputs[0]]
        assert out.dtype == np.int8 and out.reshape(-1).tolist() == [-3]
        assert out.shape == tuple(g.tensors[g.outputs[0]].shape)


@pytest.mark.parametrize("impl", IMPLS)
def test_gather_scatter_goldens(impl):
    b = GraphBuilder()
    v = b.input((1, 4, 2), DType.INT8, name="v")
    i = b.input((1, 3), DType.INT32, name="i")
    b.output(b.op(Op.GATHER, [v, i], (1, 3, 2), DType.INT8, name="g"))
    values = np.arange(8, dtype=np.int8).reshape(1, 4, 2)
    out = run(b.build(), {"v": values, "i": np.array([[3, 0, 3]], np.int32)}, impl)["g"]
    check(out, np.array([[[6, 7], [0, 1], [6, 7]]], np.int8))

    b = GraphBuilder()
    v = b.input((1, 4, 1), DType.INT16, name="v")
    i = b.input((1, 2), DType.INT32, name="i")
    x = b.input((1, 2, 1), DType.INT16, name="x")
    b.output(b.op(Op.SCATTER, [v, i, x], (1, 4, 1), DType.INT16, name="s"))
    g = b.build()
    out = run(g, {"v": np.zeros((1, 4, 1), np.int16), "i": np.array([[2, 0]], np.int32),
                  "x": np.array([[[-5], [9]]], np.int16)}, impl)["s"]
    check(out, np.array([[[9], [0], [-5], [0]]], np.int16))
    # REQUIREs: unique indices, indices in range (the reference model: UNPREDICTABLE)
    for bad in ([[1, 1]], [[4, 0]], [[-1, 0]]):
        with pytest.raises(UnpredictableError, match="indices"):
            run(g, {"v": np.zeros((1, 4, 1), np.int16), "i": np.array(bad, np.int32),
                    "x": np.zeros((1, 2, 1), np.int16)}, impl)


# ---- against the reference model ----------------------------------------------------------
def _shape(rank, rng, hi=4):
    return tuple(int(d) for d in rng.integers(1, hi, rank))


def _layout_cases():
    """(id, dtype, shape, make) for every op and ranks 0..6."""
    rng = np.random.default_rng(7)
    cases = []
    for rank in range(7):
        for dt in TYPES:
            shape = _shape(rank, rng)
            pads = [(int(a), int(c)) for a, c in rng.integers(0, 3, (rank, 2))]
            cases.append((f"pad-r{rank}-{dt.name}", dt, shape,
                          lambda b, t, p=pads: b.pad(t, p, pad_const=1)))
            new = tuple(reversed(shape)) + (1,) if rank < 6 else tuple(reversed(shape))
            cases.append((f"reshape-r{rank}-{dt.name}", dt, shape,
                          lambda b, t, s=new: b.reshape(t, s)))
            if rank:
                ax = int(rng.integers(0, rank))
                cases.append((f"reverse-r{rank}-{dt.name}", dt, shape,
                              lambda b, t, a=ax, s=shape, d=dt: b.op(Op.REVERSE, [t], s, d,
                                                                      dict(axis=a))))
                start = [int(rng.integers(0, d)) for d in shape]
                size = [int(rng.integers(1, d - s0 + 1)) for d, s0 in zip(shape, start)]
                cases.append((f"slice-r{rank}-{dt.name}", dt, shape,
                              lambda b, t, s0=start, n=size: b.slice(t, s0, n)))
                perm = [int(p) for p in rng.permutation(rank)]
                cases.append((f"transpose-r{rank}-{dt.name}", dt, shape,
                              lambda b, t, p=perm: b.transpose(t, p)))
                cases.append((f"concat-r{rank}-{dt.name}", dt, shape,
                              lambda b, t, a=ax: b.concat([t, t, t], a)))
            mult = [int(m) for m in rng.integers(1, 3, rank)]
            cases.append((f"tile-r{rank}-{dt.name}", dt, shape,
                          lambda b, t, m=mult: b.tile(t, m)))
    return cases


LAYOUT_CASES = _layout_cases()


@pytest.mark.oracle
@pytest.mark.parametrize("impl", IMPLS)
def test_layout_against_reference_model(impl):
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    rng = np.random.default_rng(11)
    failures = []
    for name, dt, shape, make in LAYOUT_CASES:
        if name.startswith(("pad-r0", "tile-r0")):
            continue  # the reference model rejects rank-0 PAD/TILE as an invalid graph
        g = one_op_graph(dt, shape, make)
        x = rand(shape, dt, rng)
        status, want = reference_run(g, [x])
        assert status == "TOSA_VALID", name
        got = run(g, [x], impl)[g.outputs[0]]
        w = want[g.outputs[0]].astype(got.dtype) if dt == DType.BOOL else want[g.outputs[0]]
        if not (got.shape == w.shape and got.dtype == w.dtype and np.array_equal(got, w)):
            failures.append(name)
    assert not failures, failures


@pytest.mark.oracle
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dt", [DType.INT8, DType.INT16, DType.INT32])
def test_gather_scatter_against_reference_model(impl, dt):
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    rng = np.random.default_rng(int(dt))
    N, K, C, W = 2, 7, 3, 5
    b = GraphBuilder()
    v = b.input((N, K, C), dt, name="v")
    i = b.input((N, W), DType.INT32, name="i")
    b.output(b.op(Op.GATHER, [v, i], (N, W, C), dt, name="g"))
    g = b.build()
    inputs = [rand((N, K, C), dt, rng), rng.integers(0, K, (N, W)).astype(np.int32)]
    status, want = reference_run(g, inputs)
    assert status == "TOSA_VALID"
    check(run(g, inputs, impl)["g"], want["g"])

    b = GraphBuilder()
    v = b.input((N, K, C), dt, name="v")
    i = b.input((N, W), DType.INT32, name="i")
    x = b.input((N, W, C), dt, name="x")
    b.output(b.op(Op.SCATTER, [v, i, x], (N, K, C), dt, name="s"))
    g = b.build()
    idx = np.stack([rng.permutation(K)[:W] for _ in range(N)]).astype(np.int32)
    inputs = [rand((N, K, C), dt, rng), idx, rand((N, W, C), dt, rng)]
    status, want = reference_run(g, inputs)
    assert status == "TOSA_VALID"
    check(run(g, inputs, impl)["s"], want["s"])
    # duplicate index: the reference model says UNPREDICTABLE, tosaint raises
    wrong = idx.copy()
    wrong[0, 1] = wrong[0, 0]
    assert reference_run(g, [inputs[0], wrong, inputs[2]])[0] == "TOSA_UNPREDICTABLE"
    with pytest.raises(UnpredictableError, match="1 indices write an output position"):
        run(g, [inputs[0], wrong, inputs[2]], impl)
    # an index outside 0..K-1 makes the reference model abort the whole process (SIGABRT in
    # tosa-tools 2026.8.0, GATHER and SCATTER alike), so it is not asked; tosaint raises
    for bad in (K, -1):
        wrong = idx.copy()
        wrong[1, 0] = bad
        with pytest.raises(UnpredictableError, match="1 indices outside 0..K-1 = 0..6"):
            run(g, [inputs[0], wrong, inputs[2]], impl)


# ---- spec twins versus the fast side --------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.data())
def test_twins_agree(data):
    fast, spec = namespace("numba"), namespace("spec")
    rank = data.draw(st.integers(0, 5))
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    x = np.random.default_rng(data.draw(st.integers(0, 999))).integers(
        -100, 100, shape).astype(np.int16)
    pads = np.array(data.draw(st.lists(st.integers(0, 2), min_size=2 * rank,
                                       max_size=2 * rank)), np.int64)
    check(fast.pad(x, pads, np.int16(3)), spec.pad(x, pads, np.int16(3)))
    mult = data.draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    check(fast.tile(x, mult), spec.tile(x, mult))
    new = (x.size,)
    check(fast.reshape(x, new), spec.reshape(x, new))
    if rank:
        axis = data.draw(st.integers(0, rank - 1))
        check(fast.reverse(x, axis), spec.reverse(x, axis))
        check(fast.concat((x, x), axis), spec.concat((x, x), axis))
        perms = data.draw(st.permutations(range(rank)))
        check(fast.transpose(x, perms), spec.transpose(x, perms))
        start = [data.draw(st.integers(0, d - 1)) for d in shape]
        size = [data.draw(st.integers(1, d - s)) for d, s in zip(shape, start)]
        check(fast.slice_(x, start, size), spec.slice_(x, start, size))


# ---- ERROR_IF ------------------------------------------------------------------------------
def _bad(make, shape=(2, 3), dtype=DType.INT8):
    b = GraphBuilder()
    x = b.input(shape, dtype, name="x")
    b.output(make(b, x))
    return b.build()


@pytest.mark.parametrize("make, match", [
    (lambda b, x: b.op(Op.PAD, [x, b.const_shape([0, 0, -1, 0]), b.const([0], DType.INT8)],
                       (2, 2), DType.INT8), "padding of axis 1 is \\(-1, 0\\)"),
    (lambda b, x: b.op(Op.PAD, [x, b.const_shape([0, 0, 1, 0]), b.const([0], DType.INT8)],
                       (2, 3), DType.INT8), "output dimension 1 is 3 != .* = 4"),
    (lambda b, x: b.op(Op.RESHAPE, [x, b.const_shape([5])], (5,), DType.INT8),
     "6 elements .* != output 5"),
    (lambda b, x: b.op(Op.REVERSE, [x], (2, 3), DType.INT8, dict(axis=2)), "axis 2 outside"),
    (lambda b, x: b.op(Op.SLICE, [x, b.const_shape([1, 2]), b.const_shape([1, 2])], (1, 2),
                       DType.INT8), "start\\[1\\] \\+ size\\[1\\] = 4 > input dimension 3"),
    (lambda b, x: b.op(Op.SLICE, [x, b.const_shape([0, 0]), b.const_shape([0, 3])], (0, 3),
                       DType.INT8), "size\\[0\\] = 0 <= 0"),
    (lambda b, x: b.op(Op.TILE, [x, b.const_shape([2, 2])], (4, 5), DType.INT8),
     "multiples\\[1\\] = 3 \\* 2 != output dimension 5"),
    (lambda b, x: b.op(Op.TRANSPOSE, [x], (3, 2), DType.INT8, dict(perms=(1, 1))),
     "used twice"),
    (lambda b, x: b.op(Op.TRANSPOSE, [x], (3, 2), DType.INT8, dict(perms=(1, 2))),
     "perms value 2 outside"),
    (lambda b, x: b.op(Op.CONCAT, [x, b.const(np.zeros((2, 2)), DType.INT8)], (4, 3),
                       DType.INT8, dict(axis=0)), "dimension 1 is 2 != 3"),
    (lambda b, x: b.op(Op.CONCAT, [x, x], (4, 3), DType.INT8, dict(axis=-1)),
     "axis -1 outside"),
    (lambda b, x: b.op(Op.CONCAT, [x, x], (5, 3), DType.INT8, dict(axis=0)),
     "along axis 0 is 4 != output size 5"),
    (lambda b, x: b.op(Op.PAD, [x, b.const_shape([0, 0, 0, 0]), b.const([0], DType.INT16)],
                       (2, 3), DType.INT8), "type signature"),
])
def test_error_if(make, match):
    with pytest.raises(ErrorIfViolation, match=match):
        tosaint.prepare(_bad(make))


def test_shape_operands_must_be_constant():
    b = GraphBuilder()
    x = b.input((2, 3), DType.INT8, name="x")
    s = b.input((2,), DType.SHAPE, name="s")
    b.output(b.op(Op.RESHAPE, [x, s], (3, 2), DType.INT8))
    with pytest.raises(ErrorIfViolation, match="compile-time constant"):
        tosaint.prepare(b.build())


def test_rank_7_is_rejected_and_level_8k_limits_lists():
    with pytest.raises(ErrorIfViolation, match="rank of 'x' is 7"):
        tosaint.prepare(_bad(lambda b, x: b.op(Op.REVERSE, [x], (1,) * 7, DType.INT8,
                                               dict(axis=0)), shape=(1,) * 7))
    b = GraphBuilder()
    x = b.input((1,), DType.INT8, name="x")
    b.output(b.concat([x] * 65, 0))
    g = b.build()
    assert tosaint.run_tosa(g, [np.ones(1, np.int8)])[g.outputs[0]].shape == (65,)
    with pytest.raises(LevelLimitError, match="65 inputs > MAX_TENSOR_LIST_SIZE 64"):
        tosaint.run_tosa(g, [np.ones(1, np.int8)], level="8K")


def test_rank0_concat_is_rejected():
    # the spec's shape[axis] does not exist at rank 0; the reference model rejects the graph too
    with pytest.raises(ErrorIfViolation, match="rank-0 inputs have no axis"):
        tosaint.prepare(_bad(lambda b, x: b.op(Op.CONCAT, [x, x], (), DType.INT8, dict(axis=0)),
                             shape=()))


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_gather_scatter_twins_agree(data):
    fast, spec = namespace("numba"), namespace("spec")
    n, k, c, w = (data.draw(st.integers(1, 4)) for _ in range(4))
    rng = np.random.default_rng(data.draw(st.integers(0, 999)))
    values = rng.integers(-1000, 1000, (n, k, c)).astype(np.int16)
    idx = rng.integers(-1, k + 1, (n, w)).astype(np.int32)      # some out of range
    got, want = fast.gather(values, idx), spec.gather(values, idx)
    check(got[0], want[0])
    assert got[1] == want[1] == int(((idx < 0) | (idx >= k)).sum())
    x = rng.integers(-1000, 1000, (n, w, c)).astype(np.int16)
    got, want = fast.scatter(values, idx, x), spec.scatter(values, idx, x)
    check(got[0], want[0])
    assert got[1:] == want[1:]
