"""Dense convolutions: CONV2D (blocked im2col GEMM, or Winograd F(2x2,3x3)), CONV3D and
TRANSPOSE_CONV2D, bit-exact through floating-point BLAS.

Same names and arguments as the spec twins in ``tosaint.kernels.spec.tensor_ops``; every
function returns ``(output, count)`` where ``count`` is the number of output values for which a
spec REQUIRE failed (the output then holds what the reference model returns: int48 saturated,
int32 wrapped).

How the dense operators stay exact while using floating-point BLAS
-------------------------------------------------------------------
A dense convolution is a matrix product ``col[M, K] @ Wt[K, OC]`` where ``col`` holds the
(zero-point corrected) input values of every tap (im2col) and ``Wt`` the corrected weights.
Every product ``p = (x - izp) * (w - wzp)`` is an integer, and if
``bound = K * max|x - izp| * max|w - wzp| < 2**mantissa`` (2**24 for float32, 2**53 for
float64) then *every* partial sum a BLAS forms, in any order, with or without FMA, is an integer
of magnitude <= bound and therefore exactly representable: no rounding ever happens and the
float result equals the exact integer sum.  ``exact_float_type`` picks float32 when the bound
is below 2**24 (int8 x int8 with zero points 0: K * 128 * 128 < 2**24, i.e. K < 1024; fewer taps
with larger zero points) and float64 otherwise (int16 x int8: products < 2**23, exact for
K < 2**30).  Beyond float64's bound the op falls back to the exact int64 spec twin.

The exact float sums go through ``_epilogue.finalize_rows`` (bias, the reference model's int48
saturation or int32 wrap) or, fused with the RESCALE that consumes the sum,
``_epilogue.rescale_rows``.  The im2col matrix is built in row blocks (at most
``_threads.BLOCK_ELEMS`` elements per worker thread) so that peak memory stays near twice the
operands.  A 3x3 stride-1 CONV2D that needs float64 (int16 input) uses Winograd F(2x2,3x3)
with integer-scaled transforms instead (2.25x fewer multiplies, still exact: see
``_Dense.winograd``).  TRANSPOSE_CONV2D multiplies every input pixel by all its taps at once
(sums over IC only) and scatter-adds the products into an int64 accumulator.  Results do not
depend on the thread count: every value is exact.
"""
import numpy as np

from . import _threads
from ._epilogue import NO_RESCALE, bias64, epilogue_args, finalize_rows, rescale_rows, rescaled
from ._int import I32_MAX, I32_MIN, I48_MAX, I48_MIN
from ._jit import jit, sat48, wrap32
from ._threads import run_parallel, single_threaded_blas
from .spec import tensor_ops as _spec

__all__ = ["conv_weights", "conv2d", "conv2d_rescale", "conv3d", "transpose_conv2d"]


def exact_float_type(bound):
    """The narrowest float type in which sums of magnitude <= bound are exact (None: none)."""
    if bound < (1 << 24):
        return np.float32
    if bound < (1 << 53):
        return np.float64
    return None


@jit
def _im2col(x, izp, r0, col, OD, OH, OW, KD, KH, KW, sd, sy, sx, dd, dy, dx, pd, pt, pl):
    """Rows r0 .. r0+len(col) of the im2col matrix of a 3-D convolution (CONV3D.tosac loops).

    x: [N, ID, IH, IW, C].  Output position (n, od, oy, ox) = row r (row-major); column
    ((kd*KH + ky)*KW + kx)*C + c holds x[n, d, y, x, c] - izp with d = od*sd - pd + kd*dd
    (likewise y, x), or 0 where (d, y, x) is outside the input (padding contributes 0).
    """
    N, ID, IH, IW, C = x.shape
    R = col.shape[0]
    KWC = KW * C
    for i in range(R):
        r = r0 + i
        ox = r % OW
        t = r // OW
        oy = t % OH
        t = t // OH
        od = t % OD
        n = t // OD
        k = 0
        x0 = ox * sx - pl
        # the KW taps of one kernel row are KW*C contiguous input values when dx == 1 and
        # they are all inside: one copy loop
        row_inside = dx == 1 and x0 >= 0 and x0 + KW <= IW
        for kd in range(KD):
            d = od * sd - pd + kd * dd
            okd = d >= 0 and d < ID
            for ky in range(KH):
                y = oy * sy - pt + ky * dy
                oky = okd and y >= 0 and y < IH
                if oky and row_inside:
                    src = x[n, d, y].reshape(IW * C)[x0 * C:x0 * C + KWC]
                    dst = col[i, k:k + KWC]
                    for j in range(KWC):
                        dst[j] = np.int32(src[j]) - izp
                    k += KWC
                    continue
                for kx in range(KW):
                    xx = ox * sx - pl + kx * dx
                    if oky and xx >= 0 and xx < IW:
                        src = x[n, d, y, xx]
                        for c in range(C):
                            col[i, k + c] = np.int32(src[c]) - izp
                    else:
                        for c in range(C):
                            col[i, k + c] = 0
                    k += C


