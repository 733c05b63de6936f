"""Fast, bit-exact CONV2D, CONV3D, TRANSPOSE_CONV2D, DEPTHWISE_CONV2D and MATMUL.

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
float result equals the exact integer sum.  ``_float_type`` picks float32 when the bound allows
(int8 x int8 without large zero points, K <= 1024) and float64 otherwise (int16 x int8: products
< 2**23, exact for K < 2**30; int16 x int16 MATMUL: products <= 2**30, exact for C < 2**23).
Beyond float64's bound the op falls back to the exact int64 spec twin.

The exact float sums are converted to int64, then ``_finalize_rows`` adds the bias and applies
the reference model's int48 saturation or int32 wrap.  The im2col matrix is built in row blocks
(at most ``_BLOCK_ELEMS`` elements per worker thread) so that peak memory stays near twice the
operands.  A 3x3 stride-1 CONV2D that needs float64 (int16 input) uses Winograd F(2x2,3x3)
with integer-scaled transforms instead (2.25x fewer multiplies, still exact: see
``_Dense.winograd``).  TRANSPOSE_CONV2D multiplies every input pixel by all its taps at once (sums over IC
only) and scatter-adds the products into an int64 accumulator.  DEPTHWISE_CONV2D has no GEMM:
direct Numba loops vectorised over channels, with int32 partial sums where provably safe.
Results do not depend on the thread count: every value is exact.
"""
import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._jit import jit, pjit, prange
from .spec import tensor_ops as _spec

__all__ = ["conv_weights", "conv2d", "conv2d_rescale", "conv3d", "transpose_conv2d",
           "depthwise_weights", "depthwise_conv2d", "depthwise_conv2d_rescale", "matmul",
           "finalize"]

I48_MIN, I48_MAX = -(1 << 47), (1 << 47) - 1
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1

#: the per-channel RESCALE epilogue arrays of a kernel call without epilogue
_NO_RESCALE = (np.zeros(1, np.int64),) * 6

#: im2col block size in elements, per worker thread (float64: 1 MiB)
_BLOCK_ELEMS = 1 << 17


def _float_type(bound):
    """The narrowest float type in which sums of magnitude <= bound are exact (None: none)."""
    if bound < (1 << 24):
        return np.float32
    if bound < (1 << 53):
        return np.float64
    return None


# ---- threads: single-threaded BLAS inside our own two workers --------------------------------
# OpenBLAS's worker threads (like libgomp's) spin-wait between calls; alternating them with our
# other work on a busy 2-core machine made one int8 CONV2D take ~1 s instead of ~3 ms.  So while
# a tensor op runs, OpenBLAS is set to one thread (``_single_threaded_blas``: the setting is
# process-wide in OpenBLAS, so it is restored when the last op running leaves) and the GEMM
# blocks are spread over the calling thread plus a small thread pool (numpy and the Numba
# kernels release the GIL).  The results are exact integers, so they do not depend on the
# number of threads.
_POOL = None
_POOL_LOCK = threading.Lock()
_BLAS_LOCK = threading.Lock()
_BLAS_DEPTH = 0
_BLAS_SAVED = None


def _blas_thread_functions():
    """(get, set) of the OpenBLAS bundled with numpy, or (None, None)."""
    here = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(here, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in (("scipy_openblas_get_num_threads64_",
                           "scipy_openblas_set_num_threads64_"),
                          ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                          ("openblas_get_num_threads", "openblas_set_num_threads")):
            try:
                g, s = getattr(lib, get), getattr(lib, set_)
            except AttributeError:
                continue
            g.restype = ctypes.c_int
            g.argtypes = []
            s.restype = None
            s.argtypes = [ctypes.c_int]
            return g, s
    return None, None


_BLAS_GET, _BLAS_SET = _blas_thread_functions()


class _single_threaded_blas:
    def __enter__(self):
        global _BLAS_DEPTH, _BLAS_SAVED
        if _BLAS_SET is None:
            return
        with _BLAS_LOCK:
            if _BLAS_DEPTH == 0:
                _BLAS_SAVED = _BLAS_GET()
                if _BLAS_SAVED != 1:
                    _BLAS_SET(1)
            _BLAS_DEPTH += 1

    def __exit__(self, *exc):
        global _BLAS_DEPTH
        if _BLAS_SET is None:
            return
        with _BLAS_LOCK:
            _BLAS_DEPTH -= 1
            if _BLAS_DEPTH == 0 and _BLAS_SAVED not in (None, 1):
                _BLAS_SET(_BLAS_SAVED)


def _threads():
    import numba
    return max(1, numba.get_num_threads())


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, _max_threads() - 1),
                                       thread_name_prefix="tosaint-gemm")
    return _POOL


