"""The epilogues of the convolution and MATMUL kernels: bias add with the reference model's
int48 saturation / int32 wrap (``finalize_rows``), or the consuming RESCALE applied directly to
the sum (``rescale_rows``, the fused CONV2D/DEPTHWISE_CONV2D + RESCALE).

Both work on rows of exact integer sums (any numeric type: the float GEMM results are exact
integers) and count the values where a spec REQUIRE failed, for the op layer to report.
"""
import numpy as np

from ._int import I32_MAX, I32_MIN, I48_MAX, I48_MIN
from ._jit import inline, jit, sat48, wrap32

#: the per-channel RESCALE arguments of a kernel call without the fused RESCALE
NO_RESCALE = (np.zeros(1, np.int64),) * 6 + (0, 0, 0)


@jit
def finalize_rows(acc, bias, out, out48):
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
                out[r, oc] = sat48(t)
            else:
                a32 = wrap32(a)
                t = a32 + b
                if a != a32 or t < I32_MIN or t > I32_MAX:
                    bad += 1
                out[r, oc] = wrap32(t)
    return bad


@inline
def rescaled(t, m, rp, rn, sh, ozp, qmin, qmax):
    """One value of the fused RESCALE (see rescale_rows), clipped to the output range.  The
    rounding constant is picked by a sign mask: a select of two loads compiles to a gather."""
    rnd = rn + ((rp - rn) & ~(t >> 63))
    return min(max(((t * m + rnd) >> sh) + ozp, qmin), qmax)


@jit
def rescale_rows(acc, bias, out, out48, check, m, rp, rn, sh, lo, hi, ozp, qmin, qmax):
    """The fused epilogue of a convolution: out[r, j] = RESCALE(acc[r, j] + bias[j]) without
    storing the int48 / int32 sum (``m``, ``rp``/``rn``, ``sh``, ``ozp``, ``qmin``/``qmax``:
    the consuming RESCALE's multiplier, rounding constants for sums >= 0 / < 0, shift, output
    zero point and clip range, as in type_conversion.rescale_exact).

    ``[lo, hi]`` (per channel, from the op layer's no_require_range) holds exactly the sums
    for which no RESCALE REQUIRE fails and lies inside the accumulator type.  Returns how many
    accumulators (``acc``: exact integers, any numeric type) leave the accumulator type or give
    a sum outside [lo, hi]: when that is not 0 the caller discards ``out`` and runs both ops
    unfused, so the reference model's saturation / wrap never needs to be applied here.
    ``check`` False (see epilogue_args: every sum the convolution can produce is known to lie
    inside) skips counting and returns 0.
    Headroom: inside [lo, hi], t*m + rnd fits int64 (int48 sums: scale16 multipliers
    < 2**15; int32 sums: multipliers < 2**31)."""
    amin, amax = (I48_MIN, I48_MAX) if out48 else (I32_MIN, I32_MAX)
    bad = 0
    for r in range(acc.shape[0]):
        a_r = acc[r]
        o = out[r]
        if check:
            for j in range(a_r.shape[0]):
                a = np.int64(a_r[j])
                t = a + bias[j]
                bad += (a < amin) | (a > amax) | (t < lo[j]) | (t > hi[j])
                o[j] = rescaled(t, m[j], rp[j], rn[j], sh[j], ozp, qmin, qmax)
        else:
            for j in range(a_r.shape[0]):
                t = np.int64(a_r[j]) + bias[j]
                o[j] = rescaled(t, m[j], rp[j], rn[j], sh[j], ozp, qmin, qmax)
    return bad


def bias64(bias, n=None):
    """The bias as a fresh C-contiguous int64 array (one value repeated to ``n`` values when
    given): one array type for every kernel call, so a kernel is compiled once for it."""
    b = np.array(bias, np.int64, ndmin=1)
    if n is not None and b.shape[0] != n:
        b = np.full(n, b[0], np.int64)
    return b


def epilogue_args(rescale, bias=None, bound=None, out48=True):
    """rescale_rows's parameters after ``out48``, from the op layer's RESCALE tuple
    (multiplier, rnd_pos, rnd_neg, shift, half, lo, hi, out_zp, qmin, qmax); ``half`` is not
    needed: [lo, hi] already holds the value-range REQUIRE.  The first, ``check``, is False
    when ``bound`` (a bound on |sum| of the convolution for any input: taps * max|x-izp| *
    max|w-wzp|) shows that every accumulator fits its type and every sum plus ``bias`` (one
    int64 per channel) lies in [lo, hi]: then nothing can be flagged and the epilogue need
    not count."""
    m, rp, rn, sh, _half, lo, hi, ozp, qmin, qmax = rescale
    check = True
    if bound is not None and bias is not None:
        bound = int(bound)
        check = not (bound <= (I48_MAX if out48 else I32_MAX) and bound < (1 << 62)
                     and bool(np.all(lo <= bias - bound)) and bool(np.all(bias + bound <= hi)))
    return check, m, rp, rn, sh, lo, hi, ozp, qmin, qmax


def finalize(acc, bias, out48):
    """(acc + bias with int48 saturation / int32 wrap, count of failed REQUIREs)."""
    acc = np.ascontiguousarray(acc)
    shape = acc.shape
    acc2 = acc.reshape(-1, shape[-1]) if acc.size else acc.reshape(0, max(shape[-1], 1))
    out = np.empty(acc2.shape, np.int64 if out48 else np.int32)
    n = finalize_rows(acc2, bias64(bias), out, out48)
    return out.reshape(shape), int(n)
