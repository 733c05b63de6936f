"""NumPy/Python twins of ``tosaint.kernels.ewise_binary``: apply_lookup_s transcribed from the
spec (introduction.adoc, "General Unary Functions")."""
import numpy as np

__all__ = ["table16", "table16_lut"]


def apply_lookup_s(table, value):
    """(result, ok): the spec's apply_lookup_s; ok is the slope REQUIRE."""
    clipped_value = min(max(int(value), -32768), 32767)
    index = (clipped_value + 32768) >> 7
    fraction = clipped_value & 0x7F
    base = int(table[index])
    nxt = int(table[index + 1])
    slope = nxt - base
    ok = -32768 <= slope <= 32767
    return (base << 7) + slope * fraction, ok


def table16(x, table, out):
    bad = 0
    for i in range(x.shape[0]):
        out[i], ok = apply_lookup_s(table, x[i])
        bad += not ok
    return bad


def table16_lut(table):
    lut = np.empty(65536, np.int32)
    bad = np.zeros(65536, np.uint8)
    for v in range(-32768, 32768):
        lut[v & 0xFFFF], ok = apply_lookup_s(table, v)
        bad[v & 0xFFFF] = not ok
    return lut, bad
