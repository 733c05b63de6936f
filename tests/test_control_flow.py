"""COND_IF / WHILE_LOOP (EXT-CONTROLFLOW) and variables (EXT-VARIABLE): graphs built with
GraphBuilder plus hand-made regions, against the reference model where it can run them."""
import itertools

import numpy as np
import pytest

import tosaint
import tosaint.ops  # noqa: F401  (fills the registry)
from tosaint import DType, Op, Operator, Region
from tosaint.builder import GraphBuilder
from tosaint.errors import ErrorIfViolation, LevelLimitError, TosaError, UnpredictableError
from tosaint.graph import Graph
from tosaint.registry import REGISTRY

IMPLS = ["numba", "spec"]
_ids = itertools.count()


def sub_block(name, inputs, build):
    """A block named ``name`` with ``inputs`` [(name, shape, dtype)]; ``build(b, *names)``
    adds its operators and returns its output names."""
    b = GraphBuilder()
    b.block.name = name
    b._name = lambda prefix: f"{name}_{prefix}_{next(_ids)}"   # names unique across blocks
    names = [b.input(s, d, name=n) for n, s, d in inputs]
    outs = build(b, *names)
    b.output(*(outs if isinstance(outs, (list, tuple)) else [outs]))
    return b.block


def graph(main, *blocks, old_form=False):
    if old_form:   # sub-blocks inside the main region, named by block
        return Graph(regions=[Region("main", [main, *blocks])], version=tosaint.Version(1, 0, 0))
    return Graph(regions=[Region("main", [main])] + [Region(b.name, [b]) for b in blocks],
                 version=tosaint.Version(1, 0, 0))


def cond_if_graph(shape=(2, 3), dtype=DType.INT16, old_form=False):
    b = GraphBuilder()
    c = b.input((), DType.BOOL, name="c")
    x = b.input(shape, dtype, name="x")
    (y,) = b.op_multi(Op.COND_IF, [c, x], [((shape[1], shape[0]), dtype)],
                      dict(then_graph="THEN", else_graph="ELSE"), names=["y"])
    b.output(y)
    then = sub_block("THEN", [("t_x", shape, dtype)], lambda bb, t: bb.transpose(t, [1, 0]))
    else_ = sub_block("ELSE", [("e_x", shape, dtype)],
                      lambda bb, t: bb.transpose(bb.op(Op.REVERSE, [t], shape, dtype,
                                                       dict(axis=1)), [1, 0]))
    return graph(b.block, then, else_, old_form=old_form)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("old_form", [False, True])
def test_cond_if(impl, old_form):
    g = cond_if_graph(old_form=old_form)
    x = np.arange(6, dtype=np.int16).reshape(2, 3)
    out = tosaint.run_tosa(g, {"c": np.array(True), "x": x}, impl=impl)["y"]
    assert np.array_equal(out, x.T) and out.dtype == np.int16
    out = tosaint.run_tosa(g, {"c": np.array(False), "x": x}, impl=impl)["y"]
    assert np.array_equal(out, x[:, ::-1].T)


@pytest.mark.oracle
def test_cond_if_against_reference_model():
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    g = cond_if_graph((3, 4), DType.INT8)
    x = np.random.default_rng(0).integers(-128, 127, (3, 4)).astype(np.int8)
    for c in (True, False):
        inputs = {"c": np.array(c), "x": x}
        status, want = reference_run(g, inputs)
        assert status == "TOSA_VALID"
        got = tosaint.run_tosa(g, inputs)["y"]
        assert got.dtype == want["y"].dtype and np.array_equal(got, want["y"])


