"""Lowerings of pooling: avg/max pool2d (NHWC, with torch's padding made exact) and adaptive
average pooling."""
from __future__ import annotations

from ... import quant as Q
from ..values import Fake, Unsupported, fit_padding, ntuple
from ._registry import lowers
from .reductions import finish_reduce


@lowers("aten.adaptive_avg_pool2d")
def adaptive_avg_pool2d(em, node, p):
    x = p["self"]
    oh, ow = ntuple(p["output_size"], 2)
    if (oh, ow) == (1, 1):
        s = em.reduce_sum32(em.to_i32(x), [x.rank - 2, x.rank - 1])
        sy = em.out_scale(node)
        n = x.shape[-1] * x.shape[-2]
        y = em.rescale(s, Q.ratio(x.scale, den=[sy, n]), em.adt)
        return finish_reduce(em, node, y, sy)
    ih, iw = x.shape[-2:]
    if ih % oh or iw % ow:
        raise Unsupported("adaptive pooling with a non-integer window")
    return pool2d(em, node, x, "avg", (ih // oh, iw // ow), (ih // oh, iw // ow), (0, 0),
                      True)


def pool2d(em, node, x, kind, kernel, stride, padding, count_include_pad=True,
          ceil_mode=False):
    if x.rank != 4:
        raise Unsupported("pooling needs a 4-D NCHW input")
    if ceil_mode:
        raise Unsupported("ceil_mode=True")
    xn = em.nhwc(x.name)
    n, h, w, c = em.b.shape(xn)
    pads = []
    cut = []
    for i, size in enumerate((h, w)):
        lo, hi, ct = fit_padding(size, kernel[i], stride[i], 1, padding[i], padding[i])
        pads += [lo, hi]
        cut.append(ct)
    if any(cut):
        xn = em.b.slice(xn, (0, 0, 0, 0), (n, h - cut[0], w - cut[1], c))
    if kind == "avg":
        if any(pads) and count_include_pad:
            xn = em.b.pad(xn, [0, 0, pads[0], pads[1], pads[2], pads[3], 0, 0], 0)
            pads = [0, 0, 0, 0]
        y = em.b.avg_pool2d(xn, kernel, stride=stride, pad=pads)
    else:
        y = em.b.max_pool2d(xn, kernel, stride=stride, pad=pads)
    y_nhwc = y
    y = em.b.transpose(y, (0, 3, 1, 2))
    em.set_nhwc(y, y_nhwc)
    shape = tuple(node.meta["val"].shape) if not isinstance(node, Fake) else None
    return em.new(y, x.scale, shape or em.b.shape(y), x.dtype)


@lowers("aten.avg_pool2d")
def avg_pool2d(em, node, p):
    k = ntuple(p["kernel_size"], 2)
    s = ntuple(p["stride"], 2) if p["stride"] else k
    if p.get("divisor_override"):
        raise Unsupported("divisor_override")
    return pool2d(em, node, p["self"], "avg", k, s, ntuple(p["padding"], 2),
                      p["count_include_pad"], p["ceil_mode"])


@lowers("aten.max_pool2d")
def max_pool2d(em, node, p):
    k = ntuple(p["kernel_size"], 2)
    s = ntuple(p["stride"], 2) if p["stride"] else k
    if any(d != 1 for d in ntuple(p["dilation"], 2)):
        raise Unsupported("dilated max pooling")
    return pool2d(em, node, p["self"], "max", k, s, ntuple(p["padding"], 2), True,
                      p["ceil_mode"])


@lowers("aten.max_pool2d_with_indices")
def max_pool2d_with_indices(em, node, p):
    return (max_pool2d(em, node, p), None)
