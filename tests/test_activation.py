"""CLAMP: goldens, min/max decoding from raw little-endian attribute bytes, the reference model
as oracle (ranks 0..6, both impls), and the ERROR_IF cases."""
import numpy as np
import pytest

import tosaint
from tosaint import DType, Op
from tosaint.builder import GraphBuilder
from tosaint.errors import ErrorIfViolation

from .helpers import check

IMPLS = ["numba", "spec"]
NP = {DType.INT8: np.int8, DType.INT16: np.int16}


def clamp_graph(shape, dtype, lo, hi, raw=None):
    b = GraphBuilder()
    x = b.input(shape, dtype, name="x")
    y = b.clamp(x, lo, hi)
    if raw:
        b.block.operators[-1].attrs.update(raw)
    b.output(y)
    return b.build()


@pytest.mark.parametrize("impl", IMPLS)
def test_goldens(impl):
    x = np.array([-32768, -300, 0, 299, 32767], np.int16)
    g = clamp_graph((5,), DType.INT16, -300, 299)
    check(tosaint.run_tosa(g, [x], impl=impl)[g.outputs[0]],
          np.array([-300, -300, 0, 299, 299], np.int16))
    # the attribute bytes are little-endian: 0x2c 0x01 = 300, 0xd4 0xfe = -300
    g = clamp_graph((5,), DType.INT16, 0, 0, dict(min_val=b"\xd4\xfe", max_val=b"\x2c\x01"))
    check(tosaint.run_tosa(g, [x], impl=impl)[g.outputs[0]],
          np.array([-300, -300, 0, 299, 300], np.int16))
    y = np.array(-100, np.int8)
    g = clamp_graph((), DType.INT8, -5, 5)
    check(tosaint.run_tosa(g, [y], impl=impl)[g.outputs[0]], np.array(-5, np.int8))


def test_error_if():
    with pytest.raises(ErrorIfViolation, match="max_val -5 < min_val 9"):
        tosaint.prepare(clamp_graph((2,), DType.INT8, 9, -5))
    with pytest.raises(ErrorIfViolation, match="bytes"):
        tosaint.prepare(clamp_graph((2,), DType.INT16, 0, 1, dict(max_val=b"\x01")))
    with pytest.raises(ErrorIfViolation, match="not supported"):    # no i32 CLAMP in PRO-INT
        tosaint.prepare(clamp_graph((2,), DType.INT32, 0, 1))
    b = GraphBuilder()
    x = b.input((2,), DType.INT8, name="x")
    b.output(b.op(Op.CLAMP, [x], (3,), DType.INT8,
                  dict(min_val=b"\x00", max_val=b"\x01", nan_mode=1)))
    with pytest.raises(ErrorIfViolation, match="output shape"):
        tosaint.prepare(b.build())


@pytest.mark.parametrize("dtype", [DType.INT8, DType.INT16])
def test_vs_reference(dtype):
    ref = pytest.importorskip("tosaint.oracle")
    pytest.importorskip("tosa_reference_model")
    rng = np.random.default_rng(int(dtype))
    info = np.iinfo(NP[dtype])
    for rank in range(7):
        shape = tuple(int(d) for d in rng.integers(1, 4, rank))
        x = np.asarray(rng.integers(info.min, info.max, shape, endpoint=True), NP[dtype])
        lo, hi = sorted(int(v) for v in rng.integers(info.min, info.max, 2, endpoint=True))
        for lo_, hi_ in ((lo, hi), (lo, lo), (info.min, info.max)):
            g = clamp_graph(shape, dtype, lo_, hi_)
            status, outs = ref.reference_run(g, [x])
            assert status == "TOSA_VALID"
            for impl in IMPLS:
                check(tosaint.run_tosa(g, [x], impl=impl)[g.outputs[0]], outs[g.outputs[0]])
