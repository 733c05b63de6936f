"""Hostile graphs and hostile use: dangling tensors, resource bombs, self-containing and deeply
nested control flow, aliasing between what a caller passes in / gets back and the graph, and
per-call state under threads.  Every bomb must end fast with a clear TosaError."""
import sys
import threading
import time

import numpy as np
import pytest

import tosaint
from tosaint import DType, Op, Region
from tosaint.builder import GraphBuilder
from tosaint.errors import ResourceLimitError, SchemaError, UnpredictableError
from tosaint.graph import Graph
from tosaint.levels import DEFAULT_MAX_MEMORY

from .test_control_flow import nested_graph, sub_block


def _fast(fn, seconds=5):
    """``fn()`` ends within ``seconds`` of CPU time (CPU, not wall-clock: a loaded test
    machine must not make it flaky)."""
    t0 = time.process_time()
    fn()
    assert time.process_time() - t0 < seconds


# ---- tensors nothing produces (#13.1) ------------------------------------------------------
def test_output_nothing_produces_is_refused_at_prepare():
    b = GraphBuilder()
    x = b.input((2,), DType.INT8, name="x")
    b.output(b.identity(x, name="y"))
    g = b.build()
    g.main.tensors["result-0"] = tosaint.Tensor("result-0", (2,), DType.INT8)
    g.main.outputs.append("result-0")
    with pytest.raises(SchemaError, match="output tensor 'result-0' is not produced"):
        tosaint.prepare(g)
    with pytest.raises(SchemaError, match="'result-0' is not produced"):
        tosaint.validate(g)


def test_operator_input_nothing_produces_is_refused_at_prepare():
    b = GraphBuilder()
    x = b.input((2,), DType.INT8, name="x")
    b.output(b.identity(x, name="y"))
    g = b.build()
    g.main.tensors["ghost"] = tosaint.Tensor("ghost", (2,), DType.INT8)
    g.main.operators[0].inputs[0] = "ghost"
    with pytest.raises(SchemaError, match=r"IDENTITY y: input tensor 'ghost' is not produced"):
        tosaint.prepare(g)


# ---- resource bombs (#13.2) ----------------------------------------------------------------
def test_tile_bomb():
    b = GraphBuilder()
    x = b.input((1, 1, 1, 1), DType.INT16, name="x")
    b.output(b.tile(x, [1, 32768, 65536, 1], name="big"))
    g = b.build()

    def go():
        with pytest.raises(ResourceLimitError, match=r"TILE big: .*'big' i16\[1, 32768, 65536, "
                                                     r"1\] alone takes 4294967296 bytes"):
            tosaint.run_tosa(g, np.zeros((1, 1, 1, 1), np.int16))
    _fast(go)


def test_pad_bomb():
    b = GraphBuilder()
    x = b.input((1, 1, 1, 1), DType.INT8, name="x")
    b.output(b.pad(x, [0, 0, 20000, 20000, 20000, 20000, 0, 0], name="big"))
    g = b.build()
    assert 40001 * 40001 > DEFAULT_MAX_MEMORY
    _fast(lambda: pytest.raises(ResourceLimitError, tosaint.prepare, g))
    # the budget is settable: a small one refuses a small PAD too, a large one admits it
    b = GraphBuilder()
    x = b.input((1, 4, 4, 1), DType.INT8, name="x")
    b.output(b.pad(x, [0, 0, 8, 8, 8, 8, 0, 0], name="p"))
    g = b.build()
    with pytest.raises(ResourceLimitError, match="PAD p: .*memory budget of 100 bytes"):
        tosaint.run_tosa(g, np.zeros((1, 4, 4, 1), np.int8), max_memory=100)
    out = tosaint.run_tosa(g, np.ones((1, 4, 4, 1), np.int8), max_memory=1000)["p"]
    assert out.shape == (1, 20, 20, 1) and out.sum() == 16


