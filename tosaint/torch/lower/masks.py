"""Lowerings of integer and boolean values: comparisons of integer inputs (``arange(T) >=
lengths[:, None]``), masked_fill / where, and attention masks.

A boolean mask is an :class:`~tosaint.torch.values.IntT` of dtype BOOL (on Ethos-U55/U65,
which have no bool tensors, comparisons or SELECT: int32 0/1 computed with SUB, MAXIMUM,
MINIMUM and MUL, to the same results).  Filling with -inf
does not produce a number: the result is the input QT with ``mask`` set (or, for a float
``zeros`` filled with -inf, an additive IntT), which only softmax consumes: it excludes the
masked entries from its maximum and zeroes their exponentials, as -inf does in float.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ...schema.definition import DType, Op
from ..values import QT, IntT, Unsupported, common_qparams, f64, is_act, like, quantize_const
from ._registry import lowers


def int_operand(em, v, rank):
    """An IntT or an integer constant as an int32 TOSA tensor of ``rank``."""
    if isinstance(v, IntT):
        if v.dtype != DType.INT32:
            raise Unsupported("comparison of a boolean tensor")
        return em.to_rank(v.name, rank)
    t = torch.as_tensor(v)
    if t.is_floating_point() and not bool(torch.all(t == torch.round(t))):
        raise Unsupported("comparison of an integer input with a fractional constant")
    return em.const_i32(t.to(torch.int64).numpy(), rank)


#: torch comparison -> (TOSA op, operands swapped, result negated)
COMPARISONS = {"aten.gt": (Op.GREATER, False, False), "aten.ge": (Op.GREATER_EQUAL, False, False),
               "aten.lt": (Op.GREATER, True, False), "aten.le": (Op.GREATER_EQUAL, True, False),
               "aten.eq": (Op.EQUAL, False, False), "aten.ne": (Op.EQUAL, False, True)}


def _int_compare(em, op, x, y, shape):
    """Ethos-U55/U65 (no comparisons): 0/1 in int32 from a difference clamped to [0, 1],
    exact while the difference fits int32."""
    one, zero = em.const_i32([1], len(shape)), em.const_i32([0], len(shape))
    d = em.b.sub(x, y)
    if op == Op.GREATER_EQUAL:
        d = em.b.add(d, one)
    elif op == Op.EQUAL:                       # 1 - min(|x - y|, 1)
        d = em.b.sub(one, em.b.maximum(d, em.b.sub(zero, d)))
    return em.b.minimum(em.b.maximum(d, zero), one)


def mask_not(em, name):
    """NOT of a mask tensor in the emitter's representation (bool, or int32 0/1)."""
    if em.u55:
        return em.b.sub(em.const_i32([1], len(em.b.shape(name))), name)
    return em.b.op(Op.LOGICAL_NOT, [name], em.b.shape(name), DType.BOOL)


def mask_or(em, a, b):
    if em.u55:
        return em.b.maximum(a, b)
    return em.b.op(Op.LOGICAL_OR, [a, b], em.b._broadcast(a, b), DType.BOOL)


def mask_dtype(em):
    return DType.INT32 if em.u55 else DType.BOOL


#: x OP c  ->  q OP' k  on the integer codes q of x (c / scale rounded so that it is exact)
_MIRROR = {"aten.gt": "aten.lt", "aten.lt": "aten.gt", "aten.ge": "aten.le",
           "aten.le": "aten.ge", "aten.eq": "aten.eq", "aten.ne": "aten.ne"}


def _code_threshold(key, t):
    """The integer k with (q OP t) == (q OP k) for every integer q, or None (never equal)."""
    if key in ("aten.gt", "aten.le"):
        return math.floor(t)
    if key in ("aten.ge", "aten.lt"):
        return math.ceil(t)
    return int(t) if float(t).is_integer() else None


@lowers(*COMPARISONS, ints=True)
def compare(em, node, p):
    a, b = p["self"], p["other"]
    key = ".".join(str(node.target).split(".")[:2])
    if isinstance(b, QT) and not is_act(a):
        a, b, key = b, a, _MIRROR[key]
    if isinstance(a, QT):          # a quantized activation against a constant scalar
        if is_act(b) or torch.as_tensor(b).numel() != 1:
            raise Unsupported("comparison of a quantized activation with anything but a "
                              "constant scalar")
        k = _code_threshold(key, float(torch.as_tensor(b)) / a.scale)
        if k is None:            # x == c can never hold: compare against an impossible code
            k = 1 << 20
        a = IntT(em.to_i32(a), a.shape, DType.INT32)
        b = int(np.clip(k, -(1 << 30), 1 << 30))
    op, swap, negate = COMPARISONS[key]
    shape = tuple(int(d) for d in node.meta["val"].shape)
    x, y = int_operand(em, a, len(shape)), int_operand(em, b, len(shape))
    if swap:
        x, y = y, x
    if em.u55:
        out = _int_compare(em, op, x, y, shape)
    else:
        out = em.b.op(op, [x, y], shape, DType.BOOL)
    if negate:
        out = mask_not(em, out)
    return IntT(out, shape, mask_dtype(em), boolean=True)


