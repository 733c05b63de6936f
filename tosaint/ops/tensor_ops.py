"""Convolutions and MATMUL (spec chapter "Tensor Operators"): CONV2D, CONV3D, DEPTHWISE_CONV2D,
TRANSPOSE_CONV2D, MATMUL.

Build checks every ERROR_IF of the operators' pseudocode (``pseudocode/operators/<OP>.tosac``)
plus the shape/rank/attribute-length checks the reference model makes and reads the zero points
(compile-time constants); then, unless it only validates, it prepares the weight layout once
when the weights are constant.  Run calls one kernel (``tosaint.kernels.conv_dense``, ``conv_depthwise``
or ``matmul``, or its spec twin), picked from ``_KERNELS``.

Where the spec says "unpredictable" but the reference model returns values (tosa-facts.md 2.4),
tosaint returns the same values and records a diagnostic: int48 outputs saturate to
[-2**47, 2**47-1] (``reference="saturates"``); int32 accumulators wrap in two's complement
(``reference="wraps"``).
"""
import numpy as np

from ..dtypes import RANGE
from ..levels import MAX_KERNEL, MAX_STRIDE
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op

_CONV_SIGS = {
    # input, weight, bias, input_zp, weight_zp, output
    (T.INT8, T.INT8, T.INT32, T.INT8, T.INT8, T.INT32): "PRO-INT",
    (T.INT8, T.INT4, T.INT32, T.INT8, T.INT4, T.INT32): "EXT-INT4",
    (T.INT16, T.INT8, T.INT48, T.INT16, T.INT8, T.INT48): "EXT-INT16",
}
_CONV_OPERANDS = ("input", "weight", "bias", "input_zp", "weight_zp")
_ACC = {T.INT8: T.INT32, T.INT16: T.INT48}


def _zero_point(node, i):
    """The zero point operand ``i``: a compile-time constant tensor of shape [1]."""
    t = node.inputs[i]
    what = node.operand_name(i)
    if tuple(t.shape) != (1,):
        node.error(f"{what} has shape {list(t.shape)}, not [1]")
    return int(np.asarray(node.const(i)).reshape(-1)[0])


def _check_zero_points(node, in_dtype, input_zp, w_dtype, weight_zp, names=("input_zp",
                                                                             "weight_zp")):
    if in_dtype != T.INT8 and input_zp != 0:
        node.error(f"{names[0]} {input_zp} != 0 for {T(in_dtype).name} (zero point only allowed "
                   "for i8_t)")
    if w_dtype != T.INT8 and weight_zp != 0:
        node.error(f"{names[1]} {weight_zp} != 0 for {T(w_dtype).name} (zero point only allowed "
                   "for i8_t)")


def _x_absmax(dtype, zp):
    """max |x - zp| over the value range of the input type (the kernels' headroom bound)."""
    lo, hi = RANGE[dtype]
    return max(abs(lo - zp), abs(hi - zp))


def _ints(node, name, n, what):
    v = tuple(int(a) for a in node.attrs[name])
    if len(v) != n:
        node.error(f"{name} has {len(v)} values, not {n} {what}")
    return v


def _common(node, rank):
    """Checks shared by the four convolutions; returns (x, w, bias, out) tensors, zero points."""
    x, w, bias = node.inputs[0], node.inputs[1], node.inputs[2]
    out = node.outputs[0]
    if len(node.inputs) != 5:
        node.error(f"{len(node.inputs)} inputs, not 5 "
                   "(input, weight, bias, input_zp, weight_zp)")
    if len(node.outputs) != 1:
        node.error(f"{len(node.outputs)} outputs, not 1")
    for t, what in ((x, "input"), (w, "weight"), (out, "output")):
        if len(t.shape) != rank:
            node.error(f"{what} rank {len(t.shape)} != {rank}")
    if len(bias.shape) != 1:
        node.error(f"bias rank {len(bias.shape)} != 1")
    acc = node.attrs["acc_type"]
    want = _ACC[x.dtype]
    if acc != want:
        node.error(f"acc_type {T(acc).name if acc in T._value2member_map_ else acc}"
                   f" != {want.name} for {x.dtype.name} input")
    input_zp = _zero_point(node, 3)
    weight_zp = _zero_point(node, 4)
    _check_zero_points(node, x.dtype, input_zp, w.dtype, weight_zp)
    if out.shape[0] != x.shape[0]:
        node.error(f"output batch {out.shape[0]} != input batch {x.shape[0]}")
    return x, w, bias, out, input_zp, weight_zp