def test_conv_pad_bomb_counts_the_kernel_scratch():
    b = GraphBuilder()
    x = b.input((1, 1, 1, 1), DType.INT16, name="x")
    w = b.const(np.ones((1, 1, 1, 1)), DType.INT8)
    bias = b.const(np.zeros(1), DType.INT48)
    b.output(b.conv2d(x, w, bias, pad=8191, name="acc"))
    g = b.build()
    _fast(lambda: pytest.raises(ResourceLimitError, tosaint.validate, g))
    with pytest.raises(ResourceLimitError, match="CONV2D acc: "):
        tosaint.prepare(g)
    # a modest pad: the int64 accumulators count beyond the output itself
    b = GraphBuilder()
    x = b.input((1, 8, 8, 1), DType.INT16, name="x")
    b.output(b.conv2d(x, b.const(np.ones((1, 1, 1, 1)), DType.INT8),
                      b.const(np.zeros(1), DType.INT48), pad=4, name="acc"))
    g = b.build()
    out_bytes = 16 * 16 * 8
    with pytest.raises(ResourceLimitError):
        tosaint.prepare(g, max_memory=out_bytes + 10)
    tosaint.prepare(g, max_memory=out_bytes * 4)


def forever_graph():
    """WHILE_LOOP whose condition is always true (its body passes the value on)."""
    b = GraphBuilder()
    x = b.input((2,), DType.INT8, name="x")
    (y,) = b.op_multi(Op.WHILE_LOOP, [x], [((2,), DType.INT8)],
                      dict(cond_graph="COND", body_graph="BODY"), names=["y"])
    b.output(y)
    cond = sub_block("COND", [("cx", (2,), DType.INT8)],
                     lambda bb, cx: bb.const(np.array(True), DType.BOOL))
    body = sub_block("BODY", [("bx", (2,), DType.INT8)],
                     lambda bb, bx: bb.op(Op.REVERSE, [bx], (2,), DType.INT8, dict(axis=0)))
    return Graph(regions=[Region("main", [b.block]), Region("COND", [cond]),
                          Region("BODY", [body])], version=tosaint.Version(1, 0, 0))


def test_while_loop_forever_stops_at_the_default_limit():
    g = forever_graph()
    x = np.array([1, 2], np.int8)

    def go():
        with pytest.raises(ResourceLimitError, match="WHILE_LOOP y: still looping after "
                                                     "max_while_iterations = 100000"):
            tosaint.run_tosa(g, x)
    _fast(go)
    with pytest.raises(ResourceLimitError, match="max_while_iterations = 7 iterations"):
        tosaint.run_tosa(g, x, max_while_iterations=7)


def test_cond_if_branch_containing_itself():
    b = GraphBuilder()
    c = b.input((1,), DType.BOOL, name="c")
    x = b.input((2,), DType.INT8, name="x")
    b.output(*b.op_multi(Op.COND_IF, [c, c, x], [((2,), DType.INT8)],
                         dict(then_graph="LOOP", else_graph="LOOP"), names=["y"]))
    loop = sub_block("LOOP", [("lc", (1,), DType.BOOL), ("lx", (2,), DType.INT8)],
                     lambda bb, lc, lx: bb.op_multi(Op.COND_IF, [lc, lc, lx],
                                                    [((2,), DType.INT8)],
                                                    dict(then_graph="LOOP",
                                                         else_graph="LOOP")))
    g = Graph(regions=[Region("main", [b.block]), Region("LOOP", [loop])],
              version=tosaint.Version(1, 0, 0))
    _fast(lambda: pytest.raises(SchemaError, tosaint.prepare, g))
    with pytest.raises(SchemaError, match="block 'LOOP' contains itself"):
        tosaint.validate(g)


def test_deep_cond_if_nesting_is_a_clear_error():
    x = np.array([1, 2], np.int8)
    c = np.array([True])
    g = nested_graph(300)
    _fast(lambda: pytest.raises(ResourceLimitError, tosaint.prepare, g))
    with pytest.raises(ResourceLimitError, match="control flow nested deeper than 64"):
        tosaint.run_tosa(g, {"c": c, "x": x})
    # within the limit it runs
    out = tosaint.run_tosa(nested_graph(60), {"c": c, "x": x})["y"]
    assert np.array_equal(out, x[::-1])


