"""Lowerings of data movement: reshapes, transposes, pixel (un)shuffle, expand/repeat,
cat/stack, slices and splits, flip (REVERSE) and roll (SLICE + CONCAT), constant padding, and
the identities (clone, dropout in eval, ...).  The scale of the input carries over, except
cat/stack, which requantize to one quantization that holds every input's range
(:func:`~tosaint.torch.values.common_qparams`)."""
from __future__ import annotations

import numpy as np

from ...schema.definition import Op
from ..values import (QT, Unsupported, common_qparams, f64, is_act, like, numel,
                      quantize_const)
from ._registry import lowers


def same_scale(em, node, x: QT, name):
    shape = tuple(em.b.shape(name))
    return like(x, name, shape)


@lowers("aten.view", "aten.reshape", "aten._unsafe_view", "aten.flatten", "aten.unsqueeze",
        "aten.squeeze", "aten.unflatten", "aten.view_as", "aten.reshape_as", ints=True)
def reshape_like(em, node, p):
    x = p["self"] if is_act(p.get("self")) else next(v for v in p.values() if is_act(v))
    shape = tuple(node.meta["val"].shape)
    return same_scale(em, node, x, em.reshape(x.name, shape))


@lowers("aten.contiguous", "aten.clone", "aten.alias", "aten.detach", "aten.dropout",
        "aten.lift_fresh_copy", "aten._to_copy", "aten.to", "aten.feature_dropout",
        nhwc=True, ints=True)
def identity(em, node, p):
    return next(v for v in p.values() if is_act(v))


@lowers("aten.permute", ints=True)
def permute(em, node, p):
    x = p["self"]
    perm = [d % x.rank for d in p["dims"]]
    return same_scale(em, node, x, em.b.transpose(x.name, perm))


@lowers("aten.transpose", ints=True)
def transpose(em, node, p):
    x = p["self"]
    perm = list(range(x.rank))
    a, b = int(p["dim0"]) % x.rank, int(p["dim1"]) % x.rank
    perm[a], perm[b] = perm[b], perm[a]
    return same_scale(em, node, x, em.b.transpose(x.name, perm))


@lowers("aten.t", ints=True)
def t_(em, node, p):
    x = p["self"]
    if x.rank < 2:
        return x
    return same_scale(em, node, x, em.b.transpose(x.name, [1, 0]))


