"""NumPy/Python twins of ``tosaint.kernels.pooling``, transcribed from AVG_POOL2D.tosac,
MAX_POOL2D.tosac and ARGMAX.tosac.

The window loops follow the pseudocode (every output position, every tap, only in-bounds taps
count); the channel and batch axes are handled as NumPy vectors, which does not change any
value, and the scaling calls the scalar spec helpers element by element.
"""
import numpy as np

from .scale import apply_scale_32, reciprocal_scale

__all__ = ["avg_pool2d", "max_pool2d", "argmax"]

_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


def avg_pool2d(x, out, kernel_y, kernel_x, stride_y, stride_x, pad_top, pad_left, input_zp,
               output_zp, lo, hi, check_acc):
    n_, ih, iw, c_ = x.shape
    _, oh, ow, _ = out.shape
    bad_acc = 0
    bad_scale = 0
    for oy in range(oh):
        for ox in range(ow):
            acc = np.zeros((n_, c_), np.int64)
            count = 0
            iy = oy * stride_y - pad_top
            ix = ox * stride_x - pad_left
            for ky in range(kernel_y):
                for kx in range(kernel_x):
                    y = iy + ky
                    xx = ix + kx
                    if 0 <= y < ih and 0 <= xx < iw:
                        count += 1
                        value = x[:, y, xx, :].astype(np.int64) - input_zp   # apply_sub_s
                        acc = acc + value                                     # apply_add_s
                        wrong = (acc < _I32_MIN) | (acc > _I32_MAX)
                        if wrong.any():
                            bad_acc += int(wrong.sum())
                            acc = ((acc - _I32_MIN) & 0xFFFFFFFF) + _I32_MIN
            multiplier, shift = reciprocal_scale(count)
            for n in range(n_):
                for c in range(c_):
                    v, ok = apply_scale_32(int(acc[n, c]), multiplier, shift, False)
                    bad_scale += not ok
                    v = v + output_zp
                    v = min(max(v, lo), hi)                                   # apply_clip_s
                    out[n, oy, ox, c] = v
    return bad_acc, bad_scale


def max_pool2d(x, out, kernel_y, kernel_x, stride_y, stride_x, pad_top, pad_left):
    n_, ih, iw, c_ = x.shape
    _, oh, ow, _ = out.shape
    lowest = np.iinfo(x.dtype).min
    for oy in range(oh):
        for ox in range(ow):
            acc = np.full((n_, c_), lowest, x.dtype)                       # minimum_s<in_out_t>
            iy = oy * stride_y - pad_top
            ix = ox * stride_x - pad_left
            for ky in range(kernel_y):
                for kx in range(kernel_x):
                    y = iy + ky
                    xx = ix + kx
                    if 0 <= y < ih and 0 <= xx < iw:
                        acc = np.maximum(acc, x[:, y, xx, :])              # apply_max_s
            out[:, oy, ox, :] = acc
    return 0


def argmax(x3, out2):
    left, a, right = x3.shape
    lowest = np.iinfo(x3.dtype).min
    for li in range(left):
        for ri in range(right):
            max_value = lowest
            max_index = 0
            for i in range(a):
                value = x3[li, i, ri]
                result = max(value, max_value)
                if result != max_value:
                    max_value = result
                    max_index = i
            out2[li, ri] = max_index
    return 0
