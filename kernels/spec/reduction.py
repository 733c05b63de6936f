"""NumPy twins of ``tosaint.kernels.reduction``, transcribed from REDUCE_SUM.tosac,
REDUCE_MAX.tosac, REDUCE_MIN.tosac, REDUCE_ALL.tosac and REDUCE_ANY.tosac.

The pseudocode's loop over the reduced axis is kept (one step per index, in order); the left
and right positions are NumPy vectors, which does not change any value.
"""
import numpy as np

from .._int import I32_MAX, I32_MIN, wrap32

__all__ = ["reduce_sum", "reduce_minmax", "reduce_bool"]


def reduce_sum(x3, out2):
    left, a, right = x3.shape
    acc = np.zeros((left, right), np.int64)                       # acc_t acc = 0
    bad = 0
    for i in range(a):
        acc = acc + x3[:, i, :].astype(np.int64)                    # apply_add_s<acc_t>
        wrong = (acc < I32_MIN) | (acc > I32_MAX)
        if wrong.any():
            bad += int(wrong.sum())
            acc = wrap32(acc)
    out2[...] = acc
    return bad


def reduce_minmax(x3, out2, is_max):
    left, a, right = x3.shape
    info = np.iinfo(x3.dtype)
    acc = np.full((left, right), info.min if is_max else info.max, x3.dtype)
    for i in range(a):
        acc = np.maximum(acc, x3[:, i, :]) if is_max else np.minimum(acc, x3[:, i, :])
    out2[...] = acc
    return 0


def reduce_bool(x3, out2, is_all):
    left, a, right = x3.shape
    acc = np.full((left, right), bool(is_all))
    for i in range(a):
        acc = (acc & x3[:, i, :]) if is_all else (acc | x3[:, i, :])
    out2[...] = acc
    return 0
