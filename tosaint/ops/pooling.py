"""Pooling and ARGMAX (spec chapter "Tensor Operators"): AVG_POOL2D, MAX_POOL2D, ARGMAX.

Build checks every ERROR_IF of AVG_POOL2D.tosac / MAX_POOL2D.tosac / ARGMAX.tosac and the level
limits; run calls one kernel (``tosaint.kernels.pooling`` or its spec twin).
"""
import numpy as np

from ..dtypes import RANGE, STORAGE
from ..kernels._int import I32_MAX
from ..levels import MAX_KERNEL, MAX_RANK, MAX_STRIDE
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import NanPropagationMode, Op



def _pool_params(node):
    """Validate the attributes and shapes shared by AVG_POOL2D and MAX_POOL2D."""
    x, out = node.inputs[0], node.outputs[0]
    if len(x.shape) != 4:
        node.error(f"input rank {len(x.shape)} != 4 (NHWC)")
    if len(out.shape) != 4:
        node.error(f"output rank {len(out.shape)} != 4 (NHWC)")
    kernel = tuple(node.attrs["kernel"])
    stride = tuple(node.attrs["stride"])
    pad = tuple(node.attrs["pad"])
    if len(kernel) != 2:
        node.error(f"kernel has {len(kernel)} values, not 2 [kernel_y, kernel_x]")
    if len(stride) != 2:
        node.error(f"stride has {len(stride)} values, not 2 [stride_y, stride_x]")
    if len(pad) != 4:
        node.error(f"pad has {len(pad)} values, not 4 [pad_top, pad_bottom, pad_left, pad_right]")
    n, ih, iw, c = x.shape
    on, oh, ow, oc = out.shape
    ky, kx = kernel
    sy, sx = stride
    pt, pb, pl, pr = pad
    if ky < 1 or kx < 1:
        node.error(f"kernel_y {ky} or kernel_x {kx} < 1")
    if sy < 1 or sx < 1:
        node.error(f"stride_y {sy} or stride_x {sx} < 1")
    if min(pad) < 0:
        node.error(f"pad {list(pad)} has a value < 0")
    if pl >= kx or pr >= kx:
        node.error(f"pad_left {pl} or pad_right {pr} >= kernel_x {kx}")
    if pt >= ky or pb >= ky:
        node.error(f"pad_top {pt} or pad_bottom {pb} >= kernel_y {ky}")
    if on != n:
        node.error(f"output batch {on} != input batch {n}")
    if oc != c:
        node.error(f"output channels {oc} != input channels {c}")
    for what, o, i, p0, p1, k, s, names in (
            ("height", oh, ih, pt, pb, ky, sy, "IH+pad_top+pad_bottom-kernel_y)/stride_y"),
            ("width", ow, iw, pl, pr, kx, sx, "IW+pad_left+pad_right-kernel_x)/stride_x")):
        num = i + p0 + p1 - k
        if num % s != 0:
            node.error(f"output {what}: ({names} = {num}/{s} is not an integer (idiv_check)")
        if o != num // s + 1:
            node.error(f"output {what} {o} != ({names}+1 = {num // s + 1}")
    node.level_check(ky <= MAX_KERNEL and kx <= MAX_KERNEL,
                     f"kernel {list(kernel)} > MAX_KERNEL {MAX_KERNEL}")
    node.level_check(sy <= MAX_STRIDE and sx <= MAX_STRIDE,
                     f"stride {list(stride)} > MAX_STRIDE {MAX_STRIDE}")
    node.level_check(max(pad) <= MAX_KERNEL, f"pad {list(pad)} > MAX_KERNEL {MAX_KERNEL}")
    return (ky, kx), (sy, sx), (pt, pl), tuple(out.shape)


def check_nan_mode(node):
    """nan_mode must name a mode even for integer types: the reference model rejects a graph
    with any other value (including the schema default 0 = UNKNOWN)."""
    mode = int(node.attrs.get("nan_mode") or 0)
    if mode not in (NanPropagationMode.PROPAGATE, NanPropagationMode.IGNORE):
        node.error(f"nan_mode {mode} is neither PROPAGATE (1) nor IGNORE (2)")


