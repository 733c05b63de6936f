"""Exact integer quantization arithmetic: RESCALE multipliers, TABLE contents, SNR.

Torch-free, shared by the torch front end (:mod:`tosaint.torch`), the Ethos-U helpers and the
benchmarks.

Scales are float64 numbers; every ratio between scales is turned into a RESCALE
multiplier/shift pair with exact rational arithmetic (``fractions.Fraction``), so that the
multiplier is the correctly rounded (half up) value of ``ratio * 2**shift`` and never suffers
from a float rounding of ``frexp``.  Tables for the TOSA TABLE operator are built here too,
together with a Python model of the int16 table lookup (``lookup16``), used to derive exact
bounds at compile time.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = ["MAX_SHIFT", "apply_scale", "clz32", "fix_slopes", "floor_log2", "lookup16",
           "multiplier", "multipliers", "ratio", "round_half_up", "snr_db", "table16",
           "table16_span", "table8", "table_inputs16"]

MAX_SHIFT = 62


def floor_log2(r: Fraction) -> int:
    """floor(log2(r)) of a positive rational, exactly."""
    n, d = r.numerator, r.denominator
    e = n.bit_length() - d.bit_length()
    if (n << -e if e < 0 else n) < (d << e if e > 0 else d):
        e -= 1
    return e


def round_half_up(r: Fraction) -> int:
    return (2 * r.numerator + r.denominator) // (2 * r.denominator)


def multiplier(ratio, scale32=True, min_shift=2):
    """(multiplier, shift) with multiplier * 2**-shift == ratio, rounded half up.

    The multiplier is normalised to [2**30, 2**31) (scale32) or [2**14, 2**15) (scale16), the
    largest it can be, so the relative error is at most 2**-31 (2**-15).  ``min_shift`` is the
    smallest shift the caller can accept: apply_scale_32 requires
    -(1 << (shift-1)) <= value < (1 << (shift-1)), so a RESCALE of values bounded by 2**b needs
    shift >= b + 1.
    """
    r = ratio if isinstance(ratio, Fraction) else Fraction(
        int(ratio) if isinstance(ratio, (int, np.integer)) else float(ratio))
    if r <= 0:
        raise ValueError(f"RESCALE ratio must be positive, got {float(r)}")
    bits = 31 if scale32 else 15
    shift = bits - 1 - floor_log2(r)
    m = round_half_up(r * (1 << shift) if shift >= 0 else r / (1 << -shift))
    if m == 1 << bits:
        m >>= 1
        shift -= 1
    if shift > MAX_SHIFT:
        m = round_half_up(Fraction(m, 1 << (shift - MAX_SHIFT)))
        shift = MAX_SHIFT
    if shift < max(2, min_shift):
        raise ValueError(f"RESCALE ratio {float(r):.6g} is too large for a "
                         f"{'32' if scale32 else '16'}-bit multiplier with shift >= "
                         f"{max(2, min_shift)}")
    return int(m), int(shift)


def multipliers(ratios, scale32=True, min_shift=2):
    if not isinstance(ratios, (list, tuple)):
        ratios = [ratios]
    ms, ss = zip(*(multiplier(r, scale32, min_shift) for r in ratios))
    return list(ms), list(ss)


def ratio(*num, den=()):
    """Exact product(num) / product(den) of float scales as a Fraction."""
    r = Fraction(1)
    for x in num:
        r *= Fraction(float(x))
    for x in den:
        r /= Fraction(float(x))
    return r


def apply_scale(value, m, s, scale32=True):
    """The spec's apply_scale_32/16 (single round), for compile-time bound checks."""
    return (int(value) * m + (1 << (s - 1))) >> s


# ---- tables ---------------------------------------------------------------------------------
def table_inputs16():
    """The int16 input value each of the 513 entries of an int16 table stands for."""
    return (np.arange(513, dtype=np.int64) - 256) * 128


def fix_slopes(t):
    """Limit neighbouring differences to int16 (TABLE REQUIREs the slope to fit int16)."""
    t = t.astype(np.int64)
    for i in range(len(t) - 1):
        d = t[i + 1] - t[i]
        if d > 32767:
            t[i + 1] = t[i] + 32767
        elif d < -32768:
            t[i + 1] = t[i] - 32768
    return t


def table16(values_float, out_scale):
    """513 int16 entries round(f/out_scale), clipped to int16 and slope-limited."""
    v = np.asarray(values_float, np.float64)
    q = np.where(np.isfinite(v), v / out_scale, np.sign(v) * 1e9)
    q = np.nan_to_num(q, nan=0.0)
    t = np.clip(np.round(q), -32768, 32767).astype(np.int64)
    return fix_slopes(t).astype(np.int16)


def table16_span(values_float, amax):
    """An int16 table for ``f`` at the 513 nodes, clipped to what an output of range ``amax``
    can use: (table, scale, offset), lookup16(table) + 128 * offset ~ 128 * f / scale.

    A node past the +amax crossing keeps its value, so that the segment in which ``f`` leaves
    the output range interpolates ``f`` rather than a clipped chord (the output RESCALE
    saturates at +32767); the negative side clips at -amax, so the output stays within the
    symmetric -32767..32767.  When the clipped values are one-sided (exp, sigmoid, most of
    gelu), they are centred by an integer ``offset`` so that they span the full int16 range:
    half the scale, a quarter of the table rounding noise, for one int32 ADD.
    """
    v = np.asarray(values_float, np.float64)
    v = np.where(np.isnan(v), 0.0, v)
    over = v > amax
    edge = over & np.isfinite(v) & (np.r_[False, ~over[:-1]] | np.r_[~over[1:], False])
    v = np.where(edge, v, np.clip(v, -amax, amax))
    lo, hi = float(v.min()), float(v.max())
    sym = max(abs(lo), abs(hi), 1e-30) / 32767
    span = (hi - lo) / 65534
    if not 0 < span < 0.75 * sym:
        return table16(v, sym), sym, 0
    offset = int(np.round(hi / span)) - 32767
    t = np.round(v / span).astype(np.int64) - offset
    return fix_slopes(np.clip(t, -32768, 32767)).astype(np.int16), span, offset


def lookup16(table, v):
    """The spec's int16 TABLE lookup (16.7 fixed point result) on int values ``v``."""
    t = np.asarray(table, np.int64)
    v = np.clip(np.asarray(v, np.int64), -32768, 32767)
    idx = (v + 32768) >> 7
    frac = v & 0x7F
    return (t[idx] << 7) + (t[np.minimum(idx + 1, 512)] - t[idx]) * frac


def table8(f, in_scale, out_scale, qmin=-128, qmax=127, in_zp=0, out_zp=0):
    """The 256 int8 entries of ``f`` from input codes (scale, zero point) to output codes."""
    x = (np.arange(256, dtype=np.float64) - 128 - in_zp) * in_scale
    with np.errstate(all="ignore"):
        y = f(x)
    q = np.where(np.isfinite(y), y / out_scale, np.sign(y) * 1e9)
    return np.clip(np.round(np.nan_to_num(q)) + out_zp, qmin, qmax).astype(np.int8)


def clz32(v: int) -> int:
    return 32 - int(v).bit_length() if v > 0 else 32


def snr_db(ref, got):
    ref = np.asarray(ref, np.float64)
    err = np.asarray(got, np.float64) - ref
    p_sig, p_err = float(np.sum(ref * ref)), float(np.sum(err * err))
    if p_err == 0:
        return math.inf
    if p_sig == 0:
        return -math.inf
    return 10 * math.log10(p_sig / p_err)
