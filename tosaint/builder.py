"""Build TOSA graphs op by op.

    b = GraphBuilder()
    x = b.input((1, 8, 8, 16), DType.INT16, name="x")
    w = b.const(weights, DType.INT8)
    bias = b.const(np.zeros(32, np.int64), DType.INT48)
    y = b.conv2d(x, w, bias, pad=(1, 1, 1, 1))                 # int48
    y = b.rescale(y, multiplier=[...], shift=[...], out_dtype=DType.INT16, scale32=False)
    b.output(y)
    graph = b.build()

Every method returns the name of the tensor it creates.  ``op`` adds any operator with an
explicit output shape and dtype; the named helpers infer shapes the way the spec defines them
and create the compile-time-constant operands (zero points, multipliers, shift, shape values).
"""
from __future__ import annotations

import numpy as np

from .dtypes import STORAGE
from .graph import Block, Graph, Operator, Region, Tensor, Version
from .schema.definition import ATTRIBUTES, DType, Op, ResizeMode, RoundingMode

_ACC = {DType.INT8: DType.INT32, DType.INT16: DType.INT48}


def default_attrs(op):
    """Every field of ``op``'s attribute table at its schema default."""
    _, fields = ATTRIBUTES[Op(op)]
    out = {}
    for name, t in fields:
        out[name] = (() if t == "[int32]" else None if t in ("[ubyte]", "string") else
                     False if t == "bool" else 0)
    return out


def _pair(v, n):
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    assert len(v) == n, f"expected {n} values, got {v}"
    return v


