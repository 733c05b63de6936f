"""RESCALE kernel (spec chapter "Type Conversion"; CAST is plain NumPy in the op layer).

The input arrives as a 2-D view [rows, C] whose last axis is the channel axis (multiplier and
shift are repeated to length C when not per_channel), so the inner loop needs no division.
The result is written to an int32 array; the op layer casts it to the output storage type
(values are already clipped to the output range).  Serial on purpose: about 1.3 ns per element
(0.27 ms for 1x56x56x64), while the prange version measured 0.17 ms at best but 84 ms at the
median on the loaded 2-core machine.
"""
import numpy as np

from ._jit import jit

__all__ = ["rescale", "rescale_exact"]

#: mode codes shared with the spec twin and the op layer
SCALE16, SINGLE32, DOUBLE32, INEXACT32, INEXACT16 = 0, 1, 2, 3, 4


@jit
def rescale(x, in_mask, in_zp, out_zp, multiplier, shift, pow2, mode, qmin, qmax, out):
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
                    scaled = np.int64(-2147483648)
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
                if scaled < -2147483648 or scaled > 2147483647:
                    ok = False
            if not ok:
                bad_s += 1
                if mode < INEXACT32:    # no value: the graph is unpredictable
                    out[r, c] = 0
                    continue
            res = scaled + out_zp
            if res < -2147483648 or res > 2147483647:
                bad_z += 1
                res = 0
            if res < qmin:
                res = qmin
            elif res > qmax:
                res = qmax
            out[r, c] = np.int32(res)
    return bad_s, bad_z


@jit
def rescale_exact(x, in_zp, out_zp, multiplier, rnd_pos, rnd_neg, shift, half, qmin, qmax,
                  out):
    """The common RESCALE (signed input, SINGLE/DOUBLE_ROUND or scale16, every multiplier and
    shift valid) without branches, so that it vectorises; returns how many elements fail a
    REQUIRE (value range, int32 result, + output_zp), in which case the caller runs
    ``rescale`` for their exact handling.

    ``rnd_pos``/``rnd_neg``: the rounding constant for values >= 0 / < 0 (they differ only for
    DOUBLE_ROUND with shift > 31); ``half``: 2**(shift-1) for scale32 (value range REQUIRE),
    2**62 for scale16 (no value REQUIRE).  Headroom: |v| < 2**48 and |m| < 2**31 for valid
    inputs, so v*m + rnd fits int64 whenever no REQUIRE fails; when one fails the result is
    discarded.
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
            fail = (v < -half[c]) | (v >= half[c]) | (scaled < -2147483648) | \
                (scaled > 2147483647) | (res < -2147483648) | (res > 2147483647)
            bad += fail
            res = min(max(res, qmin), qmax)
            out[r, c] = res
    return bad
