"""NumPy/Python twin of ``tosaint.kernels.type_conversion``, transcribed from RESCALE.tosac.

Element by element, with Python integers and the spec's scale helpers.  INEXACT_ROUND is not
in the pseudocode (which treats it as SINGLE_ROUND): it follows the reference model's fp32
computation, float(v) * float(m) * exp2f(-shift) rounded with rint (ties to even).
"""
import numpy as np

from .._int import DOUBLE32, I32_MAX, I32_MIN, INEXACT32, SCALE16, SINGLE32
from .scale import apply_scale_16, apply_scale_32

__all__ = ["rescale", "rescale_exact"]


def _inexact(value, multiplier, pow2):
    f = np.float32(value) * np.float32(multiplier)
    f = np.float32(f * np.float32(pow2))
    d = float(np.rint(np.float64(f)))
    if not (-2.0 ** 31 <= d < 2.0 ** 31):
        return I32_MIN   # what the reference model's float -> int32 cast gives on x86
    return int(d)


def rescale(x, in_mask, in_zp, out_zp, multiplier, shift, pow2, mode, qmin, qmax, out):
    rows, cols = x.shape
    n_scale = n_zp = 0
    for r in range(rows):
        for c in range(cols):
            in_value = int(x[r, c])
            value = in_value & in_mask if in_mask else in_value   # zero_extend / sign_extend
            value = value - in_zp
            m, s = int(multiplier[c]), int(shift[c])
            if mode in (SINGLE32, DOUBLE32):
                result, ok = apply_scale_32(value, m, s, mode == DOUBLE32) \
                    if 2 <= s <= 62 else (0, False)
            elif mode == SCALE16:
                result, ok = apply_scale_16(value, m, s) if 2 <= s <= 62 else (0, False)
            else:
                result = _inexact(value, m, pow2[c])
                ok = m >= 0 and 2 <= s <= 62
                if ok and mode == INEXACT32:
                    ok = -(1 << (s - 1)) <= value < (1 << (s - 1))
            if not ok:
                n_scale += 1
                if mode < INEXACT32:
                    out[r, c] = 0
                    continue
            result = result + out_zp                     # apply_add_s<int32_t>
            if not (I32_MIN <= result <= I32_MAX):
                n_zp += 1
                result = 0
            out[r, c] = min(max(result, qmin), qmax)     # apply_clip_s / apply_clip_u
    return n_scale, n_zp


def rescale_exact(x, in_zp, out_zp, multiplier, rnd_pos, rnd_neg, shift, half, qmin, qmax, out):
    """Twin of the Numba fast path: the same formula on whole arrays of Python-exact int64
    (object arrays would be exact too, but |v*m| < 2**62 here whenever no REQUIRE fails)."""
    v = x.astype(np.int64) - in_zp
    rnd = np.where(v >= 0, rnd_pos, rnd_neg)
    scaled = (v * multiplier + rnd) >> shift           # array arithmetic wraps silently
    res = scaled + out_zp
    fail = (v < -half) | (v >= half) | (scaled < I32_MIN) | (scaled > I32_MAX) | \
        (res < I32_MIN) | (res > I32_MAX)
    out[...] = np.clip(res, qmin, qmax)
    return int(fail.sum())