def _check_bias(node, bias, oc, what="OC"):
    bc = bias.shape[0]
    if bc != oc and bc != 1:
        node.error(f"bias shape [{bc}]: BC {bc} != {what} {oc} and != 1")


def _out_size(node, name, o, i, p0, p1, k, d, s, names):
    """ERROR_IF(O != idiv_check(I - 1 + p0 + p1 - (K - 1) * d, s) + 1)."""
    num = i - 1 + p0 + p1 - (k - 1) * d
    if num % s != 0:
        node.error(f"output {name}: ({names}) = {num} is not divisible by stride "
                   f"{s} (idiv_check)")
    if o != num // s + 1:
        node.error(f"output {name} {o} != ({names})/stride+1 = {num // s + 1}")


def _spatial(node, x, w, out, dims, koff):
    """pad/stride/dilation checks and output size formulas for 2 or 3 spatial dims."""
    nd = len(dims)
    pad = _ints(node, "pad", 2 * nd, "")
    stride = _ints(node, "stride", nd, "")
    dilation = _ints(node, "dilation", nd, "")
    if min(pad) < 0:
        node.error(f"pad {list(pad)} has a value < 0")
    if min(stride) < 1:
        node.error(f"stride {list(stride)} has a value < 1")
    if min(dilation) < 1:
        node.error(f"dilation {list(dilation)} has a value < 1")
    for j, (name, I, K, P) in enumerate(dims):
        ks = w.shape[koff + j]
        _out_size(node, name, out.shape[1 + j], x.shape[1 + j], pad[2 * j], pad[2 * j + 1],
                  ks, dilation[j], stride[j],
                  f"{I}-1+{P[0]}+{P[1]}-({K}-1)*dilation = {x.shape[1 + j]}-1+{pad[2 * j]}+"
                  f"{pad[2 * j + 1]}-({ks}-1)*{dilation[j]}")
        node.level_check(dilation[j] * ks <= MAX_KERNEL,
                         f"dilation*{K} = {dilation[j]}*{ks} > MAX_KERNEL {MAX_KERNEL}")
    node.level_check(max(pad) <= MAX_KERNEL, f"pad {list(pad)} > MAX_KERNEL {MAX_KERNEL}")
    node.level_check(max(stride) <= MAX_STRIDE, f"stride {list(stride)} > MAX_STRIDE "
                     f"{MAX_STRIDE}")
    _scratch(node, out)
    return pad, stride, dilation


def _scratch(node, out):
    """The kernel's scratch for the memory budget: int64 accumulators for the whole output
    (the kernels never pad the input; their im2col/Winograd blocks are bounded)."""
    acc = 8
    for d in out.shape:
        acc *= max(int(d), 0)
    node.scratch = acc


def _report(node, out48, count):
    if out48:
        node.require(count == 0, "int48 accumulator or bias add out of range (the reference "
                     "model saturates to [-2**47, 2**47-1])", reference="saturates", count=count)
    else:
        node.require(count == 0, "int32 accumulator or bias add out of range (the reference "
                     "model wraps in two's complement)", reference="wraps", count=count)


#: kind -> the kernel namespace's (weight preparation, kernel, fused-RESCALE kernel or None)
_KERNELS = {
    "conv2d": lambda k: (k.conv_weights, k.conv2d, k.conv2d_rescale),
    "conv3d": lambda k: (k.conv_weights, k.conv3d, None),
    "depthwise_conv2d": lambda k: (k.depthwise_weights, k.depthwise_conv2d,
                                   k.depthwise_conv2d_rescale),
    "transpose_conv2d": lambda k: (k.conv_weights, k.transpose_conv2d, None),
}


def _make_run(node, kind, x_absmax, extra, out48):
    """The run function: weights prepared once when constant, else on every run.  When the
    kernel has a fused-RESCALE variant and the weights are constant, the run function offers
    ``fuse`` to the interpreter (see _fuse_rescale).  None while only validating."""
    if node.validating:
        return None
    prep_fn, kern, kern_rescale = _KERNELS[kind](node.k)
    weight_zp = extra["weight_zp"]
    input_zp = extra["input_zp"]
    args = extra["args"]
    fixed = prep_fn(node.const(1), weight_zp, *extra.get("prep_args", ()), x_absmax) \
        if node.is_const(1) else None

    def run(input, weight, bias, _izp, _wzp):
        prepared = fixed if fixed is not None else prep_fn(weight, weight_zp,
                                                           *extra.get("prep_args", ()),
                                                           x_absmax)
        out, count = kern(input, prepared, bias, input_zp, *args, out48)
        _report(node, out48, count)
        return out
    if kern_rescale is not None and fixed is not None:
        run.fuse = _fuse_rescale(kern_rescale, fixed, input_zp, args, out48)
    return run