def _forget_pool():
    """A forked child inherits the pool object but not its threads: start a new one there."""
    global _POOL, _POOL_LOCK, _BLAS_LOCK, _BLAS_DEPTH
    _POOL = None
    _POOL_LOCK = threading.Lock()
    _BLAS_LOCK = threading.Lock()
    _BLAS_DEPTH = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _max_threads():
    import numba
    return numba.config.NUMBA_NUM_THREADS


def _run_parallel(nblocks, work):
    """work(tid, blocks) for tid in 0..nt-1 (blocks tid, tid+nt, ...): tid 0 in the calling
    thread, the others on the pool, BLAS single-threaded; returns the sum of the results."""
    if nblocks <= 1:      # small problems: no thread hand-off (per-call overhead matters)
        with _single_threaded_blas():
            return work(0, range(nblocks))
    nt = max(1, min(_threads(), nblocks))
    with _single_threaded_blas():
        futures = [_pool().submit(work, t, range(t, nblocks, nt)) for t in range(1, nt)]
        total = work(0, range(0, nblocks, nt))
        return total + sum(f.result() for f in futures)


# ---- finalize: bias, saturation / wrap -----------------------------------------------------
@jit
def _finalize_rows(acc, bias, out, out48):
    """out[r, oc] = acc[r, oc] + bias[oc or 0] with int48 saturation or int32 wrap.

    ``acc`` holds exact integers (float or int64).  Returns the number of values where the
    accumulator or the bias add left the output type's range."""
    R, OC = acc.shape
    bc1 = bias.shape[0] == 1
    bad = 0
    for r in range(R):
        for oc in range(OC):
            a = np.int64(acc[r, oc])
            b = bias[0] if bc1 else bias[oc]
            if out48:
                t = a + b
                if a < I48_MIN or a > I48_MAX or t < I48_MIN or t > I48_MAX:
                    bad += 1
                if t < I48_MIN:
                    t = I48_MIN
                elif t > I48_MAX:
                    t = I48_MAX
                out[r, oc] = t
            else:
                a32 = ((a + 2147483648) & 0xFFFFFFFF) - 2147483648
                t = a32 + b
                if a != a32 or t < I32_MIN or t > I32_MAX:
                    bad += 1
                out[r, oc] = ((t + 2147483648) & 0xFFFFFFFF) - 2147483648
    return bad


@jit
def _rescaled(t, m, rp, rn, sh, ozp, qmin, qmax):
    """One value of the fused RESCALE (see _rescale_rows), clipped to the output range.  The
    rounding constant is picked by a sign mask: a select of two loads compiles to a gather."""
    rnd = rn + ((rp - rn) & ~(t >> 63))
    return min(max(((t * m + rnd) >> sh) + ozp, qmin), qmax)


@jit
def _rescale_rows(acc, bias, out, out48, m, rp, rn, sh, lo, hi, ozp, qmin, qmax):
    """The fused epilogue of a convolution: out[r, j] = RESCALE(acc[r, j] + bias[j]) without
    storing the int48 / int32 sum (``m``, ``rp``/``rn``, ``sh``, ``ozp``, ``qmin``/``qmax``:
    the consuming RESCALE's multiplier, rounding constants for sums >= 0 / < 0, shift, output
    zero point and clip range, as in type_conversion.rescale_exact).

    ``[lo, hi]`` (per channel, type_conversion.no_require_range) holds exactly the sums for
    which no RESCALE REQUIRE fails and lies inside the accumulator type.  Returns how many
    accumulators (``acc``: exact integers, any numeric type) leave the accumulator type or give
    a sum outside [lo, hi]: when that is not 0 the caller discards ``out`` and runs both ops
    unfused, so the reference model's saturation / wrap never needs to be applied here.
    Headroom: inside [lo, hi], t*m + rnd fits int64 (int48 sums: scale16 multipliers
    < 2**15; int32 sums: multipliers < 2**31)."""
    amin, amax = (I48_MIN, I48_MAX) if out48 else (I32_MIN, I32_MAX)
    bad = 0
    for r in range(acc.shape[0]):
        a_r = acc[r]
        o = out[r]
        for j in range(a_r.shape[0]):
            a = np.int64(a_r[j])
            t = a + bias[j]
            bad += (a < amin) | (a > amax) | (t < lo[j]) | (t > hi[j])
            o[j] = _rescaled(t, m[j], rp[j], rn[j], sh[j], ozp, qmin, qmax)
    return bad


