"""Reduction kernels (spec chapter "Reduction Operators", and ARGMAX, the one reduction of
"Tensor Operators"), vectorised NumPy: NumPy's own reductions are exact for these integer types
and as fast as a compiled loop, with nothing to compile.

Every kernel works on the input viewed as [left, axis, right] and writes [left, right].
"""
import numpy as np

from ._int import I32_MAX, I32_MIN, wrap32

__all__ = ["reduce_sum", "reduce_minmax", "reduce_bool", "argmax"]


def reduce_sum(x3, out2):
    """REDUCE_SUM (int32): returns the number of steps whose running sum left int32
    (apply_add_s REQUIRE); such a step wraps, as the reference model's int32 sum does.

    When a * max|x| <= I32_MAX no running sum can leave int32 and the int64 sum is the
    answer.  Otherwise the running sums of the pseudocode (axis in index order) are the wrapped
    exact prefix sums, acc[j] = wrap32(S[j]) (a wrap changes a value by a multiple of 2**32),
    so step j failed where wrap32(S[j-1]) + x[j] leaves int32."""
    a = x3.shape[1]
    if x3.size == 0 or a * max(-int(x3.min()), int(x3.max())) <= I32_MAX:
        out2[...] = x3.sum(axis=1, dtype=np.int64)
        return 0
    prefix = np.cumsum(x3, axis=1, dtype=np.int64)            # exact: |S| < a * 2**31
    before = wrap32(prefix[:, :-1])
    step = before + x3[:, 1:]
    bad = int(np.count_nonzero((step < I32_MIN) | (step > I32_MAX)))
    out2[...] = wrap32(prefix[:, -1])
    return bad


def reduce_minmax(x3, out2, is_max):
    """REDUCE_MAX (``is_max``) or REDUCE_MIN of int8/int16/int32 values."""
    out2[...] = x3.max(axis=1) if is_max else x3.min(axis=1)
    return 0


def reduce_bool(x3, out2, is_all):
    """REDUCE_ALL (``is_all``) or REDUCE_ANY of bool values."""
    out2[...] = x3.all(axis=1) if is_all else x3.any(axis=1)
    return 0


def argmax(x3, out2):
    """ARGMAX of ``x3`` viewed as [left, axis, right] into int32 ``out2`` [left, right]: the
    first index holding the maximum (the spec's strict ``result != max_value`` update), which
    is what ``np.argmax`` returns: vectorised, nothing to compile."""
    out2[...] = x3.argmax(axis=1)
    return 0
