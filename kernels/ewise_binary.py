"""TABLE kernels (spec chapter "Elementwise Binary Operators"; the other binary ops are exact
NumPy in the op layer), vectorised NumPy: a few passes over the data, nothing to compile.

int16 TABLE: ``table16_lut`` evaluates apply_lookup_s once for each of the 65536 int16 inputs
(a constant table makes the whole operator a gather, exact by construction, done with
``np.take`` in the op layer); ``table16`` evaluates apply_lookup_s element by element
when the table is not a compile-time constant.
"""
import numpy as np

__all__ = ["table16", "table16_lut"]

#: every int16 value, in the order of its 16-bit pattern (v & 0xFFFF)
_ALL_I16 = np.arange(1 << 16, dtype=np.uint16).view(np.int16)


def _lookup(table, value):
    """(apply_lookup_s(table, value), slope fits int16) for int16 values (any shape); the
    int32 arithmetic cannot overflow: |base << 7| < 2**22, |slope * fraction| < 2**24."""
    v = value.astype(np.int32)
    index = (v + 32768) >> 7
    fraction = v & 0x7F
    t = table.astype(np.int32)
    base = t[index]
    slope = t[index + 1] - base
    ok = (slope >= -32768) & (slope <= 32767)
    return (base << 7) + slope * fraction, ok


def table16(x, table, out):
    """out = apply_lookup_s(table, x) for int16 x (flat); returns how many slopes leave int16."""
    r, ok = _lookup(table, x)
    out[...] = r
    return int(ok.size - np.count_nonzero(ok))


def table16_lut(table):
    """(lut, bad): lut[v & 0xFFFF] = apply_lookup_s(table, v) for every int16 v; bad[...] = 1
    where the slope REQUIRE fails."""
    lut, ok = _lookup(table, _ALL_I16)
    return lut, (~ok).view(np.uint8)
