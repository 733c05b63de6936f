"""NumPy/Python twins of ``tosaint.kernels.scale``, transcribed from scale_helpers.tosac."""
from .._int import I32_MAX, I32_MIN

__all__ = ["apply_scale_32", "apply_scale_16", "reciprocal_scale", "count_leading_zeros"]


def apply_scale_32(value, multiplier, shift, double_round):
    value = int(value)
    ok = multiplier >= 0 and 2 <= shift <= 62
    if 1 <= shift <= 63 and not (-(1 << (shift - 1)) <= value < (1 << (shift - 1))):
        ok = False
    round_ = 1 << (shift - 1)
    if double_round and shift > 31:
        round_ += (1 << 30) if value >= 0 else -(1 << 30)
    result = (value * int(multiplier) + round_) >> shift
    if not (I32_MIN <= result <= I32_MAX):
        ok = False
    return result, ok


def apply_scale_16(value, multiplier, shift):
    value = int(value)
    ok = multiplier >= 0 and 2 <= shift <= 62
    result = (value * int(multiplier) + (1 << (shift - 1))) >> shift
    if not (I32_MIN <= result <= I32_MAX):
        ok = False
    return result, ok


def count_leading_zeros(a):
    a = int(a) & 0xFFFFFFFF
    return 32 - a.bit_length()


def reciprocal_scale(count):
    k = 32 - count_leading_zeros(count - 1)
    multiplier = (((1 << 30) + 1) << k) // count
    return multiplier, 30 + k
