"""Scale helpers of the spec (pseudocode/library/scale_helpers.tosac), as Numba functions.

They are called from inside other kernels, so they take and return plain integers and signal a
failed REQUIRE through the returned ``ok`` flag instead of raising.
"""
import numpy as np

from ._int import I32_MAX, I32_MIN
from ._jit import jit

__all__ = ["apply_scale_32", "apply_scale_16", "reciprocal_scale", "count_leading_zeros"]


@jit
def apply_scale_32(value, multiplier, shift, double_round):
    """(result, ok): round(value * multiplier / 2**shift); ok is False where the spec REQUIREs
    fail (multiplier < 0, shift outside 2..62, value outside +-2**(shift-1))."""
    value = np.int64(value)
    ok = multiplier >= 0 and 2 <= shift <= 62
    if shift >= 1 and shift <= 63:
        half = np.int64(1) << (shift - 1)
        if value < -half or value >= half:
            ok = False
    rnd = np.int64(1) << (shift - 1)
    if double_round and shift > 31:
        if value >= 0:
            rnd += np.int64(1) << 30
        else:
            rnd -= np.int64(1) << 30
    result = (value * np.int64(multiplier) + rnd) >> shift
    if result < I32_MIN or result > I32_MAX:
        ok = False
    return result, ok


@jit
def apply_scale_16(value, multiplier, shift):
    """(result, ok) for int48 values and int16 multipliers (single rounding only)."""
    value = np.int64(value)
    ok = multiplier >= 0 and 2 <= shift <= 62
    rnd = np.int64(1) << (shift - 1)
    result = (value * np.int64(multiplier) + rnd) >> shift
    if result < I32_MIN or result > I32_MAX:
        ok = False
    return result, ok


@jit
def count_leading_zeros(a):
    """Leading zeros of a 32-bit value (32 for 0)."""
    v = np.int64(a) & 0xFFFFFFFF
    n = 0
    bit = np.int64(1) << 31
    while n < 32 and (v & bit) == 0:
        n += 1
        bit >>= 1
    return n


@jit
def reciprocal_scale(count):
    """(multiplier, shift) with multiplier / 2**shift ~ 1/count (AVG_POOL2D)."""
    k = 32 - count_leading_zeros(count - 1)
    multiplier = ((np.int64(1) << 30) + 1) << k
    multiplier = multiplier // count
    return multiplier, 30 + k