def finalize(acc, bias, out48):
    acc = np.ascontiguousarray(acc)
    shape = acc.shape
    acc2 = acc.reshape(-1, shape[-1]) if acc.size else acc.reshape(0, max(shape[-1], 1))
    out = np.empty(acc2.shape, np.int64 if out48 else np.int32)
    n = _finalize_rows(acc2, np.asarray(bias, np.int64), out, out48)
    return out.reshape(shape), int(n)


# ---- dense convolutions: blocked im2col + exact float GEMM -----------------------------------
@jit
def _im2col(x, izp, r0, col, OD, OH, OW, KD, KH, KW, sd, sy, sx, dd, dy, dx, pd, pt, pl):
    """Rows r0 .. r0+len(col) of the im2col matrix of a 3-D convolution (CONV3D.tosac loops).

    x: [N, ID, IH, IW, C].  Output position (n, od, oy, ox) = row r (row-major); column
    ((kd*KH + ky)*KW + kx)*C + c holds x[n, d, y, x, c] - izp with d = od*sd - pd + kd*dd
    (likewise y, x), or 0 where (d, y, x) is outside the input (padding contributes 0).
    """
    N, ID, IH, IW, C = x.shape
    R = col.shape[0]
    for i in range(R):
        r = r0 + i
        ox = r % OW
        t = r // OW
        oy = t % OH
        t = t // OH
        od = t % OD
        n = t // OD
        k = 0
        for kd in range(KD):
            d = od * sd - pd + kd * dd
            okd = d >= 0 and d < ID
            for ky in range(KH):
                y = oy * sy - pt + ky * dy
                oky = okd and y >= 0 and y < IH
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
        w = np.asarray(weight, np.int64) - int(weight_zp)
        self.transpose = op == "transpose_conv2d"
        if w.ndim == 4:
            w = w[:, None]                                   # [OC, KD=1, KH, KW, IC]
        self.oc, self.kd, self.kh, self.kw, self.ic = w.shape
        w_absmax = int(np.abs(w).max()) if w.size else 0
        if self.transpose:
            # each GEMM sum runs over IC only: bound = IC * max|x-izp| * max|w-wzp|
            self.k = self.ic
            wq = w[:, 0].transpose(3, 1, 2, 0).reshape(self.ic, self.kh * self.kw * self.oc)
        else:
            # headroom proof: see the module docstring; bound = K * max|x-izp| * max|w-wzp|
            self.k = self.kd * self.kh * self.kw * self.ic
            wq = w.reshape(self.oc, self.k).T
        self.ftype = _float_type(self.k * int(x_absmax) * w_absmax)
        self.spec = _spec.conv_weights(weight, weight_zp, op, x_absmax)
        if self.ftype is not None:
            self.wt = np.ascontiguousarray(wq.astype(self.ftype))
        self.x_absmax, self.w_absmax = int(x_absmax), w_absmax
        self._w = w if (op == "conv2d" and self.kh == 3 and self.kw == 3) else None
        self._wino = None

    def winograd(self):
        """U [16, IC, OC] float64 = G2 g G2^T per (ic, oc), or None when not applicable.

        F(2x2, 3x3) Winograd with the transform scaled to integers: G2 = 2*G, so
        4*Y = A^T [(G2 g G2^T) * (B^T d B)] A.  Headroom: |B^T d B| <= 4*max|x-izp|,
        |G2 g G2^T| <= 9*max|w-wzp|, one GEMM sum <= IC * 36 * max|x| * max|w| and the output
        transform adds 9 of those, so everything is exact in float64 while
        324 * IC * max|x-izp| * max|w-wzp| < 2**53."""
        if self._w is None or 324 * self.ic * self.x_absmax * self.w_absmax >= (1 << 53):
            return None
        if self._wino is None:
            g2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], np.int64)
            g = self._w[:, 0]                                 # [OC, 3, 3, IC]
            u = np.einsum("ak,okli,bl->abio", g2, g, g2)
            self._wino = np.ascontiguousarray(u.reshape(16, self.ic, self.oc).astype(np.float64))
        return self._wino