def shift_loop_graph(n=6):
    """WHILE_LOOP over a bool vector v: while v[0]: v = v[1:] ++ [False]; also counts
    iterations in a second list element by growing nothing (the pass-through y)."""
    b = GraphBuilder()
    v = b.input((n,), DType.BOOL, name="v")
    y = b.input((2,), DType.INT32, name="y")
    outs = b.op_multi(Op.WHILE_LOOP, [v, y], [((n,), DType.BOOL), ((2,), DType.INT32)],
                      dict(cond_graph="COND", body_graph="BODY"), names=["v_out", "y_out"])
    b.output(*outs)
    cond = sub_block("COND", [("cv", (n,), DType.BOOL), ("cy", (2,), DType.INT32)],
                     lambda bb, cv, cy: bb.reshape(bb.slice(cv, [0], [1]), ()))
    body = sub_block("BODY", [("bv", (n,), DType.BOOL), ("by", (2,), DType.INT32)],
                     lambda bb, bv, by: [bb.pad(bb.slice(bv, [1], [n - 1]), [(0, 1)],
                                                pad_const=False),
                                         bb.op(Op.REVERSE, [by], (2,), DType.INT32,
                                               dict(axis=0))])
    return graph(b.block, cond, body)


@pytest.mark.parametrize("impl", IMPLS)
def test_while_loop(impl):
    g = shift_loop_graph()
    y = np.array([1, 2], np.int32)
    for lead in range(7):
        v = np.array([True] * lead + [False] * (6 - lead))[:6]
        v[-1] |= lead < 5          # a True after the first False must not matter
        out = tosaint.run_tosa(g, {"v": v, "y": y}, impl=impl)
        # lead iterations: v shifted left by lead, y reversed lead times
        want_v = np.concatenate([v[lead:], np.zeros(lead, bool)])
        assert np.array_equal(out["v_out"], want_v), lead
        assert np.array_equal(out["y_out"], y if lead % 2 == 0 else y[::-1]), lead


@pytest.mark.oracle
def test_while_loop_against_reference_model():
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    g = shift_loop_graph(5)
    for v in ([1, 1, 0, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]):
        inputs = {"v": np.array(v, bool), "y": np.array([-4, 9], np.int32)}
        status, want = reference_run(g, inputs)
        assert status == "TOSA_VALID"
        got = tosaint.run_tosa(g, inputs)
        for n in ("v_out", "y_out"):
            assert np.array_equal(got[n], want[n].astype(got[n].dtype)), n


@pytest.mark.oracle
@pytest.mark.parametrize("impl", IMPLS)
def test_counting_loop_against_reference_model(impl):
    """The conformance suite's loop shape: count i down with SUB while i > 0 (needs the
    arithmetic ops of another module)."""
    pytest.importorskip("tosa_reference_model")
    if Op.SUB not in REGISTRY or Op.GREATER not in REGISTRY:
        pytest.skip("SUB/GREATER not implemented yet")
    from tosaint.oracle import reference_run
    b = GraphBuilder()
    i = b.input((), DType.INT32, name="i")
    x = b.input((3,), DType.INT8, name="x")
    outs = b.op_multi(Op.WHILE_LOOP, [i, x], [((), DType.INT32), ((3,), DType.INT8)],
                      dict(cond_graph="COND", body_graph="BODY"), names=["i_out", "x_out"])
    b.output(*outs)
    cond = sub_block("COND", [("ci", (), DType.INT32), ("cx", (3,), DType.INT8)],
                     lambda bb, ci, cx: bb.op(Op.GREATER, [ci, bb.const(0, DType.INT32)], (),
                                              DType.BOOL))
    body = sub_block("BODY", [("bi", (), DType.INT32), ("bx", (3,), DType.INT8)],
                     lambda bb, bi, bx: [bb.sub(bi, bb.const(1, DType.INT32)),
                                         bb.op(Op.REVERSE, [bx], (3,), DType.INT8,
                                               dict(axis=0))])
    g = graph(b.block, cond, body)
    for n in (0, 1, 4):
        inputs = {"i": np.array(n, np.int32), "x": np.array([1, 2, 3], np.int8)}
        status, want = reference_run(g, inputs)
        assert status == "TOSA_VALID"
        got = tosaint.run_tosa(g, inputs, impl=impl)
        for k in ("i_out", "x_out"):
            assert np.array_equal(got[k], want[k]), (n, k)


