"""Lowerings of reductions: mean, sum, amax/amin and max/min, var/std, softmax and
log_softmax.

softmax: REDUCE_MAX, exact int32 difference, exp TABLE on the full int16 range, REDUCE_SUM,
reciprocal by CLZ normalisation + mantissa TABLE + variable shift.  var: exact D*x - sum(x) in
int32, square on int16, REDUCE_SUM; sqrt by CLZ normalisation to an even exponent + mantissa
TABLE.  The normalisation helpers serve the norms too.
"""
from __future__ import annotations

import math

import numpy as np

from ... import quant as Q
from ...schema.definition import DType, Op
from ..values import BITS, K16, QT, Unsupported, norm_dims, numel
from ._registry import lowers
from .arith import maximum_of, minimum_of


def finish_reduce(em, node, y, sy, zp=0):
    shape = tuple(node.meta["val"].shape)
    return em.new(em.reshape(y, shape), sy, shape, zp=zp)


@lowers("aten.mean")
def mean(em, node, p):
    x = p["self"]
    dims = norm_dims(p.get("dim"), x.rank)
    n = numel([x.shape[d] for d in dims])
    s = em.reduce_sum32(em.to_i32(x), dims)
    sy, zp = em.out_qparams(node)
    y = em.rescale(s, Q.ratio(x.scale, den=[sy, n]), em.adt, output_zp=zp)
    return finish_reduce(em, node, y, sy, zp)


@lowers("aten.sum")
def sum_(em, node, p):
    x = p["self"]
    dims = norm_dims(p.get("dim"), x.rank)
    s = em.reduce_sum32(em.to_i32(x), dims)
    sy, zp = em.out_qparams(node)
    y = em.rescale(s, Q.ratio(x.scale, den=[sy]), em.adt, output_zp=zp)
    return finish_reduce(em, node, y, sy, zp)


def _extreme(em, node, p, reduce):
    """amax/amin over ``dim`` (all axes when empty) on the codes: one REDUCE_MAX/MIN per axis,
    the scale and zero point carried over."""
    x = p["self"]
    s = x.name
    for d in norm_dims(p.get("dim"), x.rank):
        s = reduce(s, d)
    shape = tuple(node.meta["val"].shape)
    return em.new(em.reshape(s, shape), x.scale, shape, x.dtype, zp=x.zp)


@lowers("aten.amax")
def amax(em, node, p):
    return _extreme(em, node, p, em.b.reduce_max)


@lowers("aten.amin")
def amin(em, node, p):
    return _extreme(em, node, p, em.b.reduce_min)


def _max_min(em, node, p, reduce, fn):
    """torch.max/min of one tensor: over everything, or over ``dim`` as (values, indices)
    where the indices must go unused."""
    overload = str(node.target).rsplit(".", 1)[-1]
    if overload == "other":                      # torch.max(a, b): elementwise
        return (maximum_of if fn == "max" else minimum_of)(em, node, p["self"], p["other"])
    if overload not in ("default", "dim"):
        raise Unsupported(f"torch.{fn} with overload {overload}")
    if overload == "default":
        return _extreme(em, node, dict(self=p["self"], dim=None), reduce)
    vals = ValuesOf(node, f"torch.{fn} over a dim (arg{fn})")
    return _extreme(em, vals, dict(self=p["self"], dim=[p["dim"]]), reduce), None


class ValuesOf:
    """A stand-in for a node returning (values, indices): its values.  Raises
    :class:`Unsupported` naming ``what`` when the graph uses the indices."""

    def __init__(self, node, what):
        for u in node.users:
            if len(u.args) > 1 and u.args[1] == 1 and u.users:
                raise Unsupported(f"the indices of {what}")
        self.name = node.name
        self.meta = {"val": node.meta["val"][0]}


@lowers("aten.max")
def max_(em, node, p):
    return _max_min(em, node, p, em.b.reduce_max, "max")


@lowers("aten.min")
def min_(em, node, p):
    return _max_min(em, node, p, em.b.reduce_min, "min")


