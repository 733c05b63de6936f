"""TABLE kernels (spec chapter "Elementwise Binary Operators"; the other binary ops are exact
NumPy in the op layer).

int16 TABLE: ``table16_lut`` evaluates apply_lookup_s once for each of the 65536 int16 inputs
(a constant table makes the whole operator a gather, exact by construction, done with
``np.take`` in the op layer); ``table16`` evaluates apply_lookup_s element by element
when the table is not a compile-time constant.
"""
import numpy as np

from ._jit import jit

__all__ = ["table16", "table16_lut"]


@jit
def _lookup(table, value):
    """(apply_lookup_s(table, value), slope fits int16)."""
    index = (value + 32768) >> 7
    fraction = value & 0x7F
    base = np.int32(table[index])
    nxt = np.int32(table[index + 1])
    slope = nxt - base
    ok = -32768 <= slope <= 32767
    return (base << 7) + slope * fraction, ok


@jit
def table16(x, table, out):
    """out = apply_lookup_s(table, x) for int16 x (flat); returns how many slopes leave int16."""
    bad = 0
    for i in range(x.shape[0]):
        r, ok = _lookup(table, np.int32(x[i]))
        out[i] = r
        if not ok:
            bad += 1
    return bad


@jit
def table16_lut(table):
    """(lut, bad): lut[v & 0xFFFF] = apply_lookup_s(table, v) for every int16 v; bad[...] = 1
    where the slope REQUIRE fails."""
    lut = np.empty(65536, np.int32)
    bad = np.zeros(65536, np.uint8)
    for v in range(-32768, 32768):
        r, ok = _lookup(table, np.int32(v))
        lut[v & 0xFFFF] = r
        if not ok:
            bad[v & 0xFFFF] = 1
    return lut, bad
