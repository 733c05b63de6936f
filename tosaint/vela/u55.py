"""GraphBuilder helpers that emit int16 operations Ethos-U55/U65 cannot run natively, using only
operations and types they can run (each checked against :func:`tosaint.vela.check` and
compiled by Vela in tests/test_vela.py), bit-exact with the TOSA reference model.

API for front ends (tosaint.torch lowers with these when target is ethos-u55-*/u65-*)::

    from tosaint.vela import u55
    y = u55.matmul_int16(b, a, w, multiplier=m, shift=s, out_dtype=DType.INT16)
    # == b.rescale(b.matmul(a, w), m, s, DType.INT16, scale32=False)  (bit for bit)

    u55.needs_decomposition(target, "MATMUL", DType.INT16)   # -> True for U55/U65

What Ethos-U55/U65 (Vela 5.2.0) cannot do and what to use instead:

- int16 x int16 MATMUL (int48 accumulator) + RESCALE: :func:`matmul_int16` (four int8
  MATMULs over byte-split operands, recombined exactly in int32 limbs).
- int16 TABLE: nothing to do.  Vela 5.2.0 accepts it on U55/U65 and lowers it to three int16
  LUTs (base, slope, fraction) + MUL + ADD (graphir_optimiser.cpp RewriteTable), i.e. the
  TOSA formula (table[i] << 7) + slope * fraction in integer ops; the "EXT-INT16 is not
  supported" line in SUPPORTED_OPS.md is out of date.  (Hardware results were not checked
  here: there is no FVP in this environment.)
- a RESCALE of an int48 tensor that is not the output of an int16 convolution, or an int16
  convolution whose int48 output is used by anything but one RESCALE: no exact workaround
  (int48 tensors cannot exist on their own); keep the RESCALE directly after the convolution.
"""
from __future__ import annotations

import numpy as np

from .. import quant as Q
from ..schema.definition import DType, Op, RoundingMode

_OUT_RANGE = {DType.INT8: (-128, 127), DType.INT16: (-32768, 32767)}


def needs_decomposition(target, op, in_dtype):
    """True when ``op`` (name or Op) on ``in_dtype`` inputs must go through a helper here."""
    t = str(target).lower()
    if not t.startswith(("ethos-u55", "ethos-u65")):
        return False
    key = (Op[op] if isinstance(op, str) else Op(op), DType(in_dtype))
    return key in ((Op.MATMUL, DType.INT16),)


def _c(b, value, rank, dtype=DType.INT32):
    """A broadcastable constant of ``rank`` (scalar or last-axis vector)."""
    arr = np.asarray(value, np.int64)
    shape = (1,) * (rank - 1) + ((arr.size,) if arr.ndim else (1,))
    return b.const(arr.reshape(shape), dtype)


def _ew(b, op, x, y, attrs=None):
    shape = tuple(max(p, q) for p, q in zip(b.shape(x), b.shape(y)))
    return b.op(op, [x, y], shape, DType.INT32, attrs or {})


def _asr(b, x, n):
    """floor(x / 2**n) for int32 ``x`` (ARITHMETIC_RIGHT_SHIFT, round=False)."""
    return _ew(b, Op.ARITHMETIC_RIGHT_SHIFT, x, _c(b, n, len(b.shape(x))), dict(round=False))


def _mul(b, x, k):
    """x * k (int32, low 32 bits; used only where the product fits)."""
    return b.op(Op.MUL, [x, _c(b, k, len(b.shape(x))), b.const(np.array([0]), DType.INT8)],
                b.shape(x), DType.INT32, {})


def _split(b, x, bits):
    """(floor(x / 2**bits), x mod 2**bits) of int32 ``x``, the remainder in [0, 2**bits)."""
    hi = _asr(b, x, bits)
    lo = b.sub(x, _mul(b, hi, 1 << bits))
    return hi, lo


def split_int16(b, x):
    """int16 ``x`` -> (hi, lo) int8 tensors with x == 256*hi + (lo + 128); ``hi`` is signed
    (zero point 0) and ``lo`` carries the low byte offset by -128 (use zero point -128)."""
    x32 = b.cast(x, DType.INT32)
    hi, lo = _split(b, x32, 8)
    lo = b.sub(lo, _c(b, 128, len(b.shape(lo))))
    return b.cast(hi, DType.INT8), b.cast(lo, DType.INT8)


