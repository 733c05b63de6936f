"""Elementwise unary operators (spec chapter "Elementwise Unary Operators"): exact NumPy."""
import numpy as np

from ..dtypes import RANGE
from ..kernels._int import I32_MAX, I32_MIN
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op
from .ewise_binary import check_same_shape, finish

I8, I16, I32, BOOL = T.INT8, T.INT16, T.INT32, T.BOOL


def _sigs(types):
    return {(t, t): "PRO-INT" for t in types}


@register(Op.ABS, _sigs((I32,)), operands=("input1",))
def abs_(node):
    shape = check_same_shape(node)

    def run(a):
        bad = int(np.count_nonzero(a == np.int32(I32_MIN))) if a.size else 0
        node.require(bad == 0, "|-2^31| is outside int32 (apply_sub_s)", count=bad)
        return finish(np.abs(a), I32, shape)
    return run


def _clz32(a):
    """count_leading_zeros of each int32 (32 for 0)."""
    x = np.asarray(a).astype(np.int64) & 0xFFFFFFFF
    n = np.zeros(x.shape, np.int64)
    for s in (16, 8, 4, 2, 1):
        top_clear = x < (1 << (32 - s))
        n += s * top_clear
        x = np.where(top_clear, x << s, x)
    return n + (x == 0)


@register(Op.CLZ, _sigs((I32,)), operands=("input1",))
def clz(node):
    shape = check_same_shape(node)
    return lambda a: finish(_clz32(a), I32, shape)


@register(Op.BITWISE_NOT, _sigs((I8, I16, I32)), operands=("input1",))
def bitwise_not(node):
    shape = check_same_shape(node)
    dtype = node.outputs[0].dtype
    return lambda a: finish(np.invert(a), dtype, shape)


@register(Op.LOGICAL_NOT, _sigs((BOOL,)), operands=("input1",))
def logical_not(node):
    shape = check_same_shape(node)
    return lambda a: finish(np.logical_not(a), BOOL, shape)


@register(Op.NEGATE, {(t, t, t, t): "PRO-INT" for t in (I8, I16, I32)},
          operands=("input1", "input1_zp", "output_zp"))
def negate(node):
    shape = check_same_shape(node)
    dtype = node.outputs[0].dtype
    for i, what in ((1, "input1_zp"), (2, "output_zp")):
        if tuple(node.inputs[i].shape) != (1,):
            node.error(f"{what} has shape {list(node.inputs[i].shape)}, expected [1]")
    in_zp = int(node.const(1).reshape(-1)[0])
    out_zp = int(node.const(2).reshape(-1)[0])
    if dtype != I8 and in_zp != 0:
        node.error(f"input1_zp {in_zp} != 0 for a non-i8 input")
    if dtype != I8 and out_zp != 0:
        node.error(f"output_zp {out_zp} != 0 for a non-i8 output")
    lo, hi = RANGE[dtype]

    def run(a, _izp, _ozp):
        v = -(a.astype(np.int64) - in_zp)                 # apply_sub_s<acc_t> twice
        bad = int(np.count_nonzero((v < I32_MIN) | (v > I32_MAX))) if v.size else 0
        node.require(bad == 0, "negated value outside int32", count=bad)
        v = np.clip(v + out_zp, lo, hi)                  # apply_add_s, apply_clip_s
        return finish(v, dtype, shape)
    return run