class _Dense:
    """Weights of a dense convolution prepared once, in the exact float type.

    CONV2D / CONV3D: ``wt`` [K, OC] with K = KD*KH*KW*IC (the im2col column order).
    TRANSPOSE_CONV2D: ``wt`` [IC, KH*KW*OC]: every input pixel times the weights gives its
    contribution to all KH*KW output positions it reaches (scattered by ``_scatter_add``).
    """

    def __init__(self, weight, weight_zp, op, x_absmax):
        # int32 holds every corrected weight (int8/int4 minus a zero point in int8's range)
        w = np.asarray(weight).astype(np.int32)
        if weight_zp:
            w -= int(weight_zp)
        self.transpose = op == "transpose_conv2d"
        if w.ndim == 4:
            w = w[:, None]                                   # [OC, KD=1, KH, KW, IC]
        self.oc, self.kd, self.kh, self.kw, self.ic = w.shape
        w_absmax = int(max(w.max(), -w.min())) if w.size else 0
        # headroom proof: see the module docstring; bound = K * max|x-izp| * max|w-wzp|, where
        # a TRANSPOSE_CONV2D's GEMM sums run over IC only
        self.k = self.ic if self.transpose else self.kd * self.kh * self.kw * self.ic
        self.ftype = exact_float_type(self.k * int(x_absmax) * w_absmax)
        if self.ftype is None:      # beyond float64's exact range: the int64 spec twin runs
            self.spec = _spec.conv_weights(weight, weight_zp, op, x_absmax)
        self.x_absmax, self.w_absmax = int(x_absmax), w_absmax
        self._wq = w
        self._wt = None
        self._w = w if (op == "conv2d" and self.kh == 3 and self.kw == 3) else None
        self._wino = None

    @property
    def wt(self):
        """The GEMM weights in the exact float type, built on first use (a convolution that
        runs by Winograd never needs them)."""
        if self._wt is None:
            w = self._wq
            if self.transpose:
                wq = w[:, 0].transpose(3, 1, 2, 0).reshape(self.ic, self.kh * self.kw * self.oc)
            else:
                wq = w.reshape(self.oc, self.k).T
            self._wt = np.ascontiguousarray(wq, self.ftype)
        return self._wt

    def winograd(self):
        """U [16, IC, OC] float64 = G2 g G2^T per (ic, oc), or None when not applicable.

        F(2x2, 3x3) Winograd with the transform scaled to integers: G2 = 2*G, so
        4*Y = A^T [(G2 g G2^T) * (B^T d B)] A.  Headroom: |B^T d B| <= 4*max|x-izp|,
        |G2 g G2^T| <= 9*max|w-wzp|, one GEMM sum <= IC * 36 * max|x| * max|w| and the output
        transform adds 9 of those, so everything is exact in float64 while
        324 * IC * max|x-izp| * max|w-wzp| < 2**53.  The transform itself runs in int32
        (|values| <= 9 * 255)."""
        if self._w is None or 324 * self.ic * self.x_absmax * self.w_absmax >= (1 << 53):
            return None
        if self._wino is None:
            g = np.ascontiguousarray(self._w[:, 0].transpose(1, 2, 3, 0))  # [3, 3, IC, OC]
            u = _g2(_g2(g, 0), 1, np.float64)                               # [4, 4, IC, OC]
            self._wino = u.reshape(16, self.ic, self.oc)
        return self._wino


