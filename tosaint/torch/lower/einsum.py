"""Lowering of ``torch.einsum`` with one or two operands.

Two operands are one matrix product: every index is a batch index (in both operands and the
output), a contracted one (in both operands, not in the output) or a free one (in one operand
and the output).  Each operand is TRANSPOSEd to [batch, free, contracted] (the second to
[batch, contracted, free]) and RESHAPEd to 3 axes; the product is the MATMUL of two
activations (:func:`~.linear.matmul_act`, batch axes of size 1 broadcast), or, for a constant
operand without batch indices, the per-channel int8 weights of a linear layer
(:func:`~.linear.linear_const`); a constant operand with batch indices is a per-tensor
constant of the activation type (as in ``matmul``).  The result is RESHAPEd and TRANSPOSEd to
the output's order.  Indices summed over within a constant operand are summed in float first.
One operand: a permutation (TRANSPOSE, the scale carried over).  Anything else (three
operands, an index repeated within an operand, an index summed within an activation operand,
sizes broadcast along a contracted or free index) raises :class:`Unsupported` naming the
equation.
"""
from __future__ import annotations

import string

from ..values import QT, Unsupported, f64, is_act, like, numel
from ._registry import lowers
from .linear import linear_const, matmul_act


def parse(equation, ranks):
    """(operand index strings, output index string) of an einsum equation, '...' expanded
    to capital letters (the broadcast dims, aligned at the right) and spaces dropped."""
    eq = equation.replace(" ", "")
    if "->" in eq:
        lhs, out = eq.split("->")
    else:
        lhs, out = eq, None
    ins = lhs.split(",")
    if len(ins) != len(ranks):
        raise Unsupported(f"einsum {equation!r}: {len(ins)} operand subscripts for "
                          f"{len(ranks)} operands")
    spare = [c for c in string.ascii_uppercase if c not in eq]
    nell = max([r - (len(s) - 3) for s, r in zip(ins, ranks) if "..." in s] + [0])
    ell = "".join(spare[:nell])
    ins = [s.replace("...", ell[nell - (r - (len(s) - 3)):]) if "..." in s else s
           for s, r in zip(ins, ranks)]
    if out is None:                  # implicit output: the indices seen once, sorted
        seen = "".join(ins)
        out = ell + "".join(sorted(c for c in set(seen) if seen.count(c) == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    for s, r in zip(ins, ranks):
        if len(s) != r:
            raise Unsupported(f"einsum {equation!r}: subscripts {s!r} for a rank-{r} operand")
        if len(set(s)) != len(s):
            raise Unsupported(f"einsum {equation!r}: an index repeated within one operand "
                              "(a diagonal)")
    if len(set(out)) != len(out) or any(c not in "".join(ins) for c in out):
        raise Unsupported(f"einsum {equation!r}: invalid output subscripts")
    return ins, out


def _arrange(em, x: QT, idx, order, shape3):
    """``x`` (indices ``idx``) TRANSPOSEd to the index ``order`` and RESHAPEd to ``shape3``."""
    perm = [idx.index(c) for c in order]
    name = x.name
    if perm != list(range(len(perm))):
        name = em.b.transpose(name, perm)
    name = em.reshape(name, shape3)
    return like(x, name, shape3)


@lowers("aten.einsum")
def einsum(em, node, p):
    eq = p["equation"]
    ops = list(p["tensors"])
    if len(ops) > 2:
        raise Unsupported(f"einsum {eq!r} with {len(ops)} operands (only one or two)")
    ranks = [len(v.shape) for v in ops]
    ins, out = parse(eq, ranks)
    shape = tuple(node.meta["val"].shape)
    if len(ops) == 1:
        x, s = ops[0], ins[0]
        if set(s) != set(out):
            raise Unsupported(f"einsum {eq!r}: a sum within one operand")
        perm = [s.index(c) for c in out]
        name = x.name if perm == list(range(len(perm))) else em.b.transpose(x.name, perm)
        return like(x, em.reshape(name, shape), shape)
    (a, b), (ia, ib) = ops, ins
    # constants: indices in neither the other operand nor the output are summed in float
    for i, (v, s, o) in enumerate(((a, ia, ib), (b, ib, ia))):
        own = [k for k, c in enumerate(s) if c not in o and c not in out]
        if own and not is_act(v):
            v = f64(v).sum(dim=own)
            s = "".join(c for c in s if c in o or c in out)
            if i == 0:
                a, ia = v, s
            else:
                b, ib = v, s
    for v, s, o in ((a, ia, ib), (b, ib, ia)):
        own = [c for c in s if c not in o and c not in out]
        if own:
            raise Unsupported(f"einsum {eq!r}: index {own[0]!r} is summed within one operand")
    size = {}
    for v, s in ((a, ia), (b, ib)):
        for c, d in zip(s, v.shape):
            size.setdefault(c, []).append(int(d))
    batch = [c for c in out if c in ia and c in ib]
    free_a = [c for c in out if c in ia and c not in ib]
    free_b = [c for c in out if c in ib and c not in ia]
    contr = [c for c in ia if c in ib and c not in out]
    for c in contr:
        if len(set(size[c])) > 1:
            raise Unsupported(f"einsum {eq!r}: sizes {size[c]} broadcast along the contracted "
                              f"index {c!r}")
    bsz = [max(size[c]) for c in batch]
    m = numel([size[c][0] for c in free_a])
    n = numel([size[c][0] for c in free_b])
    k = numel([size[c][0] for c in contr])
    mid = bsz + [size[c][0] for c in free_a] + [size[c][0] for c in free_b]
    if not isinstance(a, QT) and not isinstance(b, QT):
        raise Unsupported(f"einsum {eq!r} of an integer tensor")
    const = None if isinstance(a, QT) and isinstance(b, QT) else ("a" if isinstance(b, QT)
                                                                   else "b")
    if const is not None and not batch:
        # a weight: x [free_x, contr] times w [free_w, contr]^T as a linear layer
        x, ix, w, iw = (b, ib, a, ia) if const == "a" else (a, ia, b, ib)
        free_x, free_w = (free_b, free_a) if const == "a" else (free_a, free_b)
        mx, nw = (n, m) if const == "a" else (m, n)
        xs = _arrange(em, x, ix, free_x + contr, (mx, k))
        wt = f64(w).permute([iw.index(c) for c in free_w + contr]).reshape(nw, k)
        y = linear_const(em, node, xs, wt, None)          # [mx, nw] at the node's scale
        lay = free_x + free_w
        mid = [size[c][0] for c in lay]
    else:
        if const is not None:            # batched constant: per-tensor, activation type
            c = a if const == "a" else b
            cname, cs = em.quant_const(c)
            cq = em.new(cname, cs, tuple(c.shape))
            a, b = (cq, b) if const == "a" else (a, cq)
        # batch axes keep their own sizes (1 where broadcast); matmul_act tiles them
        a3 = _arrange(em, a, ia, batch + free_a + contr,
                      [a.shape[ia.index(c)] for c in batch] + [m, k])
        b3 = _arrange(em, b, ib, batch + contr + free_b,
                      [b.shape[ib.index(c)] for c in batch] + [k, n])
        y = matmul_act(em, node, a3, b3)                  # [batch, m, n] at the node's scale
        lay = batch + free_a + free_b
    perm = [lay.index(c) for c in out]
    name = em.reshape(y.name, mid)
    if perm != list(range(len(perm))):
        name = em.b.transpose(name, perm)
    return like(y, em.reshape(name, shape), shape)