def matmul_int16(b, a, b_, *, multiplier, shift, out_dtype=DType.INT16, output_zp=0,
                 rounding_mode=RoundingMode.SINGLE_ROUND, name=None):
    """RESCALE(MATMUL(a, b_)) for int16 ``a`` [N,H,C] and ``b_`` [N,C,W] (zero points 0) with
    only int8 MATMUL and int32 elementwise operations; bit-identical to::

        acc = b.matmul(a, b_)                                  # int48
        b.rescale(acc, multiplier, shift, out_dtype, output_zp=output_zp, scale32=False)

    ``multiplier``: int16 scale(s) >= 0, a scalar or one per output column W (per-channel);
    ``shift``: one value in 2..62 (all channels); ``out_dtype``: INT8, INT16 or INT32.
    Exact while C <= 32768 (every int8 partial sum then fits int32) and the scaled result fits
    int32 (the spec REQUIRE of apply_scale_16).  Returns the output tensor name.

    How: a = 256*ah + al, b_ = 256*bh + bl with ah, bh signed bytes and al, bl in 0..255 (fed
    to MATMUL as int8 with zero point -128).  The four int8 MATMULs give
    acc = 2^16*Phh + 2^8*(Phl+Plh) + Pll, renormalised to acc = 2^16*H + T (T in 0..65535),
    then acc*m is formed in three 16-bit limbs so that no int32 product overflows, the
    rounding constant 2^(shift-1) is added to the right limb, carries are propagated, and the
    shift is applied limb-wise with floor shifts.  The result is clamped with MINIMUM/MAXIMUM
    and CAST (exact) to ``out_dtype``.
    """
    if RoundingMode(rounding_mode) != RoundingMode.SINGLE_ROUND:
        raise ValueError("matmul_int16: only SINGLE_ROUND (DOUBLE_ROUND needs scale32, which "
                         "int48 inputs cannot use; INEXACT_ROUND is not bit-exact)")
    shift = np.unique(np.asarray(shift, np.int64).reshape(-1))
    if shift.size != 1 or not 2 <= int(shift[0]) <= 62:
        raise ValueError(f"matmul_int16: one shift in 2..62 needed, got {shift.tolist()}")
    s = int(shift[0])
    m = np.asarray(multiplier, np.int64).reshape(-1)
    if m.min() < 0 or m.max() > 32767:
        raise ValueError("matmul_int16: multiplier must be in 0..32767 (scale16)")
    n, h, c = b.shape(a)
    w = b.shape(b_)[2]
    if m.size not in (1, w):
        raise ValueError(f"matmul_int16: {m.size} multipliers for {w} output columns")
    if c > 32768:
        raise ValueError(f"matmul_int16: C = {c} > 32768 would overflow the int8 partial sums")
    out_dtype = DType(out_dtype)
    mvec = m if m.size > 1 else int(m[0])

    ah, al = split_int16(b, a)
    bh, bl = split_int16(b, b_)
    p_hh = b.matmul(ah, bh)
    p_hl = b.matmul(ah, bl, b_zp=-128)
    p_lh = b.matmul(al, bh, a_zp=-128)
    p_ll = b.matmul(al, bl, a_zp=-128, b_zp=-128)

    # acc = 2^16*Phh + 2^8*Pmid + Pll  ->  2^16*H + T, T in [0, 2^16)
    mh, ml = _split(b, b.add(p_hl, p_lh), 8)
    t = b.add(p_ll, _mul(b, ml, 256))
    th, tl = _split(b, t, 16)
    hh = b.add(b.add(p_hh, mh), th)
    # H = 2^16*Hh + Hl; acc*m = 2^32*(Hh*m) + 2^16*(Hl*m) + T*m, every product < 2^31
    h_hi, h_lo = _split(b, hh, 16)
    r = len(b.shape(hh))

    def mul_m(x):
        return b.op(Op.MUL, [x, _c(b, mvec, r), b.const(np.array([0]), DType.INT8)],
                    b.shape(x), DType.INT32, {})
    l0, l1, l2 = mul_m(tl), mul_m(h_lo), mul_m(h_hi)
    # rounding constant 2^(s-1) into its limb
    k = s - 1
    if k < 16:
        l0 = b.add(l0, _c(b, 1 << k, r))
    elif k < 32:
        l1 = b.add(l1, _c(b, 1 << (k - 16), r))
    else:
        l2 = b.add(l2, _c(b, 1 << (k - 32), r))
    # carries: limbs 0 and 1 into [0, 2^16)
    c0, r0 = _split(b, l0, 16)
    l1 = b.add(l1, c0)
    c1, r1 = _split(b, l1, 16)
    l2 = b.add(l2, c1)
    # floor((2^32*l2 + 2^16*r1 + r0) / 2^s)
    if s >= 32:
        y = _asr(b, l2, s - 32) if s > 32 else l2
    elif s >= 16:
        y = b.add(_mul(b, l2, 1 << (32 - s)), _asr(b, r1, s - 16) if s > 16 else r1)
    else:
        y = b.add(b.add(_mul(b, l2, 1 << (32 - s)), _mul(b, r1, 1 << (16 - s))),
                  _asr(b, r0, s))
    if output_zp:
        y = b.add(y, _c(b, int(output_zp), r))
    if out_dtype == DType.INT32:
        return b.identity(y, name=name) if name else y
    lo, hi = _OUT_RANGE[out_dtype]
    y = b.minimum(b.maximum(y, _c(b, lo, r)), _c(b, hi, r))
    return b.cast(y, out_dtype, name=name)


def torch_hooks(target):
    """Emission hooks for tosaint.torch's emitter when lowering for ``target``, by operation.

    ``"matmul"``: ``hook(emitter, a3, b3, a_scale, b_scale, out_scale) -> tensor name`` for an
    int16 activation x activation bmm ([N,H,C] x [N,C,W]); it computes the same scale16
    (multiplier, shift) as the emitter's own ``RESCALE(MATMUL)`` path and emits
    :func:`matmul_int16`, so the lowered graph computes bit-identical values.
    """
    if not needs_decomposition(target, Op.MATMUL, DType.INT16):
        return {}

    def matmul(em, a3, b3, a_scale, b_scale, out_scale):
        ms, ss = Q.multipliers([Q.ratio(a_scale, b_scale, den=[out_scale])], False, 2)
        return matmul_int16(em.b, a3, b3, multiplier=ms[0], shift=ss[0],
                            out_dtype=em.b.dtype(a3))
    return {"matmul": matmul}