def max_row(em, x: QT, d):
    """max over axis d as int32, keepdim."""
    m = em.b.reduce_max(x.name, d)
    return em.to_i32(QT(m, x.scale, em.b.shape(m), x.dtype, x.zp))


def norm_exp(em, v, even):
    """CLZ normalisation of positive int32 ``v``.

    Returns (norm, e): even=False: norm = v << e in [2**30, 2**31), e = clz(v) - 1.
    even=True: e = 2 * floor((clz(v)-1)/2), norm = v << e in [2**29, 2**31); also the half
    exponent h = e / 2 is returned as third value.
    """
    lz = em.b.op(Op.CLZ, [v], em.b.shape(v), DType.INT32)
    rank = len(em.b.shape(v))
    if not even:
        e = em.b.sub(lz, em.const_i32([1], rank))
        norm = em.b.binary(Op.LOGICAL_LEFT_SHIFT, v, e)
        return norm, e, None
    t = em.b.sub(lz, em.const_i32([2], rank))
    h = em.b.binary(Op.ARITHMETIC_RIGHT_SHIFT, t, em.const_i32([1], rank),
                    attrs=dict(round=True))
    e = em.b.add(h, h)
    norm = em.b.binary(Op.LOGICAL_LEFT_SHIFT, v, e)
    return norm, e, h


def mantissa_table(em, norm, even, f):
    """TABLE of f over the mantissa of a normalised int32: returns (r, f_scale).

    odd (even=False): norm in [2**30, 2**31), m = norm / 2**30 in [1, 2);
    even: norm in [2**29, 2**31), m = norm / 2**29 in [1, 4).
    r (int32) ~= f(m) / f_scale.
    """
    rank = len(em.b.shape(norm))
    if even:
        mid, half = 5 << 28, 3 << 28           # 2.5 * 2**29, 1.5 * 2**29
        base = 1 << 29
    else:
        mid, half = 3 << 29, 1 << 29           # 1.5 * 2**30, 0.5 * 2**30
        base = 1 << 30
    u = em.b.sub(norm, em.const_i32([mid], rank))
    r16 = Q.ratio(32768, den=[half])
    m16, s16 = Q.multiplier(r16, True, 31)
    v16 = em.b.rescale(u, m16, s16, DType.INT16)
    vin = Q.table_inputs16()
    # the mantissa each table input stands for, through the exact RESCALE ratio
    mant = (mid + vin.astype(np.float64) * (2.0 ** s16) / m16) / base
    with np.errstate(all="ignore"):
        fv = f(mant)
    fmax = float(np.max(np.abs(fv)))
    st = fmax / 32767
    tab = Q.table16(fv, st)
    return em.b.table(v16, tab), st / 128


def softmax_parts(em, x: QT, d, node_name):
    """Shared front of softmax/log_softmax: (d32 = x - max (int32, scale sx), e, sum, ...).

    Where ``x.mask`` is set (-inf), the entries take no part in the maximum and their
    exponentials are zero."""
    rank = x.rank
    n = x.shape[d]
    if x.mask is not None and em.u55:     # x - 2**16 * mask, saturated to int16
        low = em.b.mul(x.mask, em.const_i32([-(1 << 16)], rank))
        x16 = em.b.rescale(em.b.add(em.to_i32(x), low), 1 << 30, 30, x.dtype)
        x = QT(x16, x.scale, x.shape, x.dtype, mask=x.mask)
    elif x.mask is not None:
        low = em.b.const(np.array([-(1 << BITS[x.dtype])]).reshape((1,) * rank), x.dtype)
        x = QT(em.b.select(x.mask, low, x.name), x.scale, x.shape, x.dtype, mask=x.mask)
    xi = em.to_i32(x)
    mx = max_row(em, x, d)
    dlt = em.b.sub(xi, mx)                     # <= 0, >= -2*qmax
    # calibrated spread of the rows (masked entries excluded)
    spread = 0.0
    for t in em.acts(node_name):
        tt = t.double()
        mx_t = tt.amax(d, keepdim=True)
        spread = max(spread, float((mx_t - tt).nan_to_num(posinf=0.0).max()))
    spread = spread if spread > 0 else x.scale * em.qmax
    r_dom = min(spread, 2 * x.scale * em.qmax, 24.0)
    s_v = r_dom / 65534
    v = em.rescale(dlt, Q.ratio(x.scale, den=[s_v]), DType.INT32,
                   bound_bits=BITS[em.adt] + 2)
    v = em.b.maximum(v, em.const_i32([-65534], rank))
    v = em.b.add(v, em.const_i32([32767], rank))
    v16 = em.b.rescale(v, 1 << 30, 30, DType.INT16)
    vin = Q.table_inputs16().astype(np.float64)
    fv = np.exp((vin - 32767) * s_v)
    tab = Q.table16(fv, 1.0 / 32767)
    e = em.b.table(v16, tab)                    # exp(x - max) * 32767 * 128
    if x.mask is not None and em.u55:
        e = em.b.mul(e, em.b.sub(em.const_i32([1], rank), x.mask))
    elif x.mask is not None:
        e = em.b.select(x.mask, em.const_i32([0], rank), e)
    tmax = int(Q.lookup16(tab, [32767])[0])
    ssum = em.b.reduce_sum(e, d)                # in [tmax, n * tmax]
    return dlt, e, ssum, tmax, n, s_v


