"""Lowerings of pointwise functions: TABLE functions (exp, sigmoid, gelu, silu, hardswish, ...),
pow, the clamps (relu, relu6, hardtanh; clamp itself is in arith) and glu.

a16w8: a 513-entry int16 TABLE over the calibrated input range (16.7 fixed point int32 result),
RESCALE; a one-sided table (exp, sigmoid) is centred on the int16 range and an int32 ADD
restores the offset before the RESCALE.  a8w8: a 256-entry int8 TABLE, from the input's
zero point to the output's.
"""
from __future__ import annotations

import numpy as np
import torch

from ... import quant as Q
from ...schema.definition import DType
from ..values import QT, Fake, Unsupported, f64
from ._registry import lowers


def table(em, node, x: QT, f, smooth=False):
    if em.adt == DType.INT8:
        sy, zp = em.out_qparams(node)
        tab = Q.table8(lambda v: f(f64(v)).numpy(), x.scale, sy, in_zp=x.zp, out_zp=zp)
        y = em.b.table(x.name, tab)
        return em.new(y, sy, x.shape, zp=zp)
    sy_amax = em.amax(node.name)
    xs = Q.table_inputs16() * x.scale
    with np.errstate(all="ignore"):
        fv = f(f64(xs)).numpy()
    if smooth and np.all(np.isfinite(fv)):
        # nodes lowered by the mean interpolation error h^2 f''/12 of a piecewise linear
        # interpolant: zero-mean error, rms / sqrt(6)
        d2 = np.zeros_like(fv)
        d2[1:-1] = fv[:-2] - 2 * fv[1:-1] + fv[2:]
        d2[0], d2[-1] = d2[1], d2[-2]
        fv = fv - d2 / 12
    fin = np.abs(fv[np.isfinite(fv)])
    tmax = float(fin.max()) if fin.size else 0.0
    at = min(tmax, sy_amax) if sy_amax > 0 else tmax
    at = at if at > 0 else 1.0
    tab, st, offset = Q.table16_span(fv, at)
    t = em.b.table(x.name, tab)
    if offset:
        t = em.b.add(t, em.const_i32(offset * 128, rank=len(x.shape)))
    sy = em.scale_for(sy_amax if sy_amax > 0 else at)
    y = em.rescale(t, Q.ratio(st, den=[128, sy]), em.adt, bound_bits=23)
    return em.new(y, sy, x.shape)


def _unary(f, smooth):
    def lower_table(em, node, p):
        return table(em, node, p["self"], lambda t: f(t, p), smooth)
    return lower_table


F = torch.nn.functional
#: ATen function -> (its float values f(tensor, params), smooth): one TABLE each.  ``smooth``
#: lowers the nodes by the mean interpolation error of a piecewise linear interpolant
TABLE_FUNCTIONS = {
    "aten.exp": (lambda t, p: torch.exp(t), True),
    "aten.sigmoid": (lambda t, p: torch.sigmoid(t), True),
    "aten.tanh": (lambda t, p: torch.tanh(t), True),
    "aten.reciprocal": (lambda t, p: torch.reciprocal(t), False),
    "aten.rsqrt": (lambda t, p: torch.rsqrt(t), False),
    "aten.sqrt": (lambda t, p: torch.sqrt(t), False),
    "aten.log": (lambda t, p: torch.log(t), False),
    "aten.erf": (lambda t, p: torch.erf(t), True),
    "aten.abs": (lambda t, p: torch.abs(t), False),
    "aten.sin": (lambda t, p: torch.sin(t), True),
    "aten.cos": (lambda t, p: torch.cos(t), True),
    "aten.silu": (lambda t, p: F.silu(t), True),
    "aten.mish": (lambda t, p: F.mish(t), True),
    "aten.hardswish": (lambda t, p: F.hardswish(t), False),
    "aten.hardsigmoid": (lambda t, p: F.hardsigmoid(t), False),
    "aten.softplus": (lambda t, p: F.softplus(t, p["beta"], p["threshold"]), False),
    "aten.elu": (lambda t, p: F.elu(t, float(p["alpha"])), False),
    "aten.leaky_relu": (lambda t, p: F.leaky_relu(t, float(p["negative_slope"])), False),
    "aten.gelu": (lambda t, p: F.gelu(t, approximate=p["approximate"]), True),
}
for _name, (_f, _smooth) in TABLE_FUNCTIONS.items():
    lowers(_name, nhwc=True)(_unary(_f, _smooth))


