"""Lowerings of the normalisations: layer_norm, group_norm and instance_norm (rsqrt by CLZ
normalisation + mantissa TABLE, MUL, variable shift; GroupNorm normalises each group's values
as one row), eval-mode batch_norm (a per-channel affine map), and the L2 vector norm with
F.normalize's division by it."""
from __future__ import annotations

import math

import numpy as np
import torch

from ... import quant as Q
from ...schema.definition import DType, Op
from ..values import QT, Unsupported, f64, norm_dims, numel
from ._registry import lowers
from .reductions import mantissa_table, norm_exp, sumsq, var_parts


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
    if acts_name is None:
        acts_name = f"__flat_{node.name}"
        em.obs.acts[acts_name] = [t.reshape(t.shape[:-nd] + (dflat,))
                                  for t in em.acts(node.args[0].name)]
    q2, s_q2, ymax = normalise_last(em, x, acts_name, float(p["eps"]))
    w, bias = p["weight"], p["bias"]
    sy, zp = em.out_qparams(node)
    y = _normalised_output(em, q2, s_q2, ymax, sy, zp, w, bias,
                           lambda yn, s_n: affine(em, yn, s_n, w, bias, rank, sy, flat=dflat,
                                                  zp=zp))
    y = em.reshape(y, orig_shape)
    return em.new(y, sy, orig_shape, zp=zp)


def _normalised_output(em, q2, s_q2, ymax, sy, zp, w, bias, apply_affine):
    """A normalisation's int32 result ``q2`` (scale ``s_q2``, |values| <= ``ymax``) as the
    node's output: one RESCALE without weight and bias, else int16 at scale ymax / 32767 and
    ``apply_affine(yn, s_n)``."""
    if w is None and bias is None:
        return em.rescale(q2, Q.ratio(s_q2, den=[sy]), em.adt, bound_bits=30, output_zp=zp)
    s_n = ymax / 32767
    yn = em.rescale(q2, Q.ratio(s_q2, den=[s_n]), DType.INT16, bound_bits=30)
    return apply_affine(yn, s_n)


#: the most values one row of a normalisation may hold: D * x - sum(x) of int16 codes fits
#: int32 (a GroupNorm over more reduces in two steps, see :func:`_group_var_parts`)
MAX_NORM_COUNT = 1 << 16


def normalise_last(em, x: QT, acts_name, eps):
    """(x - mean) / sqrt(var + eps) over the last axis of ``x``: returns (q2, s_q2, ymax),
    int32 ``q2`` holding the normalised values at scale ``s_q2`` (|q2| <= 2**30) and the
    largest normalised magnitude over the calibration activations ``acts_name`` (float
    values of ``x``'s shape)."""
    rank = x.rank
    dims = [rank - 1]
    if x.shape[-1] > MAX_NORM_COUNT:
        raise Unsupported(f"a normalisation over {x.shape[-1]} values (at most "
                          f"{MAX_NORM_COUNT}: D * x - sum(x) must fit int32)")
    xc16, s_c, dcount, v, u_v, eps_i = var_parts(em, x, dims, acts_name, eps)
    q2, s_q2 = _times_rsqrt(em, xc16, s_c, dcount, v, u_v, eps_i)
    return q2, s_q2, _ymax(em.acts(acts_name), eps)


def _times_rsqrt(em, xc16, s_c, dcount, v, u_v, eps_i):
    """xc16 * rsqrt(v * u_v) (|.| <= sqrt(D)) as int32 q2 at scale s_q2: CLZ normalisation,
    mantissa TABLE, MUL, variable left shift."""
    rank = len(em.b.shape(xc16))
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
    return q2, base * 2.0 ** s1


def _ymax(acts, eps):
    """The largest |normalised value| over the last axis of the calibration activations."""
    ymax = 0.0
    for t in acts:
        tt = t.double()
        yy = (tt - tt.mean(-1, keepdim=True)) / torch.sqrt(tt.var(-1, unbiased=False,
                                                                  keepdim=True) + eps)
        ymax = max(ymax, float(yy.abs().max()))
    return ymax if ymax > 0 else 1.0


