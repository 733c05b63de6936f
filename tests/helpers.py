"""Small helpers shared by the op-family tests."""
import numpy as np
import pytest

import tosaint


def check(got, want):
    """Integer comparison: shape, then dtype, then every value."""
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    assert np.array_equal(got, want), (got, want)


def run1(g, x, impl, **kw):
    """The first output of a one-input graph."""
    return tosaint.run_tosa(g, [x], impl=impl, **kw)[g.outputs[0]]


def reference(g, inputs):
    """(outputs in graph-output order, status name) from the official reference model."""
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    status, outs = reference_run(g, list(inputs))
    return [outs[n] for n in g.outputs] if outs else [], status


def identity_variable_graph():
    """The EXT-VARIABLE form the reference model runs: a variable tensor "state" with initial
    data 0..5, read by one IDENTITY (output "r") and written from input "x" by another."""
    from tosaint import DType, Op, Operator
    from tosaint.builder import GraphBuilder
    b = GraphBuilder()
    x = b.input((2, 3), DType.INT8, name="x")
    b._add_tensor("state", (2, 3), DType.INT8, np.arange(6, dtype=np.int8).reshape(2, 3))
    b.block.tensors["state"].variable = True
    r = b.identity("state", name="r")
    b.block.operators.append(Operator(Op.IDENTITY, [x], ["state"], {}))
    b.output(r)
    return b.build()
