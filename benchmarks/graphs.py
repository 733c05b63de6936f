"""Benchmark graphs, built with tosaint's GraphBuilder (deterministic: fixed seeds).

Every ``make_<case>()`` returns a :class:`Case`: the graph, its inputs (graph-input order) and
the number of multiply-accumulates (for GMAC/s).  All graphs end in int8/int16/int32 outputs
(the reference model's python binding cannot return int48).

The conformer-like block is an a16w8 graph in the shape ExecuTorch's Arm backend emits for a
quantized Conformer layer: int16 activations, int8 weights, int48 convolution/matmul
accumulators followed by RESCALE, LayerNorm and softmax decomposed into REDUCE_SUM / SUB / MUL /
RESCALE with TABLE for rsqrt, exp and the reciprocal, GELU and sigmoid as TABLE, linear layers
as 1x1 CONV2D on [1,T,1,D], attention as MATMUL, the convolution module's depthwise conv as
DEPTHWISE_CONV2D over time, residual ADDs in int32.  The scales are chosen so that no REQUIRE of
the spec can fail (no int32 overflow, apply_scale value ranges respected, TABLE slopes fit
int16): the graph is valid and both interpreters must agree bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tosaint import DType
from tosaint.builder import GraphBuilder
from tosaint.quant import multiplier, multipliers

I8, I16, I32, I48 = DType.INT8, DType.INT16, DType.INT32, DType.INT48


@dataclass
class Case:
    name: str
    graph: object
    inputs: list
    macs: int = 0
    note: str = ""
    #: sizes in bytes of graph inputs + constants (weights) + graph outputs
    io_bytes: int = 0
    ops: dict = field(default_factory=dict)
    #: bytes of the largest tensor computed inside the graph (int48 is held as int64)
    largest_intermediate: int = 0


# ---- quantisation helpers (multiplier/shift from tosaint.quant, exact rational rounding) ------
def rescale(b, x, scale, out=I16):
    """RESCALE by ``scale``: scale16 for int48 input (the only form TOSA allows), else scale32."""
    m, s = multiplier(scale, scale32=b.dtype(x) != I48)
    return b.rescale(x, m, s, out)


def rescale_per_channel(b, x, scales, out=I16):
    ms, ss = multipliers(list(scales), scale32=b.dtype(x) != I48)
    return b.rescale(x, ms, ss, out)


def table16(f):
    """A 513-entry int16 TABLE for f evaluated at the int16 inputs -32768, -32640, ..., 32768."""
    xs = np.arange(-256, 257) * 128
    t = np.clip(np.round([f(float(v)) for v in xs]), -32768, 32767).astype(np.int64)
    d = np.diff(t)
    assert np.all(np.abs(d) <= 32767), "TABLE slope must fit int16"
    return t


def _finish(name, b, inputs, macs, note=""):
    g = b.build()
    io = sum(a.nbytes for a in inputs)
    for t in g.main.tensors.values():
        if t.data is not None:
            io += np.asarray(t.data).nbytes
    for n in g.outputs:
        t = g.main.tensors[n]
        io += int(np.prod(t.shape)) * np.dtype({I8: np.int8, I16: np.int16, I32: np.int32}
                                               .get(t.dtype, np.int64)).itemsize
    case = Case(name, g, inputs, macs, note, io, g.op_counts())
    store = {I8: 1, I16: 2, I32: 4, DType.BOOL: 1}
    case.largest_intermediate = max(
        (int(np.prod(t.shape)) * store.get(t.dtype, 8) for n, t in g.main.tensors.items()
         if t.data is None and n not in g.inputs and n not in g.outputs), default=0)
    return case


def _rand16(rng, shape, sigma=3000):
    return np.clip(np.round(rng.normal(0, sigma, shape)), -32768, 32767).astype(np.int16)


# ---- single-op cases ---------------------------------------------------------------------------
def make_conv2d_a16w8():
    rng = np.random.default_rng(1)
    b = GraphBuilder()
    x = b.input((1, 56, 56, 64), I16, name="x")
    w = b.const(rng.integers(-127, 128, (64, 3, 3, 64)), I8)
    bias = b.const(rng.integers(-50000, 50000, 64), I48)
    y = b.conv2d(x, w, bias, pad=1)
    y = rescale_per_channel(b, y, rng.uniform(0.5, 1.0, 64) / (24 * 73))
    b.output(y)
    return _finish("conv2d_a16w8", b, [_rand16(rng, (1, 56, 56, 64))], 56 * 56 * 64 * 9 * 64,
                   "CONV2D i16xi8->i48 3x3 64->64 pad 1 + RESCALE->i16, 1x56x56x64")


def make_conv2d_a8w8():
    rng = np.random.default_rng(2)
    b = GraphBuilder()
    x = b.input((1, 56, 56, 64), I8, name="x")
    w = b.const(rng.integers(-127, 128, (64, 3, 3, 64)), I8)
    bias = b.const(rng.integers(-5000, 5000, 64), I32)
    y = b.conv2d(x, w, bias, pad=1, input_zp=-7, acc_type=I32)
    ms, ss = multipliers(list(rng.uniform(0.5, 1.0, 64) / (24 * 73 * 2)))
    y = b.rescale(y, ms, ss, I8, output_zp=3)
    b.output(y)
    xv = rng.integers(-128, 128, (1, 56, 56, 64)).astype(np.int8)
    return _finish("conv2d_a8w8", b, [xv], 56 * 56 * 64 * 9 * 64,
                   "CONV2D i8xi8->i32 (input_zp -7) 3x3 64->64 pad 1 + RESCALE->i8")


def make_depthwise_a16w8():
    rng = np.random.default_rng(3)
    b = GraphBuilder()
    x = b.input((1, 112, 112, 128), I16, name="x")
    w = b.const(rng.integers(-127, 128, (3, 3, 128, 1)), I8)
    bias = b.const(rng.integers(-50000, 50000, 128), I48)
    y = b.depthwise_conv2d(x, w, bias, pad=1)
    y = rescale_per_channel(b, y, rng.uniform(0.5, 1.0, 128) / (3 * 73))
    b.output(y)
    return _finish("depthwise_a16w8", b, [_rand16(rng, (1, 112, 112, 128))],
                   112 * 112 * 128 * 9, "DEPTHWISE_CONV2D i16xi8->i48 3x3 pad 1 + RESCALE->i16")


def make_matmul_a16():
    rng = np.random.default_rng(4)
    b = GraphBuilder()
    a = b.input((1, 512, 512), I16, name="a")
    bb = b.input((1, 512, 512), I16, name="b")
    y = b.matmul(a, bb)
    y = rescale(b, y, 1.0 / (3000 * 22.6))
    b.output(y)
    return _finish("matmul_a16", b, [_rand16(rng, (1, 512, 512)), _rand16(rng, (1, 512, 512))],
                   512 ** 3, "MATMUL i16xi16->i48 1x512x512 @ 1x512x512 + RESCALE->i16")


def make_table_i16():
    rng = np.random.default_rng(5)
    b = GraphBuilder()
    x = b.input((1, 56, 56, 64), I16, name="x")
    y = b.table(x, table16(lambda v: 32767 / (1 + math.exp(-v / 4096))))
    b.output(y)
    return _finish("table_i16", b, [_rand16(rng, (1, 56, 56, 64), 8000)], 0,
                   "TABLE i16->i32 (sigmoid, 513 entries) on 1x56x56x64")


def make_avg_pool_i16():
    rng = np.random.default_rng(6)
    b = GraphBuilder()
    x = b.input((1, 56, 56, 64), I16, name="x")
    b.output(b.avg_pool2d(x, 3, stride=1, pad=1))
    return _finish("avg_pool2d_i16", b, [_rand16(rng, (1, 56, 56, 64), 10000)], 0,
                   "AVG_POOL2D i16 3x3 stride 1 pad 1 on 1x56x56x64")


def make_tiny_linear():
    rng = np.random.default_rng(7)
    b = GraphBuilder()
    x = b.input((1, 1, 1, 16), I16, name="x")
    w = b.const(rng.integers(-127, 128, (16, 1, 1, 16)), I8)
    bias = b.const(rng.integers(-1000, 1000, 16), I48)
    y = b.conv2d(x, w, bias)
    b.output(rescale(b, y, 1 / (4 * 73)))
    return _finish("tiny_linear", b, [_rand16(rng, (1, 1, 1, 16))], 16 * 16,
                   "1x1 CONV2D 16->16 + RESCALE (per-call overhead)")


# ---- a conformer-like a16w8 block --------------------------------------------------------------
class _Conformer:
    """Integer building blocks; activations are int16 with ~4096 per unit."""

    def __init__(self, b, rng, T, D):
        self.b, self.rng, self.T, self.D = b, rng, T, D
        self.macs = 0

    def linear(self, x, out_features):
        b, T = self.b, self.T
        d = b.shape(x)[-1]
        r = b.reshape(x, (1, T, 1, d))
        w = b.const(self.rng.integers(-127, 128, (out_features, 1, 1, d)), I8)
        bias = b.const(self.rng.integers(-20000, 20000, out_features), I48)
        y = b.conv2d(r, w, bias)
        y = rescale_per_channel(b, y, self.rng.uniform(0.7, 1.0, out_features)
                                / (math.sqrt(d) * 73))
        self.macs += T * d * out_features
        return b.reshape(y, (1, T, out_features))

    def layer_norm(self, x):
        b, D = self.b, self.b.shape(x)[-1]
        x32 = rescale(b, x, 1.0, I32)
        mean = rescale(b, b.reduce_sum(x32, 2), 1.0 / D, I32)
        c = b.sub(x32, mean)                                   # |c| <= 65535
        c16 = rescale(b, c, 0.5)                               # for the product
        cs = rescale(b, c, 1 / 64)                             # for the variance
        var = rescale(b, b.reduce_sum(b.mul(cs, cs), 2), 1.0 / D)
        k = 32767 * 64.0
        rs = b.table(var, table16(lambda v: 32767 if v <= 0 else k / math.sqrt(v * 4096)))
        rs16 = rescale(b, rs, 1 / 128)
        n16 = rescale(b, b.mul(c16, rs16), 2.0 ** -8)
        gamma = b.const(self.rng.integers(12000, 20000, (1, 1, D)), I16)
        beta = b.const(self.rng.integers(-(1 << 20), 1 << 20, (1, 1, D)), I32)
        g = b.add(b.mul(n16, gamma), beta)
        return rescale(b, g, 2.0 ** -14)

    def residual(self, x, y, weight=1.0):
        b = self.b
        s = b.add(rescale(self.b, x, 1.0, I32), rescale(b, y, weight, I32))
        return rescale(b, s, 1.0)

    def gelu(self, x):
        b = self.b

        def f(v):
            z = v / 4096
            return 4096 * 0.5 * z * (1 + math.erf(z / math.sqrt(2)))
        return rescale(b, b.table(x, table16(f)), 1 / 128)

    def sigmoid(self, x):
        b = self.b
        return rescale(b, b.table(x, table16(lambda v: 32767 / (1 + math.exp(-v / 4096)))),
                       1 / 128)

    def feed_forward(self, x):
        y = self.layer_norm(x)
        y = self.linear(y, 4 * self.D)
        y = self.gelu(y)
        y = self.linear(y, self.D)
        return self.residual(x, y, 0.5)

    def softmax(self, s):
        b = self.b
        mx = b.reduce_max(s, 2)
        d = b.sub(rescale(b, s, 1.0, I32), rescale(b, mx, 1.0, I32))
        d16 = rescale(b, d, 0.5)
        e = b.table(d16, table16(lambda v: 32767 * math.exp(min(v, 0) / 1024)))
        ssum = rescale(b, b.reduce_sum(e, 2), 2.0 ** -13)
        r = b.table(ssum, table16(lambda v: min(32767, 2.0 ** 24 / max(v, 512))))
        p = b.mul(rescale(b, e, 1 / 128), rescale(b, r, 1 / 128))
        return rescale(b, p, 2.0 ** -8)

    def attention(self, x, heads):
        b, T, D = self.b, self.T, self.D
        dh = D // heads
        y = self.layer_norm(x)

        def split(t, perm):
            return b.transpose(b.reshape(t, (T, heads, dh)), perm)
        q = split(self.linear(y, D), (1, 0, 2))                # [H, T, dh]
        k = split(self.linear(y, D), (1, 2, 0))                # [H, dh, T]
        v = split(self.linear(y, D), (1, 0, 2))                # [H, T, dh]
        s = rescale(b, b.matmul(q, k), 1.0 / (4096 * 4096 / 2048 * math.sqrt(dh)))
        p = self.softmax(s)
        o = rescale(b, b.matmul(p, v), 2.0 ** -15)             # [H, T, dh]
        self.macs += 2 * heads * T * T * dh
        o = b.reshape(b.transpose(o, (1, 0, 2)), (1, T, D))
        return self.residual(x, self.linear(o, D))

    def conv_module(self, x, kernel=15):
        b, T, D = self.b, self.T, self.D
        y = self.layer_norm(x)
        y = self.linear(y, 2 * D)
        a = b.slice(y, (0, 0, 0), (1, T, D))
        g = b.slice(y, (0, 0, D), (1, T, D))
        y = rescale(b, b.mul(a, self.sigmoid(g)), 2.0 ** -15)   # GLU
        r = b.reshape(y, (1, T, 1, D))
        w = b.const(self.rng.integers(-127, 128, (kernel, 1, D, 1)), I8)
        bias = b.const(self.rng.integers(-20000, 20000, D), I48)
        y = b.depthwise_conv2d(r, w, bias, pad=(kernel // 2, kernel // 2, 0, 0))
        self.macs += T * D * kernel
        y = rescale_per_channel(b, y, self.rng.uniform(0.7, 1.0, D) / (math.sqrt(kernel) * 73))
        y = b.reshape(y, (1, T, D))
        y = rescale(b, b.mul(y, self.sigmoid(y)), 2.0 ** -15)   # swish
        y = self.linear(y, D)
        return self.residual(x, y)

    def block(self, x, heads):
        x = self.feed_forward(x)
        x = self.attention(x, heads)
        x = self.conv_module(x)
        x = self.feed_forward(x)
        return self.layer_norm(x)


def make_conformer(blocks=2, T=64, D=144, heads=4):
    rng = np.random.default_rng(8)
    b = GraphBuilder()
    x = b.input((1, T, D), I16, name="x")
    c = _Conformer(b, rng, T, D)
    y = x
    for _ in range(blocks):
        y = c.block(y, heads)
    b.output(y)
    case = _finish("conformer_a16w8", b, [_rand16(rng, (1, T, D))], c.macs)
    n = sum(case.ops.values())
    nc = n - case.ops.get("CONST", 0) - case.ops.get("CONST_SHAPE", 0)
    case.note = (f"{blocks} conformer blocks T={T} D={D} heads={heads}: {nc} ops "
                 f"(+{n - nc} CONST/CONST_SHAPE)")
    return case


def make_executorch_conformer():
    """The conformer-like block exported by ExecuTorch's Arm backend (a16w8) that the tests
    keep in tests/data/executorch/conformer (a real ExecuTorch graph, small shapes)."""
    import json
    import os

    import tosaint
    d = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                     "data", "executorch", "conformer")
    g = tosaint.load(os.path.join(d, "model.tosa"))
    with open(os.path.join(d, "meta.json")) as f:
        meta = json.load(f)
    inputs = [np.load(os.path.join(d, i["file"])) for i in meta["inputs"]]
    case = Case("et_conformer", g, inputs, 0)
    case.ops = g.op_counts()
    n = sum(case.ops.values())
    nc = n - case.ops.get("CONST", 0) - case.ops.get("CONST_SHAPE", 0)
    shape = "x".join(str(v) for v in meta["inputs"][0]["shape"])
    case.note = (f"ExecuTorch {meta['versions']['executorch']} a16w8 export, input {shape}: "
                 f"{nc} ops (+{n - nc} CONST/CONST_SHAPE)")
    return case


CASES = {
    "conv2d_a16w8": make_conv2d_a16w8,
    "conv2d_a8w8": make_conv2d_a8w8,
    "depthwise_a16w8": make_depthwise_a16w8,
    "matmul_a16": make_matmul_a16,
    "table_i16": make_table_i16,
    "avg_pool2d_i16": make_avg_pool_i16,
    "conformer_a16w8": make_conformer,
    "et_conformer": make_executorch_conformer,
    "tiny_linear": make_tiny_linear,
}
