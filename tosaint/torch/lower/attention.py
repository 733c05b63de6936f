"""Lowering of scaled_dot_product_attention: two activation matmuls around a softmax."""
from __future__ import annotations

import math

import torch

from ..values import QT, Fake, Unsupported
from ._registry import lowers
from .linear import matmul_act
from .reductions import softmax


@lowers("aten.scaled_dot_product_attention")
def scaled_dot_product_attention(em, node, p):
    q, k, v = p["query"], p["key"], p["value"]
    if not all(isinstance(t, QT) for t in (q, k, v)):
        raise Unsupported("attention with constant query/key/value")
    if p.get("attn_mask") is not None or p.get("is_causal") or p.get("dropout_p"):
        raise Unsupported("attention with a mask, is_causal or dropout")
    if p.get("enable_gqa"):
        raise Unsupported("grouped-query attention")
    scale = p.get("scale")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    names = [a.name for a in node.args[:3]]
    scores, probs = [], []
    for qa, ka in zip(em.acts(names[0]), em.acts(names[1])):
        sc = (qa.double() @ ka.double().transpose(-1, -2)) * scale
        scores.append(sc)
        probs.append(torch.softmax(sc, -1))
    shape = tuple(q.shape[:-1]) + (k.shape[-2],)
    f_scores = Fake(node.name + "_scores", scores, shape)
    f_probs = Fake(node.name + "_probs", probs, shape, args=[f_scores])
    for f in (f_scores, f_probs):
        em.obs.acts[f.name] = f.acts
        em.obs.amax[f.name] = max(float(t.abs().max()) for t in f.acts) if f.acts else 0.0
    kt = em.b.transpose(k.name, list(range(k.rank - 2)) + [k.rank - 1, k.rank - 2])
    kt = QT(kt, k.scale * scale, tuple(em.b.shape(kt)), k.dtype)
    sc = matmul_act(em, f_scores, q, kt)
    pr = softmax(em, f_probs, {"self": sc, "dim": -1})
    return matmul_act(em, node, pr, v)
