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
