"""The interpreter runs a block's operators in dependency order whatever order the graph lists
them in (graphs listed in order take a linear fast path; the others are sorted), and a block
whose operators form a cycle is refused."""
import numpy as np
import pytest

import tosaint
from tosaint import DType
from tosaint.builder import GraphBuilder
from tosaint.errors import SchemaError

from .helpers import check


def _chain():
    b = GraphBuilder()
    x = b.input((4,), DType.INT32, name="x")
    y = b.add(x, x)
    z = b.sub(y, x)
    b.output(b.add(z, y))
    return b.build()


@pytest.mark.parametrize("impl", ["numba", "spec"])
def test_operators_listed_out_of_order_run_in_dependency_order(impl):
    x = np.array([0, 1, -7, 100], np.int32)
    in_order = tosaint.prepare(_chain(), impl=impl)
    want = in_order.run([x])
    check(list(want.outputs.values())[0], 3 * x)
    g = _chain()
    g.main.operators.reverse()
    plan = tosaint.prepare(g, impl=impl)
    assert [n.output for n in plan.main.nodes] == [n.output for n in in_order.main.nodes]
    got = plan.run([x])
    check(list(got.outputs.values())[0], 3 * x)


def test_operator_cycle_is_refused():
    g = _chain()
    ops = g.main.operators
    ops[0].inputs[0] = ops[1].outputs[0]      # the first ADD now reads the SUB's output
    with pytest.raises(SchemaError, match="cycle"):
        tosaint.prepare(g)
