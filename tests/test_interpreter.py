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
