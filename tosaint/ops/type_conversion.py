"""Type conversion operators: CAST and RESCALE (spec chapter "Type Conversion")."""
import math

import numpy as np

from ..dtypes import STORAGE, short
from ..kernels._int import DOUBLE32, I32_MAX, I32_MIN, INEXACT16, INEXACT32, SCALE16, SINGLE32
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op, RoundingMode
from .ewise_binary import finish

# ---- CAST ---------------------------------------------------------------------------------
_INTS = (T.INT8, T.INT16, T.INT32)
_CAST = {(T.BOOL, t): "PRO-INT" for t in _INTS}
_CAST.update({(t, T.BOOL): "PRO-INT" for t in _INTS})
_CAST.update({(a, b): "PRO-INT" for a in _INTS for b in _INTS if a != b})


@register(Op.CAST, _CAST, operands=("input",))
def cast(node):
    a, out = node.inputs[0], node.outputs[0]
    if tuple(a.shape) != tuple(out.shape):
        node.error(f"input shape {list(a.shape)} != output shape {list(out.shape)}")
    shape, dtype = tuple(out.shape), out.dtype
    if dtype == T.BOOL:
        return lambda x: finish(x != 0, dtype, shape)    # out = (in != 0) ? true : false
    # bool -> 1/0; widening sign-extends; narrowing truncates (keeps the low bits)
    return lambda x: finish(x.astype(STORAGE[dtype]), dtype, shape)


# ---- RESCALE ------------------------------------------------------------------------------
def no_require_range(mult, shift, rnd_pos, rnd_neg, half, out_zp, in_bits=48):
    """Per channel, the interval [lo, hi] of input values v (input_zp 0, in_bits-bit input)
    for which the branch-free RESCALE (type_conversion.rescale_exact) fails no REQUIRE:
    v in [-half, half), scaled = (v*m + rnd) >> shift in int32 and scaled + out_zp in int32.

    Why it is an interval: with m >= 0, scaled is non-decreasing on v >= 0 (rnd_pos) and on
    v < 0 (rnd_neg), and scaled(-1) <= scaled(0) because rnd_neg <= rnd_pos.  So the valid v
    >= 0 are [0, hi] and the valid v < 0 are [lo, -1] whenever scaled(0) itself is valid, and
    then the bounds are where scaled leaves [slo, shi]: v*m + rnd_pos < (shi+1) << shift and
    v*m + rnd_neg >= slo << shift.  If scaled(0) is invalid the interval is left empty (lo >
    hi: every value is reported, which only costs speed).  Python integers: no overflow.
    Returns the lists (lo, hi)."""
    lo, hi = _no_require_bounds(mult, shift, rnd_pos, rnd_neg, half, out_zp, in_bits)
    return (lo.tolist(), hi.tolist()) if isinstance(lo, np.ndarray) else (lo, hi)


def _no_require_bounds(mult, shift, rnd_pos, rnd_neg, half, out_zp, in_bits):
    """``no_require_range`` as int64 arrays (many channels) or lists (a few)."""
    vmin, vmax = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    slo, shi = max(I32_MIN, I32_MIN - out_zp), min(I32_MAX, I32_MAX - out_zp)
    if len(shift) >= 16 and 0 <= np.min(shift) and np.max(shift) <= 62:
        wide = np.max(shift) > 30
        return (_no_require_range_wide if wide else _no_require_range_int64)(
            mult, shift, rnd_pos, rnd_neg, half, vmin, vmax, slo, shi)
    return _no_require_range_loop(mult, shift, rnd_pos, rnd_neg, half, vmin, vmax, slo, shi)