@lowers("aten.logical_not", "aten.bitwise_not", ints=True)
def logical_not(em, node, p):
    x = p["self"]
    if not _is_mask(em, x) or x.additive:
        raise Unsupported("logical_not of a non-boolean tensor")
    return like(x, mask_not(em, x.name), x.shape)


def _is_mask(em, m):
    return isinstance(m, IntT) and m.boolean


def _bool_mask(em, m, rank, invert=False):
    if isinstance(m, torch.Tensor) and m.dtype == torch.bool:      # a constant (causal) mask
        c = (~m if invert else m).numpy()
        return mask_const(em, c.reshape((1,) * (rank - c.ndim) + c.shape))
    if not _is_mask(em, m):
        raise Unsupported("a mask that is neither a boolean tensor computed from the inputs "
                          "nor a constant")
    name = em.to_rank(m.name, rank)
    if invert:
        name = mask_not(em, name)
    return name


def masked(em, x: QT, mask_name):
    """``x`` with -inf where ``mask_name`` is True (combined with a mask ``x`` has already)."""
    m = em.to_rank(mask_name, x.rank)
    if x.mask is not None:
        m = mask_or(em, x.mask, m)
    return QT(x.name, x.scale, x.shape, x.dtype, x.zp, mask=m)


def _is_neg_inf(v):
    if isinstance(v, torch.Tensor):
        return v.numel() > 0 and bool(torch.all(torch.isneginf(v)))
    return isinstance(v, (int, float)) and math.isinf(v) and v < 0


def _is_zero(v):
    if isinstance(v, torch.Tensor):
        return not v.is_floating_point() or bool(torch.all(v == 0))
    return v == 0


def select(em, node, cond, a, b):
    """where(cond, a, b) for boolean ``cond`` and quantized or constant a, b."""
    shape = tuple(int(d) for d in node.meta["val"].shape)
    rank = len(shape)
    if _is_neg_inf(a) and not is_act(b) and _is_zero(b) \
            or _is_neg_inf(b) and not is_act(a) and _is_zero(a):
        name = _bool_mask(em, cond, rank, invert=_is_neg_inf(b))
        if tuple(em.b.shape(name)) != shape:
            name = em.b.tile(name, [s // c for s, c in zip(shape, em.b.shape(name))])
        return IntT(name, shape, mask_dtype(em), additive=True, boolean=True)
    if _is_neg_inf(a) and isinstance(b, QT):
        return masked(em, b, _bool_mask(em, cond, rank))
    if _is_neg_inf(b) and isinstance(a, QT):
        return masked(em, a, _bool_mask(em, cond, rank, invert=True))
    vals = [v for v in (a, b) if isinstance(v, QT)]
    if not vals or len(vals) + sum(not is_act(v) for v in (a, b)) != 2:
        raise Unsupported("where/masked_fill of these operand kinds")
    scale, zp = common_qparams(em, vals)
    dt = DType.INT32 if em.u55 else em.adt
    names = []
    for v in (a, b):
        if isinstance(v, QT):
            v = em.requant(v, scale, zp)
            names.append(em.to_rank(em.to_i32(v) if em.u55 else v.name, rank))
        else:
            c = f64(v).numpy()
            if not np.all(np.isfinite(c)):
                raise Unsupported("where/masked_fill with an infinite value outside softmax")
            c = quantize_const(em, c, scale, zp)
            if em.u55:
                c = c - zp
            names.append(em.b.const(c.reshape((1,) * (rank - c.ndim) + c.shape), dt))
    cond_name = _bool_mask(em, cond, rank)
    if em.u55:          # a * m + b * (1 - m), exact in int32
        y = em.b.add(em.b.mul(names[0], cond_name), em.b.mul(names[1],
                                                             mask_not(em, cond_name)))
        y = em.rescale(y, 1, em.adt, output_zp=zp)
        return em.new(em.reshape(y, shape), scale, shape, zp=zp)
    return em.new(em.b.select(cond_name, names[0], names[1]), scale, shape, zp=zp)


@lowers("aten.masked_fill", ints=True)
def masked_fill(em, node, p):
    return select(em, node, p["mask"], p["value"], p["self"])


@lowers("aten.where", ints=True)
def where(em, node, p):
    return select(em, node, p["condition"], p["self"], p["other"])


def attention_mask(em, m, rank):
    """sdpa's ``attn_mask`` as a bool TOSA tensor of ``rank``, True where masked: an additive
    -inf mask, a boolean one (True = attend) or a constant."""
    if isinstance(m, IntT):
        return _bool_mask(em, m, rank, invert=not m.additive) if _is_mask(em, m) \
            else _bad_mask()
    if isinstance(m, QT):
        _bad_mask()
    t = torch.as_tensor(m)
    if t.dtype == torch.bool:
        c = (~t).numpy()
    elif bool(torch.all((t == 0) | torch.isneginf(t))):
        c = torch.isneginf(t).numpy()
    else:
        _bad_mask()
    return mask_const(em, c.reshape((1,) * (rank - c.ndim) + c.shape))


def mask_const(em, c):
    """A constant mask (True = masked) in the emitter's representation."""
    return em.b.const(np.asarray(c).astype(np.int64 if em.u55 else bool),
                      mask_dtype(em))


def _bad_mask():
    raise Unsupported("an attention mask other than a boolean or 0/-inf mask")
