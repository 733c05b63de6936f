"""The integer rules every kernel shares, in one place: the int8/int16/int32/int48 limits, the
int32 wrap and int48 saturation of the reference model, and the RESCALE mode codes.

Plain Python, importable without Numba: ``wrap32`` and ``sat48`` work on Python ints and on
NumPy arrays (the spec twins), and ``tosaint.kernels._jit`` compiles the same functions for the
Numba kernels, so the rule is written once.
"""
I8_MIN, I8_MAX = -(1 << 7), (1 << 7) - 1
I16_MIN, I16_MAX = -(1 << 15), (1 << 15) - 1
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
I48_MIN, I48_MAX = -(1 << 47), (1 << 47) - 1

#: RESCALE modes shared by both kernel sides: apply_scale_16, apply_scale_32 single round,
#: apply_scale_32 double round, INEXACT_ROUND with a scale32 / scale16 multiplier
SCALE16, SINGLE32, DOUBLE32, INEXACT32, INEXACT16 = 0, 1, 2, 3, 4


def wrap32(v):
    """``v`` (int64 or Python int, scalar or array) wrapped to int32 two's complement, as the
    reference model's int32 accumulator does."""
    return ((v + 2147483648) & 0xFFFFFFFF) - 2147483648


def sat48(v):
    """A scalar ``v`` saturated to int48, as the reference model's int48 accumulator does
    (arrays: ``np.clip(v, I48_MIN, I48_MAX)``)."""
    return min(max(v, I48_MIN), I48_MAX)
