"""Lowerings of elementwise arithmetic: add/sub (both operands RESCALEd to a shared int32
scale with headroom; a constant 0/large-negative mask added to softmax scores becomes a -inf
mask), mul (MUL int x int -> int32, RESCALE), div (reciprocal TABLE, MUL), neg, and the
elementwise extremes maximum/minimum and clamp / clamp_min / clamp_max (a CLAMP on the codes for
scalar constant bounds, else MAXIMUM/MINIMUM on a shared int32 scale, as add)."""
from __future__ import annotations

import numpy as np
import torch

from ... import quant as Q
from ...schema.definition import DType, Op
from ..values import QT, Fake, IntT, Unsupported, f64, like
from ._registry import lowers
from .activations import clamp_to, table
from .masks import mask_const, masked


def add_scaled(em, node, a, b, coef_b):
    """a + coef_b * b, either operand a QT or a constant."""
    sy, zp = em.out_qparams(node)
    vals = [(a, 1.0), (b, coef_b)]
    ss = []
    for v, c in vals:
        if isinstance(v, QT):
            ss.append(v.scale * abs(c))
        else:
            t = f64(v) * c
            a_ = float(t.abs().max()) if t.numel() else 0.0
            ss.append(a_ / em.qmax)
    sc = max(ss) / (1 << em.headroom)
    rank = len(node.meta["val"].shape)
    pos, neg = [], []
    for (v, c), s in zip(vals, ss):
        if isinstance(v, QT):
            nm = em.to_rank(em.rescale(v.name, Q.ratio(v.scale, abs(c), den=[sc]),
                                       DType.INT32, input_zp=v.zp), rank)
            (neg if c < 0 else pos).append(nm)
        else:
            pos.append(em.const_i32(np.round((f64(v) * c).numpy() / sc), rank))
    if len(pos) == 2:
        s = em.b.add(pos[0], pos[1])
    elif len(pos) == 1:
        s = em.b.sub(pos[0], neg[0])
    else:
        zero = em.const_i32(np.zeros((1,) * rank))
        s = em.b.sub(em.b.sub(zero, neg[0]), neg[1])
    y = em.rescale(s, Q.ratio(sc, den=[sy]), em.adt, bound_bits=em.headroom + 17,
                   output_zp=zp)
    shape = tuple(node.meta["val"].shape)
    return em.new(em.reshape(y, shape), sy, shape, zp=zp)


#: an additive constant this far (in float units) below every value its softmax row can
#: otherwise reach acts as -inf: exp(-20) = 2e-9 is below half an int16 output LSB
MASK_GAP = 20.0


#: ops that may stand between an additive mask and its softmax (Swin views the scores to
#: [B, windows, heads, N, N] for the mask and back)
RESHAPES = ("aten.view.", "aten.reshape.", "aten._unsafe_view.")


def _softmax_chain(node):
    """(the reshapes from ``node`` to the softmax that is their only consumer, its dim), or
    None when ``node`` does not go (only) into a softmax."""
    chain, n = [], node
    while True:
        users = list(getattr(n, "users", ()))
        if len(users) != 1 or users[0].op != "call_function" or users[0].args[0] is not n:
            return None
        u = users[0]
        if str(u.target).startswith(("aten.softmax.", "aten._softmax.")):
            return chain, int(u.args[1])
        if not str(u.target).startswith(RESHAPES):
            return None
        chain.append(u)
        n = u


def _squeeze_broadcast(m):
    """Boolean array ``m`` with every axis along which it is constant reduced to size 1."""
    for ax in range(m.ndim):
        if m.shape[ax] > 1 and (m == m.take([0], axis=ax)).all():
            m = m.take([0], axis=ax)
    return m


def additive_mask(em, node, x: QT, c):
    """``softmax(x + c)`` with a constant ``c`` that is 0 or a large negative number (Swin's
    shifted-window mask of 0/-100, a -10000 or -inf causal mask): ``x`` with the negative
    entries masked (-inf for softmax, see :mod:`.masks`), so that the scores keep their own
    scale instead of one stretched over the mask's range.  The same softmax values as long
    as every masked entry lies :data:`MASK_GAP` below whatever ``x`` can hold (its codes'
    whole span) and each softmax row keeps an unmasked entry; otherwise None.

    Reshapes between the add and the softmax are lowered here too (their nodes folded), each
    with its mask reshaped, since only softmax takes a masked value."""
    found = _softmax_chain(node)
    shape = tuple(node.meta["val"].shape)
    if found is None or x.shape != shape:
        return None
    chain, d = found
    t = f64(c)
    if t.dim() > len(shape):
        return None
    neg = (t != 0).numpy()
    if not neg.any():
        return None
    span = (255 if x.dtype == DType.INT8 else 2 * em.qmax) * x.scale
    if not bool(torch.all(t[t != 0] <= -(span + MASK_GAP))):
        return None
    full = np.broadcast_to(neg.reshape((1,) * (len(shape) - neg.ndim) + neg.shape), shape)
    last = tuple(chain[-1].meta["val"].shape) if chain else shape
    rows = full.reshape(last)
    d %= len(last)
    if not (~rows).any(axis=d).all():
        return None
    # the softmax sizes its exp table by the calibrated spread of its input rows: the masked
    # entries take no part in it (as -inf filled ones), so they are -inf in its calibration
    # values too
    src = chain[-1].name if chain else node.name
    gone = torch.from_numpy(np.ascontiguousarray(rows))
    em.obs.acts[src] = [a.double().masked_fill(gone, float("-inf")) if tuple(a.shape) == last
                        else a for a in em.acts(src)]
    out = QT(x.name, x.scale, x.shape, x.dtype, x.zp)
    for n in chain:
        shp = tuple(int(v) for v in n.meta["val"].shape)
        m = _squeeze_broadcast(full.reshape(shp))
        em.folded[n.name] = masked(em, like(out, em.reshape(x.name, shp), shp),
                                   mask_const(em, m))
    return masked(em, out, mask_const(em, _squeeze_broadcast(np.array(full))))


