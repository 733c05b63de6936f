"""Pooling kernels (spec chapter "Tensor Operators": AVG_POOL2D, MAX_POOL2D; ARGMAX is in
``reduction``).

The window loops keep the channel axis innermost (NHWC), so every tap is a contiguous run of C
values.  The kernels are serial on purpose: pooling does a few adds per loaded value and is
memory bound (1x56x56x64 3x3 int16 takes ~0.5 ms on one core), so a parallel loop only adds
thread start-up and synchronisation cost, which is large on a loaded machine.  Serial kernels
also make the result trivially independent of NUMBA_NUM_THREADS.
"""
import numpy as np

from ._int import I32_MAX, I32_MIN
from ._jit import inline, jit, wrap32
from .scale import apply_scale_32, reciprocal_scale

__all__ = ["avg_pool2d", "max_pool2d"]


@jit
def avg_pool2d(x, out, kernel_y, kernel_x, stride_y, stride_x, pad_top, pad_left, input_zp,
               output_zp, lo, hi, check_acc):
    """AVG_POOL2D of NHWC ``x`` into ``out`` (same dtype, shape [N,OH,OW,C]).

    Only the taps inside the input count.  The int32 accumulation is checked step by step
    (apply_add_s REQUIRE) only when ``check_acc`` (the op layer knows when it cannot overflow);
    an overflowing step wraps to int32, as the reference model's int32 accumulator does.
    Returns (accumulator overflows, failed apply_scale_32 REQUIREs).
    """
    n_ = x.shape[0]
    oh = out.shape[1]
    bad = np.zeros((n_ * oh, 2), np.int64)
    for t in range(n_ * oh):
        n = t // oh
        _avg_pool_row(x, out, n, t - n * oh, kernel_y, kernel_x, stride_y, stride_x, pad_top,
                      pad_left, input_zp, output_zp, lo, hi, check_acc, bad[t])
    return bad[:, 0].sum(), bad[:, 1].sum()


@inline
def _window(o, stride, pad, k, size):
    """The input range [lo, hi) of output position ``o``'s window, clipped to the input."""
    i = o * stride - pad
    return max(i, 0), min(i + k, size)


@jit
def _avg_pool_row(x, out, n, oy, ky_, kx_, sy, sx, pad_top, pad_left, input_zp, output_zp,
                  lo, hi, check_acc, bad):
    ih, iw, c_ = x.shape[1], x.shape[2], x.shape[3]
    ow = out.shape[2]
    acc = np.empty(c_, np.int64)
    y0, y1 = _window(oy, sy, pad_top, ky_, ih)
    for ox in range(ow):
        x0, x1 = _window(ox, sx, pad_left, kx_, iw)
        for c in range(c_):
            acc[c] = 0
        count = (y1 - y0) * (x1 - x0)
        for y in range(y0, y1):
            for xx in range(x0, x1):
                if check_acc:
                    for c in range(c_):
                        a = acc[c] + (np.int64(x[n, y, xx, c]) - input_zp)
                        if a < I32_MIN or a > I32_MAX:
                            bad[0] += 1
                            a = wrap32(a)
                        acc[c] = a
                else:
                    for c in range(c_):
                        acc[c] += np.int64(x[n, y, xx, c])
        if not check_acc:
            for c in range(c_):
                acc[c] -= count * input_zp
        ms = reciprocal_scale(count)
        for c in range(c_):
            r = apply_scale_32(acc[c], ms[0], ms[1], False)
            if not r[1]:
                bad[1] += 1
            v = r[0] + output_zp
            if v < lo:
                v = lo
            elif v > hi:
                v = hi
            out[n, oy, ox, c] = v


@jit
def max_pool2d(x, out, kernel_y, kernel_x, stride_y, stride_x, pad_top, pad_left):
    """MAX_POOL2D of NHWC ``x`` into ``out``: the maximum of the taps inside the input."""
    n_ = x.shape[0]
    oh = out.shape[1]
    for t in range(n_ * oh):
        n = t // oh
        _max_pool_row(x, out, n, t - n * oh, kernel_y, kernel_x, stride_y, stride_x, pad_top,
                      pad_left)
    return 0


@jit
def _max_pool_row(x, out, n, oy, ky_, kx_, sy, sx, pad_top, pad_left):
    ih, iw, c_ = x.shape[1], x.shape[2], x.shape[3]
    ow = out.shape[2]
    y0, y1 = _window(oy, sy, pad_top, ky_, ih)
    for ox in range(ow):
        x0, x1 = _window(ox, sx, pad_left, kx_, iw)
        for c in range(c_):
            out[n, oy, ox, c] = x[n, y0, x0, c]
        for y in range(y0, y1):
            for xx in range(x0, x1):
                for c in range(c_):
                    v = x[n, y, xx, c]
                    if v > out[n, oy, ox, c]:
                        out[n, oy, ox, c] = v

