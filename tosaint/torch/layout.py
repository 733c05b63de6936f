"""Layout of the emitted graph: NHWC twins of NCHW activations and dead-code elimination.

TOSA tensors keep torch's logical shape and layout (NCHW); convolutions and pools TRANSPOSE to
NHWC and back.  Elementwise ops on their outputs are replayed on the NHWC twins
(:func:`replay_nhwc`), and :func:`dce` then drops the NCHW chains nothing uses, so a CNN has
TRANSPOSEs only at the graph boundary.
"""
from __future__ import annotations

from ..schema.definition import Op
from .values import QT

#: the TOSA operators :func:`replay_nhwc` may copy onto NHWC twins
ELEMENTWISE = {Op.RESCALE, Op.TABLE, Op.CLAMP, Op.ADD, Op.SUB, Op.MUL, Op.MAXIMUM, Op.MINIMUM,
               Op.NEGATE, Op.IDENTITY}


def replay_nhwc(em, i0, args, out):
    """Elementwise ops (emitted from operator index ``i0``) on NCHW tensors that have NHWC
    twins (conv/pool outputs): emit the same ops on the twins too, so that a following
    conv/pool needs no TRANSPOSE.  Whatever ends up unused (the NCHW or the NHWC chain) is
    removed by :func:`dce`."""
    qts = [a for a in args if isinstance(a, QT)]
    if out.rank != 4 or not qts or any(a.rank != 4 or a.name not in em.nhwc_of
                                       for a in qts):
        return
    b = em.b
    blk = b.block
    mapping = {a.name: em.nhwc_of[a.name] for a in qts}
    for o in list(blk.operators[i0:]):
        if o.op in (Op.CONST, Op.CONST_SHAPE):
            continue
        if o.op not in ELEMENTWISE or len(o.outputs) != 1:
            return
        ins = []
        for n in o.inputs:
            t = blk.tensors[n]
            if n in mapping:
                ins.append(mapping[n])
            elif t.data is not None and (len(t.shape) != 4 or all(d == 1 for d in t.shape)):
                ins.append(n)
            else:
                return
        src = blk.tensors[o.outputs[0]]
        if len(src.shape) != 4:
            return
        shape = [src.shape[i] for i in (0, 2, 3, 1)]
        mapping[o.outputs[0]] = b.op(o.op, ins, shape, src.dtype, dict(o.attrs))
    if out.name in mapping:
        em.set_nhwc(out.name, mapping[out.name])


def dce(em):
    """Remove operators (and tensors) that no graph output depends on; fill each record's
    ``ops`` (the TOSA ops left of it) and ``twin`` (its outputs' NHWC twins)."""
    blk = em.b.block
    live = set(blk.outputs)
    keep = []
    for o in reversed(blk.operators):
        if any(n in live for n in o.outputs):
            keep.append(o)
            live.update(o.inputs)
    keep.reverse()
    blk.operators = keep
    for name in list(blk.tensors):
        if name not in live and name not in blk.inputs:
            del blk.tensors[name]
    alive = {id(o) for o in keep}
    for rec in em.records.values():
        objs = rec.pop("op_objs", [])
        rec["ops"] = [Op(o.op).name for o in objs if id(o) in alive
                      and o.op not in (Op.CONST, Op.CONST_SHAPE)]
        outs = rec["out"] if isinstance(rec["out"], (list, tuple)) else [rec["out"]]
        rec["twin"] = {q.name: em.twins[q.name] for q in outs
                       if isinstance(q, QT) and q.name in em.twins}
