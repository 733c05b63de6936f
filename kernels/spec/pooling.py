"""NumPy/Python twins of ``tosaint.kernels.pooling``, transcribed from AVG_POOL2D.tosac,
MAX_POOL2D.tosac and ARGMAX.tosac.

The pooling twins run the pseudocode's tap loop ``for_each(0 <= ky < kernel_y, 0 <= kx <
kernel_x)`` as the outer loop, with every output position (n, oy, ox, c) as one NumPy vector:
each output still accumulates its in-bounds taps in the spec's order, so values and overflow
checks are those of the pseudocode.  ``apply_scale_32`` and ``reciprocal_scale`` are the scalar
spec helpers, called once per distinct (accumulator, count) pair.
"""
import numpy as np

from .._int import I32_MAX, I32_MIN, wrap32
from .scale import apply_scale_32, reciprocal_scale

__all__ = ["avg_pool2d", "max_pool2d", "argmax"]


def _taps(ih, iw, oh, ow, kernel_y, kernel_x, stride_y, stride_x, pad_top, pad_left):
    """For every tap (ky, kx) with at least one in-bounds position: the input rows/columns
    each output reads (clipped for indexing) and the (OH, OW) mask of in-bounds reads."""
    oy = np.arange(oh)
    ox = np.arange(ow)
    for ky in range(kernel_y):
        y = oy * stride_y - pad_top + ky
        vy = (0 <= y) & (y < ih)
        if not vy.any():
            continue
        for kx in range(kernel_x):
            x = ox * stride_x - pad_left + kx
            vx = (0 <= x) & (x < iw)
            if not vx.any():
                continue
            yield (np.clip(y, 0, ih - 1), np.clip(x, 0, iw - 1),
                   vy[:, None] & vx[None, :])


def avg_pool2d(x, out, kernel_y, kernel_x, stride_y, stride_x, pad_top, pad_left, input_zp,
               output_zp, lo, hi, check_acc):
    n_, ih, iw, c_ = x.shape
    _, oh, ow, _ = out.shape
    acc = np.zeros(out.shape, np.int64)                                  # acc_t acc = 0
    count = np.zeros((oh, ow), np.int64)                                 # int count = 0
    bad_acc = 0
    for y, xx, valid in _taps(ih, iw, oh, ow, kernel_y, kernel_x, stride_y, stride_x,
                              pad_top, pad_left):
        count += valid                                                   # count++
        value = x[:, y][:, :, xx].astype(np.int64) - input_zp            # apply_sub_s
        v = valid[None, :, :, None]
        acc = np.where(v, acc + value, acc)                              # apply_add_s
        wrong = v & ((acc < I32_MIN) | (acc > I32_MAX))
        if wrong.any():
            bad_acc += int(wrong.sum())
            acc = np.where(wrong, wrap32(acc), acc)
    # scale_t scale = reciprocal_scale(count); acc = apply_scale_32(acc, ..., false)
    counts = np.broadcast_to(count[None, :, :, None], acc.shape)
    pairs, inverse = np.unique(np.stack([acc.ravel(), counts.ravel()], 1), axis=0,
                               return_inverse=True)
    scaled = np.empty(len(pairs), np.int64)
    ok = np.empty(len(pairs), bool)
    for i, (a, cnt) in enumerate(pairs.tolist()):
        multiplier, shift = reciprocal_scale(cnt)
        scaled[i], ok[i] = apply_scale_32(a, multiplier, shift, False)
    inverse = inverse.reshape(-1)
    bad_scale = int((~ok)[inverse].sum())
    result = scaled[inverse].reshape(acc.shape) + output_zp              # apply_add_s
    out[...] = np.clip(result, lo, hi)                                   # apply_clip_s
    return bad_acc, bad_scale


def max_pool2d(x, out, kernel_y, kernel_x, stride_y, stride_x, pad_top, pad_left):
    n_, ih, iw, c_ = x.shape
    _, oh, ow, _ = out.shape
    acc = np.full(out.shape, np.iinfo(x.dtype).min, x.dtype)            # minimum_s<in_out_t>
    for y, xx, valid in _taps(ih, iw, oh, ow, kernel_y, kernel_x, stride_y, stride_x,
                              pad_top, pad_left):
        value = x[:, y][:, :, xx]
        acc = np.where(valid[None, :, :, None], np.maximum(acc, value), acc)  # apply_max_s
    out[...] = acc
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