def test_max_while_iterations_guard():
    g = shift_loop_graph(3)
    plan = tosaint.prepare(g, max_while_iterations=2)
    inputs = {"v": np.array([1, 1, 0], bool), "y": np.zeros(2, np.int32)}
    plan.run(inputs)                            # 2 iterations: fine
    with pytest.raises(TosaError, match="max_while_iterations = 2"):
        plan.run({"v": np.array([1, 1, 1], bool), "y": np.zeros(2, np.int32)})


# ---- ERROR_IF and levels -----------------------------------------------------------------
def test_cond_if_error_ifs():
    g = cond_if_graph()
    g.main.tensors["c"].shape = (2,)
    with pytest.raises(ErrorIfViolation, match="condition has 2 elements"):
        tosaint.prepare(g)
    g = cond_if_graph()
    g.regions[2].blocks[0].tensors["e_x"].shape = (3, 2)
    with pytest.raises(ErrorIfViolation, match=r"input_list \[i16\[2, 3\]\] != else_graph "
                                               r"inputs \[i16\[3, 2\]\]"):
        tosaint.prepare(g)
    g = cond_if_graph()
    g.main.tensors["c"].dtype = DType.INT8
    with pytest.raises(ErrorIfViolation, match="COND_IF takes \\(bool\\)"):
        tosaint.prepare(g)
    g = cond_if_graph()
    g.main.operators[0].attrs["else_graph"] = "NOWHERE"
    with pytest.raises(TosaError, match="NOWHERE"):
        tosaint.prepare(g)


def test_while_loop_error_ifs():
    g = shift_loop_graph()
    g.regions[1].blocks[0].tensors[g.regions[1].blocks[0].outputs[0]].dtype = DType.INT8
    with pytest.raises(ErrorIfViolation):
        tosaint.prepare(g)
    g = shift_loop_graph()
    g.main.tensors["y_out"].shape = (3,)
    with pytest.raises(ErrorIfViolation, match="input_list .* != output_list"):
        tosaint.prepare(g)
    g = shift_loop_graph()
    body = g.regions[2].blocks[0]
    body.tensors[body.outputs[1]].shape = (2,)   # fine
    body.outputs.reverse()
    with pytest.raises(ErrorIfViolation, match="body_graph outputs"):
        tosaint.prepare(g)


def nested_graph(depth):
    """COND_IF nested ``depth`` deep (each then-branch holds the next COND_IF)."""
    b = GraphBuilder()
    c = b.input((1,), DType.BOOL, name="c")
    x = b.input((2,), DType.INT8, name="x")
    b.output(*b.op_multi(Op.COND_IF, [c, c, x], [((2,), DType.INT8)],
                         dict(then_graph="B1" if depth > 1 else "LEAF", else_graph="LEAF"),
                         names=["y"]))
    blocks = []
    for d in range(1, depth):
        nxt = f"B{d + 1}" if d + 1 < depth else "LEAF"
        blocks.append(sub_block(f"B{d}", [(f"c{d}", (1,), DType.BOOL), (f"x{d}", (2,),
                                                                        DType.INT8)],
                                lambda bb, cc, xx, nxt=nxt: bb.op_multi(
                                    Op.COND_IF, [cc, cc, xx], [((2,), DType.INT8)],
                                    dict(then_graph=nxt, else_graph="LEAF"))))
    blocks.append(sub_block("LEAF", [("lc", (1,), DType.BOOL), ("lx", (2,), DType.INT8)],
                            lambda bb, lc, lx: bb.op(Op.REVERSE, [lx], (2,), DType.INT8,
                                                     dict(axis=0))))
    return graph(b.block, *blocks)