def _group_var_parts(em, x: QT, acts, eps):
    """var_parts for [N, G, A, B] ``x`` normalised over (A, B), A * B > 2**16, B <= 2**16:
    every sum in two steps (over B, RESCALEd down by 2**ceil(log2 A), over A) so that no
    int32 overflows.  The mean is subtracted at 2**14 times the input's resolution (its
    error from the rounded partial sums is at most A / (2 B) input steps), the squares of
    the centred int16 values are summed as in :func:`reductions.sumsq`."""
    if x.dtype == DType.INT8:
        x = em.to16(x)
    _, _, a, b = x.shape
    dcount = a * b
    ta = max(1, (a - 1).bit_length())
    j = 14
    s1 = em.b.reduce_sum(em.to_i32(x), 3)                        # |.| <= 32767 * B
    s1 = em.b.rescale(s1, 1 << 30, 30 + ta, DType.INT32)
    ssum = em.b.reduce_sum(s1, 2)                                 # ~ sum / 2**ta
    mean_j = em.rescale(ssum, Q.ratio(2 ** (ta + j), den=[dcount]), DType.INT32,
                        bound_bits=31)
    xc = em.b.sub(em.to_i32(x, 1 << j), mean_j)                  # (x - mean) * 2**j
    dev = 0.0
    for t in acts:
        tt = t.double()
        dev = max(dev, float((tt - tt.mean(-1, keepdim=True)).abs().max()))
    dev = dev if dev > 0 else x.scale
    s_c = dev / 32767
    xc16 = em.rescale(xc, Q.ratio(x.scale, den=[1 << j, s_c]), DType.INT16, bound_bits=31)
    sq = em.b.mul(xc16, xc16)                                     # <= 2**30
    kb = max(1, (b - 1).bit_length())
    sq = em.b.rescale(sq, 1 << 30, 30 + kb, DType.INT32)
    v = em.b.reduce_sum(sq, 3)                                    # <= 2**30 + B / 2
    v = em.b.rescale(v, 1 << 30, 30 + ta, DType.INT32)
    v = em.b.reduce_sum(v, 2)
    u_v = s_c * s_c * (1 << (kb + ta)) / dcount                   # v * u_v = variance
    eps_i = int(min(max(1, round(eps / u_v)), (1 << 30) - 1))
    v = em.b.add(v, em.const_i32([eps_i], 4))
    return xc16, s_c, dcount, v, u_v, eps_i