def conv_weights(weight, weight_zp, op, x_absmax):
    """Prepare the weights of CONV2D / CONV3D / TRANSPOSE_CONV2D once (at build)."""
    return _Dense(weight, weight_zp, op, x_absmax)


def _dense(x5, prep, bias, input_zp, out5, stride, dilation, pad_lo, out48, rescale=None,
           out_dtype=None):
    N, OD, OH, OW, OC = out5
    M = N * OD * OH * OW
    K = prep.k
    out = np.empty((M, OC), out_dtype if rescale else np.int64 if out48 else np.int32)
    bias = np.asarray(bias, np.int64)
    rows = max(1, min(M, _BLOCK_ELEMS // max(K, 1)))
    nblocks = -(-M // rows)
    izp = np.int32(input_zp)

    def work(tid, blocks):
        col = np.empty((rows, K), prep.ftype)
        acc = np.empty((rows, OC), prep.ftype)
        count = 0
        for blk in blocks:
            r0 = blk * rows
            r1 = min(M, r0 + rows)
            c = col[:r1 - r0]
            a = acc[:r1 - r0]
            _im2col(x5, izp, r0, c, OD, OH, OW, prep.kd, prep.kh, prep.kw,
                    stride[0], stride[1], stride[2], dilation[0], dilation[1], dilation[2],
                    pad_lo[0], pad_lo[1], pad_lo[2])
            np.matmul(c, prep.wt, out=a)                     # exact: see module docstring
            if rescale:
                count += _rescale_rows(a, bias, out[r0:r1], out48, *rescale)
            else:
                count += _finalize_rows(a, bias, out[r0:r1], out48)
        return count

    count = _run_parallel(nblocks, work)
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


@jit
def _wino_out(Mb, t0, TY, TX, bias, out, out48, rs, m_, rp, rn, sh, lo, hi, ozp, qmin, qmax):
    """out 2x2 per tile = (A^T m A) / 4 (exact: the values are multiples of 4), then bias with
    the int48 saturation / int32 wrap; returns the count of out-of-range values.  With ``rs``
    the consuming RESCALE is applied instead, as in _rescale_rows (the other arguments are its
    parameters) and the count is _rescale_rows's."""
    N, OH, OW, OC = out.shape
    bc1 = bias.shape[0] == 1
    amin, amax = (I48_MIN, I48_MAX) if out48 else (I32_MIN, I32_MAX)
    bad = 0
    for i in range(Mb.shape[1]):
        t = t0 + i
        tx = t % TX
        ty = (t // TX) % TY
        n = t // (TX * TY)
        for oc in range(OC):
            m = Mb[:, i, oc]
            # s = A^T m: s[0, b] = m0b + m1b + m2b, s[1, b] = m1b - m2b - m3b
            s00 = m[0] + m[4] + m[8]
            s01 = m[1] + m[5] + m[9]
            s02 = m[2] + m[6] + m[10]
            s03 = m[3] + m[7] + m[11]
            s10 = m[4] - m[8] - m[12]
            s11 = m[5] - m[9] - m[13]
            s12 = m[6] - m[10] - m[14]
            s13 = m[7] - m[11] - m[15]
            y4 = (s00 + s01 + s02, s01 - s02 - s03, s10 + s11 + s12, s11 - s12 - s13)
            b = bias[0] if bc1 else bias[oc]
            for k in range(4):
                oy = 2 * ty + k // 2
                ox = 2 * tx + k % 2
                if oy >= OH or ox >= OW:
                    continue
                a = np.int64(y4[k]) >> 2
                if rs:
                    v = a + b
                    bad += (a < amin) | (a > amax) | (v < lo[oc]) | (v > hi[oc])
                    out[n, oy, ox, oc] = _rescaled(v, m_[oc], rp[oc], rn[oc], sh[oc], ozp,
                                                   qmin, qmax)
                elif out48:
                    v = a + b
                    if a < I48_MIN or a > I48_MAX or v < I48_MIN or v > I48_MAX:
                        bad += 1
                    out[n, oy, ox, oc] = max(min(v, I48_MAX), I48_MIN)
                else:
                    a32 = ((a + 2147483648) & 0xFFFFFFFF) - 2147483648
                    v = a32 + b
                    if a != a32 or v < I32_MIN or v > I32_MAX:
                        bad += 1
                    out[n, oy, ox, oc] = ((v + 2147483648) & 0xFFFFFFFF) - 2147483648
    return bad


def _winograd(x, U, bias, input_zp, pad, out_shape, out48, rescale=None, out_dtype=None):
    N, OH, OW, OC = out_shape
    C = x.shape[3]
    TY, TX = -(-OH // 2), -(-OW // 2)
    T = N * TY * TX
    out = np.empty(out_shape, out_dtype if rescale else np.int64 if out48 else np.int32)
    rs = (True,) + tuple(rescale) if rescale else (False,) + _NO_RESCALE + (0, 0, 0)
    bias = np.asarray(bias, np.int64)
    # V and the GEMM result of one block hold 16*rows*C and 16*rows*OC floats: a quarter block
    # each (256 KiB per worker thread; halving it again made no measurable difference in time)
    rows = max(1, min(T, _BLOCK_ELEMS // (64 * max(C, OC, 1))))
    nblocks = -(-T // rows)
    izp = np.int32(input_zp)

    def work(tid, blocks):
        V = np.empty((16, rows, C), np.float64)
        Mb = np.empty((16, rows, OC), np.float64)
        count = 0
        for blk in blocks:
            t0 = blk * rows
            tb = min(T, t0 + rows) - t0
            _wino_in(x, izp, pad[0], pad[2], TY, TX, t0, V[:, :tb])
            np.matmul(V[:, :tb], U, out=Mb[:, :tb])          # exact: see _Dense.winograd
            count += _wino_out(Mb[:, :tb], t0, TY, TX, bias, out, out48, *rs)
        return count

    count = _run_parallel(nblocks, work)
    return out, int(count)


def conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48,
           rescale=None, out_dtype=None):
    if weights.ftype is None:
        if rescale:
            return _spec.conv2d_rescale(input, weights.spec, bias, input_zp, pad, stride,
                                        dilation, out_shape, out48, rescale, out_dtype)
        return _spec.conv2d(input, weights.spec, bias, input_zp, pad, stride, dilation,
                            out_shape, out48)
    N, OH, OW, OC = out_shape
    if rescale:       # the epilogue wants one bias per channel and the RESCALE's parameters
        bias = np.ascontiguousarray(np.broadcast_to(np.asarray(bias, np.int64), (OC,)))
        rescale = _epilogue_args(rescale)
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
    return conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48,
                  rescale, out_dtype)


def _epilogue_args(rescale):
    """_rescale_rows's parameters from the RESCALE epilogue tuple (``half`` is not needed:
    [lo, hi] already holds the value-range REQUIRE)."""
    m, rp, rn, sh, _half, lo, hi, ozp, qmin, qmax = rescale
    return m, rp, rn, sh, lo, hi, ozp, qmin, qmax


def conv3d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48):
    if weights.ftype is None:
        return _spec.conv3d(input, weights.spec, bias, input_zp, pad, stride, dilation,
                            out_shape, out48)
    return _dense(input, weights, bias, input_zp, tuple(out_shape), tuple(stride),
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
    rows = max(1, min(P, _BLOCK_ELEMS // max(cols, IC, 1)))
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
        n = _finalize_rows(acc.reshape(-1, OC), np.asarray(bias, np.int64),
                           out.reshape(-1, OC), out48)
        return out, n

    with _single_threaded_blas():
        out, n = work(0, None)
    return out, int(n)


# ---- depthwise: direct loops, int32 partial sums ----------------------------------------------
class _Depthwise:
    def __init__(self, weight, weight_zp, x_absmax):
        w = np.asarray(weight, np.int64)
        KH, KW, C, M = w.shape
        self.kh, self.kw, self.c, self.m = KH, KW, C, M
        wq = (w - int(weight_zp)).reshape(KH * KW, C * M)
        w_absmax = int(np.abs(wq).max()) if wq.size else 0
        # headroom proof: one tap adds at most p = max|x-izp| * max|w-wzp| to an int32 partial
        # sum, so `chunk` = (2**31-1) // p taps never overflow int32; after every `chunk` taps
        # the partial sums are flushed into int64.  int16 x int8: p < 2**23, chunk >= 256;
        # int8 x int8: p <= 255*255, chunk >= 33025.
        p = max(1, int(x_absmax) * w_absmax)
        self.chunk = max(1, min(KH * KW, (2 ** 31 - 1) // p))
        self.wq = np.ascontiguousarray(wq.astype(np.int32))
        self.spec = _spec.depthwise_weights(weight, weight_zp, x_absmax)


def depthwise_weights(weight, weight_zp, x_absmax):
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


@pjit
def _depthwise(x, izp, wq, M, KH, KW, sy, sx, dy, dx, pt, pl, chunk, bias, out, out48, rs,
               rs_m, rs_rp, rs_rn, rs_sh, rs_lo, rs_hi, rs_ozp, rs_min, rs_max):
    """One output row (n, oy) per parallel iteration, int32 partial sums acc32[ox, c*M+m]; the
    innermost loops run over contiguous channels (vectorised).  ``bias`` has CM values.

    Headroom: partial sums are int32 for at most ``chunk`` taps (see _Depthwise), then flushed
    to int64.  When every tap fits (chunk >= KH*KW, always for int16 x int8 up to 256 taps)
    and M == 1, the taps of one kernel row are taken three at a time: for the output pixels
    whose three input pixels are all inside the input, one pass over the channels adds all
    three products (a third of the accumulator loads and stores); the pixels near the edges
    take the taps one by one with bounds checks.  Otherwise taps go one by one, output x in
    blocks of OXB pixels so that their partial sums stay in L1.

    With ``rs`` the int48 result is not stored: the RESCALE that consumes it is applied in the
    epilogue (``_rescale_rows``, with ``rs_*`` its parameters) and ``out`` receives the
    rescaled output; the count is then _rescale_rows's."""
    N, IH, IW, C = x.shape
    _, OH, OW, CM = out.shape
    flush = chunk < KH * KW
    grouped = M == 1 and not flush
    OXB = OW if grouped else max(1, 4096 // max(CM, 1))
    counts = np.zeros(N * OH, np.int64)
    for row in prange(N * OH):
        n = row // OH
        oy = row % OH
        acc32 = np.zeros((OW, CM), np.int32)
        acc64 = np.zeros((OW if flush else 1, CM), np.int64)
        for ox0 in range(0, OW, OXB):
            ox1 = min(OW, ox0 + OXB)
            used = 0
            for ky in range(KH):
                y = oy * sy - pt + ky * dy
                if y < 0 or y >= IH:
                    continue
                src_row = x[n, y]
                kx = 0
                while kx < KW:
                    if grouped and kx + 3 <= KW:
                        # ox with all three taps inside: 0 <= ox*sx - pl + kx*dx and
                        # ox*sx - pl + (kx+2)*dx <= IW-1
                        lo = max(ox0, -((kx * dx - pl) // sx))
                        hi = min(ox1, (IW - 1 + pl - (kx + 2) * dx) // sx + 1)
                        hi = max(hi, lo)
                        t0 = ky * KW + kx
                        _dw_taps3(acc32, src_row, lo, hi, sx, kx * dx - pl, dx, izp, wq[t0],
                                  wq[t0 + 1], wq[t0 + 2])
                        for t in range(3):
                            wr = wq[ky * KW + kx + t]
                            for ox in range(ox0, ox1):
                                if ox >= lo and ox < hi:
                                    continue
                                xx = ox * sx - pl + (kx + t) * dx
                                if xx >= 0 and xx < IW:
                                    _dw_tap(acc32[ox], src_row[xx], izp, wr, M, C)
                        kx += 3
                        continue
                    wr = wq[ky * KW + kx]
                    for ox in range(ox0, ox1):
                        xx = ox * sx - pl + kx * dx
                        if xx >= 0 and xx < IW:
                            _dw_tap(acc32[ox], src_row[xx], izp, wr, M, C)
                    kx += 1
                    used += 1
                    if flush and used == chunk:
                        for ox in range(ox0, ox1):
                            for j in range(CM):
                                acc64[ox, j] += acc32[ox, j]
                                acc32[ox, j] = 0
                        used = 0
        bad = 0
        if flush:                   # fold the int32 partial sums into the int64 ones
            for ox in range(OW):
                for j in range(CM):
                    av = acc64[ox, j] + acc32[ox, j]
                    acc64[ox, j] = av
        orow = out[n, oy]
        if rs and flush:
            bad += _rescale_rows(acc64, bias, orow, out48, rs_m, rs_rp, rs_rn, rs_sh, rs_lo,
                                 rs_hi, rs_ozp, rs_min, rs_max)
        elif rs:
            bad += _rescale_rows(acc32, bias, orow, out48, rs_m, rs_rp, rs_rn, rs_sh, rs_lo,
                                 rs_hi, rs_ozp, rs_min, rs_max)
        elif flush:
            bad += _finalize_rows(acc64, bias, orow, out48)
        else:
            bad += _finalize_rows(acc32, bias, orow, out48)
        counts[row] = bad
    return counts.sum()


def depthwise_conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48):
    out = np.empty(out_shape, np.int64 if out48 else np.int32)
    cm = out_shape[3]
    bias = np.ascontiguousarray(np.broadcast_to(np.asarray(bias, np.int64), (cm,)))
    n = _depthwise(input, np.int32(input_zp), weights.wq, weights.m, weights.kh, weights.kw,
                   stride[0], stride[1], dilation[0], dilation[1], pad[0], pad[2],
                   weights.chunk, bias, out, out48, False, *_NO_RESCALE, 0, 0, 0)
    return out, int(n)


def depthwise_conv2d_rescale(input, weights, bias, input_zp, pad, stride, dilation, out_shape,
                             out48, rescale, out_dtype):
    """A DEPTHWISE_CONV2D and the RESCALE (signed input, zero point 0, every REQUIRE checked:
    see type_conversion.rescale_exact) that consumes it, without storing the accumulator
    tensor.  ``rescale``: (multiplier, rnd_pos, rnd_neg, shift, half, lo, hi, out_zp, qmin, qmax);
    [lo, hi] as in type_conversion.no_require_range.
    Returns (output, count of elements where either op flags anything)."""
    out = np.empty(out_shape, out_dtype)
    cm = out_shape[3]
    bias = np.ascontiguousarray(np.broadcast_to(np.asarray(bias, np.int64), (cm,)))
    n = _depthwise(input, np.int32(input_zp), weights.wq, weights.m, weights.kh, weights.kw,
                   stride[0], stride[1], dilation[0], dilation[1], pad[0], pad[2],
                   weights.chunk, bias, out, out48, True, *_epilogue_args(rescale))
    return out, int(n)


# ---- matmul -----------------------------------------------------------------------------------
def matmul(A, B, A_zp, B_zp, out48):
    """Batched exact float GEMM.  bound = C * max|A-A_zp| * max|B-B_zp| (module docstring):
    int8: C * 255 * 255; int16 x int16 (zero points 0): C * 2**30, float64-exact for C < 2**23."""
    N, H, C = A.shape
    W = B.shape[2]
    amax = max(abs(-128 - int(A_zp)), abs(127 - int(A_zp))) if A.dtype == np.int8 else 32768
    bmax = max(abs(-128 - int(B_zp)), abs(127 - int(B_zp))) if B.dtype == np.int8 else 32768
    ftype = _float_type(C * amax * bmax)
    if ftype is None:
        return _spec.matmul(A, B, A_zp, B_zp, out48)
    b = B.astype(ftype)
    if B_zp:
        b -= B_zp
    out = np.empty((N, H, W), np.int64 if out48 else np.int32)
    zero = np.zeros(1, np.int64)
    # blocks of rows of A (per batch), each worker its own
    rows = max(1, min(H, max(64, _BLOCK_ELEMS // max(C, W, 1))))
    per = -(-H // rows)

    def work(tid, blocks):
        count = 0
        for blk in blocks:
            n, h0 = divmod(blk, per)
            h0 *= rows
            h1 = min(H, h0 + rows)
            a = A[n, h0:h1].astype(ftype)
            if A_zp:
                a -= A_zp
            acc = a @ b[n]                                   # exact: see the docstring
            count += _finalize_rows(acc, zero, out[n, h0:h1], out48)
        return count

    count = _run_parallel(N * per, work)
    return out, int(count)
