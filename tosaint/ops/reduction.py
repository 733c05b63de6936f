"""Reduction operators (spec chapter "Reduction Operators"): REDUCE_ALL, REDUCE_ANY,
REDUCE_MAX, REDUCE_MIN, REDUCE_SUM for the integer profile.

The input is viewed as [left, axis, right]; the output keeps the input's rank with dimension 1
at ``axis``.
"""
import numpy as np

from ..levels import MAX_RANK
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op
from .pooling import check_nan_mode



def _reduce_view(node):
    """Validate axis and shapes (the ERROR_IFs shared by all reductions); return the
    [left, axis, right] view and the [left, right] result shape."""
    x, out = node.inputs[0], node.outputs[0]
    shape1, shape = tuple(x.shape), tuple(out.shape)
    rank = len(shape1)
    axis = int(node.attrs["axis"])
    node.error_if(rank < 1, "input rank 0 < 1")
    if rank > MAX_RANK:
        node.error(f"input rank {rank} > {MAX_RANK} (the reference model supports ranks "
                   f"1 to {MAX_RANK})")
    if axis < 0 or axis >= rank:
        node.error(f"axis {axis} is outside [0, rank(input)-1 = {rank - 1}]")
    if len(shape) != rank:
        node.error(f"output rank {len(shape)} != input rank {rank}")
    if shape[axis] != 1:
        node.error(f"output shape[{axis}] = {shape[axis]} != 1")
    expect = shape1[:axis] + (1,) + shape1[axis + 1:]
    if shape != expect:
        node.error(f"output shape {list(shape)} != {list(expect)} (the input "
                   f"shape with 1 at axis {axis})")
    if shape1[axis] < 1:
        node.error(f"input dimension {axis} is empty")
    left = int(np.prod(shape1[:axis], dtype=np.int64))
    right = int(np.prod(shape1[axis + 1:], dtype=np.int64))
    return (left, shape1[axis], right), (left, right), shape


@register(Op.REDUCE_SUM, {(T.INT32, T.INT32): "PRO-INT"}, operands=("input",))
def reduce_sum(node):
    view, res_shape, shape = _reduce_view(node)
    k = node.k

    def run(x):
        res = np.empty(res_shape, np.int32)
        bad = k.reduce_sum(x.reshape(view), res)
        node.require(bad == 0, "int32 sum out of range (apply_add_s)", count=int(bad))
        return res.reshape(shape)
    return run


def _in_place(kernel, flag, out_dtype=None, nan_mode=False):
    """A builder for the reductions whose kernel fills a preallocated result and reports
    nothing: ``kernel(k)(view, res, flag)`` (``kernel`` picks the function from the kernel
    namespace ``k``); the result has the input's type unless ``out_dtype``."""
    def build(node):
        if nan_mode:
            check_nan_mode(node)
        view, res_shape, shape = _reduce_view(node)
        kern = kernel(node.k)

        def run(x):
            res = np.empty(res_shape, out_dtype or x.dtype)
            kern(x.reshape(view), res, flag)
            return res.reshape(shape)
        return run
    return build


_MINMAX = {(T.INT8, T.INT8): "PRO-INT", (T.INT16, T.INT16): "PRO-INT",
           (T.INT32, T.INT32): "PRO-INT"}
register(Op.REDUCE_MAX, _MINMAX, operands=("input",))(
    _in_place(lambda k: k.reduce_minmax, True, nan_mode=True))
register(Op.REDUCE_MIN, _MINMAX, operands=("input",))(
    _in_place(lambda k: k.reduce_minmax, False, nan_mode=True))

_BOOL = {(T.BOOL, T.BOOL): "PRO-INT"}
register(Op.REDUCE_ALL, _BOOL, operands=("input",))(
    _in_place(lambda k: k.reduce_bool, True, np.bool_))
register(Op.REDUCE_ANY, _BOOL, operands=("input",))(
    _in_place(lambda k: k.reduce_bool, False, np.bool_))
