"""Lowering of scaled_dot_product_attention: two activation matmuls around a softmax."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..values import QT, Fake, Unsupported
from ._registry import lowers
from .linear import matmul_act
from .masks import attention_mask, mask_const, mask_or, masked
from .reductions import softmax


@lowers("aten.scaled_dot_product_attention", ints=True)
def scaled_dot_product_attention(em, node, p):
    q, k, v = p["query"], p["key"], p["value"]
    if not all(isinstance(t, QT) for t in (q, k, v)):
        raise Unsupported("attention with constant query/key/value")
    if p.get("dropout_p"):
        raise Unsupported("attention with dropout")
    if p.get("enable_gqa"):
        raise Unsupported("grouped-query attention")
    scale = p.get("scale")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    shape = tuple(q.shape[:-1]) + (k.shape[-2],)
    mask = None
    if p.get("attn_mask") is not None:
        mask = attention_mask(em, p["attn_mask"], len(shape))
    if p.get("is_causal"):
        causal = np.triu(np.ones(shape[-2:], bool), 1)
        c = mask_const(em, causal.reshape((1,) * (len(shape) - 2) + causal.shape))
        mask = c if mask is None else mask_or(em, mask, c)
    names = [a.name for a in node.args[:3]]
    m_acts = em.acts(node.args[3].name) if mask is not None and len(node.args) > 3 \
        and isinstance(node.args[3], torch.fx.Node) else []
    scores, masked_scores, probs = [], [], []
    for i, (qa, ka) in enumerate(zip(em.acts(names[0]), em.acts(names[1]))):
        sc = (qa.double() @ ka.double().transpose(-1, -2)) * scale
        scores.append(sc)
        if i < len(m_acts):
            sc = sc + m_acts[i].double()
        if p.get("is_causal"):
            sc = sc.masked_fill(torch.from_numpy(causal), -math.inf)
        masked_scores.append(sc)
        probs.append(torch.softmax(sc, -1))
    f_scores = Fake(node.name + "_scores", masked_scores, shape)
    f_probs = Fake(node.name + "_probs", probs, shape, args=[f_scores])
    em.obs.acts[f_scores.name] = f_scores.acts
    em.obs.amax[f_scores.name] = max((float(t.abs().max()) for t in scores), default=0.0)
    em.obs.acts[f_probs.name] = f_probs.acts
    em.obs.amax[f_probs.name] = max((float(t.abs().max()) for t in probs), default=0.0)
    kt = em.b.transpose(k.name, list(range(k.rank - 2)) + [k.rank - 1, k.rank - 2])
    kt = QT(kt, k.scale * scale, tuple(em.b.shape(kt)), k.dtype, k.zp)
    sc = matmul_act(em, f_scores, q, kt)
    if mask is not None:
        sc = masked(em, sc, mask)
    pr = softmax(em, f_probs, {"self": sc, "dim": -1})
    return matmul_act(em, node, pr, v)