def test_nesting_level():
    x = np.array([1, 2], np.int8)
    c = np.array([True])
    # inner COND_IFs pass their condition on: the leaf reverses once
    for depth in (1, 3, 6):
        out = tosaint.run_tosa(nested_graph(depth), {"c": c, "x": x}, level="8K")["y"]
        assert np.array_equal(out, x[::-1])
    g = nested_graph(7)
    assert np.array_equal(tosaint.run_tosa(g, {"c": c, "x": x})["y"], x[::-1])
    with pytest.raises(LevelLimitError, match="nested deeper than 6"):
        tosaint.run_tosa(g, {"c": c, "x": x}, level="8K")


# ---- variables -----------------------------------------------------------------------------
def accumulator_graph(initial=True, declare=True):
    """state <- input; output the state as it was before this run (a one-step delay line)."""
    b = GraphBuilder()
    x = b.input((2, 3), DType.INT8, name="x")
    b.op(Op.VARIABLE, [], (2, 3), DType.INT8, name="state")
    if not declare:
        b.block.operators.pop()
    t = b.block.tensors["state"]
    t.variable = True
    if initial:
        t.data = np.arange(6, dtype=np.int8).reshape(2, 3)
    r = b.op(Op.VARIABLE_READ, ["state"], (2, 3), DType.INT8, name="r")
    b.block.operators.append(Operator(Op.VARIABLE_WRITE, [x], ["state"], {}))
    b.output(b.identity(r, name="out"))
    return b.build()


@pytest.mark.parametrize("roundtrip", [False, True])
def test_variables_persist_when_asked(roundtrip):
    g = accumulator_graph()
    if roundtrip:
        g = tosaint.load(g.to_bytes())
        assert g.tensors["state"].variable
    init = np.arange(6, dtype=np.int8).reshape(2, 3)
    xs = [np.full((2, 3), k, np.int8) for k in (10, 11, 12)]
    outs = [tosaint.run_tosa(g, {"x": x}, keep_variables=True)["out"] for x in xs]
    assert np.array_equal(outs[0], init)
    assert np.array_equal(outs[1], xs[0]) and np.array_equal(outs[2], xs[1])
    # default: every run starts from the initial value
    assert np.array_equal(tosaint.run_tosa(g, {"x": xs[2]})["out"], init)
    plan = tosaint.prepare(g)
    plan.run({"x": xs[0]})
    plan.reset_variables()
    assert np.array_equal(plan.run({"x": xs[1]}, keep_variables=True)["out"], init)


def test_variable_without_initial_value():
    g = accumulator_graph(initial=False)
    out = tosaint.run_tosa(g, {"x": np.ones((2, 3), np.int8)})["out"]
    assert np.array_equal(out, np.zeros((2, 3), np.int8))   # VARIABLE declares it as zeros
    # a variable tensor read with no declaration and no write: unpredictable
    g = accumulator_graph(initial=False, declare=False)
    with pytest.raises(UnpredictableError, match="read before it was written"):
        tosaint.run_tosa(g, {"x": np.ones((2, 3), np.int8)})


def test_variable_ops_check_their_tensor():
    b = GraphBuilder()
    x = b.input((2,), DType.INT8, name="x")
    b.output(b.op(Op.VARIABLE_READ, [x], (2,), DType.INT8))
    with pytest.raises(ErrorIfViolation, match="not a variable tensor"):
        tosaint.prepare(b.build())


@pytest.mark.oracle
def test_identity_written_variable_against_reference_model():
    """The form the reference model runs: a variable tensor with initial data, read by one
    IDENTITY and written by another (each reference-model run starts from the initial value,
    as tosaint's default does)."""
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run

    from .helpers import identity_variable_graph
    g = identity_variable_graph()
    xv = np.full((2, 3), 7, np.int8)
    status, want = reference_run(g, [xv])
    assert status == "TOSA_VALID"
    assert np.array_equal(tosaint.run_tosa(g, [xv])["r"], want["r"])
    # and with state kept, the second run sees the first run's write
    tosaint.run_tosa(g, [xv], keep_variables=True)
    assert np.array_equal(tosaint.run_tosa(g, [xv], keep_variables=True)["r"], xv)