def softmax_input(em, node, p):
    """(x as int16, dim, output scale, _softmax_parts) shared by softmax and log_softmax."""
    x = p["self"]
    d = int(p["dim"]) % x.rank
    sy, zp = em.out_qparams(node)
    if em.adt == DType.INT8:
        x = QT(em.to16(x).name, x.scale, x.shape, DType.INT16, mask=x.mask)
    return x, d, (sy, zp), softmax_parts(em, x, d, node.args[0].name)


@lowers("aten.softmax", "aten._softmax")
def softmax(em, node, p):
    x, d, (sy, zp), (_, e, ssum, tmax, n, _) = softmax_input(em, node, p)
    rank = x.rank
    norm, a, _ = norm_exp(em, ssum, even=False)
    r, _ = mantissa_table(em, norm, False, lambda m: 1.0 / m)   # r ~ (1/m) * K16
    a_min = Q.clz32(n * tmax) - 1
    s1 = max(14, 23 - a_min)
    q = em.b.mul(e, r, shift=s1)
    sh = em.b.sub(a, em.const_i32([a_min], rank))
    q2 = em.b.binary(Op.LOGICAL_LEFT_SHIFT, q, sh)
    # p = q2 * 2**(s1 + a_min - 30) / K16
    sq2 = Q.ratio(2.0 ** (s1 + a_min - 30), den=[K16])
    y = em.rescale(q2, sq2 / Q.ratio(sy), em.adt, bound_bits=30, output_zp=zp)
    return em.new(y, sy, x.shape, zp=zp)


@lowers("aten.log_softmax", "aten._log_softmax")
def log_softmax(em, node, p):
    x, d, (sy, zp), (dlt, e, ssum, tmax, n, _) = softmax_input(em, node, p)
    rank = x.rank
    norm, a, _ = norm_exp(em, ssum, even=False)
    r, sr = mantissa_table(em, norm, False, lambda m: np.log(m))  # ln(m) ~ r * sr
    # ln(sum_f) with sum_f = sum / K16 = m * 2**(30 - a) / K16
    s_l = max(x.scale / (1 << 12), 64.0 / (1 << 30))
    d32 = em.rescale(dlt, Q.ratio(x.scale, den=[s_l]), DType.INT32,
                     bound_bits=BITS[DType.INT16] + 2)
    lnm = em.rescale(r, Q.ratio(sr, den=[s_l]), DType.INT32, bound_bits=23)
    c_ln2 = int(round(math.log(2) / s_l))
    k = em.b.sub(em.const_i32([30], rank), a)
    t2 = em.b.mul(k, em.const_i32([c_ln2], rank))
    c0 = int(round(-math.log(K16) / s_l))
    tot = em.b.add(em.b.add(lnm, t2), em.const_i32([c0], rank))
    out = em.b.sub(d32, tot)
    y = em.rescale(out, Q.ratio(s_l, den=[sy]), em.adt, bound_bits=31, output_zp=zp)
    return em.new(y, sy, x.shape, zp=zp)


