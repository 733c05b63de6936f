"""Preflight: what an Ethos-U target cannot run, named op by op, BEFORE Vela is called.

For TOSA input Vela has no CPU fallback: an operator the NPU cannot run is a compile error,
reported by Vela as one line ("Non-passthrough operation (MatMul) could not run on NPU")
without the tensor, and only for the first offender.  :func:`check` lists them all.

The rules are the limits that ethos-u-vela 5.2.0 really enforces, measured by compiling one
violating graph per rule and one just inside it (tests/test_vela.py repeats the measurement),
and refined on the 2721 graphs of the TOSA conformance suite (U55-128: 2714 of 2716 verdicts
agree, the 2 others are findings for graphs Vela accepts; U85-256: 2698 of 2698).
Vela's ``SUPPORTED_OPS.md`` lists more U55/U65 limits than 5.2.0 enforces; these are NOT
findings because Vela decomposes or emulates them (checked): int16 TABLE (three int16 LUTs +
MUL + ADD, exact), stride > 3 without padding or dilation (unrolled), dilation > 2, kernel
> 4096 elements or kernel_y > 64, sum of |weights| > 127*65536, ARITHMETIC_RIGHT_SHIFT with
round=false, REVERSE of int32, CAST down from int32.

One finding is preflight-only: a CONV bias outside signed int40 on U55/U65.  Vela 5.2.0
accepts it and silently keeps only the low 40 bits (the weight stream of bias 2^40 equals that
of bias 0), so the compiled network would compute something else.

RESIZE on U55/U65 follows Vela's LegaliseResize gate (scheduler_decompose.cpp): identity and
1x1-input NEAREST resizes are rewritten away; otherwise NEAREST needs a 2, 4 or 8 upscale with
align-corners or half-pixel-centre parameters; BILINEAR was refused in every configuration
tried (also with the documented following RESCALE), so it is reported.

"Constant" means a tensor with data in the graph (a CONST output); Vela also folds some
operators of constants, which this check does not model except for LOGICAL_LEFT_SHIFT.
Not modelled (left to Vela): other shape limits on axes > 65536, TRANSPOSE shape limits.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..schema.definition import DType, Op

CONV_OPS = (Op.CONV2D, Op.DEPTHWISE_CONV2D, Op.TRANSPOSE_CONV2D, Op.CONV3D)

#: TOSA operators Ethos-U55/U65 cannot run at all (SUPPORTED_OPS.md "Not Supported", all
#: measured on Vela 5.2.0) plus control flow (EXT-CONTROLFLOW is U85-only).
U55_UNSUPPORTED = (Op.BITWISE_AND, Op.BITWISE_OR, Op.BITWISE_XOR, Op.BITWISE_NOT, Op.INTDIV,
                   Op.LOGICAL_AND, Op.LOGICAL_OR, Op.LOGICAL_XOR, Op.LOGICAL_NOT,
                   Op.LOGICAL_RIGHT_SHIFT, Op.SELECT, Op.EQUAL, Op.GREATER, Op.GREATER_EQUAL,
                   Op.REDUCE_ALL, Op.REDUCE_ANY, Op.GATHER, Op.SCATTER, Op.COND_IF,
                   Op.WHILE_LOOP)

INT40_MIN, INT40_MAX = -(1 << 39), (1 << 39) - 1

#: rule id -> one-line description (every rule check() can report)
RULES = {
    "u55.unsupported_op": "operator not supported on Ethos-U55/U65",
    "u55.bool": "bool tensors are not supported on Ethos-U55/U65",
    "u55.int16_matmul": "MATMUL supports only int8 x int8 -> int32 on Ethos-U55/U65",
    "u55.int48_rescale": "RESCALE of an int48 tensor is only supported fused into the int16 "
                         "convolution that produces it",
    "u55.int16_conv_rescale": "an int16 convolution (int48 output) must be followed by exactly "
                              "one RESCALE and nothing else",
    "u55.conv_bias_int40": "convolution bias must fit in signed int40 (Vela truncates it "
                           "silently)",
    "u55.dynamic_weights": "convolution weights and bias must be constant on Ethos-U55/U65",
    "u55.conv3d_kernel_depth": "CONV3D needs kernel depth 1 on Ethos-U55/U65",
    "u55.transpose_conv_stride": "TRANSPOSE_CONV2D stride must be (1,1) or (2,2); (1,2) and "
                                 "(2,1) only when IFM and kernel are 1 wide or 1 high",
    "u55.matmul_axis": "MATMUL needs C and W <= 65536 on Ethos-U55/U65",
    "u55.reduce_sum_axis": "REDUCE_SUM: reduced axis <= 65536 and, off the channel axis, the "
                           "products of the axes before and after it <= 65536",
    "u55.stride": "stride > 3 needs Vela to unroll the kernel, which it can only do for CONV2D "
                  "and pooling without padding or dilation (DEPTHWISE_CONV2D never)",
    "u55.shift_dtype": "ARITHMETIC_RIGHT_SHIFT and LOGICAL_LEFT_SHIFT need int32 on "
                       "Ethos-U55/U65",
    "u55.reduce_minmax_dtype": "REDUCE_MAX/REDUCE_MIN support int8 and int16 only",
    "u55.reverse_axis": "REVERSE along the channel (last) axis is not supported (unless Vela "
                        "reshapes it: rank > 4, or rank 4 with N > 1)",
    "u55.avg_pool_padded_kernel": "AVG_POOL2D with padding needs kernel <= 8x8",
    "u55.argmax": "ARGMAX needs int8 input, the last axis, C <= 127 and unit leading "
                  "dimensions",
    "u55.resize": "RESIZE on Ethos-U55/U65: NEAREST only, 2x/4x/8x upscale with align-corners "
                  "or half-pixel-centre parameters (BILINEAR was refused in every "
                  "configuration measured)",
    "u85.dynamic_weights": "TRANSPOSE_CONV2D, and CONV3D with kernel depth or depth stride > 1, "
                           "need constant weights and bias on Ethos-U85",
}


class Finding(NamedTuple):
    """One thing ``target`` cannot run: the op, its output tensor, the rule id and why."""
    op: str
    tensor: str
    rule: str
    message: str

    def __str__(self):
        return f"{self.op} {self.tensor}: [{self.rule}] {self.message}"


def format_findings(findings):
    return "\n".join(f"  {f}" for f in findings)


def _family(target):
    t = str(target).lower()
    if t.startswith(("ethos-u55", "ethos-u65")):
        return "u55"
    if t.startswith("ethos-u85"):
        return "u85"
    from ..errors import BackendError
    raise BackendError(f"unknown Ethos-U target {target!r}")


class _Ctx:
    """Per-block lookups: tensors, producers, consumers, graph outputs."""

    def __init__(self, block):
        self.block = block
        self.producer = {}
        self.consumers = {}
        for o in block.operators:
            for n in o.outputs:
                self.producer[n] = o
            for n in o.inputs:
                self.consumers.setdefault(n, []).append(o)
        self.outputs = set(block.outputs)

    def t(self, name):
        return self.block.tensors[name]

    def dtype(self, name):
        return DType(self.t(name).dtype)

    def is_const(self, name):
        return self.t(name).data is not None

    def through_identity_down(self, name):
        """Consumers of ``name`` looking through single-use IDENTITY ops; and whether the value
        (or an IDENTITY copy) is a graph output."""
        cons, is_out = [], name in self.outputs
        for c in self.consumers.get(name, []):
            if c.op == Op.IDENTITY:
                sub, o = self.through_identity_down(c.outputs[0])
                cons += sub
                is_out |= o
            else:
                cons.append(c)
        return cons, is_out

    def through_identity_up(self, name):
        p = self.producer.get(name)
        while p is not None and p.op == Op.IDENTITY:
            p = self.producer.get(p.inputs[0])
        return p


def _u55_op(ctx, o, add):
    op = Op(o.op)
    out = o.outputs[0] if o.outputs else "?"
    if op in U55_UNSUPPORTED:
        add(o, "u55.unsupported_op", f"{op.name} is not supported on Ethos-U55/U65")
        return
    if op == Op.CONST_SHAPE:
        return
    bools = [n for n in list(o.inputs) + list(o.outputs)
             if n in ctx.block.tensors and ctx.dtype(n) == DType.BOOL]
    if op == Op.CONST:   # a bool constant matters on its own only as a graph output
        bools = [n for n in bools if n in ctx.outputs]
    if bools:
        add(o, "u55.bool", f"bool tensor {bools[0]!r} (Ethos-U55/U65 have no bool support)")
    if op == Op.MATMUL and ctx.dtype(o.inputs[0]) == DType.INT16:
        add(o, "u55.int16_matmul", "int16 x int16 MATMUL (int48 accumulator) is not supported; "
                                   "only int8 x int8 -> int32 (see tosaint.vela.u55."
                                   "matmul_int16 for an exact int8 decomposition)")
    if op == Op.RESCALE and ctx.dtype(o.inputs[0]) == DType.INT48:
        p = ctx.through_identity_up(o.inputs[0])
        if p is None or p.op not in CONV_OPS + (Op.MATMUL,):
            src = "a graph input" if p is None else f"{Op(p.op).name} {p.outputs[0]}"
            add(o, "u55.int48_rescale", f"RESCALE of int48 tensor {o.inputs[0]!r} produced by "
                                        f"{src}: int48 RESCALE only works fused into an int16 "
                                        "convolution")
    if op in CONV_OPS:
        w, bias = o.inputs[1], o.inputs[2]
        dyn = [n for n in (w, bias) if not ctx.is_const(n)]
        if dyn:
            add(o, "u55.dynamic_weights", f"{'weights' if dyn[0] == w else 'bias'} "
                                          f"{dyn[0]!r} not constant")
        if ctx.dtype(out) == DType.INT48:
            cons, is_out = ctx.through_identity_down(out)
            if is_out or len(cons) != 1 or cons[0].op != Op.RESCALE:
                what = ("it is a graph output" if is_out else "it has no consumer" if not cons
                        else f"its consumers are "
                             f"{', '.join(Op(c.op).name + ' ' + c.outputs[0] for c in cons)}")
                add(o, "u55.int16_conv_rescale", f"int48 output {out!r} must feed exactly one "
                                                 f"RESCALE (to int8/int16/int32), but {what}")
        if ctx.is_const(bias):
            bd = np.asarray(ctx.t(bias).data, np.int64)
            if bd.size and (bd.min() < INT40_MIN or bd.max() > INT40_MAX):
                bad = int(bd.flat[int(np.argmax((bd < INT40_MIN) | (bd > INT40_MAX)))])
                add(o, "u55.conv_bias_int40", f"bias {bias!r} value {bad} outside signed int40 "
                                              f"[{INT40_MIN}, {INT40_MAX}]: Vela would keep "
                                              "only its low 40 bits")
        if op == Op.CONV3D:
            kd = ctx.t(w).shape[1]
            if kd != 1:
                add(o, "u55.conv3d_kernel_depth", f"kernel depth {kd} (must be 1)")
        if op == Op.TRANSPOSE_CONV2D:
            sy, sx = (tuple(o.attrs.get("stride") or (1, 1)) + (1, 1))[:2]
            _, ih, iw, _ = ctx.t(o.inputs[0]).shape
            _, kh, kw, _ = ctx.t(w).shape
            # mixed (1,2)/(2,1) strides work on a 1-D problem (measured: either orientation)
            ok = ((sy, sx) in ((1, 1), (2, 2)) or
                  ((sy, sx) in ((1, 2), (2, 1)) and ((iw == 1 and kw == 1) or
                                                     (ih == 1 and kh == 1))))
            if not ok:
                add(o, "u55.transpose_conv_stride", f"stride ({sy},{sx}) with IFM {ih}x{iw} and "
                                                    f"kernel {kh}x{kw} is not supported")
    if op == Op.MATMUL:
        c, w = ctx.t(o.inputs[0]).shape[2], ctx.t(o.inputs[1]).shape[2]
        if c > 65536 or w > 65536:
            add(o, "u55.matmul_axis", f"C = {c}, W = {w} (both must be <= 65536)")
    if op == Op.REDUCE_SUM:
        shape = ctx.t(o.inputs[0]).shape
        axis = int(o.attrs.get("axis", 0))
        before = int(np.prod(shape[:axis], dtype=np.int64))
        after = int(np.prod(shape[axis + 1:], dtype=np.int64))
        if shape[axis] > 65536 or (axis != len(shape) - 1 and (before > 65536 or
                                                                 after > 65536)):
            add(o, "u55.reduce_sum_axis", f"axis {axis} of shape {tuple(shape)}: reduced "
                                          f"{shape[axis]}, before {before}, after {after}")
    if op in (Op.CONV2D, Op.DEPTHWISE_CONV2D, Op.CONV3D, Op.AVG_POOL2D, Op.MAX_POOL2D):
        why = _u55_stride(ctx, o)
        if why:
            add(o, "u55.stride", why)
    if op in (Op.ARITHMETIC_RIGHT_SHIFT, Op.LOGICAL_LEFT_SHIFT):
        dt = ctx.dtype(o.inputs[0])
        # Vela folds a LOGICAL_LEFT_SHIFT of constants (not an ARITHMETIC_RIGHT_SHIFT; measured)
        folded = op == Op.LOGICAL_LEFT_SHIFT and all(ctx.is_const(n) for n in o.inputs)
        if dt != DType.INT32 and not folded:
            add(o, "u55.shift_dtype", f"{op.name} of {dt.name.lower()} (int32 only)")
    if op in (Op.REDUCE_MAX, Op.REDUCE_MIN):
        dt = ctx.dtype(o.inputs[0])
        if dt not in (DType.INT8, DType.INT16):
            add(o, "u55.reduce_minmax_dtype", f"{op.name} of {dt.name.lower()} (int8/int16 only)")
    if op == Op.REVERSE:
        shape = ctx.t(o.inputs[0]).shape
        rank = len(shape)
        axis = int(o.attrs.get("axis", 0))
        # Vela reshapes rank > 4, and rank 4 with N > 1, around the axis (ReshapeReverse);
        # otherwise only H and W can be reversed
        reshaped = rank > 4 or (rank == 4 and (shape[0] > 1 or axis == 0))
        if axis == rank - 1 and not reshaped:
            add(o, "u55.reverse_axis", f"axis {axis} is the channel axis of a rank-{rank} "
                                       f"tensor of shape {tuple(shape)}")
    if op == Op.AVG_POOL2D:
        kh, kw = tuple(o.attrs.get("kernel") or (1, 1))[:2]
        pad = tuple(o.attrs.get("pad") or (0, 0, 0, 0))
        if any(pad) and (kh > 8 or kw > 8):
            add(o, "u55.avg_pool_padded_kernel", f"kernel {kh}x{kw} with padding {pad}")
    if op == Op.RESIZE:
        why = _u55_resize(ctx, o)
        if why:
            add(o, "u55.resize", why)
    if op == Op.ARGMAX:
        shape = ctx.t(o.inputs[0]).shape
        axis = int(o.attrs.get("axis", 0))
        dt = ctx.dtype(o.inputs[0])
        why = []
        if dt != DType.INT8:
            why.append(f"input is {dt.name.lower()}")
        if axis != len(shape) - 1:
            why.append(f"axis {axis} is not the last axis")
        if shape and shape[-1] > 127:
            why.append(f"C = {shape[-1]} > 127")
        if len(shape) > 3 and int(np.prod(shape[:-3])) != 1:
            why.append(f"leading dimensions {tuple(shape[:-3])} are not 1")
        if why:
            add(o, "u55.argmax", "; ".join(why))


def _u55_stride(ctx, o):
    """Stride > 3 on U55/U65: Vela's UnrollKernelStrides (graphir_optimiser.cpp) splits CONV2D
    and pooling into one op per output position, but only without padding and dilation;
    there is no other way (no accumulator save/restore on U55), and DEPTHWISE_CONV2D is never
    unrolled.  A stride along an output dimension of size 1 does not count, nor does a pool
    whose kernel and stride cover the whole input."""
    op = Op(o.op)
    d3 = op == Op.CONV3D            # decomposed into CONV2Ds over depth: same H/W limits
    sy, sx = tuple(o.attrs.get("stride") or (1, 1, 1))[d3:d3 + 2]
    oh, ow = ctx.t(o.outputs[0]).shape[1 + d3:3 + d3]
    ih, iw = ctx.t(o.inputs[0]).shape[1 + d3:3 + d3]
    sy, sx = (1 if oh == 1 else sy), (1 if ow == 1 else sx)
    if sy <= 3 and sx <= 3:
        return None
    pad = tuple(o.attrs.get("pad") or (0,) * 6)[2 * d3:]
    if op in (Op.CONV2D, Op.DEPTHWISE_CONV2D, Op.CONV3D):
        wshape = ctx.t(o.inputs[1]).shape
        kh, kw = (wshape[0], wshape[1]) if op == Op.DEPTHWISE_CONV2D else \
            wshape[1 + d3:3 + d3]
        dy, dx = tuple(o.attrs.get("dilation") or (1, 1, 1))[d3:d3 + 2]
        dy, dx = (1 if kh == 1 else dy), (1 if kw == 1 else dx)
    else:
        kh, kw = tuple(o.attrs.get("kernel") or (1, 1))[:2]
        dy = dx = 1
        if (kh, kw) == (sy, sx) == (ih, iw) and not any(pad):
            return None
    what = f"stride ({sy},{sx})"
    if op == Op.DEPTHWISE_CONV2D:
        return f"{what}: DEPTHWISE_CONV2D strides > 3 are not supported"
    if any(pad) and not (op in (Op.CONV2D, Op.CONV3D) and (kh, kw) == (1, 1)):
        return f"{what} with padding {pad}"
    if dy > 1 or dx > 1:
        return f"{what} with dilation ({dy},{dx})"
    return None


def _u55_resize(ctx, o):
    """Why Vela 5.2.0 cannot run this RESIZE on U55/U65, or None."""
    from ..schema.definition import ResizeMode

    def vals(i):
        t = ctx.t(o.inputs[i])
        return None if t.data is None else [int(v) for v in np.asarray(t.data).reshape(-1)]
    scale, offset, border = vals(1), vals(2), vals(3)
    if scale is None or offset is None or border is None:
        return "scale/offset/border are not constant"
    ny, dy, nx, dx = scale
    oy, ox = offset
    by, bx = border
    _, ih, iw, _ = ctx.t(o.inputs[0]).shape
    _, oh, ow, _ = ctx.t(o.outputs[0]).shape
    mode = ResizeMode(o.attrs.get("mode", ResizeMode.NEAREST))
    if by == bx == oy == ox == 0 and ((ny == dy == nx == dx == 1) or
                                      (mode == ResizeMode.NEAREST and ny == dy and nx == dx)):
        return None
    if mode != ResizeMode.NEAREST:
        return f"{mode.name} resize (scale {scale}, offset {offset}, border {border})"
    if ih * iw == 1:
        return None
    hpc = (dy == 2 and dx == 2 and ny % 2 == 0 and nx % 2 == 0 and ox == -(nx // 2 - 1)
           and oy == -(ny // 2 - 1))
    up_h, up_w = (ny // 2, nx // 2) if hpc else (ny, nx)
    up = max(up_h, up_w)
    if up not in (2, 4, 8):
        return f"upscale {up} (scale {scale}) is not 2, 4 or 8"
    if (up_h == 1 and ih != 1) or (up_w == 1 and iw != 1):
        return f"upscale {up_h}x{up_w}: a unit upscale needs that input dimension to be 1"
    align = max((oh - 1) / max(ih - 1, 1), (ow - 1) / max(iw - 1, 1)) == up
    if not (hpc or align):
        return (f"scale {scale}, offset {offset}, border {border} is neither align-corners nor "
                f"half-pixel-centres")
    return None


def _u85_op(ctx, o, add):
    op = Op(o.op)
    # CONV3D with non-constant weights/bias works only as a stack of CONV2Ds: kernel depth 1
    # and depth stride 1 (measured on the CTS CONV3D graphs)
    conv3d_hard = op == Op.CONV3D and (ctx.t(o.inputs[1]).shape[1] > 1 or
                                       tuple(o.attrs.get("stride") or (1,))[0] > 1)
    if op == Op.TRANSPOSE_CONV2D or conv3d_hard:
        dyn = [n for n in o.inputs[1:3] if not ctx.is_const(n)]
        if dyn:
            add(o, "u85.dynamic_weights", f"{op.name} with non-constant "
                                          f"{'weights' if dyn[0] == o.inputs[1] else 'bias'} "
                                          f"{dyn[0]!r}")


def check(graph, target="ethos-u85-256"):
    """Every operator/type combination of ``graph`` that ``target`` cannot run.

    ``graph``: a Graph, a path or flatbuffer bytes.  Returns a list of :class:`Finding`
    (empty when Vela is expected to accept the graph); see ``RULES`` for the rule ids.
    """
    from ..graph import Graph
    if not isinstance(graph, Graph):
        from ..schema.loader import load, read_model_file
        if not isinstance(graph, (bytes, bytearray, memoryview)):
            graph = read_model_file(graph)
        graph = load(bytes(graph))
    family = _family(target)
    findings = []
    for block in graph.blocks():
        ctx = _Ctx(block)

        def add(o, rule, message):
            findings.append(Finding(Op(o.op).name, o.outputs[0] if o.outputs else "?", rule,
                                    message))
        for o in block.operators:
            (_u55_op if family == "u55" else _u85_op)(ctx, o, add)
    return findings
