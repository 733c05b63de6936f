"""Lowering of ``nn.Embedding`` (aten.embedding): rows of a constant table picked by an
integer index input.

The indices are an :class:`~tosaint.torch.values.IntT` (an int32 graph input); the table is
one per-tensor symmetric constant of the activation dtype, and the output carries the
table's scale, so the lookup itself is exact on the codes:

- GATHER (values [1, K, C], indices [1, W], output [1, W, C]) where the target has it.  An
  index outside 0..K-1 (torch raises IndexError) breaks GATHER's REQUIRE: the reference
  model reports UNPREDICTABLE and tosaint raises UnpredictableError.
- Ethos-U55/U65 (no GATHER, no comparisons): a one-hot int8 matrix [W, K] built with SUB,
  MAXIMUM, MINIMUM (``1 - min(|i - k|, 1)``) times the table as the weights of a 1x1 CONV2D,
  exact in the int32 accumulator.  An int16 table is split into a signed high byte and a low
  byte (two convolutions, recombined as ``256 * hi + lo``).  Out-of-range indices give rows
  of zeros here.
"""
from __future__ import annotations

import numpy as np

from ...schema.definition import DType, Op
from ..values import QT, IntT, Unsupported, f64, numel
from ._registry import lowers
from .masks import _int_compare


@lowers("aten.embedding", ints=True)
def embedding(em, node, p):
    table, idx = p["weight"], p["indices"]
    if isinstance(table, QT) or isinstance(table, IntT):
        raise Unsupported("an embedding table computed from the inputs (only a constant "
                          "table, an nn.Embedding weight, is supported)")
    if not isinstance(idx, IntT) or idx.boolean or idx.dtype != DType.INT32:
        raise Unsupported("embedding indices that are not an integer input")
    t = f64(table)
    if t.dim() != 2:
        raise Unsupported(f"an embedding table of rank {t.dim()}")
    k, c = t.shape
    amax = float(t.abs().max()) if t.numel() else 0.0
    scale = (amax if amax > 0 else 1.0) / em.qmax
    codes = np.clip(np.round(t.numpy() / scale), -em.qmax, em.qmax).astype(np.int64)
    w = numel(idx.shape)
    flat = em.reshape(idx.name, (1, w))
    if em.u55:
        y = _one_hot_lookup(em, flat, codes, w)
    else:
        vals = em.b.const(codes.reshape(1, k, c), em.adt)
        y = em.b.op(Op.GATHER, [vals, flat], (1, w, c), em.adt)
    shape = tuple(node.meta["val"].shape)
    return em.new(em.reshape(y, shape), scale, shape)


def _one_hot_lookup(em, flat, codes, w):
    """Ethos-U55/U65: one-hot [1, 1, W, K] int8 @ table ``codes`` [K, C] as the weights of a
    1x1 CONV2D."""
    k, c = codes.shape
    idx4 = em.reshape(flat, (1, 1, w, 1))
    ks = em.b.const(np.arange(k, dtype=np.int64).reshape(1, 1, 1, k), DType.INT32)
    hot32 = _int_compare(em, Op.EQUAL, idx4, ks, (1, 1, w, k))
    hot = em.b.rescale(hot32, 1 << 30, 30, DType.INT8)

    def conv(wcodes):
        wt = em.b.const(wcodes.T.reshape(c, 1, 1, k), DType.INT8)
        b = em.b.const(np.zeros(c), DType.INT32)
        return em.b.conv2d(hot, wt, b, acc_type=DType.INT32)    # [1, 1, W, C] int32

    if em.adt == DType.INT8:
        acc = conv(codes)
    else:
        hi = np.floor_divide(codes, 256)                # signed high byte
        lo = codes - 256 * hi - 128                     # low byte - 128, in int8
        acc = em.b.add(em.b.mul(conv(hi), em.const_i32([256], 4)), conv(lo))
        # + 128 where the index picked a row (a row of zeros for an index out of range)
        found = em.b.reduce_sum(hot32, 3)               # [1, 1, W, 1] 0/1
        acc = em.b.add(acc, em.b.mul(found, em.const_i32([128], 4)))
    return em.b.rescale(acc, 1 << 30, 30, em.adt)