@lowers("aten.add", nhwc=True, ints=True)
def add(em, node, p):
    a, b = p["self"], p["other"]
    if isinstance(a, IntT) and a.additive or isinstance(b, IntT) and b.additive:
        x, m = (b, a) if isinstance(a, IntT) else (a, b)
        if not isinstance(x, QT) or x.shape != tuple(node.meta["val"].shape):
            raise Unsupported("an additive -inf mask added to something else than scores")
        return masked(em, x, m.name)
    if isinstance(a, IntT) or isinstance(b, IntT):
        raise Unsupported("integer arithmetic on integer inputs")
    alpha = float(p.get("alpha", 1) or 1)
    if isinstance(a, QT) != isinstance(b, QT) and (isinstance(a, QT) or alpha == 1):
        x, c = (a, f64(b) * alpha) if isinstance(a, QT) else (b, f64(a))
        out = additive_mask(em, node, x, c)
        if out is not None:
            return out
    return add_scaled(em, node, a, b, alpha)


@lowers("aten.sub", nhwc=True)
def sub(em, node, p):
    a, b, alpha = p["self"], p["other"], float(p.get("alpha", 1) or 1)
    if isinstance(a, QT) and not isinstance(b, QT):      # scores - 10000 * (1 - mask)
        out = additive_mask(em, node, a, -f64(b) * alpha)
        if out is not None:
            return out
    return add_scaled(em, node, a, b, -alpha)


@lowers("aten.rsub", nhwc=True)
def rsub(em, node, p):
    a = float(p.get("alpha", 1) or 1)
    return add_scaled(em, node, p["other"], p["self"], -a)


def scalar_mul(em, node, x: QT, c):
    c = float(c)
    if c == 0:
        raise Unsupported("multiplication by zero")
    name, zp = x.name, x.zp
    if c < 0:          # -(q - zp) + (-1 - zp) = -1 - q: every int8 code stays in range
        zp = -1 - x.zp if x.zp else 0
        name = em.b.op(Op.NEGATE, [x.name, em.b.zero_point(x.zp, x.dtype),
                                   em.b.zero_point(zp, x.dtype)], x.shape, x.dtype)
    shape = tuple(node.meta["val"].shape)
    return em.new(em.reshape(name, shape), x.scale * abs(c), shape, x.dtype, zp=zp)


@lowers("aten.mul", nhwc=True)
def mul(em, node, p):
    a, b = p["self"], p["other"]
    if not isinstance(a, QT):
        a, b = b, a
    if isinstance(b, QT):
        return em.mul_act(node, a, b)
    if not isinstance(b, torch.Tensor) or b.numel() == 1:
        return scalar_mul(em, node, a, float(b))
    name, s = em.quant_const(b, rank=len(node.meta["val"].shape))
    return em.mul_act(node, a, em.new(name, s, em.b.shape(name)))


@lowers("aten.div", nhwc=True)
def div(em, node, p):
    a, b = p["self"], p["other"]
    if p.get("rounding_mode") is not None:
        raise Unsupported("integer division rounding modes")
    if isinstance(a, QT) and not isinstance(b, QT):
        if not isinstance(b, torch.Tensor) or b.numel() == 1:
            return scalar_mul(em, node, a, 1.0 / float(b))
        name, s = em.quant_const(1.0 / f64(b), rank=len(node.meta["val"].shape))
        return em.mul_act(node, a, em.new(name, s, em.b.shape(name)))
    if isinstance(b, QT):
        # a * (1 / b): reciprocal TABLE over b's calibrated range, then MUL
        rec = [1.0 / t.double() for t in em.acts(node.args[1].name)]
        fake = Fake(node.name + "_reciprocal", rec, b.shape)
        em.obs.acts[fake.name] = fake.acts
        em.obs.amax[fake.name] = max((float(t.abs().max()) for t in rec), default=0.0)
        r = table(em, fake, b, torch.reciprocal)
        if not isinstance(a, QT):
            name, s = em.quant_const(a, rank=len(node.meta["val"].shape))
            a = em.new(name, s, em.b.shape(name))
        return em.mul_act(node, a, r)
    raise Unsupported("division of a constant by a constant")