def centered(em, x: QT, dims, name_for_acts):
    """xc16 = x - mean(x over dims) as int16 (scale s_c), and D."""
    rank = x.rank
    dcount = numel([x.shape[d] for d in dims])
    xi = em.to_i32(x)
    s = em.reduce_sum32(xi, dims)
    xd = em.b.mul(xi, em.const_i32([dcount], rank))
    xc = em.b.sub(xd, s)                       # D * (x - mean), scale sx
    dev = 0.0
    for t in em.acts(name_for_acts):
        tt = t.double()
        dev = max(dev, float((tt - tt.mean(dim=dims, keepdim=True)).abs().max()))
    dev = dev if dev > 0 else x.scale
    s_c = dev / 32767
    xc16 = em.rescale(xc, Q.ratio(x.scale, den=[dcount, s_c]), DType.INT16,
                      bound_bits=BITS[x.dtype] + 1 + int(dcount).bit_length())
    return xc16, s_c, dcount


def sumsq(em, xc16, dims, dcount):
    """sum over dims of xc16**2 >> k as int32, k = ceil(log2 D)."""
    sq = em.b.mul(xc16, xc16)                  # <= 2**30
    k = max(1, (int(dcount) - 1).bit_length())
    sq = em.b.rescale(sq, 1 << 30, 30 + k, DType.INT32)
    return em.reduce_sum32(sq, dims), k


def var_parts(em, x: QT, dims, acts_name, eps):
    if x.dtype == DType.INT8:
        x = em.to16(x)
    rank = x.rank
    xc16, s_c, dcount = centered(em, x, dims, acts_name)
    v, k = sumsq(em, xc16, dims, dcount)
    u_v = s_c * s_c * (1 << k) / dcount          # v * u_v = biased variance
    eps_i = 0
    if eps is not None:
        eps_i = int(min(max(1, round(eps / u_v)), (1 << 30) - 1))
        v = em.b.add(v, em.const_i32([eps_i], rank))
    return xc16, s_c, dcount, v, u_v, eps_i


def var_std(em, node, p, std):
    x = p["self"]
    dims = norm_dims(p.get("dim"), x.rank)
    corr = p.get("correction")
    if corr is None:
        corr = 1 if p.get("unbiased", True) else 0
    corr = float(corr)
    keep_rank = x.rank
    xc16, s_c, dcount, v, u_v, _ = var_parts(em, x, dims, node.args[0].name, None)
    if dcount - corr <= 0:
        raise Unsupported("variance with correction >= number of elements")
    sy, zp = em.out_qparams(node)
    if not std:
        y = em.rescale(v, Q.ratio(u_v * dcount / (dcount - corr), den=[sy]), em.adt,
                       bound_bits=30, output_zp=zp)
        return finish_reduce(em, node, y, sy, zp)
    # sqrt by normalisation: sqrt(v) = sqrt(m4) * 2**(14.5 - h)
    v1 = em.b.maximum(v, em.const_i32([1], keep_rank))
    norm, e, h = norm_exp(em, v1, even=True)
    r, sr = mantissa_table(em, norm, True, np.sqrt)
    h_min = (Q.clz32((1 << 30)) - 1) // 2
    sh = em.b.sub(h, em.const_i32([h_min], keep_rank))
    q2 = em.b.binary(Op.ARITHMETIC_RIGHT_SHIFT, r, sh, attrs=dict(round=True))
    # std = q2 * sr * 2**(14.5 - h_min) * sqrt(u_v * D / (D - corr))
    s_q2 = sr * 2.0 ** (14.5 - h_min) * math.sqrt(u_v * dcount / (dcount - corr))
    y = em.rescale(q2, Q.ratio(s_q2, den=[sy]), em.adt, bound_bits=23, output_zp=zp)
    return finish_reduce(em, node, y, sy, zp)


@lowers("aten.var")
def var(em, node, p):
    return var_std(em, node, p, False)


@lowers("aten.std")
def std(em, node, p):
    return var_std(em, node, p, True)
