"""Lowerings of pooling and resizing: avg/max pool 1d/2d (NHWC, torch's padding and
ceil_mode made exact), adaptive average and max pooling to any output size, and
upsample/interpolate (nearest, nearest-exact, linear, bilinear) as RESIZE."""
from __future__ import annotations

import numpy as np

from ... import quant as Q
from ...schema.definition import DType, ResizeMode
from ..values import BITS, Fake, Unsupported, fit_padding, ntuple
from ._registry import lowers
from .reductions import ValuesOf, finish_reduce


# ---- adaptive average pooling ------------------------------------------------------------------
def _bins(size, out):
    """torch's adaptive pooling windows: [floor(i*I/O), ceil((i+1)*I/O)) for i < O."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def adaptive_avg(em, node, x, outs):
    """Average over torch's adaptive windows on the last ``len(outs)`` axes of ``x``.

    Each axis is summed in int32 (a RESHAPE + REDUCE_SUM when the windows are even, else one
    SLICE + REDUCE_SUM per window and a CONCAT); the divisions by the window sizes go into
    RESCALEs: one for even windows, one per-channel RESCALE on the last axis per axis with
    uneven windows (moved there by a TRANSPOSE), the intermediate ones to int32 with 12
    fractional bits."""
    sy, zp = em.out_qparams(node)
    rank = x.rank
    axes = list(range(rank - len(outs), rank))
    s = em.to_i32(x)
    shape = list(x.shape)
    uneven = []                      # (axis, divisors) of the axes with uneven windows
    even = 1
    bound = BITS[x.dtype]
    for ax, o in zip(axes, outs):
        size = shape[ax]
        bins = _bins(size, o)
        if size % o == 0:
            k = size // o
            if k > 1:
                s = em.reshape(s, shape[:ax] + [o, k] + shape[ax + 1:])
                s = em.reshape(em.b.reduce_sum(s, ax + 1), shape[:ax] + [o] + shape[ax + 1:])
            even *= k
        else:
            parts = []
            for lo, hi in bins:
                st = [0] * rank
                sz = list(shape)
                st[ax], sz[ax] = lo, hi - lo
                parts.append(em.b.reduce_sum(em.b.slice(s, st, sz), ax))
            s = em.b.concat(parts, ax)
            uneven.append((ax, [hi - lo for lo, hi in bins]))
        bound += max(hi - lo for lo, hi in bins).bit_length()
        shape[ax] = o
    frac = 1
    for i, (ax, divs) in enumerate(uneven):
        last = i == len(uneven) - 1
        perm = list(range(rank))
        perm[ax], perm[-1] = perm[-1], perm[ax]
        if ax != rank - 1:
            s = em.b.transpose(s, perm)
        if last:
            ratios = [Q.ratio(x.scale, den=[sy, even * d, frac]) for d in divs]
            s = em.rescale(s, ratios, em.adt, bound_bits=bound, output_zp=zp)
        else:
            s = em.rescale(s, [Q.ratio(1 << 12, den=[d]) for d in divs], DType.INT32,
                           bound_bits=bound)
            frac <<= 12
        if ax != rank - 1:
            s = em.b.transpose(s, perm)
    if not uneven:
        s = em.rescale(s, Q.ratio(x.scale, den=[sy, even]), em.adt, bound_bits=bound,
                       output_zp=zp)
    return finish_reduce(em, node, s, sy, zp)


@lowers("aten.adaptive_avg_pool2d")
def adaptive_avg_pool2d(em, node, p):
    x = p["self"]
    oh, ow = ntuple(p["output_size"], 2)
    if (oh, ow) == (1, 1):
        s = em.reduce_sum32(em.to_i32(x), [x.rank - 2, x.rank - 1])
        sy, zp = em.out_qparams(node)
        n = x.shape[-1] * x.shape[-2]
        y = em.rescale(s, Q.ratio(x.scale, den=[sy, n]), em.adt, output_zp=zp)
        return finish_reduce(em, node, y, sy, zp)
    ih, iw = x.shape[-2:]
    if ih % oh or iw % ow or x.rank != 4:
        return adaptive_avg(em, node, x, (oh, ow))
    return pool2d(em, node, x, "avg", (ih // oh, iw // ow), (ih // oh, iw // ow), (0, 0),
                  True)


@lowers("aten.adaptive_avg_pool1d")
def adaptive_avg_pool1d(em, node, p):
    return adaptive_avg(em, node, p["self"], ntuple(p["output_size"], 1))


# ---- adaptive max pooling ----------------------------------------------------------------------
def adaptive_max(em, node, x, outs):
    """Maximum over torch's adaptive windows on the last ``len(outs)`` axes of ``x``, on the
    codes (the scale and zero point carry over): per axis a RESHAPE + REDUCE_MAX when the
    windows are even, else one SLICE + REDUCE_MAX per window and a CONCAT."""
    if x.rank < len(outs) + 1:
        raise Unsupported(f"adaptive max pooling of a rank-{x.rank} tensor")
    rank = x.rank
    s = x.name
    shape = list(x.shape)
    for ax, o in zip(range(rank - len(outs), rank), outs):
        size = shape[ax]
        if size % o == 0:
            k = size // o
            if k > 1:
                s = em.reshape(s, shape[:ax] + [o, k] + shape[ax + 1:])
                s = em.reshape(em.b.reduce_max(s, ax + 1), shape[:ax] + [o] + shape[ax + 1:])
        else:
            parts = []
            for lo, hi in _bins(size, o):
                st = [0] * rank
                sz = list(shape)
                st[ax], sz[ax] = lo, hi - lo
                parts.append(em.b.reduce_max(em.b.slice(s, st, sz), ax))
            s = em.b.concat(parts, ax)
        shape[ax] = o
    out = tuple(node.meta["val"].shape)
    return em.new(em.reshape(s, out), x.scale, out, x.dtype, zp=x.zp)


@lowers("aten.adaptive_max_pool2d")
def adaptive_max_pool2d(em, node, p):
    """(values, no indices): MAX_POOL2D when the windows are even, else :func:`adaptive_max`."""
    x = p["self"]
    oh, ow = ntuple(p["output_size"], 2)
    node0 = ValuesOf(node, "adaptive max pooling")
    if x.rank == 4 and x.shape[-2] % oh == 0 and x.shape[-1] % ow == 0:
        k = (x.shape[-2] // oh, x.shape[-1] // ow)
        return pool2d(em, node0, x, "max", k, k, (0, 0)), None
    return adaptive_max(em, node0, x, (oh, ow)), None


@lowers("aten.adaptive_max_pool1d")
def adaptive_max_pool1d(em, node, p):
    values = ValuesOf(node, "adaptive max pooling")
    return adaptive_max(em, values, p["self"], ntuple(p["output_size"], 1)), None


# ---- pool1d / pool2d ------------------------------------------------------------------------
def pool2d(em, node, x, kind, kernel, stride, padding, count_include_pad=True,
           ceil_mode=False):
    if x.rank != 4:
        raise Unsupported("pooling needs a 4-D NCHW input")
    xn = em.nhwc(x.name)
    n, h, w, c = em.b.shape(xn)
    out_hw = tuple(node.meta["val"].shape)[2:] if ceil_mode else None
    pads, cut, extra = [], [], []
    for i, size in enumerate((h, w)):
        if ceil_mode:            # windows may start in the right padding; torch's output size
            lo = padding[i]
            hi = (out_hw[i] - 1) * stride[i] + kernel[i] - size - lo
            ct, hi = max(0, -hi), max(0, hi)
        else:
            lo, hi, ct = fit_padding(size, kernel[i], stride[i], 1, padding[i], padding[i])
        extra.append(max(0, hi - padding[i]))      # past torch's padding: never counted
        pads += [lo, hi - extra[-1]]
        cut.append(ct)
    if any(cut):
        xn = em.b.slice(xn, (0, 0, 0, 0), (n, h - cut[0], w - cut[1], c))
    if kind == "avg":
        if any(pads) and count_include_pad:
            xn = em.b.pad(xn, [0, 0, pads[0], pads[1], pads[2], pads[3], 0, 0], x.zp)
            pads = [0, 0, 0, 0]
        pads = [pads[0], pads[1] + extra[0], pads[2], pads[3] + extra[1]]
        y = em.b.avg_pool2d(xn, kernel, stride=stride, pad=pads, input_zp=x.zp,
                            output_zp=x.zp)
    else:
        pads = [pads[0], pads[1] + extra[0], pads[2], pads[3] + extra[1]]
        y = em.b.max_pool2d(xn, kernel, stride=stride, pad=pads)
    y_nhwc = y
    y = em.b.transpose(y, (0, 3, 1, 2))
    em.set_nhwc(y, y_nhwc)
    shape = tuple(node.meta["val"].shape) if not isinstance(node, Fake) else None
    return em.new(y, x.scale, shape or em.b.shape(y), x.dtype, zp=x.zp)


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
    return (max_pool2d(em, ValuesOf(node, "max pooling"), p), None)


class _As2d:
    """A 1-D pooling node seen as 2-D: [N, C, L] -> [N, C, 1, L]."""

    def __init__(self, node):
        self.name = node.name
        n, c, length = node.meta["val"].shape
        self.meta = {"val": node.meta["val"].reshape(n, c, 1, length)}


def _pool1d(em, node, p, kind):
    x = p["self"]
    if x.rank != 3:
        raise Unsupported("1-D pooling needs a 3-D [N, C, L] input")
    k = ntuple(p["kernel_size"], 1)[0]
    s = ntuple(p["stride"], 1)[0] if p["stride"] else k
    if kind == "max" and ntuple(p["dilation"], 1)[0] != 1:
        raise Unsupported("dilated max pooling")
    x4 = em.new(em.reshape(x.name, x.shape[:2] + (1, x.shape[2])), x.scale,
                x.shape[:2] + (1, x.shape[2]), x.dtype, zp=x.zp)
    y = pool2d(em, _As2d(node), x4, kind, (1, k), (1, s), (0, ntuple(p["padding"], 1)[0]),
               p.get("count_include_pad", True), p["ceil_mode"])
    shape = tuple(node.meta["val"].shape)
    return em.new(em.reshape(y.name, shape), y.scale, shape, y.dtype, zp=y.zp)


@lowers("aten.avg_pool1d")
def avg_pool1d(em, node, p):
    return _pool1d(em, node, p, "avg")


@lowers("aten.max_pool1d")
def max_pool1d(em, node, p):
    return _pool1d(em, node, p, "max")


# ---- upsample / interpolate -------------------------------------------------------------------
def _resize_params(size, out, mode, align_corners):
    """(scale_n, scale_d, offset, border) of one axis so that TOSA's source coordinate
    (o * d + offset) / n is torch's."""
    if out == size:
        return 1, 1, 0, 0
    if mode == "nearest":                  # floor(o * I / O) = round-half-up(o*I/O - 1/2)
        n, d, off = 2 * out, 2 * size, -out
    elif align_corners:                    # o * (I - 1) / (O - 1)
        if out == 1:
            n, d, off = 1, 1, 0
        else:
            n, d, off = out - 1, size - 1, 0
    else:                                  # (o + 1/2) * I / O - 1/2
        n, d, off = 2 * out, 2 * size, size - out
    # reduce the fraction; the nearest modes keep n even (their ties round half up at n / 2)
    g = int(np.gcd.reduce([n // 2 if mode != "linear" else n, d, abs(off)]))
    n, d, off = n // g, d // g, off // g
    if n > 2048 or d >= 16 * n:
        raise Unsupported(f"resize from {size} to {out} (TOSA RESIZE scale limits)")
    border = (out - 1) * d - (size - 1) * n + off
    return n, d, off, border


def resize(em, node, p, mode, nd):
    x = p["input"] if "input" in p else p["self"]
    if x.rank != nd + 2:
        raise Unsupported(f"{nd}-D resize of a rank-{x.rank} tensor")
    out = tuple(node.meta["val"].shape)
    align = bool(p.get("align_corners") or False)
    if nd == 1:
        x4 = em.reshape(x.name, x.shape[:2] + (1, x.shape[2]))
        sizes, outs = (1, x.shape[2]), (1, out[2])
    else:
        x4, sizes, outs = x.name, x.shape[2:], out[2:]
    py = _resize_params(sizes[0], outs[0], mode, align)
    px = _resize_params(sizes[1], outs[1], mode, align)
    if mode == "linear" and em.u55:
        return _resize_as_convs(em, node, x, x4, sizes, outs, (py, px))
    xn = em.nhwc(x4)
    tosa_mode = ResizeMode.BILINEAR if mode == "linear" else ResizeMode.NEAREST
    y = em.b.resize(xn, (py[0], py[1], px[0], px[1]), (py[2], px[2]), (py[3], px[3]),
                    mode=tosa_mode)
    scale, zp = x.scale, x.zp
    if tosa_mode == ResizeMode.BILINEAR:          # codes * n_y * n_x, int48 / int32
        sy, zp = em.out_qparams(node)
        bits = BITS[x.dtype] + int(py[0] * px[0]).bit_length()
        if x.zp:                                  # int32: the zero point times n_y * n_x
            y = em.b.sub(y, em.const_i32([x.zp * py[0] * px[0]], 4))
            bits += 1
        y = em.rescale(y, Q.ratio(x.scale, den=[sy, py[0] * px[0]]), em.adt,
                       bound_bits=bits, output_zp=zp)
        scale = sy
    y4 = em.b.transpose(y, (0, 3, 1, 2))
    if nd == 2:
        em.set_nhwc(y4, y)
    return em.new(em.reshape(y4, out), scale, out, x.dtype, zp=zp)


@lowers("aten.upsample_nearest1d", "aten.upsample_nearest2d")
def upsample_nearest(em, node, p):
    return resize(em, node, p, "nearest", 1 if "1d" in str(node.target) else 2)


@lowers("aten._upsample_nearest_exact1d", "aten._upsample_nearest_exact2d")
def upsample_nearest_exact(em, node, p):
    return resize(em, node, p, "nearest-exact", 1 if "1d" in str(node.target) else 2)


@lowers("aten.upsample_linear1d", "aten.upsample_bilinear2d")
def upsample_linear(em, node, p):
    return resize(em, node, p, "linear", 1 if "1d" in str(node.target) else 2)


def _interp_weights(size, out, params):
    """int8 [out, size] matrix of TOSA's bilinear weights along one axis (rows sum to n)."""
    n, d, off, _ = params
    w = np.zeros((out, size), np.int64)
    for o in range(out):
        y = o * d + off
        i0 = y // n
        dy = y - i0 * n
        w[o, min(max(i0, 0), size - 1)] += n - dy
        w[o, min(max(i0 + 1, 0), size - 1)] += dy
    return w


def _interp_last_axis(em, name, params, size, out, ratio, out_dtype, in_zp=0, out_zp=0):
    """Linear interpolation along the last axis of ``name`` (zero point ``in_zp``) as a 1x1
    CONV2D whose input channels are that axis (integer weights n - dy, dy), then RESCALE by
    ``ratio / n`` to zero point ``out_zp``."""
    shape = list(em.b.shape(name))
    rows = int(np.prod(shape[:-1]))
    w = _interp_weights(size, out, params)
    if w.max() > 127:
        raise Unsupported(f"linear resize from {size} to {out} on Ethos-U55/U65 (weights "
                          "over 127)")
    wc = em.b.const(w.reshape(out, 1, 1, size), DType.INT8)
    bias = em.b.const(np.zeros(out, np.int64), em.acc)
    acc = em.b.conv2d(em.reshape(name, (1, rows, 1, size)), wc, bias, input_zp=in_zp,
                      acc_type=em.acc)
    y = em.rescale(acc, ratio / params[0], out_dtype, output_zp=out_zp)
    return em.reshape(y, shape[:-1] + [out])


def _resize_as_convs(em, node, x, x4, sizes, outs, params):
    """Ethos-U55/U65 (no BILINEAR RESIZE): interpolate the width, then the height, each as a
    convolution with the bilinear weights (the height pass after a TRANSPOSE)."""
    sy, zp = em.out_qparams(node)
    out = tuple(node.meta["val"].shape)
    two = sizes[0] != outs[0]
    s_mid, zp_mid = (x.scale, x.zp) if two else (sy, zp)
    y = _interp_last_axis(em, x4, params[1], sizes[1], outs[1],
                          Q.ratio(x.scale, den=[s_mid]), em.adt, x.zp, zp_mid)
    if two:
        y = em.b.transpose(y, (0, 1, 3, 2))
        y = _interp_last_axis(em, y, params[0], sizes[0], outs[0], Q.ratio(s_mid, den=[sy]),
                              em.adt, zp_mid, zp)
        y = em.b.transpose(y, (0, 1, 3, 2))
    return em.new(em.reshape(y, out), sy, out, x.dtype, zp=zp)
