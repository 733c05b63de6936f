"""int16 TABLE with a constant table: the two ways it runs (a gather from the 65536-entry
lookup array for large inputs, apply_lookup_s evaluated directly for small ones, and for
mid-size ones on the first run of the plan only) give the reference model's values and REQUIRE
status on both sides of each size threshold, on the first and the second run."""
import numpy as np
import pytest

import tosaint
from tosaint import DType
from tosaint.builder import GraphBuilder
from tosaint.errors import UnpredictableError
from tosaint.ops.ewise_binary import _LUT_COST_ELEMENTS, _LUT_MIN_ELEMENTS

from .helpers import check

I16, I32 = DType.INT16, DType.INT32


def _graph(n, tbl):
    b = GraphBuilder()
    x = b.input((n,), I16, name="x")
    b.output(b.table(x, tbl))
    return b.build()


@pytest.mark.parametrize("impl", ["numba", "spec"])
@pytest.mark.parametrize("n", [_LUT_MIN_ELEMENTS - 1, _LUT_MIN_ELEMENTS, _LUT_COST_ELEMENTS])
def test_table16_const_both_paths_against_oracle(impl, n):
    ref = pytest.importorskip("tosaint.oracle")
    pytest.importorskip("tosa_reference_model")
    rng = np.random.default_rng(n)
    smooth = np.clip(np.round(np.tanh(np.arange(-256, 257) / 64.0) * 32767), -32768,
                     32767).astype(np.int16)
    steep = np.r_[np.full(256, -32768), np.full(257, 32767)].astype(np.int16)
    x = rng.integers(-32768, 32768, n).astype(np.int16)
    statuses = []
    for tbl, xs in ((smooth, x), (steep, np.where(x < 0, -200, x).astype(np.int16)),
                    (steep, x)):
        g = _graph(n, tbl)
        status, outs = ref.reference_run(g, [xs])
        statuses.append(status)
        plan = tosaint.prepare(g, impl=impl)
        for _ in range(2):                      # the first run and the next (lookup array)
            if status == "TOSA_VALID":
                check(plan.run([xs])[g.outputs[0]], outs[g.outputs[0]])
            else:
                assert status == "TOSA_UNPREDICTABLE", status
                with pytest.raises(UnpredictableError, match="slope"):
                    plan.run([xs])
    assert statuses == ["TOSA_VALID", "TOSA_VALID", "TOSA_UNPREDICTABLE"], statuses
