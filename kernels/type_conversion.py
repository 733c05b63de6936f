"""RESCALE kernel (spec chapter "Type Conversion"; CAST is plain NumPy in the op layer).

The input arrives as a 2-D view [rows, C] whose last axis is the channel axis (multiplier and
shift are repeated to length C when not per_channel), so the inner loop needs no division.
The result is written to an int32 array; the op layer casts it to the output storage type
(values are already clipped to the output range).  Serial on purpose: about 1.3 ns per element
(0.27 ms for 1x56x56x64), while the prange version measured 0.17 ms at best but 84 ms at the
median on the loaded 2-core machine.
"""
import numpy as np

from ._int import I32_MAX, I32_MIN, INEXACT32, SCALE16, DOUBLE32
from ._jit import jit

__all__ = ["rescale", "rescale_exact"]

#: tensors up to this many elements are widened to int64 (and the fast path's output written
#: through an int64 buffer) before the kernel call: one compiled specialisation serves every
#: small RESCALE whatever its types (each costs 0.6-1 s to compile on a fresh cache), for a
#: copy of a few microseconds; larger tensors run on their own types
SMALL = 1 << 14


def rescale(x, in_mask, in_zp, out_zp, multiplier, shift, pow2, mode, qmin, qmax, out):
    """See _rescale (small inputs are widened first: see SMALL)."""
    if x.size <= SMALL:
        x = x.astype(np.int64)
    return _rescale(x, in_mask, in_zp, out_zp, multiplier, shift, pow2, mode, qmin, qmax, out)


def rescale_exact(x, in_zp, out_zp, multiplier, rnd_pos, rnd_neg, shift, half, qmin, qmax,
                  out):
    """See _rescale_exact (small tensors go through int64 buffers: see SMALL)."""
    if x.size > SMALL:
        return _rescale_exact(x, in_zp, out_zp, multiplier, rnd_pos, rnd_neg, shift, half,
                              qmin, qmax, out)
    res = np.empty(x.shape, np.int64)
    bad = _rescale_exact(x.astype(np.int64), in_zp, out_zp, multiplier, rnd_pos, rnd_neg,
                         shift, half, qmin, qmax, res)
    out[...] = res                           # exact: clipped to the output type's range
    return bad


@jit
def _rescale(x, in_mask, in_zp, out_zp, multiplier, shift, pow2, mode, qmin, qmax, out):
    """out[r, c] = clip(scale(x[r, c] - in_zp) + out_zp); returns (n_scale_fail, n_zp_fail).

    ``in_mask``: 0 to sign-extend the input, else 0xFF/0xFFFF to zero-extend it (unsigned).
    ``multiplier``/``shift``: int64[C]; ``pow2``: float32[C] = exp2f(-shift) (INEXACT only).
    ``mode``: 0 apply_scale_16, 1 apply_scale_32 single round, 2 apply_scale_32 double round,
    3/4 INEXACT_ROUND (scale32/scale16) as the reference model computes it: fp32 product
    float(v) * float(m) * exp2f(-shift), rint ties-to-even.
    ``n_scale_fail`` counts elements whose apply_scale REQUIREs fail (multiplier < 0, shift
    outside 2..62, value outside +-2**(shift-1) for scale32, result outside int32);
    ``n_zp_fail`` counts elements where scaled + output_zp leaves int32.
    """
    rows, cols = x.shape
    bad_s = 0
    bad_z = 0
    for r in range(rows):
        for c in range(cols):
            v = np.int64(x[r, c])
            if in_mask != 0:
                v = v & in_mask
            v = v - in_zp
            m = multiplier[c]
            s = shift[c]
            ok = m >= 0 and s >= 2 and s <= 62
            if mode >= INEXACT32:
                f = np.float32(v) * np.float32(m)
                f = f * pow2[c]
                d = np.rint(np.float64(f))
                # float -> int32 conversion as x86 does it (out of range gives INT32_MIN)
                if d >= 2147483648.0 or d < -2147483648.0 or d != d:
                    scaled = np.int64(I32_MIN)
                else:
                    scaled = np.int64(d)
                if ok and mode == INEXACT32:
                    half = np.int64(1) << (s - 1)
                    if v < -half or v >= half:
                        ok = False
            else:
                if not ok:
                    bad_s += 1
                    out[r, c] = 0
                    continue
                rnd = np.int64(1) << (s - 1)
                if mode != SCALE16:
                    if v < -rnd or v >= rnd:
                        ok = False
                    if mode == DOUBLE32 and s > 31:
                        if v >= 0:
                            rnd += np.int64(1) << 30
                        else:
                            rnd -= np.int64(1) << 30
                scaled = (v * m + rnd) >> s
                if scaled < I32_MIN or scaled > I32_MAX:
                    ok = False
            if not ok:
                bad_s += 1
                if mode < INEXACT32:    # no value: the graph is unpredictable
                    out[r, c] = 0
                    continue
            res = scaled + out_zp
            if res < I32_MIN or res > I32_MAX:
                bad_z += 1
                res = 0
            if res < qmin:
                res = qmin
            elif res > qmax:
                res = qmax
            out[r, c] = np.int32(res)
    return bad_s, bad_z


@jit
def _rescale_exact(x, in_zp, out_zp, multiplier, rnd_pos, rnd_neg, shift, half, qmin, qmax,
                  out):
    """The common RESCALE (signed input, SINGLE/DOUBLE_ROUND or scale16, every multiplier and
    shift valid) without branches, so that it vectorises; returns how many elements fail a
    REQUIRE (value range, int32 result, + output_zp), in which case the caller runs
    ``rescale`` for their exact handling.

    ``rnd_pos``/``rnd_neg``: the rounding constant for values >= 0 / < 0 (they differ only for
    DOUBLE_ROUND with shift > 31); ``half``: 2**(shift-1) for scale32 (value range REQUIRE),
    2**62 for scale16 (no value REQUIRE).  Headroom: v*m + rnd fits int64 for every input
    the ERROR_IFs allow, not because of the element bounds alone (|v| < 2**48 and
    |m| < 2**31 would allow 2**79): scale32 takes at most int32 inputs (ERROR_IF on int48
    with scale32), so |v| <= 2**31 + 2**15 and |m| < 2**31; scale16 takes int48 inputs with
    int16 multipliers, |v| <= 2**47 and |m| < 2**15; in both |v*m| + rnd < 2**63.
    """
    rows, cols = x.shape
    bad = 0
    for r in range(rows):
        for c in range(cols):
            v = np.int64(x[r, c]) - in_zp
            # rnd_pos if v >= 0 else rnd_neg, as a mask: a select of two loads compiles to
            # a gather, several times slower
            rnd = rnd_neg[c] + ((rnd_pos[c] - rnd_neg[c]) & ~(v >> 63))
            scaled = (v * multiplier[c] + rnd) >> shift[c]
            res = scaled + out_zp
            fail = (v < -half[c]) | (v >= half[c]) | (scaled < I32_MIN) | \
                (scaled > I32_MAX) | (res < I32_MIN) | (res > I32_MAX)
            bad += fail
            res = min(max(res, qmin), qmax)
            out[r, c] = res
    return bad