def _no_require_range_loop(mult, shift, rnd_pos, rnd_neg, half, vmin, vmax, slo, shi):
    """``no_require_range`` channel by channel, in Python integers."""
    lo, hi = [], []
    for m, s, rp, rn, h in zip(map(int, mult), map(int, shift), map(int, rnd_pos),
                               map(int, rnd_neg), map(int, half)):
        a, b = max(vmin, -h), min(vmax, h - 1)
        if not (slo <= rp >> s <= shi) or rn > rp:
            a, b = 1, 0
        elif m > 0:
            b = min(b, (((shi + 1) << s) - rp - 1) // m)
            a = max(a, -((rn - (slo << s)) // m))            # ceil(((slo << s) - rn) / m)
        elif rn >> s < slo:                                   # m == 0: scaled is constant
            a = max(a, 0)
        lo.append(a)
        hi.append(b)
    return lo, hi


def _no_require_range_int64(mult, shift, rnd_pos, rnd_neg, half, vmin, vmax, slo, shi):
    """``no_require_range`` for many channels whose shifts are in 0..30, in one NumPy pass:
    every intermediate then fits int64 (|slo|, |shi + 1| <= 2**31, so the shifted bounds stay
    within 2**61; NumPy's // floors and >> is arithmetic, as Python's), so the bounds are the
    same as the loop's."""
    m, s, rp, rn, h = (np.asarray(v, np.int64) for v in (mult, shift, rnd_pos, rnd_neg, half))
    lo = np.maximum(-h, vmin)
    hi = np.minimum(h - 1, vmax)
    q = rp >> s
    empty = (q < slo) | (q > shi) | (rn > rp)
    pos = ~empty & (m > 0)
    if pos.all():       # the usual case: every interval bounded by a positive multiplier
        hi = np.minimum(hi, (((shi + 1) << s) - rp - 1) // m)
        lo = np.maximum(lo, -((rn - (slo << s)) // m))
        return lo, hi
    d = np.where(pos, m, 1)
    hi = np.where(pos, np.minimum(hi, (((shi + 1) << s) - rp - 1) // d), hi)
    lo = np.where(pos, np.maximum(lo, -((rn - (slo << s)) // d)), lo)
    lo = np.where(~empty & ~pos & ((rn >> s) < slo), np.maximum(lo, 0), lo)
    lo[empty] = 1
    hi[empty] = 0
    return lo, hi


def _no_require_range_wide(mult, shift, rnd_pos, rnd_neg, half, vmin, vmax, slo, shi):
    """``no_require_range`` for many channels with shifts up to 62 (the scale16 RESCALEs of
    int48 sums), where ``(shi + 1) << shift`` leaves int64.  A positive multiplier's int32
    bounds, ``((shi + 1) << s) - rp - 1) // m`` and its counterpart, usually lie far outside
    the input's own range [max(-half, vmin), min(half - 1, vmax)] (|bound| < 2**47): the
    float64 quotients show it with room to spare (the error bound below covers the rounding
    of every operation with a factor of 4), and the interval is then the input range, exactly.
    The channels where a bound comes near the input range are computed by the loop."""
    m, s, rp, rn, h = (np.asarray(v, np.int64) for v in (mult, shift, rnd_pos, rnd_neg, half))
    lo = np.maximum(-h, vmin)
    hi = np.minimum(h - 1, vmax)
    empty = ((rp >> s) < slo) | ((rp >> s) > shi) | (rn > rp)
    pos = ~empty & (m > 0)
    p2 = np.ldexp(1.0, s)
    mf = np.where(pos, m, 1).astype(np.float64)
    top, bottom = (shi + 1) * p2, slo * p2                     # exact: powers of two
    rpf, rnf = rp.astype(np.float64), rn.astype(np.float64)
    x_hi, x_lo = (top - rpf - 1) / mf, (bottom - rnf) / mf
    err_hi = (np.abs(top) + np.abs(rpf) + 1) / mf * 2.0 ** -50 + 1
    err_lo = (np.abs(bottom) + np.abs(rnf)) / mf * 2.0 ** -50 + 1
    near = pos & ((x_hi - err_hi < hi + 1) | (x_lo + err_lo > lo - 1))
    lo = np.where(~empty & ~pos & ((rn >> s) < slo), np.maximum(lo, 0), lo)
    lo[empty] = 1
    hi[empty] = 0
    lo, hi = lo.tolist(), hi.tolist()
    for i in np.flatnonzero(near).tolist():
        (lo[i],), (hi[i],) = _no_require_range_loop(m[i:i + 1], s[i:i + 1], rp[i:i + 1],
                                                    rn[i:i + 1], h[i:i + 1], vmin, vmax,
                                                    slo, shi)
    return lo, hi


_BITS = {T.INT8: 8, T.INT16: 16, T.INT32: 32, T.INT48: 48}


def _rescale_signatures():
    sigs = {}
    for i in (T.INT8, T.INT16, T.INT32, T.INT48):
        for o in _INTS:
            for m in (T.INT32, T.INT16):
                sigs[(i, m, T.INT8, i, o, o)] = "EXT-INT16" if i == T.INT48 else "PRO-INT"
    return sigs


_ROUNDING = {int(m): m for m in (RoundingMode.SINGLE_ROUND, RoundingMode.DOUBLE_ROUND,
                                  RoundingMode.INEXACT_ROUND)}


def _extend(v, t, unsigned):
    """A zero point's value: zero_extend for an unsigned type (storage is sign-extended)."""
    v = int(v)
    return v & ((1 << _BITS[t]) - 1) if unsigned else v


def _check_rescale(node):
    """The ERROR_IFs of RESCALE (run once per node); returns what the preparation needs.
    (The messages are formatted only for the check that fails: this runs for every RESCALE
    of a graph.)"""
    x, mt, st, izt, ozt = node.inputs
    out = node.outputs[0]
    in_t, out_t = x.dtype, out.dtype
    at = node.attrs
    scale32, per_channel = bool(at["scale32"]), bool(at["per_channel"])
    in_u, out_u = bool(at["input_unsigned"]), bool(at["output_unsigned"])
    rounding = _ROUNDING.get(int(at["rounding_mode"]))
    if rounding is None:
        node.error(f"rounding_mode {at['rounding_mode']} is not SINGLE_ROUND, INEXACT_ROUND or "
                   "DOUBLE_ROUND")
    if tuple(x.shape) != tuple(out.shape):
        node.error(f"input shape {list(x.shape)} != output shape {list(out.shape)}")
    if mt.dtype != (T.INT32 if scale32 else T.INT16):
        node.error(f"multiplier is {short(mt.dtype)} but scale32={scale32} needs "
                   f"{'i32' if scale32 else 'i16'}")
    e = node.error_if
    if scale32:
        e(in_t == T.INT48, "scale32 with an i48 input")
    else:
        e(rounding == RoundingMode.DOUBLE_ROUND, "DOUBLE_ROUND without scale32")
    if in_u or out_u:
        e(in_u and out_u, "input_unsigned and output_unsigned are both set")
        e(out_t == T.INT32 and in_u, "input_unsigned with an i32 output")
        e(in_t == T.INT32 and out_u, "output_unsigned with an i32 input")
        e(in_t == T.INT48 and out_u, "output_unsigned with an i48 input")
        e(in_t == T.INT48 and in_u, "input_unsigned with an i48 input (no u48)")
        e(in_t == T.INT32 and in_u, "input_unsigned with an i32 input (no u32)")
        e(out_t == T.INT32 and out_u, "output_unsigned with an i32 output (no u32)")
    rank = len(x.shape)
    e(per_channel and rank < 1, "per_channel with a rank 0 input")
    nc = x.shape[-1] if per_channel else 1
    for t, what in ((mt, "multiplier"), (st, "shift")):
        if len(t.shape) != 1:
            node.error(f"{what} has rank {len(t.shape)}, expected 1")
        if t.shape[0] != nc:
            node.error(f"{what} has {t.shape[0]} values, expected "
                       f"{'the last input dimension ' if per_channel else ''}{nc}")
    for t, what in ((izt, "input_zp"), (ozt, "output_zp")):
        if tuple(t.shape) != (1,):
            node.error(f"{what} has shape {list(t.shape)}, expected [1]")
    in_zp = _extend(node.const(3)[0], in_t, in_u)
    out_zp = _extend(node.const(4)[0], out_t, out_u)
    if in_t != T.INT8 and not (in_t == T.INT16 and in_u) and in_zp != 0:
        node.error(f"input_zp {in_zp} != 0 for a {'u' if in_u else 'i'}{_BITS[in_t]} input")
    if out_t != T.INT8 and not (out_t == T.INT16 and out_u) and out_zp != 0:
        node.error(f"output_zp {out_zp} != 0 for a {'u' if out_u else 'i'}{_BITS[out_t]} output")
    if in_t == T.INT16 and in_u and in_zp not in (0, 32768):
        node.error(f"input_zp {in_zp} of a u16 input is not 0 or 32768")
    if out_t == T.INT16 and out_u and out_zp not in (0, 32768):
        node.error(f"output_zp {out_zp} of a u16 output is not 0 or 32768")
    return x, out, in_t, out_t, scale32, per_channel, in_u, out_u, rounding, rank, in_zp, out_zp


@register(Op.RESCALE, _rescale_signatures(),
          operands=("input", "multiplier", "shift", "input_zp", "output_zp"))
def rescale(node):
    (x, out, in_t, out_t, scale32, per_channel, in_u, out_u, rounding, rank, in_zp,
     out_zp) = node.once(_check_rescale)
    if node.validating:
        return None

    cols = x.shape[-1] if rank else 1
    if rounding == RoundingMode.INEXACT_ROUND:
        mode = INEXACT32 if scale32 else INEXACT16
    elif scale32:
        mode = DOUBLE32 if rounding == RoundingMode.DOUBLE_ROUND else SINGLE32
    else:
        mode = SCALE16
    obits = _BITS[out_t]
    qmin, qmax = (0, (1 << obits) - 1) if out_u else (-(1 << (obits - 1)), (1 << (obits - 1)) - 1)
    in_mask = (1 << _BITS[in_t]) - 1 if in_u else 0
    ost = STORAGE[out_t]
    oshape = tuple(out.shape)
    k = node.k
    helper = "apply_scale_32" if scale32 else "apply_scale_16"
    mult_c, shift_c = node.const(1), node.const(2)
    # derived once per distinct (multiplier, shift, ...) and shared by the RESCALEs using it
    key = (mult_c.tobytes(), shift_c.tobytes(), per_channel, cols, mode, bool(in_mask),
           in_zp == 0, out_zp, _BITS[in_t])
    (mult, shift, pow2, bad_params, fast, rnd_pos, rnd_neg, half,
     lo_hi) = node.derive(key, _scale_params, mult_c, shift_c, per_channel, cols, mode,
                          in_mask, in_zp, out_zp, _BITS[in_t])

    # the kernels' parameters, bound here (one tuple each rather than a closure cell per value)
    exact = (in_zp, out_zp, mult, rnd_pos, rnd_neg, shift, half, qmin, qmax)
    general = (in_mask, in_zp, out_zp, mult, shift, pow2, mode, qmin, qmax)
    why = (helper, scale32, bad_params, mult, shift, mode, out_zp)

    def run(a, *_):
        if a.size == 0:
            return np.zeros(oshape, ost)
        a2 = a.reshape(-1, cols)
        if fast:
            res = np.empty(a2.shape, ost)
            # an unsigned output's values (0..2**bits-1) are written through an unsigned view
            # of its signed storage: the same bits, and no overflow in the NumPy twin
            view = res.view(res.dtype.str.replace("i", "u")) if out_u else res
            if k.rescale_exact(a2, *exact, view) == 0:
                return res.reshape(oshape)
        res = np.empty(a2.shape, np.int32)
        n_scale, n_zp = k.rescale(a2, *general, res)
        if n_scale or n_zp:
            _report_rescale(node, n_scale, n_zp, *why)
        return res.astype(ost, copy=False).reshape(oshape)
    if lo_hi is not None:
        # what a producer needs to apply this RESCALE in its own epilogue (interpreter fusion)
        lo, hi = lo_hi
        run.epilogue = ((mult, rnd_pos, rnd_neg, shift, half, lo, hi, out_zp, qmin, qmax), ost)
    return run


def _report_rescale(node, n_scale, n_zp, helper, scale32, bad_params, mult, shift, mode,
                    out_zp):
    """The REQUIREs a RESCALE run failed: ``n_scale`` values in apply_scale_32/16 (or invalid
    multipliers and shifts), ``n_zp`` values where adding output_zp left int32."""
    if n_scale:
        if bad_params:
            c = bad_params[0]
            why = (f"{helper}: multiplier {mult[c]} < 0 or shift {shift[c]} outside 2..62 "
                   f"(channel {c})")
        elif scale32:
            why = (f"{helper}: value (input - input_zp) outside [-2^(shift-1), "
                   "2^(shift-1)) or scaled result outside int32")
        else:
            why = f"{helper}: scaled result outside int32"
        # the reference model computes INEXACT_ROUND in fp32 without these checks
        node.require(False, why, count=int(n_scale),
                     reference="unpredictable" if mode < INEXACT32 else "computes in fp32")
    node.require(n_zp == 0, f"scaled result + output_zp {out_zp} outside int32",
                 count=int(n_zp))


def _scale_params(mult, shift, per_channel, cols, mode, in_mask, in_zp, out_zp, in_bits):
    """The per-channel arrays a RESCALE runs with, from its multiplier and shift constants:
    (mult, shift, pow2, bad_params, fast, rnd_pos, rnd_neg, half, (lo, hi) or None).

    A per-tensor RESCALE (one multiplier and shift) is computed in Python integers
    (``_scale_params_1``), a per-channel one in int64 arrays over its channels (shifts are
    int8: the rounding constants 2**(shift-1) + 2**30 of shifts up to 62 fit); the intervals of
    ``no_require_range`` are exact either way."""
    mult = np.asarray(mult, np.int64).reshape(-1)
    shift = np.asarray(shift, np.int64).reshape(-1)
    if not per_channel or len(mult) == 1:
        return _scale_params_1(int(mult[0]), int(shift[0]), cols, mode, in_mask, in_zp, out_zp,
                               in_bits)
    bad_params = np.flatnonzero((mult < 0) | (shift < 2) | (shift > 62)).tolist()
    if bad_params:
        with np.errstate(over="ignore"):
            pow2 = np.ldexp(1.0, -shift).astype(np.float32)   # 2**-shift (inf beyond float32)
    else:
        pow2 = np.ldexp(np.float32(1.0), -shift.astype(np.int32))
    # The common case (signed input, SINGLE/DOUBLE_ROUND or scale16, every multiplier and
    # shift valid) goes through the branch-free kernel; only if some element fails a REQUIRE
    # does the general kernel run again for the exact handling of the failures.
    fast = mode in (SCALE16, SINGLE32, DOUBLE32) and not in_mask and not bad_params
    rows = [mult, shift]
    if fast:
        base = np.left_shift(1, shift - 1)                                   # 2**(shift-1)
        extra = np.where(shift > 31, 1 << 30, 0) if mode == DOUBLE32 else 0
        rnd_pos, rnd_neg = base + extra, base - extra
        # value-range REQUIRE of apply_scale_32 (none for apply_scale_16)
        half = np.full(len(shift), 1 << 62, np.int64) if mode == SCALE16 else base
        rows += [rnd_pos, rnd_neg, half]
        if in_zp == 0:
            rows += _no_require_bounds(mult, shift, rnd_pos, rnd_neg, half, out_zp, in_bits)
    # the rows of one C-ordered array (each contiguous)
    ints = np.empty((len(rows), cols), np.int64)
    for i, r in enumerate(rows):
        ints[i] = r
    ints = list(ints)
    rnd_pos, rnd_neg, half = ints[2:5] if fast else (None, None, None)
    lo_hi = (ints[5], ints[6]) if len(ints) == 7 else None
    return ints[0], ints[1], pow2, bad_params, fast, rnd_pos, rnd_neg, half, lo_hi


def _scale_params_1(m, s, cols, mode, in_mask, in_zp, out_zp, in_bits):
    """``_scale_params`` for one multiplier and shift (a per-tensor RESCALE): the same values,
    in Python scalars until the arrays are filled (most RESCALEs of a graph are per-tensor)."""
    pow2 = 2.0 ** -s if s >= -127 else math.inf
    bad_params = [] if m >= 0 and 2 <= s <= 62 else [0]
    fast = mode in (SCALE16, SINGLE32, DOUBLE32) and not in_mask and not bad_params
    vals = [m, s]
    if fast:
        base = 1 << (s - 1)
        extra = 1 << 30 if mode == DOUBLE32 and s > 31 else 0
        half = 1 << 62 if mode == SCALE16 else base
        vals += [base + extra, base - extra, half]
        if in_zp == 0:
            lo, hi = no_require_range([m], [s], [base + extra], [base - extra], [half], out_zp,
                                      in_bits)
            vals += [lo[0], hi[0]]
    ints = np.empty((len(vals), cols), np.int64)
    ints.T[...] = vals
    ints = list(ints)
    rnd_pos, rnd_neg, half = ints[2:5] if fast else (None, None, None)
    lo_hi = (ints[5], ints[6]) if len(ints) == 7 else None
    return ints[0], ints[1], np.full(cols, pow2, np.float32), bad_params, fast, rnd_pos, \
        rnd_neg, half, lo_hi
