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


def check_lowered(lm, inputs):
    """A ``tosaint.torch`` LoweredModule run on tosaint and on the official reference model
    (which raises unless its status is VALID): the same outputs in the same order, each of the
    same shape, dtype and values.  Returns tosaint's result."""
    pytest.importorskip("tosa_reference_model")
    res = lm.run(*inputs)
    ref = lm.run_reference(*inputs)
    assert [o["name"] for o in lm.outputs] == list(ref)
    for name, want in ref.items():
        check(res[name], want)
    return res


def lower_zoo_model(cls, make_inputs, quantization, target=None, seed=7):
    """``cls()``, seeded, lowered on four calibration inputs drawn by
    ``make_inputs(generator)`` and on the test input drawn after them (so that an SNR measures
    the integer arithmetic, not how well four inputs cover a fifth): (model, lowered, test)."""
    import torch

    import tosaint.torch as tt
    torch.manual_seed(seed)
    model = cls().eval()
    g = torch.Generator().manual_seed(seed + 1)
    calib = [make_inputs(g) for _ in range(4)]
    test = make_inputs(g)
    lm = tt.lower(model, test, quantization=quantization, calibration=calib + [test],
                  target=target)
    return model, lm, test


def snr_of_lowered(model, lm, res, test):
    """SNR in dB of a lowered module's outputs ``res`` (dequantized) against the float
    module on ``test``."""
    import torch

    from tosaint.quant import snr_db
    with torch.no_grad():
        want = model(*test)
    return snr_db(want.double().numpy(), lm.dequantize_outputs(res).double().numpy())


def check_runs_on_npu(graph, target):
    """Vela's preflight finds nothing in ``graph`` for ``target`` and every layer Vela
    compiles runs on the NPU."""
    pytest.importorskip("ethosu.vela")
    from tosaint import vela
    assert vela.format_findings(vela.check(graph, target)) == ""
    result = vela.compile(graph, target, per_layer=True)
    assert all(row["Target"] == "NPU" for row in result.per_layer)


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
