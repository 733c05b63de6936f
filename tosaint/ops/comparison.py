"""Comparison operators (spec chapter "Comparison Operators"): int32 -> bool, exact NumPy."""
import numpy as np

from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op
from .ewise_binary import check_broadcast, finish


def _compare(fn):
    def build(node):
        shape = check_broadcast(node)
        return lambda a, b: finish(fn(a, b), T.BOOL, shape)
    return build


for _op, _fn in ((Op.EQUAL, np.equal), (Op.GREATER, np.greater),
                 (Op.GREATER_EQUAL, np.greater_equal)):
    register(_op, {(T.INT32, T.INT32, T.BOOL): "PRO-INT"},
             operands=("input1", "input2"))(_compare(_fn))
