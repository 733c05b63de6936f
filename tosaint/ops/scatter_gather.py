"""GATHER and SCATTER (spec chapter "Scatter/Gather").

Both REQUIREs of the spec (index in 0..K-1; SCATTER writes each output position at most once)
make the reference model report UNPREDICTABLE, so tosaint raises ``UnpredictableError`` with the
number of offending indices.
"""
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op
from .data_layout import check_rank

_VALUE_TYPES = (T.INT8, T.INT16, T.INT32)


@register(Op.GATHER, {(t, T.INT32, t): "PRO-INT" for t in _VALUE_TYPES},
          operands=("values", "indices"))
def gather(node):
    values, indices, out = node.inputs[0], node.inputs[1], node.outputs[0]
    check_rank(node, values, 3, 3, "values")
    check_rank(node, indices, 2, 2, "indices")
    check_rank(node, out, 3, 3, "output")
    N, K, C = values.shape
    if indices.shape[0] != N:
        node.error(f"indices batch {indices.shape[0]} != values batch {N}")
    W = indices.shape[1]
    if tuple(out.shape) != (N, W, C):
        node.error(f"output shape {list(out.shape)} != [N,W,C] = {[N, W, C]}")
    k = node.k

    def run(v, idx):
        res, bad = k.gather(v, idx)
        node.require(bad == 0, f"{bad} indices outside 0..K-1 = 0..{K - 1}", count=bad)
        return res
    return run


@register(Op.SCATTER, {(t, T.INT32, t, t): "PRO-INT" for t in _VALUE_TYPES},
          operands=("values_in", "indices", "input"))
def scatter(node):
    values_in, indices, inp = node.inputs
    out = node.outputs[0]
    check_rank(node, values_in, 3, 3, "values_in")
    check_rank(node, indices, 2, 2, "indices")
    check_rank(node, inp, 3, 3, "input")
    check_rank(node, out, 3, 3, "values_out")
    N, K, C = values_in.shape
    if indices.shape[0] != N:
        node.error(f"indices batch {indices.shape[0]} != values_in batch "
                   f"{N}")
    W = indices.shape[1]
    if tuple(inp.shape) != (N, W, C):
        node.error(f"input shape {list(inp.shape)} != [N,W,C] = {[N, W, C]}")
    if tuple(out.shape) != (N, K, C):
        node.error(f"values_out shape {list(out.shape)} != [N,K,C] = {[N, K, C]}")
    k = node.k

    def run(v, idx, x):
        res, bad, dup = k.scatter(v, idx, x)
        node.require(bad == 0, f"{bad} indices outside 0..K-1 = 0..{K - 1}", count=bad)
        node.require(dup == 0, f"{dup} indices write an output position that an earlier index "
                     "already wrote (indices must be unique per batch)", count=dup)
        return res
    return run
