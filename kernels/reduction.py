"""Reduction kernels (spec chapter "Reduction Operators").

Every kernel works on the input viewed as [left, axis, right] and writes [left, right]; the
axis is reduced in index order (0, 1, 2, ...) as the pseudocode does, with the right axis
innermost so the memory is read contiguously.
"""
import numpy as np

from ._jit import jit

__all__ = ["reduce_sum", "reduce_minmax", "reduce_bool"]


@jit
def reduce_sum(x3, out2):
    """REDUCE_SUM (int32): returns the number of steps whose running sum left int32
    (apply_add_s REQUIRE); such a step wraps."""
    left, a, right = x3.shape
    acc = np.zeros(right, np.int64)
    bad = 0
    for i in range(left):
        for r in range(right):
            acc[r] = 0
        for j in range(a):
            for r in range(right):
                v = acc[r] + np.int64(x3[i, j, r])
                if v < -2147483648 or v > 2147483647:
                    bad += 1
                    v = ((v + 2147483648) & 0xFFFFFFFF) - 2147483648
                acc[r] = v
        for r in range(right):
            out2[i, r] = acc[r]
    return bad


@jit
def reduce_minmax(x3, out2, is_max):
    """REDUCE_MAX (``is_max``) or REDUCE_MIN of int8/int16/int32 values."""
    left, a, right = x3.shape
    for i in range(left):
        for r in range(right):
            out2[i, r] = x3[i, 0, r]
        for j in range(1, a):
            for r in range(right):
                v = x3[i, j, r]
                if is_max:
                    if v > out2[i, r]:
                        out2[i, r] = v
                elif v < out2[i, r]:
                    out2[i, r] = v
    return 0


@jit
def reduce_bool(x3, out2, is_all):
    """REDUCE_ALL (``is_all``) or REDUCE_ANY of bool values."""
    left, a, right = x3.shape
    for i in range(left):
        for r in range(right):
            out2[i, r] = is_all
        for j in range(a):
            for r in range(right):
                if is_all:
                    out2[i, r] = out2[i, r] and x3[i, j, r]
                else:
                    out2[i, r] = out2[i, r] or x3[i, j, r]
    return 0