def _zero_point(node, i, what, dtype):
    zp = np.asarray(node.const(i)).reshape(-1)
    if zp.size != 1:
        node.error(f"{what} has {zp.size} values, not 1")
    zp = int(zp[0])
    if dtype != T.INT8 and zp != 0:
        node.error(f"{what} {zp} != 0 (a zero point is only allowed for int8)")
    return zp


@register(Op.AVG_POOL2D, {(T.INT8, T.INT8, T.INT8, T.INT8): "PRO-INT",
                          (T.INT16, T.INT16, T.INT16, T.INT16): "EXT-INT16"},
          operands=("input", "input_zp", "output_zp"))
def avg_pool2d(node):
    dt = node.inputs[0].dtype
    acc_type = node.attrs.get("acc_type")
    name = T(acc_type).name if acc_type in T._value2member_map_ else acc_type
    if acc_type != T.INT32:
        node.error(f"acc_type {name} != INT32 (the accumulator of integer AVG_POOL2D)")
    (ky, kx), (sy, sx), (pt, pl), out_shape = _pool_params(node)
    in_zp = _zero_point(node, 1, "input_zp", dt)
    out_zp = _zero_point(node, 2, "output_zp", dt)
    lo, hi = RANGE[dt]
    store = STORAGE[dt]
    _, ih, iw, _ = node.inputs[0].shape
    # the accumulator can only leave int32 when (taps) * max|value - zp| does
    taps = min(ky, ih) * min(kx, iw)
    check_acc = taps * (hi - lo) > I32_MAX
    k = node.k

    def run(x, input_zp, output_zp):
        out = np.empty(out_shape, store)
        bad_acc, bad_scale = k.avg_pool2d(x, out, ky, kx, sy, sx, pt, pl, in_zp, out_zp,
                                          lo, hi, check_acc)
        node.require(bad_acc == 0, "int32 accumulator out of range (apply_add_s)",
                     reference="wraps", count=int(bad_acc))
        node.require(bad_scale == 0, "apply_scale_32 value out of range", count=int(bad_scale))
        return out
    return run


@register(Op.MAX_POOL2D, {(T.INT8, T.INT8): "PRO-INT", (T.INT16, T.INT16): "EXT-INT16"},
          operands=("input",))
def max_pool2d(node):
    check_nan_mode(node)
    (ky, kx), (sy, sx), (pt, pl), out_shape = _pool_params(node)
    store = STORAGE[node.inputs[0].dtype]
    k = node.k

    def run(x):
        out = np.empty(out_shape, store)
        k.max_pool2d(x, out, ky, kx, sy, sx, pt, pl)
        return out
    return run


@register(Op.ARGMAX, {(T.INT8, T.INT32): "PRO-INT", (T.INT16, T.INT32): "EXT-INT16"},
          operands=("input",))
def argmax(node):
    x, out = node.inputs[0], node.outputs[0]
    shape1, shape = tuple(x.shape), tuple(out.shape)
    rank = len(shape1)
    axis = int(node.attrs["axis"])
    check_nan_mode(node)
    node.error_if(rank < 1, "input rank 0 < 1")
    if rank > MAX_RANK:
        node.error(f"input rank {rank} > {MAX_RANK} (the reference model supports ranks "
                   f"1 to {MAX_RANK})")
    if axis < 0 or axis >= rank:
        node.error(f"axis {axis} is outside [0, rank(input)-1 = "
                   f"{rank - 1}]")
    expect = shape1[:axis] + shape1[axis + 1:]
    if shape != expect:
        node.error(f"output shape {list(shape)} != input shape without axis "
                   f"{axis} {list(expect)}")
    if shape1[axis] < 1:
        node.error(f"input dimension {axis} is empty")
    left = int(np.prod(shape1[:axis], dtype=np.int64))
    right = int(np.prod(shape1[axis + 1:], dtype=np.int64))
    view = (left, shape1[axis], right)
    k = node.k

    def run(a):
        res = np.empty((left, right), np.int32)
        k.argmax(a.reshape(view), res)
        return res.reshape(shape)
    return run