# ---- no aliasing (#13.4) ---------------------------------------------------------------------
def alias_graph():
    b = GraphBuilder()
    x = b.input((2, 3), DType.INT8, name="x")
    c = b.const(np.arange(6).reshape(2, 3), DType.INT8, name="c")
    b.output(b.identity(x, name="id_x"), b.reshape(x, [3, 2], name="rs_x"),
             b.identity(c, name="id_c"), b.reshape(c, [6], name="rs_c"),
             b.op(Op.REVERSE, [x], (2, 3), DType.INT8, dict(axis=0), name="rev"))
    return b.build()


@pytest.mark.parametrize("impl", ["numba", "spec"])
@pytest.mark.parametrize("capture", [False, True])
def test_returned_arrays_never_alias_inputs_or_constants_writeably(impl, capture):
    g = alias_graph()
    const = g.main.tensors["c"].data
    const_before = const.copy()
    x = np.arange(6, dtype=np.int8).reshape(2, 3)
    x_before = x.copy()
    out = tosaint.run_tosa(g, {"x": x}, impl=impl, capture=capture)
    assert np.array_equal(x, x_before) and np.array_equal(const, const_before)
    for name, a in out.items():
        for owner in (x, const):
            if np.shares_memory(a, owner):
                assert not a.flags.writeable, name
        if a.flags.writeable:
            a[...] = 99                   # the caller may write into what it owns
    assert np.array_equal(x, x_before) and np.array_equal(const, const_before)
    again = tosaint.run_tosa(g, {"x": x}, impl=impl)
    assert np.array_equal(again["id_c"], const_before)
    assert np.array_equal(again["rev"], x_before[::-1])
    assert again["rev"].flags.writeable    # a freshly computed output is the caller's own
    assert np.array_equal(tosaint.load(g.to_bytes()).main.tensors["c"].data, const_before)


def test_running_never_writes_into_inputs():
    b = GraphBuilder()
    x = b.input((1, 4, 4, 2), DType.INT16, name="x")
    w = b.const(np.ones((2, 3, 3, 2)), DType.INT8)
    acc = b.conv2d(x, w, b.const(np.zeros(2), DType.INT48), pad=1)
    y = b.rescale(acc, [1 << 30], [31], DType.INT16)
    b.output(y, b.add(b.cast(x, DType.INT32), b.cast(x, DType.INT32)))
    g = b.build()
    x = np.random.default_rng(0).integers(-500, 500, (1, 4, 4, 2)).astype(np.int16)
    before = x.copy()
    for impl in ("numba", "spec"):
        tosaint.run_tosa(g, x, impl=impl)
        tosaint.run_tosa(g, x, impl=impl, capture=True)
    assert np.array_equal(x, before)


# ---- per-call state under threads (#13.5) -----------------------------------------------------
def diag_graph():
    """A 1x1 CONV2D (i8, int32 accumulator) whose bias is INT32_MAX: every positive input
    value wraps the accumulator (the reference model wraps; tosaint returns the same values
    and one diagnostic whose count is the number of positive inputs)."""
    b = GraphBuilder()
    x = b.input((1, 1, 8, 1), DType.INT8, name="x")
    w = b.const(np.ones((1, 1, 1, 1)), DType.INT8)
    bias = b.const(np.array([(1 << 31) - 1]), DType.INT32)
    b.output(b.conv2d(x, w, bias, name="y"))
    return b.build()


def _threads_keep_their_own_diagnostics_and_mode(runs):
    g = diag_graph()
    plan = tosaint.prepare(g)
    errors = []

    def worker(tid):
        try:
            for i in range(runs):
                bad = (tid + i) % 5
                x = np.zeros((1, 1, 8, 1), np.int8)
                x[0, 0, :bad] = 1
                if tid == 3 and i % 2:
                    if bad:
                        with pytest.raises(UnpredictableError, match="wraps"):
                            plan.run({"x": x}, on_unpredictable="raise")
                    continue
                res = plan.run({"x": x}, capture=(i % 3 == 0))
                got = [d.count for d in res.diagnostics]
                assert got == ([bad] if bad else []), (tid, i, got)
        except BaseException as e:          # pragma: no cover (reported below)
            errors.append((tid, e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)          # switch threads often: interleave the runs
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]