def group_norm_core(em, node, x: QT, groups, w, bias, eps):
    """GroupNorm: layer_norm over each group's (C/G, *spatial) values of [N, C, *spatial]
    ``x`` (reshaped to [N, G, D]), then the per-channel affine map along axis 1.  A group of
    more than 2**16 values is normalised as [N, G, C/G, HW] with two-step sums (HW at most
    2**16)."""
    if x.rank < 2:
        raise Unsupported("group_norm of a tensor of rank < 2")
    n, c = x.shape[0], x.shape[1]
    if groups <= 0 or c % groups:
        raise Unsupported(f"group_norm with {groups} groups of {c} channels")
    hw = numel(x.shape[2:])
    d = hw * (c // groups)
    g3 = (n, groups, d)
    acts = [t.reshape(g3) for t in em.acts(node.args[0].name)]
    if d <= MAX_NORM_COUNT:
        acts_name = f"__groups_{node.name}"
        em.obs.acts[acts_name] = acts
        xg = QT(em.reshape(x.name, g3), x.scale, g3, x.dtype, x.zp)
        q2, s_q2, ymax = normalise_last(em, xg, acts_name, eps)
    elif hw <= MAX_NORM_COUNT:
        g4 = (n, groups, c // groups, hw)
        xg = QT(em.reshape(x.name, g4), x.scale, g4, x.dtype, x.zp)
        q2, s_q2 = _times_rsqrt(em, *_group_var_parts(em, xg, acts, eps))
        ymax = _ymax(acts, eps)
    else:
        raise Unsupported(f"a group_norm over {hw} spatial positions (at most "
                          f"{MAX_NORM_COUNT})")
    sy, zp = em.out_qparams(node)
    y = _normalised_output(em, q2, s_q2, ymax, sy, zp, w, bias,
                           lambda yn, s_n: affine(em, em.reshape(yn, (n, c, hw)), s_n, w, bias,
                                                  3, sy, axis=1, zp=zp))
    y = em.reshape(y, x.shape)
    return em.new(y, sy, x.shape, zp=zp)


@lowers("aten.group_norm")
def group_norm(em, node, p):
    return group_norm_core(em, node, p["input"], int(p["num_groups"]), p["weight"],
                           p["bias"], float(p["eps"]))


@lowers("aten.instance_norm")
def instance_norm(em, node, p):
    """InstanceNorm: GroupNorm with one group per channel; in eval mode with running
    statistics (track_running_stats=True) the batch_norm affine map."""
    x = p["input"]
    if not p["use_input_stats"]:
        return batch_norm_affine(em, node, dict(input=x, training=False, **{
            k: p[k] for k in ("running_mean", "running_var", "weight", "bias", "eps")}))
    return group_norm_core(em, node, x, x.shape[1], p["weight"], p["bias"], float(p["eps"]))


def _key(node):
    return ".".join(str(node.target).split(".")[:2]) if node.op == "call_function" else ""


def _normalize_pattern(node):
    """For ``linalg_vector_norm(x, 2, dims, keepdim=True)`` whose only use is F.normalize's
    ``x / norm.clamp_min(eps).expand_as(x)`` (the clamp and the expand optional; clamp(min=eps)
    too): (eps, [the nodes after the norm, the div last]); else None."""
    x = node.args[0]
    eps, chain, cur = 0.0, [], node
    while True:
        users = list(cur.users)
        if len(users) != 1:
            return None
        u = users[0]
        k = _key(u)
        if k in ("aten.clamp_min", "aten.clamp") and u.args[0] is cur:
            lo = u.args[1] if len(u.args) > 1 else u.kwargs.get("min")
            hi = u.args[2] if len(u.args) > 2 else u.kwargs.get("max")
            if not isinstance(lo, (int, float)) or hi is not None or lo < 0:
                return None
            eps = max(eps, float(lo))
        elif k in ("aten.expand_as", "aten.expand") and u.args[0] is cur:
            if k == "aten.expand_as" and u.args[1] is not x:
                return None
        elif k == "aten.div" and len(u.args) == 2 and u.args[0] is x and u.args[1] is cur \
                and not u.kwargs:
            if tuple(u.meta["val"].shape) != tuple(x.meta["val"].shape):
                return None
            return eps, chain + [u]
        else:
            return None
        chain.append(u)
        cur = u


def _sum_squares(em, x: QT, dims):
    """(v, u_v, dcount, x16, s16): v = sum over dims of (x16**2 >> k) (int32, keepdim, <= 2**30)
    with v * u_v = sum of x**2; x16 the int16 values (int8 codes, zero point removed, << 7)."""
    if x.dtype == DType.INT8:
        x16, s16 = em.rescale(x.name, 128, DType.INT16, input_zp=x.zp), x.scale / 128
    else:
        x16, s16 = x.name, x.scale
    dcount = numel([x.shape[d] for d in dims])
    if dcount > MAX_NORM_COUNT:
        raise Unsupported(f"a vector norm over {dcount} values (at most {MAX_NORM_COUNT})")
    v, k = sumsq(em, x16, dims, dcount)
    return v, s16 * s16 * (1 << k), dcount, x16, s16


@lowers("aten.linalg_vector_norm")
def vector_norm(em, node, p):
    """The L2 norm over ``dim``: sqrt of the sum of squares by CLZ normalisation + mantissa
    TABLE.  Used only by F.normalize's division (see :func:`_normalize_pattern`) it becomes
    the whole normalisation, x * rsqrt(max(sum x**2, eps**2)), in one pass: rsqrt TABLE, MUL,
    variable shift, RESCALE, without quantizing the norm."""
    x = p["self"]
    if float(p["ord"]) != 2.0:
        raise Unsupported(f"vector norm of order {p['ord']} (only the L2 norm)")
    if p.get("dtype") is not None:
        raise Unsupported("vector norm with a dtype")
    dims = norm_dims(p.get("dim"), x.rank)
    rank = x.rank
    pat = _normalize_pattern(node) if p.get("keepdim") else None
    v, u_v, dcount, x16, s16 = _sum_squares(em, x, dims)
    if pat is None:         # the norm itself: sqrt(v) = sqrt(m4) * 2**(14.5 - h)
        v1 = em.b.maximum(v, em.const_i32([1], rank))
        norm, e, h = norm_exp(em, v1, even=True)
        r, sr = mantissa_table(em, norm, True, np.sqrt)
        h_min = (Q.clz32((1 << 30)) - 1) // 2
        sh = em.b.sub(h, em.const_i32([h_min], rank))
        q2 = em.b.binary(Op.ARITHMETIC_RIGHT_SHIFT, r, sh, attrs=dict(round=True))
        s_q2 = sr * 2.0 ** (14.5 - h_min) * math.sqrt(u_v)
        sy, zp = em.out_qparams(node)
        y = em.rescale(q2, Q.ratio(s_q2, den=[sy]), em.adt, bound_bits=23, output_zp=zp)
        shape = tuple(node.meta["val"].shape)
        return em.new(em.reshape(y, shape), sy, shape, zp=zp)
    eps, chain = pat
    div = chain[-1]
    eps_i = int(min(max(1, round(eps * eps / u_v)), (1 << 30) - 1))
    v = em.b.maximum(v, em.const_i32([eps_i], rank))
    norm, e, h = norm_exp(em, v, even=True)
    r, sr = mantissa_table(em, norm, True, lambda m: 1.0 / np.sqrt(m))
    # rsqrt(v * u_v) = r * sr * 2**(h - 14.5) / sqrt(u_v)
    h_min = (Q.clz32(max(1 << 30, eps_i)) - 1) // 2
    x32 = em.b.rescale(x16, 1 << 30, 30, DType.INT32)
    # |y| <= 1 in exact arithmetic; the rounded squares (each off by at most 2**(k-1) of
    # 2**k, v >= 1) allow |y| up to sqrt(1 + D / 2)
    ybound = 1.05 * math.sqrt(1 + dcount / 2)
    base = 2.0 ** (h_min - 14.5) * s16 * sr / math.sqrt(u_v)
    s1 = max(7, math.ceil(math.log2(ybound / (base * (1 << 30)))))
    q = em.b.mul(x32, r, shift=s1)
    sh = em.b.sub(h, em.const_i32([h_min], rank))
    q2 = em.b.binary(Op.LOGICAL_LEFT_SHIFT, q, sh)
    s_q2 = base * 2.0 ** s1
    sy, zp = em.out_qparams(div)
    y = em.rescale(q2, Q.ratio(s_q2, den=[sy]), em.adt, bound_bits=30, output_zp=zp)
    out = em.new(y, sy, x.shape, zp=zp)
    for n in chain[:-1]:
        em.folded[n.name] = None
    em.folded[div.name] = out
    em.record_as = div.name
    return out


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