@lowers("aten.prelu", "aten._prelu_kernel")
def prelu(em, node, p):
    """nn.PReLU: one slope is a TABLE (as leaky_relu); a slope per channel (dim 1) is
    CLAMP(x, max 0) times the int16 slopes plus CLAMP(x, min 0), added in int32 on the scale
    2**-14 of x's (the positive part exact, the negative one rounded to it), then one RESCALE
    to the node's range."""
    x, a = p["self"], f64(p["weight"]).reshape(-1)
    if a.numel() == 1:
        slope = float(a[0])
        return table(em, node, x, lambda t: torch.where(t >= 0, t, slope * t))
    if x.rank < 2 or x.shape[1] != a.numel():
        raise Unsupported(f"prelu with {a.numel()} slopes on a tensor of shape {list(x.shape)}")
    xs = x if x.dtype == DType.INT16 and not x.zp else em.to16(x)
    shape_b = [1] * x.rank
    shape_b[1] = a.numel()
    k = 14
    slopes, s_a = em.quant_const(a.reshape(shape_b), DType.INT16)
    neg = em.b.mul(em.b.clamp(xs.name, -32768, 0), slopes)          # scale x * s_a, < 2**30
    neg = em.rescale(neg, Q.ratio(s_a * (1 << k)), DType.INT32, bound_bits=31)
    pos = em.rescale(em.b.clamp(xs.name, 0, 32767), 1 << k, DType.INT32, bound_bits=16)
    sy, zp = em.out_qparams(node)
    y = em.rescale(em.b.add(pos, neg), Q.ratio(x.scale, den=[1 << k, sy]), em.adt,
                   bound_bits=31, output_zp=zp)
    return em.new(y, sy, x.shape, zp=zp)


@lowers("aten.pow", nhwc=True)
def pow_(em, node, p):
    x, e = p["self"], p.get("exponent")
    if not isinstance(x, QT) or isinstance(e, (QT, torch.Tensor)):
        raise Unsupported("pow with a tensor exponent")
    e = float(e)
    if e == 2.0:
        return em.mul_act(node, x, x)
    return table(em, node, x, lambda t: torch.pow(t, e))


def clamp_to(em, node, x: QT, lo, hi):
    """CLAMP on the codes (bounds shifted by the zero point); RESCALE to the node's own
    quantization when that is much finer than the input's."""
    qmin, qmax = (-128, 127) if x.dtype == DType.INT8 else (-em.qmax, em.qmax)
    ql = qmin if lo is None else int(np.clip(round(float(lo) / x.scale) + x.zp, qmin, qmax))
    qh = qmax if hi is None else int(np.clip(round(float(hi) / x.scale) + x.zp, qmin, qmax))
    y = em.b.clamp(x.name, ql, qh)
    out = em.new(y, x.scale, x.shape, x.dtype, zp=x.zp)
    if em.adt == DType.INT8:
        sy, zp = em.out_qparams(node)
        if 0 < 255 * sy < 0.5 * x.scale * (qh - ql):
            out = em.requant(out, sy, zp)
        return out
    amax_out = em.amax(node.name)
    if 0 < amax_out < 0.5 * x.scale * em.qmax:
        out = em.requant(out, em.scale_for(amax_out))
    return out


@lowers("aten.relu", nhwc=True)
def relu(em, node, p):
    return clamp_to(em, node, p["self"], 0.0, None)


@lowers("aten.relu6", nhwc=True)
def relu6(em, node, p):
    return clamp_to(em, node, p["self"], 0.0, 6.0)


@lowers("aten.hardtanh", nhwc=True)
def hardtanh(em, node, p):
    return clamp_to(em, node, p["self"], p["min_val"], p["max_val"])




@lowers("aten.glu")
def glu(em, node, p):
    x = p["self"]
    d = int(p["dim"]) % x.rank
    h = x.shape[d] // 2
    size = list(x.shape)
    size[d] = h
    start = [0] * x.rank
    a = em.b.slice(x.name, start, size)
    start[d] = h
    bname = em.b.slice(x.name, start, size)
    # sigmoid of the second half at an internal scale (the float values are recomputed
    # from the calibration activations of the glu input)
    sig_acts = [torch.sigmoid(t.narrow(d, h, h)) for t in em.acts(node.args[0].name)]
    fake = Fake(node.name + "_sigmoid")
    if em.adt == DType.INT8:           # its affine int8 range comes from the values
        em.obs.acts[fake.name] = sig_acts
    em.obs.amax[fake.name] = max((float(t.abs().max()) for t in sig_acts), default=0.0)
    sig = table(em, fake, QT(bname, x.scale, tuple(size), x.dtype, x.zp), torch.sigmoid)
    return em.mul_act(node, QT(a, x.scale, tuple(size), x.dtype, x.zp), sig)
