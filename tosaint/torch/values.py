"""The values a lowering works on (:class:`QT`, float constants) and small argument helpers.

Every torch value is either a float constant (``torch.Tensor``/python scalar: parameters,
buffers and anything computed from them only, folded in float) or a :class:`QT`, a quantized
activation.  The quantization schemes and the bit widths of the TOSA integer types live here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..schema.definition import DType

SCHEMES = {
    "a16w8": dict(adt=DType.INT16, qmax=32767, acc=DType.INT48, bias_bits=47, headroom=12),
    "a8w8": dict(adt=DType.INT8, qmax=127, acc=DType.INT32, bias_bits=31, headroom=20),
}
BITS = {DType.INT8: 7, DType.INT16: 15, DType.INT32: 31, DType.INT48: 47}
K16 = 32767 * 128          # int16 TABLE output of an entry 32767 (16.7 fixed point)


@dataclass
class QT:
    """A quantized activation: TOSA tensor ``name`` holding round(x / scale) + zp.

    ``zp`` is 0 for int16 (a16w8 is symmetric); an int8 activation of an a8w8 graph is affine
    (see :meth:`Emitter.out_qparams`), and every lowering that reads one either passes the
    zero point to the TOSA operator (RESCALE, CONV2D, MATMUL, AVG_POOL2D, NEGATE, PAD), folds
    it into a TABLE or compares codes with zero-point-shifted bounds (CLAMP, MAX_POOL2D).
    """
    name: str
    scale: float
    shape: tuple
    dtype: DType
    zp: int = 0
    #: a bool tensor (broadcastable to ``shape``): True where the value is -inf (a masked
    #: attention score); only softmax consumes such a QT
    mask: str | None = None

    @property
    def rank(self):
        return len(self.shape)


@dataclass
class IntT:
    """An integer activation (a graph input such as ``lengths``, or a comparison result):
    TOSA tensor ``name`` holding the torch values exactly (int32, or bool).

    ``boolean``: a torch bool tensor (TOSA BOOL, or int32 0/1 where the target has no bool
    tensors).  ``additive``: a boolean standing for the float attention mask ``where(name,
    -inf, 0)`` (what ``zeros_like(m).masked_fill(m, -inf)`` builds)."""
    name: str
    shape: tuple
    dtype: DType
    additive: bool = False
    boolean: bool = False

    @property
    def rank(self):
        return len(self.shape)


def is_act(v):
    """True for the values computed from the graph inputs (QT or IntT)."""
    return isinstance(v, (QT, IntT))


def like(x, name, shape):
    """A value of ``x``'s kind (scale, dtype, meaning) held by TOSA tensor ``name``."""
    return replace(x, name=name, shape=tuple(int(d) for d in shape))


class Unsupported(Exception):
    """Raised by a lowering for a configuration it cannot lower (the emitter adds the node)."""


class Fake:
    """A stand-in for an fx node: an internal value of a composite op with its own
    calibration activations (its range and, where needed, float values)."""

    def __init__(self, name, acts=(), shape=None, args=()):
        self.name = name
        self.acts = list(acts) if not isinstance(acts, float) else []
        self.meta = {"val": torch.empty(shape)} if shape is not None else {}
        self.args = list(args)


def quantize_const(em, c, scale, zp):
    """Float constant ``c`` as codes of an activation (``scale``, ``zp``): int8 codes span
    -128..127, int16 ones the symmetric -32767..32767."""
    lo, hi = (-128, 127) if em.adt == DType.INT8 else (-em.qmax, em.qmax)
    return np.clip(np.round(np.asarray(c, np.float64) / scale) + zp, lo, hi)


def common_qparams(em, qts):
    """(scale, zp) holding every range of ``qts`` (QTs of the activation dtype): their own when
    they share one; int16: the largest scale; int8: the union of their ranges."""
    if len({(q.scale, q.zp) for q in qts}) == 1:
        return qts[0].scale, qts[0].zp
    if em.adt != DType.INT8:
        return max(q.scale for q in qts), 0
    lo = min((-128 - q.zp) * q.scale for q in qts)
    hi = max((127 - q.zp) * q.scale for q in qts)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = (hi - lo) / 255
    return s, int(np.clip(round(-128 - lo / s), -128, 127))


def numel(s):
    return int(np.prod(s, dtype=np.int64)) if len(s) else 1


def f64(x):
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


def norm_dims(dim, rank):
    """torch's ``dim`` argument (None, int, list) as sorted non-negative axes."""
    if dim is None:
        return list(range(rank))
    if isinstance(dim, int):
        dim = [dim]
    if len(dim) == 0:
        return list(range(rank))
    return sorted(d % rank for d in dim)


def ntuple(v, n):
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    if len(v) == 1:
        return v * n
    return v


def flatten(v):
    if isinstance(v, (list, tuple)):
        for x in v:
            yield from flatten(x)
    else:
        yield v


def bind(target, args, kwargs):
    """The arguments of an ATen call by schema name (defaults filled in)."""
    schema = getattr(target, "_schema", None)
    if schema is None:
        return dict(enumerate(args))
    out = {}
    for i, a in enumerate(schema.arguments):
        if i < len(args):
            out[a.name] = args[i]
        elif a.name in kwargs:
            out[a.name] = kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
        else:
            out[a.name] = None
    return out


def fit_padding(size, k, s, d, lo, hi):
    """(pad_lo, pad_hi, cut): torch's padding made exact for TOSA, whose output size must
    divide evenly; ``cut`` trailing input elements that no window reaches are dropped."""
    num = size - 1 + lo + hi - (k - 1) * d
    if num < 0:
        raise Unsupported("kernel larger than the padded input")
    r = num % s
    t = min(r, hi)
    return lo, hi - t, r - t