def _fuse_rescale(kernel, prepared, input_zp, args, out48):
    """``fuse(epilogue)``: a run function for this convolution followed by the RESCALE that
    consumes it (``epilogue``: that RESCALE's parameters and output type), which never stores
    the accumulator tensor.  It returns None whenever either op would flag anything (an
    accumulator beyond its type, a RESCALE REQUIRE), so that the interpreter reruns both
    unfused for their exact values and diagnostics."""
    def fuse(epilogue):
        params, out_dtype = epilogue

        def fused(input, weight, bias, _izp, _wzp):
            res, count = kernel(input, prepared, bias, input_zp, *args, out48, params,
                                out_dtype)
            return None if count else res
        return fused
    return fuse


#: the spatial dimensions of CONV2D / DEPTHWISE_CONV2D and of CONV3D: (name, input and kernel
#: dimension names, pad attribute names), as the ERROR_IF messages use them
_HW = (("height", "IH", "KH", ("pad_top", "pad_bottom")),
       ("width", "IW", "KW", ("pad_left", "pad_right")))
_DHW = (("depth", "ID", "KD", ("pad_d0", "pad_d1")),) + _HW


def _check_dense(node, dims):
    """The ERROR_IFs of CONV2D / CONV3D (input [N, (D,) H, W, IC], weight [OC, (KD,) KH, KW,
    IC]); returns what the preparation needs."""
    rank = len(dims) + 2
    x, w, bias, out, input_zp, weight_zp = _common(node, rank)
    c = rank - 1                                     # the channel axis of all three
    if w.shape[c] != x.shape[c]:
        node.error(f"weight IC {w.shape[c]} != input channels {x.shape[c]}")
    if w.shape[0] != out.shape[c]:
        node.error(f"weight OC {w.shape[0]} != output channels {out.shape[c]}")
    _check_bias(node, bias, out.shape[c])
    pad, stride, dilation = _spatial(node, x, w, out, dims, 1)
    return x, out, input_zp, weight_zp, pad, stride, dilation


def _check_conv2d(node):
    return _check_dense(node, _HW)


def _check_conv3d(node):
    return _check_dense(node, _DHW)


def _dense_conv(node, kind, check):
    """CONV2D / CONV3D: checked once (``check``, on the validating pass), then prepared."""
    x, out, input_zp, weight_zp, pad, stride, dilation = node.once(check)
    return _make_run(node, kind, _x_absmax(x.dtype, input_zp),
                     dict(weight_zp=weight_zp, input_zp=input_zp, prep_args=(kind,),
                          args=(pad, stride, dilation, tuple(out.shape))),
                     out.dtype == T.INT48)


@register(Op.CONV2D, _CONV_SIGS, operands=_CONV_OPERANDS)
def conv2d(node):
    return _dense_conv(node, "conv2d", _check_conv2d)


@register(Op.CONV3D, _CONV_SIGS, operands=_CONV_OPERANDS)
def conv3d(node):
    return _dense_conv(node, "conv3d", _check_conv3d)


def _check_depthwise(node):
    """The ERROR_IFs of DEPTHWISE_CONV2D (weight [KH, KW, C, M]); returns what the
    preparation needs."""
    x, w, bias, out, input_zp, weight_zp = _common(node, 4)
    kh, kw, c, m = w.shape
    if c != x.shape[3]:
        node.error(f"weight C {c} != input channels {x.shape[3]}")
    if out.shape[3] != c * m:
        node.error(f"output channels {out.shape[3]} != C*M = {c}*{m} = {c * m}")
    _check_bias(node, bias, c * m, "C*M")
    pad, stride, dilation = _spatial(node, x, w, out, _HW, 0)
    return x, out, input_zp, weight_zp, pad, stride, dilation


@register(Op.DEPTHWISE_CONV2D, _CONV_SIGS, operands=_CONV_OPERANDS)
def depthwise_conv2d(node):
    x, out, input_zp, weight_zp, pad, stride, dilation = node.once(_check_depthwise)
    out48 = out.dtype == T.INT48
    x_absmax = _x_absmax(x.dtype, input_zp)
    args = (pad, stride, dilation, tuple(out.shape))
    return _make_run(node, "depthwise_conv2d", x_absmax,
                     dict(weight_zp=weight_zp, input_zp=input_zp, args=args), out48)


