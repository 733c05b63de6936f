"""SELECT (spec chapter "Elementwise Ternary Operators")."""
import numpy as np

from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op
from .ewise_binary import check_broadcast, finish


@register(Op.SELECT, {(T.BOOL, t, t, t): "PRO-INT" for t in (T.BOOL, T.INT8, T.INT16, T.INT32)},
          operands=("input1", "input2", "input3"))
def select(node):
    shape = check_broadcast(node)
    dtype = node.outputs[0].dtype
    return lambda c, a, b: finish(np.where(c, a, b), dtype, shape)