def test_threads_keep_their_own_diagnostics_and_mode():
    _threads_keep_their_own_diagnostics_and_mode(300)


@pytest.mark.slow
def test_threads_keep_their_own_diagnostics_and_mode_3000_runs():
    _threads_keep_their_own_diagnostics_and_mode(3000)


def test_captured_partial_values_survive_an_error():
    b = GraphBuilder()
    x = b.input((2,), DType.INT32, name="x")
    s = b.add(x, x, name="s")
    b.output(b.add(s, s, name="t"))
    g = b.build()
    big = np.array([1, 1 << 29], np.int32)
    with pytest.raises(UnpredictableError) as e:
        tosaint.run_tosa(g, big, capture=True)
    cap = e.value.captured
    assert list(cap) == ["x", "s"] and np.array_equal(cap["s"], big * 2)


def test_trace_sees_every_operator_in_order_including_sub_blocks():
    g = nested_graph(3)
    seen = []
    out = tosaint.run_tosa(g, {"c": np.array([True]), "x": np.array([1, 2], np.int8)},
                           trace=lambda node, names, arrays: seen.append((node.op.name,
                                                                          tuple(names))))
    assert [op for op, _ in seen] == ["REVERSE", "COND_IF", "COND_IF", "COND_IF"]
    assert seen[-1][1] == ("y",) and np.array_equal(out["y"], [2, 1])


def test_kernel_output_mismatch_is_an_internal_error():
    b = GraphBuilder()
    x = b.input((2, 3), DType.INT8, name="x")
    b.output(b.op(Op.REVERSE, [x], (2, 3), DType.INT8, dict(axis=0), name="y"))
    plan = tosaint.prepare(b.build())
    step = plan.main.steps[0]
    step.fn = lambda a: a.reshape(3, 2)            # a kernel computing the wrong shape
    plan.main.fused = plan.main.steps
    with pytest.raises(tosaint.InternalError, match=r"REVERSE y: the kernel computed output "
                                                    r"\[3, 2\] int8 .*\(a tosaint bug"):
        plan.run(np.zeros((2, 3), np.int8))
    assert not issubclass(tosaint.InternalError, tosaint.ErrorIfViolation)


def test_validate_does_no_preparation(monkeypatch):
    """tosaint.validate checks everything but prepares nothing: no weight layout, no lookup
    table, no Numba import."""
    from tosaint import kernels

    def forbidden(*args):
        raise AssertionError("validate prepared something")
    spec = kernels.namespace("spec")
    for name in ("conv_weights", "depthwise_weights", "table16_lut"):
        monkeypatch.setattr(spec, name, forbidden)
    b = GraphBuilder()
    x = b.input((1, 4, 4, 2), DType.INT16, name="x")
    acc = b.conv2d(x, b.const(np.ones((2, 3, 3, 2)), DType.INT8),
                   b.const(np.zeros(2), DType.INT48), pad=1)
    y = b.rescale(acc, [1 << 30], [31], DType.INT16)
    b.output(b.table(y, np.arange(513) * 16 - 4096, name="t"))
    g = b.build()
    tosaint.validate(g)
    with pytest.raises(AssertionError, match="validate prepared something"):
        tosaint.prepare(g, impl="spec")


def test_validate_imports_no_numba():
    import subprocess
    import sys
    code = ("import sys, numpy as np, tosaint\n"
            "from tosaint.builder import GraphBuilder\n"
            "b = GraphBuilder(); x = b.input((4,), tosaint.DType.INT32, name='x')\n"
            "b.output(b.add(x, x)); tosaint.validate(b.build())\n"
            "assert 'numba' not in sys.modules, 'validate imported numba'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
