"""DEPTHWISE_CONV2D, with or without the RESCALE that consumes it: direct loops vectorised over
the channels, int32 partial sums where provably safe, blocks of output rows spread over the
worker threads (``_threads.run_parallel``), each block followed by the shared epilogue
(``_epilogue``).

Same names and arguments as the spec twins in ``tosaint.kernels.spec.tensor_ops``; every
function returns ``(output, count)`` where ``count`` is the number of output values for which a
spec REQUIRE failed.  Every value is exact, so results do not depend on the thread count.
"""
import numpy as np

from ._epilogue import bias64, epilogue_args, finalize_rows, rescale_rows
from ._int import I32_MAX
from ._jit import inline, jit
from ._threads import run_parallel

__all__ = ["depthwise_weights", "depthwise_conv2d", "depthwise_conv2d_rescale"]

#: multiply-adds per work block: smaller convolutions run in one call, on the calling thread
_BLOCK_MACS = 1 << 20


class _Depthwise:
    def __init__(self, weight, weight_zp, x_absmax):
        w = np.asarray(weight, np.int64)
        KH, KW, C, M = w.shape
        self.kh, self.kw, self.c, self.m = KH, KW, C, M
        wq = (w - int(weight_zp)).reshape(KH * KW, C * M)
        w_absmax = int(np.abs(wq).max()) if wq.size else 0
        # headroom proof: one tap adds at most p = max|x-izp| * max|w-wzp| to an int32 partial
        # sum, so `chunk` = I32_MAX // p taps never overflow int32; after every `chunk` taps
        # the partial sums are flushed into int64.  int16 x int8: p <= 2**15 * 255 < 2**23,
        # chunk >= 256; int8 x int8: p <= 255*255, chunk >= 33025.
        p = max(1, int(x_absmax) * w_absmax)
        self.chunk = max(1, min(KH * KW, I32_MAX // p))
        #: bound on |sum| of one output for any input (the fused epilogue's check)
        self.bound = KH * KW * p
        self.wq = np.ascontiguousarray(wq.astype(np.int32))


def depthwise_weights(weight, weight_zp, x_absmax):
    """Prepare the weights of DEPTHWISE_CONV2D once (at build)."""
    return _Depthwise(weight, weight_zp, x_absmax)


@jit
def _dw_taps3(acc, r, lo, hi, sx, x0, dx, izp, wa, wb, wc):
    """acc[ox, c] += three horizontal taps (input x = ox*sx + x0 + {0, dx, 2dx}, all inside
    the input row ``r``) for ox in [lo, hi), each pixel in one pass over the channels."""
    for ox in range(lo, hi):
        a = acc[ox]
        xx = ox * sx + x0
        for c in range(a.shape[0]):
            a[c] += ((np.int32(r[xx, c]) - izp) * wa[c] + (np.int32(r[xx + dx, c]) - izp) * wb[c]
                     + (np.int32(r[xx + 2 * dx, c]) - izp) * wc[c])


@jit
def _dw_taps9(acc, xn, y, dy, lo, hi, sx, x0, dx, zs, wq):
    """acc[ox, c] = the whole 3x3 sum for ox in [lo, hi), whose nine input pixels (rows y,
    y+dy, y+2dy; columns ox*sx + x0 + {0, dx, 2dx}) are all inside the image ``xn`` [IH, IW,
    C]: sum of x*w over the taps minus zs[c] = izp * (sum of the channel's nine weights),
    which is the sum of (x - izp)*w.  int32 arithmetic wraps, and the result fits int32
    (_depthwise_rows3's condition), so it is exact.  One pass over the channels per pixel."""
    r0, r1, r2 = xn[y], xn[y + dy], xn[y + 2 * dy]
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = (wq[0], wq[1], wq[2], wq[3], wq[4], wq[5], wq[6],
                                          wq[7], wq[8])
    for ox in range(lo, hi):
        a = acc[ox]
        xx = ox * sx + x0
        p0, p1, p2 = r0[xx], r0[xx + dx], r0[xx + 2 * dx]
        p3, p4, p5 = r1[xx], r1[xx + dx], r1[xx + 2 * dx]
        p6, p7, p8 = r2[xx], r2[xx + dx], r2[xx + 2 * dx]
        for c in range(a.shape[0]):
            a[c] = (np.int32(p0[c]) * w0[c] + np.int32(p1[c]) * w1[c]
                    + np.int32(p2[c]) * w2[c] + np.int32(p3[c]) * w3[c]
                    + np.int32(p4[c]) * w4[c] + np.int32(p5[c]) * w5[c]
                    + np.int32(p6[c]) * w6[c] + np.int32(p7[c]) * w7[c]
                    + np.int32(p8[c]) * w8[c] - zs[c])


@inline
def _dw_single(acc, src_row, lo, hi, sx, x0, izp, wr):
    """acc[ox, c] += (src_row[ox*sx + x0, c] - izp) * wr[c] for the ox outside [lo, hi) whose
    input pixel is inside the row: one tap near the edges (inlined into its callers)."""
    OW = acc.shape[0]
    IW = src_row.shape[0]
    for ox in range(OW - (hi - lo)):
        if ox >= lo:
            ox += hi - lo                               # the pixels right of [lo, hi)
        xx = ox * sx + x0
        if xx >= 0 and xx < IW:
            a = acc[ox]
            src = src_row[xx]
            for c in range(a.shape[0]):
                a[c] += (np.int32(src[c]) - izp) * wr[c]


@jit
def _dw_tap(a, src, izp, wr, M, C):
    """a[c*M+m] += (src[c] - izp) * wr[c*M+m]: one tap of one output pixel."""
    if M == 1:
        for c in range(C):
            a[c] += (np.int32(src[c]) - izp) * wr[c]
    else:
        for c in range(C):
            v = np.int32(src[c]) - izp
            for m in range(M):
                a[c * M + m] += v * wr[c * M + m]


@jit
def _depthwise_rows3(row0, row1, OH, x, izp, wq, KH, KW, sy, sx, dy, dx, pt, pl, zs, acc32):
    """The sums of output rows (n, oy) = row0 .. row1-1 (row = n*OH + oy) of a depthwise
    convolution with M == 1 whose taps all fit an int32 partial sum (chunk >= KH*KW, always
    for int16 x int8 up to 256 taps), written to ``acc32`` [(row1-row0)*OW, C].

    The taps of one kernel row are taken three at a time: for the output pixels whose three
    input pixels are all inside the input, one pass over the channels adds all three products
    (a third of the accumulator loads and stores); the pixels near the edges, and the last
    KW % 3 taps, are taken one by one with bounds checks.  A 3x3 kernel whose three input
    rows are inside the input takes all nine taps in one pass (``_dw_taps9``, ``zs``: its
    zero-point term) and only its edge pixels tap by tap.  The loops over the channels are
    contiguous (vectorised)."""
    N, IH, IW, C = x.shape
    OW = acc32.shape[0] // (row1 - row0)
    for row in range(row0, row1):
        n = row // OH
        oy = row % OH
        acc = acc32[(row - row0) * OW:(row - row0 + 1) * OW]
        y0 = oy * sy - pt
        if KH == 3 and KW == 3 and y0 >= 0 and y0 + 2 * dy < IH:
            # ox with all nine taps inside: 0 <= ox*sx - pl and ox*sx - pl + 2*dx <= IW-1
            lo = min(OW, max(0, -((-pl) // sx)))
            hi = max(lo, min(OW, (IW - 1 + pl - 2 * dx) // sx + 1))
            _dw_taps9(acc, x[n], y0, dy, lo, hi, sx, -pl, dx, zs, wq)
            acc[:lo] = 0
            acc[hi:] = 0
            for t in range(9):
                _dw_single(acc, x[n, y0 + (t // 3) * dy], lo, hi, sx, (t % 3) * dx - pl, izp,
                           wq[t])
            continue
        acc[:] = 0
        for ky in range(KH):
            y = oy * sy - pt + ky * dy
            if y < 0 or y >= IH:
                continue
            src_row = x[n, y]
            kx = 0
            while kx < KW:
                group = 3 if kx + 3 <= KW else 1
                lo = hi = 0
                if group == 3:
                    # ox with all three taps inside: 0 <= ox*sx - pl + kx*dx and
                    # ox*sx - pl + (kx+2)*dx <= IW-1
                    lo = min(OW, max(0, -((kx * dx - pl) // sx)))
                    hi = max(lo, min(OW, (IW - 1 + pl - (kx + 2) * dx) // sx + 1))
                    t0 = ky * KW + kx
                    _dw_taps3(acc, src_row, lo, hi, sx, kx * dx - pl, dx, izp, wq[t0],
                              wq[t0 + 1], wq[t0 + 2])
                for t in range(group):
                    _dw_single(acc, src_row, lo, hi, sx, (kx + t) * dx - pl, izp,
                               wq[ky * KW + kx + t])
                kx += group


@jit
def _depthwise_rows(row0, row1, OH, x, izp, wq, M, KH, KW, sy, sx, dy, dx, pt, pl, chunk,
                    acc32, acc64):
    """The sums of output rows (n, oy) = row0 .. row1-1 (row = n*OH + oy) of any depthwise
    convolution, written to ``acc32`` [(row1-row0)*OW, C*M] as int32 partial sums, or, when
    the taps must be flushed (``chunk`` < KH*KW), whole to ``acc64`` (same shape, int64).

    Headroom: partial sums are int32 for at most ``chunk`` taps (see _Depthwise), then flushed
    to int64.  Taps go one by one, output x in blocks of OXB pixels so that their partial sums
    stay in L1; the loops over the channels are contiguous (vectorised)."""
    N, IH, IW, C = x.shape
    CM = acc32.shape[1]
    OW = acc32.shape[0] // (row1 - row0)
    flush = chunk < KH * KW
    OXB = max(1, 4096 // max(CM, 1))
    acc32[:] = 0
    if flush:
        acc64[:] = 0
    for row in range(row0, row1):
        n = row // OH
        oy = row % OH
        base = (row - row0) * OW
        acc = acc32[base:base + OW]
        for ox0 in range(0, OW, OXB):
            ox1 = min(OW, ox0 + OXB)
            used = 0
            for ky in range(KH):
                y = oy * sy - pt + ky * dy
                if y < 0 or y >= IH:
                    continue
                src_row = x[n, y]
                for kx in range(KW):
                    wr = wq[ky * KW + kx]
                    for ox in range(ox0, ox1):
                        xx = ox * sx - pl + kx * dx
                        if xx >= 0 and xx < IW:
                            _dw_tap(acc[ox], src_row[xx], izp, wr, M, C)
                    used += 1
                    if flush and used == chunk:
                        for ox in range(ox0, ox1):
                            for j in range(CM):
                                acc64[base + ox, j] += acc[ox, j]
                                acc[ox, j] = 0
                        used = 0
    if flush:                   # fold the int32 partial sums into the int64 ones
        for r in range(acc64.shape[0]):
            for j in range(CM):
                acc64[r, j] += acc32[r, j]


def _depthwise(input, weights, bias, input_zp, pad, stride, dilation, out, out48, rescale):
    """Run _depthwise_rows over all output rows in blocks spread over the worker threads, each
    block followed by its epilogue: finalize_rows, or with ``rescale`` (rescale_rows's
    parameters) the fused RESCALE.  Returns the epilogues' count."""
    N, OH, OW, CM = out.shape
    rows = N * OH
    step = max(1, min(rows, _BLOCK_MACS // max(1, OW * CM * weights.kh * weights.kw)))
    flush = weights.chunk < weights.kh * weights.kw
    out2 = out.reshape(rows * OW, CM)
    bias = bias64(bias, CM)
    izp = np.int32(input_zp)
    geometry = (weights.kh, weights.kw, stride[0], stride[1], dilation[0], dilation[1], pad[0],
                pad[2])
    grouped = weights.m == 1 and not flush
    # the zero-point term of _dw_taps9: izp * (sum of each channel's nine weights)
    zs = (int(input_zp) * weights.wq[:9].sum(0, dtype=np.int64)).astype(np.int32) \
        if weights.kh * weights.kw == 9 else np.zeros(CM, np.int32)
    args3 = (OH, input, izp, weights.wq) + geometry + (zs,)
    args = (OH, input, izp, weights.wq, weights.m) + geometry + (weights.chunk,)

    def work(tid, blocks):
        acc32 = np.empty((step * OW, CM), np.int32)
        acc64 = np.empty((step * OW if flush else 1, CM), np.int64)
        count = 0
        for b in blocks:
            r0, r1 = b * step, min(rows, (b + 1) * step)
            a32, a64 = acc32[:(r1 - r0) * OW], acc64[:(r1 - r0) * OW]
            if grouped:
                _depthwise_rows3(r0, r1, *args3, a32)
            else:
                _depthwise_rows(r0, r1, *args, a32, a64)
            acc = a64 if flush else a32
            o = out2[r0 * OW:r1 * OW]
            count += (rescale_rows(acc, bias, o, out48, *rescale) if rescale else
                      finalize_rows(acc, bias, o, out48))
        return count

    return int(run_parallel(-(-rows // step) if OW * CM else 0, work))


def depthwise_conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48):
    out = np.empty(out_shape, np.int64 if out48 else np.int32)
    n = _depthwise(input, weights, bias, input_zp, pad, stride, dilation, out, out48, None)
    return out, n


def depthwise_conv2d_rescale(input, weights, bias, input_zp, pad, stride, dilation, out_shape,
                             out48, rescale, out_dtype):
    """A DEPTHWISE_CONV2D and the RESCALE (signed input, zero point 0, every REQUIRE checked:
    see type_conversion.rescale_exact) that consumes it, without storing the accumulator
    tensor.  ``rescale``: (multiplier, rnd_pos, rnd_neg, shift, half, lo, hi, out_zp, qmin,
    qmax); [lo, hi] as in the op layer's no_require_range.
    Returns (output, count of elements where either op flags anything)."""
    out = np.empty(out_shape, out_dtype)
    CM = out_shape[3]
    n = _depthwise(input, weights, bias, input_zp, pad, stride, dilation, out, out48,
                   epilogue_args(rescale, bias64(bias, CM), weights.bound, out48))
    return out, n