@lowers("aten.neg", nhwc=True)
def neg(em, node, p):
    return scalar_mul(em, node, p["self"], -1.0)


def _scalar(v):
    """True for a float constant holding one value (a python number or a one-element tensor)."""
    return not isinstance(v, (QT, IntT)) and (not isinstance(v, torch.Tensor) or v.numel() == 1)


def clamp_between(em, node, x, lo, hi):
    """``min(max(x, lo), hi)`` elementwise (torch.clamp's order), ``lo``/``hi`` None, a float
    constant or a QT, broadcast to the node's shape.

    An activation ``x`` between constant scalar bounds inside its range is a CLAMP on its
    codes (as relu).  Otherwise every operand goes to int32 on one scale ``sc`` = the largest
    operand scale / 2**headroom (constants rounded to it), MAXIMUM then MINIMUM, and one
    RESCALE to the node's own quantization: as in add, no operand is rounded to a coarser
    one's scale (the int32 values carry every operand's codes within 2**-headroom), and the
    output takes the range calibrated for it (max(x, y) is often narrower than x's and y's
    ranges together)."""
    shape = tuple(node.meta["val"].shape)
    bounds = [v for v in (lo, hi) if v is not None]
    if isinstance(x, QT) and x.shape == shape and all(_scalar(v) for v in bounds):
        f = [None if v is None else float(v) for v in (lo, hi)]
        qmin, qmax = (-128, 127) if x.dtype == DType.INT8 else (-em.qmax, em.qmax)
        inside = all((qmin - x.zp) * x.scale <= v <= (qmax - x.zp) * x.scale
                     for v in f if v is not None)
        if inside and (None in f or f[0] <= f[1]):
            return clamp_to(em, node, x, f[0], f[1])
    rank = len(shape)
    ss = []
    for v in [x] + bounds:
        if isinstance(v, QT):
            ss.append(v.scale)
        else:
            t = f64(v)
            ss.append((float(t.abs().max()) if t.numel() else 0.0) / em.qmax)
    sc = max(ss) / (1 << em.headroom)

    def i32(v):
        if isinstance(v, QT):
            return em.to_rank(em.rescale(v.name, Q.ratio(v.scale, den=[sc]), DType.INT32,
                                         input_zp=v.zp), rank)
        return em.const_i32(np.round(f64(v).numpy() / sc), rank)

    y = i32(x)
    if lo is not None:
        y = em.b.maximum(y, i32(lo))
    if hi is not None:
        y = em.b.minimum(y, i32(hi))
    sy, zp = em.out_qparams(node)
    y = em.rescale(y, Q.ratio(sc, den=[sy]), em.adt, bound_bits=em.headroom + 17, output_zp=zp)
    return em.new(em.reshape(y, shape), sy, shape, zp=zp)


def maximum_of(em, node, a, b):
    """torch.maximum(a, b) (also torch.max(a, b)): either operand a QT or a constant."""
    if not isinstance(a, QT):
        a, b = b, a
    return clamp_between(em, node, a, b, None)


def minimum_of(em, node, a, b):
    """torch.minimum(a, b) (also torch.min(a, b)): either operand a QT or a constant."""
    if not isinstance(a, QT):
        a, b = b, a
    return clamp_between(em, node, a, None, b)


@lowers("aten.maximum", "aten.fmax", nhwc=True)
def maximum(em, node, p):
    return maximum_of(em, node, p["self"], p["other"])


@lowers("aten.minimum", "aten.fmin", nhwc=True)
def minimum(em, node, p):
    return minimum_of(em, node, p["self"], p["other"])


@lowers("aten.clamp", "aten.clip", nhwc=True)
def clamp(em, node, p):
    """torch.clamp: scalar bounds are a CLAMP on the codes (as relu); a tensor bound (an
    activation or a constant, aten.clamp.Tensor) goes through ``clamp_between``."""
    if any(isinstance(p.get(k), (torch.Tensor, QT)) for k in ("min", "max")):
        return clamp_between(em, node, p["self"], p.get("min"), p.get("max"))
    return clamp_to(em, node, p["self"], p["min"], p["max"])


@lowers("aten.clamp_min", nhwc=True)
def clamp_min(em, node, p):
    return clamp(em, node, {"self": p["self"], "min": p["min"], "max": None})


@lowers("aten.clamp_max", nhwc=True)
def clamp_max(em, node, p):
    return clamp(em, node, {"self": p["self"], "min": None, "max": p["max"]})