def _g2(t, axis, dtype=None):
    """G2 t along ``axis`` (0 or 1; length 3 -> 4), G2 = [[2,0,0], [1,1,1], [1,-1,1], [0,0,2]],
    written in ``dtype`` (default t's; integers: every value is exact)."""
    shape = list(t.shape)
    shape[axis] = 4
    out = np.empty(shape, dtype or t.dtype)
    if axis == 1:
        t, o = t.swapaxes(0, 1), out.swapaxes(0, 1)
    else:
        o = out
    s = t[0] + t[2]
    np.add(t[0], t[0], out=o[0])
    np.add(s, t[1], out=o[1])
    np.subtract(s, t[1], out=o[2])
    np.add(t[2], t[2], out=o[3])
    return out


def conv_weights(weight, weight_zp, op, x_absmax):
    """Prepare the weights of CONV2D / CONV3D / TRANSPOSE_CONV2D once (at build)."""
    return _Dense(weight, weight_zp, op, x_absmax)


def _dense(x5, prep, bias, input_zp, out5, stride, dilation, pad_lo, out48, rescale=None,
           out_dtype=None):
    """The blocked im2col GEMM; ``bias``: from bias64."""
    N, OD, OH, OW, OC = out5
    M = N * OD * OH * OW
    x5 = np.ascontiguousarray(x5)                    # _im2col reads rows as flat runs
    K = prep.k
    out = np.empty((M, OC), out_dtype if rescale else np.int64 if out48 else np.int32)
    rows = max(1, min(M, _threads.BLOCK_ELEMS // max(K, 1)))
    nblocks = -(-M // rows)
    izp = np.int32(input_zp)
    # a 1x1x1 kernel with stride 1 and no padding reads every input pixel once, in order: its
    # im2col matrix is the input itself minus the zero point (one vectorised NumPy pass; no
    # kernel to compile for the linear layers of transformers)
    pixels = None
    if ((prep.kd, prep.kh, prep.kw) == (1, 1, 1) and tuple(stride) == (1, 1, 1)
            and tuple(pad_lo) == (0, 0, 0) and tuple(out5[1:4]) == x5.shape[1:4]):
        pixels = x5.reshape(M, prep.ic)

    def work(tid, blocks):
        col = np.empty((rows, K), prep.ftype)
        acc = np.empty((rows, OC), prep.ftype)
        count = 0
        for blk in blocks:
            r0 = blk * rows
            r1 = min(M, r0 + rows)
            c = col[:r1 - r0]
            a = acc[:r1 - r0]
            if pixels is not None:
                np.subtract(pixels[r0:r1], izp, out=c, casting="unsafe")    # exact integers
            else:
                _im2col(x5, izp, r0, c, OD, OH, OW, prep.kd, prep.kh, prep.kw,
                        stride[0], stride[1], stride[2], dilation[0], dilation[1], dilation[2],
                        pad_lo[0], pad_lo[1], pad_lo[2])
            np.matmul(c, prep.wt, out=a)                     # exact: see module docstring
            if rescale:
                count += rescale_rows(a, bias, out[r0:r1], out48, *rescale)
            else:
                count += finalize_rows(a, bias, out[r0:r1], out48)
        return count

    count = run_parallel(nblocks, work)
    return out.reshape(out5), int(count)


@jit
def _wino_in(x, izp, pt, pl, TY, TX, t0, V):
    """V[4*a+b, t, c] = (B^T d B)[a, b] for tiles t0.. (tile t = (n, ty, tx) covers output
    rows 2ty..2ty+1, columns 2tx..2tx+1); d = the 4x4 input patch minus izp, 0 outside.
    Every loop over c is contiguous (vectorised)."""
    N, IH, IW, C = x.shape
    D = np.empty((4, 4, C), np.float64)
    R = np.empty((4, 4, C), np.float64)
    for i in range(V.shape[1]):
        t = t0 + i
        tx = t % TX
        ty = (t // TX) % TY
        n = t // (TX * TY)
        y0 = 2 * ty - pt
        x0 = 2 * tx - pl
        for a in range(4):
            y = y0 + a
            for b in range(4):
                xx = x0 + b
                if y >= 0 and y < IH and xx >= 0 and xx < IW:
                    src = x[n, y, xx]
                    for c in range(C):
                        D[a, b, c] = np.int32(src[c]) - izp
                else:
                    for c in range(C):
                        D[a, b, c] = 0.0
        for b in range(4):                          # R = B^T D (over rows a)
            for c in range(C):
                R[0, b, c] = D[0, b, c] - D[2, b, c]
                R[1, b, c] = D[1, b, c] + D[2, b, c]
                R[2, b, c] = D[2, b, c] - D[1, b, c]
                R[3, b, c] = D[1, b, c] - D[3, b, c]
        for a in range(4):                          # (B^T D) B (over columns b)
            for c in range(C):
                V[4 * a + 0, i, c] = R[a, 0, c] - R[a, 2, c]
                V[4 * a + 1, i, c] = R[a, 1, c] + R[a, 2, c]
                V[4 * a + 2, i, c] = R[a, 2, c] - R[a, 1, c]
                V[4 * a + 3, i, c] = R[a, 1, c] - R[a, 3, c]


#: the output transform of F(2x2, 3x3) as one matrix: Y[2*r + s] = sum over a, b of
#: A^T[r, a] * A^T[s, b] * M[4*a + b] (A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]), i.e. 4 * the
#: four outputs of a tile from its 16 GEMM results
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
_ATA = np.ascontiguousarray(np.einsum("ra,sb->rsab", _AT, _AT).reshape(4, 16))


@jit
def _wino_out(Y, t0, TY, TX, bias, out, out48, rs, check, m, rp, rn, sh, lo, hi, ozp, qmin,
              qmax):
    """out[n, 2ty + r, 2tx + s, :] = Y[2*r + s, t, :] / 4 (exact: multiples of 4) plus bias,
    for the tiles t0.. (``Y``: [4, tiles, OC], the output transform already applied), with the
    int48 saturation / int32 wrap as in finalize_rows, or with ``rs`` the consuming RESCALE as
    in rescale_rows (the other arguments are its parameters, per channel; ``check`` as
    there); returns the count of flagged values.  ``bias`` has one value per channel; every
    loop over the channels reads one row of Y and writes one row of out (vectorised)."""
    N, OH, OW, OC = out.shape
    amin, amax = (I48_MIN, I48_MAX) if out48 else (I32_MIN, I32_MAX)
    bad = 0
    for i in range(Y.shape[1]):
        t = t0 + i
        tx = t % TX
        ty = (t // TX) % TY
        n = t // (TX * TY)
        for k in range(4):
            oy = 2 * ty + k // 2
            ox = 2 * tx + k % 2
            if oy >= OH or ox >= OW:
                continue
            y = Y[k, i]
            o = out[n, oy, ox]
            if rs and check:
                for j in range(OC):
                    a = np.int64(y[j]) >> 2
                    v = a + bias[j]
                    bad += (a < amin) | (a > amax) | (v < lo[j]) | (v > hi[j])
                    o[j] = rescaled(v, m[j], rp[j], rn[j], sh[j], ozp, qmin, qmax)
            elif rs:
                for j in range(OC):
                    v = (np.int64(y[j]) >> 2) + bias[j]
                    o[j] = rescaled(v, m[j], rp[j], rn[j], sh[j], ozp, qmin, qmax)
            elif out48:
                for j in range(OC):
                    a = np.int64(y[j]) >> 2
                    v = a + bias[j]
                    bad += (a < I48_MIN) | (a > I48_MAX) | (v < I48_MIN) | (v > I48_MAX)
                    o[j] = sat48(v)
            else:
                for j in range(OC):
                    a = np.int64(y[j]) >> 2
                    a32 = wrap32(a)
                    v = a32 + bias[j]
                    bad += (a != a32) | (v < I32_MIN) | (v > I32_MAX)
                    o[j] = wrap32(v)
    return bad


def _winograd(x, U, bias, input_zp, pad, out_shape, out48, rescale=None, out_dtype=None):
    """CONV2D 3x3 stride 1 by Winograd F(2x2,3x3) (see _Dense.winograd); ``bias``: from
    bias64."""
    N, OH, OW, OC = out_shape
    bias = bias64(bias, OC)
    C = x.shape[3]
    TY, TX = -(-OH // 2), -(-OW // 2)
    T = N * TY * TX
    out = np.empty(out_shape, out_dtype if rescale else np.int64 if out48 else np.int32)
    rs = (True,) + tuple(rescale) if rescale else (False, True) + NO_RESCALE
    # V and the GEMM result of one block hold 16*rows*C and 16*rows*OC floats: a quarter block
    # each (256 KiB per worker thread; halving it again made no measurable difference in time)
    rows = max(1, min(T, _threads.BLOCK_ELEMS // (64 * max(C, OC, 1))))
    nblocks = -(-T // rows)
    izp = np.int32(input_zp)

    def work(tid, blocks):
        # flat buffers: every block's V, M and Y are contiguous, the last one's too
        Vf = np.empty(16 * rows * C, np.float64)
        Mf = np.empty(16 * rows * OC, np.float64)
        Yf = np.empty(4 * rows * OC, np.float64)
        count = 0
        for blk in blocks:
            t0 = blk * rows
            tb = min(T, t0 + rows) - t0
            V = Vf[:16 * tb * C].reshape(16, tb, C)
            Mb = Mf[:16 * tb * OC].reshape(16, tb, OC)
            Y = Yf[:4 * tb * OC].reshape(4, tb, OC)
            _wino_in(x, izp, pad[0], pad[2], TY, TX, t0, V)
            np.matmul(V, U, out=Mb)                          # exact: see _Dense.winograd
            # the output transform, exact too: the sums of 9 GEMM results (same docstring)
            np.matmul(_ATA, Mb.reshape(16, tb * OC), out=Y.reshape(4, tb * OC))
            count += _wino_out(Y, t0, TY, TX, bias, out, out48, *rs)
        return count

    count = run_parallel(nblocks, work)
    return out, int(count)


def conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48):
    return _conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48,
                   None, None)


def _conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48, rescale,
            out_dtype):
    if weights.ftype is None:
        if rescale:
            return _spec.conv2d_rescale(input, weights.spec, bias, input_zp, pad, stride,
                                        dilation, out_shape, out48, rescale, out_dtype)
        return _spec.conv2d(input, weights.spec, bias, input_zp, pad, stride, dilation,
                            out_shape, out48)
    N, OH, OW, OC = out_shape
    # the fused epilogue wants one bias per channel and the RESCALE's parameters
    bias = bias64(bias, OC if rescale else None)
    if rescale:
        rescale = epilogue_args(rescale, bias,
                                weights.k * weights.x_absmax * weights.w_absmax, out48)
    if (tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and weights.ftype is not np.float32
            and OH * OW >= 16):
        U = weights.winograd()
        if U is not None:
            return _winograd(input, U, bias, input_zp, pad, out_shape, out48, rescale,
                             out_dtype)
    out, n = _dense(input[:, None], weights, bias, input_zp, (N, 1, OH, OW, OC),
                    (1, stride[0], stride[1]), (1, dilation[0], dilation[1]),
                    (0, pad[0], pad[2]), out48, rescale, out_dtype)
    return out.reshape(out_shape), n


def conv2d_rescale(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48,
                   rescale, out_dtype):
    """A CONV2D and the RESCALE that consumes it (signed input, zero point 0: see
    type_conversion.rescale_exact), without storing the accumulator tensor.  ``rescale``:
    (multiplier, rnd_pos, rnd_neg, shift, half, lo, hi, out_zp, qmin, qmax), [lo, hi] as in
    type_conversion.no_require_range.  Returns (output, count); the output is only valid when
    the count (of values where either op flags anything) is 0."""
    return _conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48,
                   rescale, out_dtype)


def conv3d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48):
    if weights.ftype is None:
        return _spec.conv3d(input, weights.spec, bias, input_zp, pad, stride, dilation,
                            out_shape, out48)
    return _dense(input, weights, bias64(bias), input_zp, tuple(out_shape), tuple(stride),
                  tuple(dilation), (pad[0], pad[2], pad[4]), out48)


@jit
def _scatter_add(g, r0, acc, IH, IW, KH, KW, sy, sx, opt, opl):
    """acc[n, iy*sy+opt+ky, ix*sx+opl+kx, oc] += g[i, (ky*KW+kx)*OC+oc] for input pixel
    r0+i = (n, iy, ix), where the output position is in range (TRANSPOSE_CONV2D.tosac read the
    other way round: output oy takes input y/stride_y where y = oy-out_pad_top-ky divides)."""
    N, OH, OW, OC = acc.shape
    for i in range(g.shape[0]):
        r = r0 + i
        ix = r % IW
        iy = (r // IW) % IH
        n = r // (IW * IH)
        for ky in range(KH):
            oy = iy * sy + opt + ky
            if oy < 0 or oy >= OH:
                continue
            for kx in range(KW):
                ox = ix * sx + opl + kx
                if ox < 0 or ox >= OW:
                    continue
                base = (ky * KW + kx) * OC
                for oc in range(OC):
                    acc[n, oy, ox, oc] += np.int64(g[i, base + oc])


@jit
def _to_float(x, izp, r0, dst):
    """dst[i, c] = x[r0+i, c] - izp (x: [pixels, C])."""
    for i in range(dst.shape[0]):
        for c in range(dst.shape[1]):
            dst[i, c] = np.int32(x[r0 + i, c]) - izp


def transpose_conv2d(input, weights, bias, input_zp, out_pad, stride, out_shape, out48):
    """Every input pixel (n, iy, ix) contributes x[n,iy,ix,:] @ w[oc,ky,kx,:] to output
    (iy*stride_y + out_pad_top + ky, ix*stride_x + out_pad_left + kx): exactly the taps of the
    spec's loop where (oy - out_pad_top - ky) is a multiple of the stride.  The per-pixel GEMM
    sums run over IC only (exact in the chosen float type), the scatter adds in int64."""
    if weights.ftype is None:
        return _spec.transpose_conv2d(input, weights.spec, bias, input_zp, out_pad, stride,
                                      out_shape, out48)
    N, IH, IW, IC = input.shape
    x2 = input.reshape(N * IH * IW, IC)
    OC = out_shape[3]
    acc = np.zeros(out_shape, np.int64)
    cols = weights.wt.shape[1]
    P = N * IH * IW
    rows = max(1, min(P, _threads.BLOCK_ELEMS // max(cols, IC, 1)))
    izp = np.int32(input_zp)

    def work(tid, blocks):
        # one thread: the scatter-adds of different pixels may hit the same output
        xb = np.empty((rows, IC), weights.ftype)
        g = np.empty((rows, cols), weights.ftype)
        for r0 in range(0, P, rows):
            r1 = min(P, r0 + rows)
            _to_float(x2, izp, r0, xb[:r1 - r0])
            np.matmul(xb[:r1 - r0], weights.wt, out=g[:r1 - r0])   # exact: see docstring
            _scatter_add(g[:r1 - r0], r0, acc, IH, IW, weights.kh, weights.kw, stride[0],
                         stride[1], out_pad[0], out_pad[2])
        out = acc if out48 else np.empty(out_shape, np.int32)
        n = finalize_rows(acc.reshape(-1, OC), bias64(bias),
                           out.reshape(-1, OC), out48)
        return out, n

    with single_threaded_blas():
        out, n = work(0, None)
    return out, int(n)