@lowers("aten.expand", "aten.expand_as", ints=True)
def expand(em, node, p):
    """expand/expand_as to the node's shape: TILE where a size-1 axis grows (rank made equal
    first); ``expand_as``'s other tensor gives only the shape."""
    x = p["self"]
    shape = tuple(node.meta["val"].shape)
    xr = em.to_rank(x.name, len(shape))
    cur = em.b.shape(xr)
    mult = [s // c for s, c in zip(shape, cur)]
    if all(m == 1 for m in mult):
        return same_scale(em, node, x, xr)
    return same_scale(em, node, x, em.b.tile(xr, mult))


@lowers("aten.repeat", ints=True)
def repeat(em, node, p):
    x = p["self"]
    reps = list(p["repeats"])
    xr = em.to_rank(x.name, len(reps))
    return same_scale(em, node, x, em.b.tile(xr, reps))


@lowers("aten.cat", "aten.concat", "aten.concatenate")
def cat(em, node, p):
    xs = p["tensors"]
    rank = len(node.meta["val"].shape)
    d = int(p["dim"]) % rank
    qs = []
    scale, zp = common_qparams(em, [v for v in xs if isinstance(v, QT)])
    for v in xs:
        if isinstance(v, QT):
            qs.append(em.requant(v, scale, zp).name)
        else:
            qs.append(em.b.const(quantize_const(em, f64(v).numpy(), scale, zp), em.adt))
    return em.new(em.b.concat(qs, d), scale, node.meta["val"].shape, zp=zp)


@lowers("aten.stack")
def stack(em, node, p):
    xs = p["tensors"]
    shape = tuple(node.meta["val"].shape)
    d = int(p["dim"]) % len(shape)
    if not all(isinstance(v, QT) for v in xs):
        raise Unsupported("stack of constants and activations")
    scale, zp = common_qparams(em, xs)
    parts = []
    for v in xs:
        v = em.requant(v, scale, zp)
        s = list(v.shape)
        s.insert(d, 1)
        parts.append(em.reshape(v.name, s))
    return em.new(em.b.concat(parts, d), scale, shape, zp=zp)


def slice_dim(em, x: QT, d, start, end, step=1):
    size = x.shape[d]
    start = 0 if start is None else int(start)
    end = size if end is None else int(end)
    if start < 0:
        start += size
    if end < 0:
        end += size
    start, end = max(0, min(start, size)), max(0, min(end, size))
    n = max(0, (end - start + step - 1) // step)
    st = [0] * x.rank
    sz = list(x.shape)
    st[d] = start
    if step == 1:
        sz[d] = n
        if start == 0 and n == size:
            return x
        return like(x, em.b.slice(x.name, st, sz), sz)
    # strided: take n*step elements (padding at the end when needed), reshape, take index 0
    avail = size - start
    need = n * step
    name = x.name
    cur = list(x.shape)
    if need > avail:
        pads = [0] * (2 * x.rank)
        pads[2 * d + 1] = need - avail
        name = em.b.pad(name, pads, 0)
        cur[d] += need - avail
    sz[d] = need
    name = em.b.slice(name, st, sz)
    shp = sz[:d] + [n, step] + sz[d + 1:]
    name = em.reshape(name, shp)
    st2 = [0] * len(shp)
    sz2 = list(shp)
    sz2[d + 1] = 1
    name = em.b.slice(name, st2, sz2)
    out = sz[:d] + [n] + sz[d + 1:]
    return like(x, em.reshape(name, out), out)


@lowers("aten.slice", ints=True)
def slice_(em, node, p):
    x = p["self"]
    d = int(p["dim"]) % x.rank
    return slice_dim(em, x, d, p["start"], p["end"], int(p["step"] or 1))


@lowers("aten.select", ints=True)
def select(em, node, p):
    x = p["self"]
    d = int(p["dim"]) % x.rank
    i = int(p["index"]) % x.shape[d]
    s = slice_dim(em, x, d, i, i + 1)
    shape = tuple(node.meta["val"].shape)
    return like(x, em.reshape(s.name, shape), shape)


@lowers("aten.narrow", ints=True)
def narrow(em, node, p):
    x = p["self"]
    d = int(p["dim"]) % x.rank
    st = int(p["start"])
    return slice_dim(em, x, d, st, st + int(p["length"]))


@lowers("aten.split", "aten.split_with_sizes", ints=True)
def split(em, node, p):
    x = p["self"]
    d = int(p["dim"]) % x.rank
    ss = p.get("split_size", p.get("split_sizes"))
    size = x.shape[d]
    if isinstance(ss, int):
        sizes = [min(ss, size - i) for i in range(0, size, ss)]
    else:
        sizes = list(ss)
    out, o = [], 0
    for s in sizes:
        out.append(slice_dim(em, x, d, o, o + s))
        o += s
    return out


@lowers("aten.chunk", ints=True)
def chunk(em, node, p):
    x = p["self"]
    d = int(p["dim"]) % x.rank
    c = int(p["chunks"])
    ss = -(-x.shape[d] // c)
    return split(em, node, dict(self=x, dim=d, split_size=ss))


@lowers("aten.unbind", ints=True)
def unbind(em, node, p):
    x = p["self"]
    d = int(p["dim"]) % x.rank
    out = []
    for i in range(x.shape[d]):
        s = slice_dim(em, x, d, i, i + 1)
        shp = x.shape[:d] + x.shape[d + 1:]
        out.append(like(x, em.reshape(s.name, shp), shp))
    return out


@lowers("aten.constant_pad_nd")
def constant_pad_nd(em, node, p):
    x = p["input"] if "input" in p else p["self"]
    pad = list(p["pad"])
    value = float(p.get("value") or 0.0)
    pads = [0] * (2 * x.rank)
    for i in range(len(pad) // 2):
        d = x.rank - 1 - i
        pads[2 * d], pads[2 * d + 1] = pad[2 * i], pad[2 * i + 1]
    if any(v < 0 for v in pads):
        raise Unsupported("negative padding")
    qv = int(quantize_const(em, np.array(value), x.scale, x.zp))
    return same_scale(em, node, x, em.b.pad(x.name, pads, qv))


@lowers("aten.pad")
def pad(em, node, p):
    if p.get("mode", "constant") != "constant":
        raise Unsupported(f"pad mode {p.get('mode')!r}")
    return constant_pad_nd(em, node, dict(input=p["self"], pad=p["pad"],
                                              value=p.get("value")))


def _pixel_shuffle(em, node, x: QT, r, inverse):
    """[*, C*r*r, H, W] <-> [*, C, H*r, W*r] (pixel_unshuffle: ``inverse``) by two rank-4
    TRANSPOSEs with the leading dims folded into the first axis:

    [L*C*r, r, H, W] -(0,2,3,1)-> [L*C*r, H, W, r] = [L*C, r, H, W*r] -(0,2,1,3)->
    [L*C, H, r, W*r] = [*, C, H*r, W*r]; pixel_unshuffle runs the same steps backwards."""
    if x.rank < 3:
        raise Unsupported(f"pixel_{'un' if inverse else ''}shuffle of a rank-{x.rank} tensor")
    shape = tuple(node.meta["val"].shape)
    if r == 1:
        return like(x, em.reshape(x.name, shape), shape)
    if inverse:
        lc, h, w = numel(shape[:-2]) // (r * r), shape[-2], shape[-1]
        t = em.b.transpose(em.reshape(x.name, (lc, h, r, w * r)), (0, 2, 1, 3))
        t = em.b.transpose(em.reshape(t, (lc * r, h, w, r)), (0, 3, 1, 2))
    else:
        lc, h, w = numel(shape[:-2]), x.shape[-2], x.shape[-1]
        t = em.b.transpose(em.reshape(x.name, (lc * r, r, h, w)), (0, 2, 3, 1))
        t = em.b.transpose(em.reshape(t, (lc, r, h, w * r)), (0, 2, 1, 3))
    return like(x, em.reshape(t, shape), shape)


@lowers("aten.pixel_shuffle")
def pixel_shuffle(em, node, p):
    return _pixel_shuffle(em, node, p["self"], int(p["upscale_factor"]), False)


@lowers("aten.pixel_unshuffle")
def pixel_unshuffle(em, node, p):
    return _pixel_shuffle(em, node, p["self"], int(p["downscale_factor"]), True)


def reverse(em, name, d):
    """REVERSE of tensor ``name`` along axis ``d``.  Ethos-U55/U65 reverse no channel (last)
    axis of a rank <= 4 tensor: there the axis is made the middle one of a [before, n, 1]
    reshape (the same element order)."""
    shape = tuple(em.b.shape(name))
    if shape[d] == 1:
        return name
    if em.u55 and d == len(shape) - 1 and len(shape) <= 4:
        r = em.reshape(name, (numel(shape[:d]), shape[d], 1))
        r = em.b.op(Op.REVERSE, [r], em.b.shape(r), em.b.dtype(r), dict(axis=1))
        return em.reshape(r, shape)
    return em.b.op(Op.REVERSE, [name], shape, em.b.dtype(name), dict(axis=d))


#: the NHWC axis of each NCHW axis
NHWC_AXIS = (0, 3, 1, 2)


@lowers("aten.flip", ints=True)
def flip(em, node, p):
    """torch.flip / x.flip(dims): one REVERSE per flipped axis, exact on the codes (the scale
    and zero point carried over).  A rank-4 input with an NHWC twin (a conv/pool output, or
    a conv input) is flipped on the twin too, so that test-time augmentation around convs
    needs no TRANSPOSE (the unused chain is removed)."""
    x = p["self"]
    dims = sorted({int(d) % x.rank for d in p["dims"]}) if x.rank else []
    name = x.name
    for d in dims:
        name = reverse(em, name, d)
    if name == x.name:
        return x
    if x.rank == 4 and x.name in em.nhwc_of:
        tw = em.nhwc_of[x.name]
        for d in dims:
            tw = reverse(em, tw, NHWC_AXIS[d])
        em.set_nhwc(name, tw)
    return like(x, name, x.shape)


@lowers("aten.fliplr", ints=True)
def fliplr(em, node, p):
    return flip(em, node, dict(self=p["self"], dims=[1]))


@lowers("aten.flipud", ints=True)
def flipud(em, node, p):
    return flip(em, node, dict(self=p["self"], dims=[0]))


def roll_dim(em, x, d, shift):
    """``x`` rolled by ``shift`` along axis ``d``: out[i] = x[(i - shift) mod n], as the
    last ``shift`` entries SLICEd off and CONCATenated in front of the rest."""
    n = x.shape[d]
    s = int(shift) % n if n else 0
    if s == 0:
        return x
    tail = slice_dim(em, x, d, n - s, n)
    head = slice_dim(em, x, d, 0, n - s)
    return like(x, em.b.concat([tail.name, head.name], d), x.shape)


@lowers("aten.roll", ints=True)
def roll(em, node, p):
    """torch.roll(x, shifts, dims) (Swin's shifted windows): SLICE + CONCAT per rolled axis,
    exact on the codes; without dims the flattened tensor is rolled and reshaped back.  A
    rank-4 input with an NHWC twin is rolled on the twin too (see :func:`flip`)."""
    x = p["self"]
    shifts = [p["shifts"]] if isinstance(p["shifts"], int) else list(p["shifts"])
    dims = p.get("dims")
    dims = [] if dims is None else [dims] if isinstance(dims, int) else list(dims)
    if not dims:
        if len(shifts) != 1:
            raise Unsupported(f"roll with shifts {shifts} and no dims")
        shape = x.shape
        flat = like(x, em.reshape(x.name, (numel(shape),)), (numel(shape),))
        y = roll_dim(em, flat, 0, shifts[0])
        return like(x, em.reshape(y.name, shape), shape)
    if len(shifts) != len(dims):
        raise Unsupported(f"roll with {len(shifts)} shifts for {len(dims)} dims")
    dims = [int(d) % x.rank for d in dims]
    y = x
    for s, d in zip(shifts, dims):
        y = roll_dim(em, y, d, s)
    if y.name != x.name and x.rank == 4 and x.name in em.nhwc_of:
        tw = em.nhwc_of[x.name]
        tw = like(x, tw, em.b.shape(tw))
        for s, d in zip(shifts, dims):
            tw = roll_dim(em, tw, NHWC_AXIS[d], s)
        em.set_nhwc(y.name, tw.name)
    return y