@register(Op.TRANSPOSE_CONV2D, _CONV_SIGS, operands=_CONV_OPERANDS)
def transpose_conv2d(node):
    x, w, bias, out, input_zp, weight_zp = _common(node, 4)
    oc, kh, kw, ic = w.shape
    if ic != x.shape[3]:
        node.error(f"weight IC {ic} != input channels {x.shape[3]}")
    if oc != out.shape[3]:
        node.error(f"weight OC {oc} != output channels {out.shape[3]}")
    _check_bias(node, bias, out.shape[3])
    out_pad = _ints(node, "out_pad", 4, "")
    stride = _ints(node, "stride", 2, "")
    opt, opb, opl, opr = out_pad
    if opt <= -kh or opb <= -kh:
        node.error(f"out_pad_top {opt} or out_pad_bottom {opb} <= -KH = {-kh}")
    if opl <= -kw or opr <= -kw:
        node.error(f"out_pad_left {opl} or out_pad_right {opr} <= -KW = {-kw}")
    if min(stride) < 1:
        node.error(f"stride {list(stride)} has a value < 1")
    ih, iw = x.shape[1], x.shape[2]
    oh = (ih - 1) * stride[0] + opt + opb + kh
    ow = (iw - 1) * stride[1] + opl + opr + kw
    if out.shape[1] != oh:
        node.error(f"output height {out.shape[1]} != (IH-1)*stride_y+out_pad_top+out_pad_bottom"
                   f"+KH = ({ih}-1)*{stride[0]}+{opt}+{opb}+{kh} = {oh}")
    if out.shape[2] != ow:
        node.error(f"output width {out.shape[2]} != (IW-1)*stride_x+out_pad_left+out_pad_right"
                   f"+KW = ({iw}-1)*{stride[1]}+{opl}+{opr}+{kw} = {ow}")
    node.level_check(kh <= MAX_KERNEL and kw <= MAX_KERNEL,
                     f"kernel {kh}x{kw} > MAX_KERNEL {MAX_KERNEL}")
    node.level_check(max(out_pad) <= MAX_KERNEL, f"out_pad {list(out_pad)} > MAX_KERNEL "
                     f"{MAX_KERNEL}")
    node.level_check(max(stride) <= MAX_STRIDE, f"stride {list(stride)} > MAX_STRIDE "
                     f"{MAX_STRIDE}")
    out48 = out.dtype == T.INT48
    _scratch(node, out)
    return _make_run(node, "transpose_conv2d", _x_absmax(x.dtype, input_zp),
                     dict(weight_zp=weight_zp, input_zp=input_zp,
                          prep_args=("transpose_conv2d",),
                          args=(out_pad, stride, tuple(out.shape))), out48)


@register(Op.MATMUL, {(T.INT8, T.INT8, T.INT8, T.INT8, T.INT32): "PRO-INT",
                      (T.INT16, T.INT16, T.INT16, T.INT16, T.INT48): "EXT-INT16"},
          operands=("A", "B", "A_zp", "B_zp"))
def matmul(node):
    a, b = node.inputs[0], node.inputs[1]
    out = node.outputs[0]
    if len(node.inputs) != 4:
        node.error(f"{len(node.inputs)} inputs, not 4 (A, B, A_zp, B_zp)")
    if len(node.outputs) != 1:
        node.error(f"{len(node.outputs)} outputs, not 1")
    for t, what in ((a, "A"), (b, "B"), (out, "output")):
        if len(t.shape) != 3:
            node.error(f"{what} rank {len(t.shape)} != 3")
    n, h, c = a.shape
    if b.shape[0] != n:
        node.error(f"B batch {b.shape[0]} != A batch {n}")
    if b.shape[1] != c:
        node.error(f"B rows {b.shape[1]} != A columns C = {c}")
    if tuple(out.shape) != (n, h, b.shape[2]):
        node.error(f"output shape {list(out.shape)} != [N,H,W] = {[n, h, b.shape[2]]}")
    a_zp = _zero_point(node, 2)
    b_zp = _zero_point(node, 3)
    # the fixed meaning (spec main, reference model): zero points must be 0 for non-i8 types
    _check_zero_points(node, a.dtype, a_zp, b.dtype, b_zp, ("A_zp", "B_zp"))
    out48 = out.dtype == T.INT48
    k = node.k

    def run(A, B, _azp, _bzp):
        res, count = k.matmul(A, B, a_zp, b_zp, out48)
        _report(node, out48, count)
        return res
    return run
