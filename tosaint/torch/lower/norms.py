"""Lowerings of the normalisations: layer_norm (rsqrt by CLZ normalisation + mantissa TABLE,
MUL, variable shift) and eval-mode batch_norm (a per-channel affine map)."""
from __future__ import annotations

import math

import numpy as np
import torch

from ... import quant as Q
from ...schema.definition import DType, Op
from ..values import QT, Unsupported, f64, numel
from ._registry import lowers
from .reductions import mantissa_table
from .reductions import norm_exp
from .reductions import var_parts


@lowers("aten.layer_norm")
def layer_norm(em, node, p):
    x = p["input"]
    nshape = list(p["normalized_shape"])
    nd = len(nshape)
    orig_shape = x.shape
    dflat = numel(nshape)
    if nd > 1:
        x = QT(em.reshape(x.name, x.shape[:-nd] + (dflat,)), x.scale,
               x.shape[:-nd] + (dflat,), x.dtype, x.zp)
        acts_name = None
    else:
        acts_name = node.args[0].name
    rank = x.rank
    eps = float(p["eps"])
    dims = [rank - 1]
    if acts_name is None:
        acts_name = f"__flat_{node.name}"
        em.obs.acts[acts_name] = [t.reshape(t.shape[:-nd] + (dflat,))
                                  for t in em.acts(node.args[0].name)]
    xc16, s_c, dcount, v, u_v, eps_i = var_parts(em, x, dims, acts_name, eps)
    norm, e, h = norm_exp(em, v, even=True)
    r, sr = mantissa_table(em, norm, True, lambda m: 1.0 / np.sqrt(m))
    # rsqrt(v * u_v) = r * sr * 2**(h - 14.5) / sqrt(u_v)
    vmax = (1 << 30) + eps_i
    h_min = (Q.clz32(vmax) - 1) // 2
    xc32 = em.b.rescale(xc16, 1 << 30, 30, DType.INT32)
    ybound = 1.05 * math.sqrt(dcount)
    # y = q2 * 2**(s1 + h_min - 14.5) * s_c * sr / sqrt(u_v)
    base = 2.0 ** (h_min - 14.5) * s_c * sr / math.sqrt(u_v)
    s1 = max(7, math.ceil(math.log2(ybound / (base * (1 << 30)))))
    q = em.b.mul(xc32, r, shift=s1)
    sh = em.b.sub(h, em.const_i32([h_min], rank))
    q2 = em.b.binary(Op.LOGICAL_LEFT_SHIFT, q, sh)
    s_q2 = base * 2.0 ** s1
    # calibrated range of the normalised values
    ymax = 0.0
    for t in em.acts(acts_name):
        tt = t.double()
        yy = (tt - tt.mean(-1, keepdim=True)) / torch.sqrt(tt.var(-1, unbiased=False,
                                                                  keepdim=True) + eps)
        ymax = max(ymax, float(yy.abs().max()))
    ymax = ymax if ymax > 0 else 1.0
    w, bias = p["weight"], p["bias"]
    sy, zp = em.out_qparams(node)
    if w is None and bias is None:
        y = em.rescale(q2, Q.ratio(s_q2, den=[sy]), em.adt, bound_bits=30, output_zp=zp)
    else:
        s_n = ymax / 32767
        yn = em.rescale(q2, Q.ratio(s_q2, den=[s_n]), DType.INT16, bound_bits=30)
        y = affine(em, yn, s_n, w, bias, rank, sy, flat=dflat, zp=zp)
    y = em.reshape(y, orig_shape)
    return em.new(y, sy, orig_shape, zp=zp)


def affine(em, yn, s_n, w, bias, rank, sy, flat=None, axis=-1, zp=0):
    """yn (int16, scale s_n) * w + bias along ``axis``; returns the activation-dtype name
    (scale ``sy``, zero point ``zp``)."""
    shape_b = [1] * rank
    n = em.b.shape(yn)[axis]
    shape_b[axis] = n
    g = f64(w).reshape(-1) if w is not None else torch.ones(n, dtype=torch.float64)
    be = f64(bias).reshape(-1) if bias is not None else torch.zeros(n, dtype=torch.float64)
    gname, sg = em.quant_const(g.reshape(shape_b), DType.INT16)
    z = em.b.mul(yn, gname)                   # scale s_n * sg, |z| <= 2**30
    sz = s_n * sg
    need = (32767 * s_n * float(g.abs().max()) + float(be.abs().max())) / (1 << 29)
    if need > sz:
        z = em.rescale(z, Q.ratio(sz, den=[need]), DType.INT32, bound_bits=30)
        sz = need
    if bias is not None:
        z = em.b.add(z, em.const_i32(np.round(be.numpy() / sz).reshape(shape_b)))
    return em.rescale(z, Q.ratio(sz, den=[sy]), em.adt, bound_bits=31, output_zp=zp)


def batch_norm_affine(em, node, p):
    x = p["input"]
    if p.get("training"):
        raise Unsupported("batch_norm in training mode")
    c = x.shape[1]
    mean, var = f64(p["running_mean"]), f64(p["running_var"])
    g = f64(p["weight"]) if p["weight"] is not None else torch.ones(c, dtype=torch.float64)
    be = f64(p["bias"]) if p["bias"] is not None else torch.zeros(c, dtype=torch.float64)
    k = g / torch.sqrt(var + float(p["eps"]))
    xs = x if x.dtype == DType.INT16 else em.to16(x)
    sy, zp = em.out_qparams(node)
    y = affine(em, xs.name, x.scale, k, be - mean * k, x.rank, sy, axis=1, zp=zp)
    return em.new(y, sy, x.shape, zp=zp)


@lowers("aten.batch_norm")
def batch_norm(em, node, p):
    return batch_norm_affine(em, node, p)


@lowers("aten._native_batch_norm_legit_no_training")
def native_batch_norm(em, node, p):
    return (batch_norm_affine(em, node, p), None, None)