class GraphBuilder:
    def __init__(self, version=Version(1, 0, 0, False)):
        self.block = Block(name="main")
        self.version = Version(*version)
        self._n = 0

    # ---- basics ------------------------------------------------------------------------
    def _name(self, prefix):
        self._n += 1
        return f"{prefix}_{self._n}"

    def _add_tensor(self, name, shape, dtype, data=None):
        if name in self.block.tensors:
            raise ValueError(f"tensor {name!r} exists already")
        self.block.tensors[name] = Tensor(name, tuple(int(d) for d in shape), DType(dtype), data)
        return name

    def shape(self, name):
        return self.block.tensors[name].shape

    def dtype(self, name):
        return self.block.tensors[name].dtype

    def input(self, shape, dtype, name=None):
        name = name or self._name("input")
        self._add_tensor(name, shape, dtype)
        self.block.inputs.append(name)
        return name

    def output(self, *names):
        for n in names:
            self.block.outputs.append(n)
        return names[0] if len(names) == 1 else names

    def const(self, value, dtype, name=None, shape=None):
        """A CONST operator and its tensor; ``value`` is cast to the dtype's storage."""
        dtype = DType(dtype)
        arr = np.asarray(value)
        if shape is not None:
            arr = arr.reshape(shape)
        arr = np.array(arr, dtype=STORAGE[dtype], order="C")  # keeps rank 0
        name = name or self._name("const")
        self._add_tensor(name, arr.shape, dtype, arr)
        self.block.operators.append(Operator(Op.CONST, [], [name], default_attrs(Op.CONST)))
        return name

    def const_shape(self, values, name=None):
        arr = np.asarray(values, np.int64).reshape(-1)
        name = name or self._name("shape")
        self._add_tensor(name, arr.shape, DType.SHAPE, arr)
        self.block.operators.append(Operator(Op.CONST_SHAPE, [], [name],
                                             default_attrs(Op.CONST_SHAPE)))
        return name

    def zero_point(self, value, dtype):
        return self.const(np.array([value]), dtype)

    def op(self, op, inputs, shape, dtype, attrs=None, name=None, location=None):
        """Add ``op`` with one output of ``shape``/``dtype``; returns the output name."""
        return self.op_multi(op, inputs, [(shape, dtype)], attrs, [name] if name else None,
                             location)[0]

    def op_multi(self, op, inputs, outputs, attrs=None, names=None, location=None):
        op = Op(op)
        a = default_attrs(op)
        a.update(attrs or {})
        unknown = set(a) - {f for f, _ in ATTRIBUTES[op][1]}
        if unknown:
            raise ValueError(f"{op.name} has no attribute(s) {sorted(unknown)}")
        names = names or [self._name(op.name.lower()) for _ in outputs]
        for n, (shape, dtype) in zip(names, outputs):
            self._add_tensor(n, shape, dtype)
        self.block.operators.append(Operator(op, list(inputs), list(names), a, location))
        return names

    def build(self) -> Graph:
        return Graph(regions=[Region("main", [self.block])], version=self.version)

    # ---- tensor operators ----------------------------------------------------------------
    def conv2d(self, x, w, bias, *, pad=0, stride=1, dilation=1, input_zp=0, weight_zp=0,
               acc_type=None, name=None):
        n, ih, iw, _ = self.shape(x)
        oc, kh, kw, _ = self.shape(w)
        pad, stride, dilation = _pair(pad, 4), _pair(stride, 2), _pair(dilation, 2)
        oh = (ih - 1 + pad[0] + pad[1] - (kh - 1) * dilation[0]) // stride[0] + 1
        ow = (iw - 1 + pad[2] + pad[3] - (kw - 1) * dilation[1]) // stride[1] + 1
        acc = DType(acc_type or _ACC[self.dtype(x)])
        return self.op(Op.CONV2D, [x, w, bias, self.zero_point(input_zp, self.dtype(x)),
                                   self.zero_point(weight_zp, self.dtype(w))],
                       (n, oh, ow, oc), acc, dict(pad=pad, stride=stride, dilation=dilation,
                                                  acc_type=acc), name)

    def depthwise_conv2d(self, x, w, bias, *, pad=0, stride=1, dilation=1, input_zp=0,
                         weight_zp=0, acc_type=None, name=None):
        n, ih, iw, c = self.shape(x)
        kh, kw, _, m = self.shape(w)
        pad, stride, dilation = _pair(pad, 4), _pair(stride, 2), _pair(dilation, 2)
        oh = (ih - 1 + pad[0] + pad[1] - (kh - 1) * dilation[0]) // stride[0] + 1
        ow = (iw - 1 + pad[2] + pad[3] - (kw - 1) * dilation[1]) // stride[1] + 1
        acc = DType(acc_type or _ACC[self.dtype(x)])
        return self.op(Op.DEPTHWISE_CONV2D, [x, w, bias,
                                             self.zero_point(input_zp, self.dtype(x)),
                                             self.zero_point(weight_zp, self.dtype(w))],
                       (n, oh, ow, c * m), acc, dict(pad=pad, stride=stride, dilation=dilation,
                                                     acc_type=acc), name)

    def transpose_conv2d(self, x, w, bias, *, out_pad=0, stride=1, input_zp=0, weight_zp=0,
                         acc_type=None, name=None):
        n, ih, iw, _ = self.shape(x)
        oc, kh, kw, _ = self.shape(w)
        out_pad, stride = _pair(out_pad, 4), _pair(stride, 2)
        oh = (ih - 1) * stride[0] + out_pad[0] + out_pad[1] + kh
        ow = (iw - 1) * stride[1] + out_pad[2] + out_pad[3] + kw
        acc = DType(acc_type or _ACC[self.dtype(x)])
        return self.op(Op.TRANSPOSE_CONV2D, [x, w, bias,
                                             self.zero_point(input_zp, self.dtype(x)),
                                             self.zero_point(weight_zp, self.dtype(w))],
                       (n, oh, ow, oc), acc, dict(out_pad=out_pad, stride=stride, acc_type=acc),
                       name)

    def matmul(self, a, b, *, a_zp=0, b_zp=0, name=None):
        n, h, _ = self.shape(a)
        _, _, w = self.shape(b)
        out = _ACC[self.dtype(a)]
        return self.op(Op.MATMUL, [a, b, self.zero_point(a_zp, self.dtype(a)),
                                   self.zero_point(b_zp, self.dtype(b))], (n, h, w), out, {},
                       name)

    def _pool_shape(self, x, kernel, stride, pad):
        n, ih, iw, c = self.shape(x)
        oh = (ih + pad[0] + pad[1] - kernel[0]) // stride[0] + 1
        ow = (iw + pad[2] + pad[3] - kernel[1]) // stride[1] + 1
        return (n, oh, ow, c)

    def avg_pool2d(self, x, kernel, *, stride=1, pad=0, input_zp=0, output_zp=0, name=None):
        kernel, stride, pad = _pair(kernel, 2), _pair(stride, 2), _pair(pad, 4)
        dt = self.dtype(x)
        return self.op(Op.AVG_POOL2D, [x, self.zero_point(input_zp, dt),
                                       self.zero_point(output_zp, dt)],
                       self._pool_shape(x, kernel, stride, pad), dt,
                       dict(kernel=kernel, stride=stride, pad=pad, acc_type=DType.INT32), name)

    def max_pool2d(self, x, kernel, *, stride=1, pad=0, name=None):
        kernel, stride, pad = _pair(kernel, 2), _pair(stride, 2), _pair(pad, 4)
        return self.op(Op.MAX_POOL2D, [x], self._pool_shape(x, kernel, stride, pad),
                       self.dtype(x), dict(kernel=kernel, stride=stride, pad=pad, nan_mode=1),
                       name)

    # ---- type conversion -----------------------------------------------------------------
    def rescale(self, x, multiplier, shift, out_dtype, *, input_zp=0, output_zp=0, scale32=None,
                rounding_mode=RoundingMode.SINGLE_ROUND, per_channel=None, input_unsigned=False,
                output_unsigned=False, name=None):
        """RESCALE; ``multiplier``/``shift`` are a scalar or one value per last-axis channel.

        ``scale32`` defaults to False for int48 inputs (scale16 is the only legal form) and
        True otherwise.
        """
        in_dt = self.dtype(x)
        if scale32 is None:
            scale32 = in_dt != DType.INT48
        m = np.atleast_1d(np.asarray(multiplier, np.int64))
        s = np.atleast_1d(np.asarray(shift, np.int64))
        if per_channel is None:
            per_channel = m.size > 1
        zp_in_t = DType.INT8 if in_dt == DType.INT8 else in_dt
        zp_out_t = DType(out_dtype)
        return self.op(Op.RESCALE, [x, self.const(m, DType.INT32 if scale32 else DType.INT16),
                                    self.const(s, DType.INT8), self.zero_point(input_zp, zp_in_t),
                                    self.zero_point(output_zp, zp_out_t)],
                       self.shape(x), out_dtype,
                       dict(scale32=bool(scale32), rounding_mode=RoundingMode(rounding_mode),
                            per_channel=bool(per_channel), input_unsigned=bool(input_unsigned),
                            output_unsigned=bool(output_unsigned)), name)

    def cast(self, x, dtype, name=None):
        return self.op(Op.CAST, [x], self.shape(x), dtype, {}, name)

    def table(self, x, table, name=None):
        dt = self.dtype(x)
        out = DType.INT32 if dt == DType.INT16 else dt
        return self.op(Op.TABLE, [x, self.const(np.asarray(table), dt)], self.shape(x), out, {},
                       name)

    # ---- elementwise ---------------------------------------------------------------------
    def _broadcast(self, *names):
        shapes = [self.shape(n) for n in names]
        return tuple(max(d) if 1 in d and max(d) != 1 else d[0] if len(set(d)) == 1 else
                     max(d) for d in zip(*shapes))

    def binary(self, op, a, b, out_dtype=None, attrs=None, name=None):
        return self.op(op, [a, b], self._broadcast(a, b), out_dtype or self.dtype(a), attrs,
                       name)

    def add(self, a, b, name=None):
        return self.binary(Op.ADD, a, b, name=name)

    def sub(self, a, b, name=None):
        return self.binary(Op.SUB, a, b, name=name)

    def maximum(self, a, b, name=None):
        return self.binary(Op.MAXIMUM, a, b, attrs=dict(nan_mode=1), name=name)

    def minimum(self, a, b, name=None):
        return self.binary(Op.MINIMUM, a, b, attrs=dict(nan_mode=1), name=name)

    def mul(self, a, b, shift=0, name=None):
        return self.op(Op.MUL, [a, b, self.const(np.array([shift]), DType.INT8)],
                       self._broadcast(a, b), DType.INT32, {}, name)

    def clamp(self, x, min_val, max_val, name=None):
        st = STORAGE[self.dtype(x)]
        return self.op(Op.CLAMP, [x], self.shape(x), self.dtype(x),
                       dict(min_val=np.array([min_val], st).tobytes(),
                            max_val=np.array([max_val], st).tobytes(), nan_mode=1), name)

    def select(self, cond, a, b, name=None):
        return self.op(Op.SELECT, [cond, a, b], self._broadcast(cond, a, b), self.dtype(a), {},
                       name)

    # ---- reductions ----------------------------------------------------------------------
    def _reduce(self, op, x, axis, attrs=None, name=None):
        shape = list(self.shape(x))
        shape[axis] = 1
        a = dict(axis=axis)
        a.update(attrs or {})
        return self.op(op, [x], shape, self.dtype(x), a, name)

    def reduce_sum(self, x, axis, name=None):
        return self._reduce(Op.REDUCE_SUM, x, axis, name=name)

    def reduce_max(self, x, axis, name=None):
        return self._reduce(Op.REDUCE_MAX, x, axis, dict(nan_mode=1), name)

    def reduce_min(self, x, axis, name=None):
        return self._reduce(Op.REDUCE_MIN, x, axis, dict(nan_mode=1), name)

    # ---- data layout ---------------------------------------------------------------------
    def reshape(self, x, shape, name=None):
        return self.op(Op.RESHAPE, [x, self.const_shape(shape)], shape, self.dtype(x), {}, name)

    def transpose(self, x, perms, name=None):
        s = self.shape(x)
        return self.op(Op.TRANSPOSE, [x], [s[p] for p in perms], self.dtype(x),
                       dict(perms=tuple(perms)), name)

    def pad(self, x, padding, pad_const=0, name=None):
        """``padding``: (before, after) pairs per axis, flattened or nested."""
        p = np.asarray(padding, np.int64).reshape(-1)
        shape = [d + p[2 * i] + p[2 * i + 1] for i, d in enumerate(self.shape(x))]
        return self.op(Op.PAD, [x, self.const_shape(p),
                                self.const(np.array([pad_const]), self.dtype(x))],
                       shape, self.dtype(x), {}, name)

    def slice(self, x, start, size, name=None):
        return self.op(Op.SLICE, [x, self.const_shape(start), self.const_shape(size)], size,
                       self.dtype(x), {}, name)

    def concat(self, xs, axis, name=None):
        shape = list(self.shape(xs[0]))
        shape[axis] = sum(self.shape(x)[axis] for x in xs)
        return self.op(Op.CONCAT, list(xs), shape, self.dtype(xs[0]), dict(axis=axis), name)

    def tile(self, x, multiples, name=None):
        shape = [d * m for d, m in zip(self.shape(x), multiples)]
        return self.op(Op.TILE, [x, self.const_shape(multiples)], shape, self.dtype(x), {}, name)

    def identity(self, x, name=None):
        return self.op(Op.IDENTITY, [x], self.shape(x), self.dtype(x), {}, name)

    def resize(self, x, scale, offset, border, mode=ResizeMode.NEAREST, out_dtype=None,
               name=None):
        """RESIZE with ``scale`` (y_n, y_d, x_n, x_d), ``offset`` (y, x), ``border`` (y, x)."""
        n, ih, iw, c = self.shape(x)
        oh = ((ih - 1) * scale[0] - offset[0] + border[0]) // scale[1] + 1
        ow = ((iw - 1) * scale[2] - offset[1] + border[1]) // scale[3] + 1
        dt = self.dtype(x)
        if out_dtype is None:
            out_dtype = dt if mode == ResizeMode.NEAREST else _ACC[dt]
        return self.op(Op.RESIZE, [x, self.const_shape(scale), self.const_shape(offset),
                                   self.const_shape(border)], (n, oh, ow, c), out_dtype,
                       dict(mode=ResizeMode(mode)), name)

    def conv3d(self, x, w, bias, *, pad=0, stride=1, dilation=1, input_zp=0, weight_zp=0,
               acc_type=None, name=None):
        """CONV3D: x [N,ID,IH,IW,IC], w [OC,KD,KH,KW,IC]; pad (d0, d1, top, bottom, left,
        right), stride and dilation (d, y, x)."""
        n, id_, ih, iw, _ = self.shape(x)
        oc, kd, kh, kw, _ = self.shape(w)
        pad, stride, dilation = _pair(pad, 6), _pair(stride, 3), _pair(dilation, 3)
        od = (id_ - 1 + pad[0] + pad[1] - (kd - 1) * dilation[0]) // stride[0] + 1
        oh = (ih - 1 + pad[2] + pad[3] - (kh - 1) * dilation[1]) // stride[1] + 1
        ow = (iw - 1 + pad[4] + pad[5] - (kw - 1) * dilation[2]) // stride[2] + 1
        acc = DType(acc_type or _ACC[self.dtype(x)])
        return self.op(Op.CONV3D, [x, w, bias, self.zero_point(input_zp, self.dtype(x)),
                                   self.zero_point(weight_zp, self.dtype(w))],
                       (n, od, oh, ow, oc), acc, dict(pad=pad, stride=stride,
                                                      dilation=dilation, acc_type=acc), name)
