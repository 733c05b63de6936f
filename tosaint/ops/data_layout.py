"""Data layout operators (spec chapter "Data Layout"): CONCAT, PAD, RESHAPE, REVERSE, SLICE,
TILE, TRANSPOSE.

Every ERROR_IF of the pseudocode (and the shape checks the reference model adds) is checked in
build; shape_t operands (padding, shape, start, size, multiples) must be compile-time constants
(CONST_SHAPE), as in PRO-INT.  The run functions only move data.
"""
import numpy as np

from ..levels import MAX_RANK, MAX_TENSOR_LIST_SIZE
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op

#: element types of PAD/RESHAPE/REVERSE/SLICE/TILE/TRANSPOSE (tosa.xml): all PRO-INT
LAYOUT_TYPES = (T.BOOL, T.INT8, T.INT16, T.INT32)


def check_rank(node, t, lo=0, hi=MAX_RANK, what=None):
    """The reference model instantiates ranks 0..MAX_RANK (DEF_INSTANTIATE_RANK0_6); the
    conformance suite's "WrongRank" ERROR_IF tests expect rank 7 to be rejected."""
    r = len(t.shape)
    if not (lo <= r <= hi):
        node.error(f"rank of {what or repr(t.name)} is {r}; "
                   f"{node.op.name} supports ranks {lo}..{hi}")


def shape_operand(node, i, name):
    """A shape_t operand as a list of Python ints (must be a CONST_SHAPE)."""
    t = node.inputs[i]
    if t.dtype != T.SHAPE:
        node.error(f"{name} must be a shape_t value (CONST_SHAPE), "
                   f"not a tensor of {T(t.dtype).name}")
    return [int(v) for v in np.asarray(node.const(i)).reshape(-1).tolist()]


def _size(shape):
    """Elements of a shape (Python ints: no overflow)."""
    n = 1
    for d in shape:
        n *= d
    return n


def _same_type(node, a, out):
    if a.dtype != out.dtype:
        node.error(f"input type {T(a.dtype).name} != output type "
                   f"{T(out.dtype).name}")


def _concat_key(node):
    node.error_if(not node.inputs, "input1 is an empty tensor list (CONCAT needs at least one "
                  "input)")
    types = tuple(dict.fromkeys(t.dtype for t in node.inputs))
    return types + tuple(t.dtype for t in node.outputs)


_CONCAT_PROFILE = {T.BOOL: "PRO-INT", T.INT8: "PRO-INT", T.INT16: "EXT-INT16",
                   T.INT32: "PRO-INT"}


@register(Op.CONCAT, {(t, t): p for t, p in _CONCAT_PROFILE.items()}, key=_concat_key,
          operands=("input1",))
def concat(node):
    ins, out = node.inputs, node.outputs[0]
    axis = int(node.attrs.get("axis", 0))
    rank0 = len(ins[0].shape)
    node.level_check(len(ins) <= MAX_TENSOR_LIST_SIZE,
                     f"{len(ins)} inputs > MAX_TENSOR_LIST_SIZE {MAX_TENSOR_LIST_SIZE}")
    for t in ins + [out]:
        check_rank(node, t)
    if axis < 0 or axis >= max(1, rank0):
        node.error(f"axis {axis} outside 0..{max(1, rank0) - 1} (rank {rank0})")
    axis_sum = 0
    for i, t in enumerate(ins):
        if len(t.shape) != rank0:
            node.error(f"input {i} ({t.name!r}) has rank "
                       f"{len(t.shape)} != rank {rank0} of input 0")
        for d in range(rank0):
            if d == axis:
                axis_sum += t.shape[d]
            else:
                if t.shape[d] != ins[0].shape[d]:
                    node.error(f"input {i} ({t.name!r}) dimension {d} is {t.shape[d]} != "
                               f"{ins[0].shape[d]} of input 0")
    if len(out.shape) != rank0:
        node.error(f"output rank {len(out.shape)} != input rank {rank0}")
    if rank0:
        if axis_sum != out.shape[axis]:
            node.error(f"sum of the input sizes along axis {axis} is "
                       f"{axis_sum} != output size {out.shape[axis]}")
        for d in range(rank0):
            if d != axis and out.shape[d] != ins[0].shape[d]:
                node.error(f"output dimension {d} is {out.shape[d]} != {ins[0].shape[d]}")
    # rank 0: the axis check admits axis 0, but shape[axis] does not exist; the reference model
    # rejects such a graph as invalid
    node.error_if(rank0 == 0, "rank-0 inputs have no axis to concatenate along")
    k = node.k
    return lambda *xs: k.concat(xs, axis)


@register(Op.PAD, {(t, T.SHAPE, t, t): "PRO-INT" for t in LAYOUT_TYPES},
          operands=("input1", "padding", "pad_const"))
def pad(node):
    a, out = node.inputs[0], node.outputs[0]
    check_rank(node, a)
    check_rank(node, out)
    padding = shape_operand(node, 1, "padding")
    pad_const = np.asarray(node.const(2))
    rank = len(a.shape)
    if len(padding) != 2 * rank:
        node.error(f"padding has {len(padding)} values != 2*rank(input1)"
                   f" = {2 * rank}")
    if pad_const.size != 1:
        node.error(f"pad_const has {pad_const.size} elements; it must hold 1")
    if len(out.shape) != rank:
        node.error(f"output rank {len(out.shape)} != input rank {rank}")
    for i in range(rank):
        if padding[2 * i] < 0 or padding[2 * i + 1] < 0:
            node.error(f"padding of axis {i} is ({padding[2 * i]}, {padding[2 * i + 1]}); "
                       "it must be >= 0")
        want = padding[2 * i] + a.shape[i] + padding[2 * i + 1]
        if out.shape[i] != want:
            node.error(f"output dimension {i} is {out.shape[i]} != padding[{2 * i}] + "
                       f"shape1[{i}] + padding[{2 * i + 1}] = {want}")
    value = pad_const.reshape(-1)[0]
    pads = np.asarray(padding, np.int64)
    k = node.k
    return lambda x, _p, _c: k.pad(x, pads, value)


@register(Op.RESHAPE, {(t, T.SHAPE, t): "PRO-INT" for t in LAYOUT_TYPES},
          operands=("input1", "shape"))
def reshape(node):
    a, out = node.inputs[0], node.outputs[0]
    check_rank(node, a)
    check_rank(node, out)
    shape = shape_operand(node, 1, "shape")
    if _size(a.shape) != _size(out.shape):
        node.error(f"input has {a.size} elements ({list(a.shape)}) != "
                   f"output {out.size} ({list(out.shape)})")
    if tuple(shape) != tuple(out.shape):
        node.error(f"shape operand {shape} != output shape {list(out.shape)}")
    k = node.k
    oshape = tuple(out.shape)
    return lambda x, _s: k.reshape(x, oshape)


@register(Op.REVERSE, {(t, t): "PRO-INT" for t in LAYOUT_TYPES}, operands=("input1",))
def reverse(node):
    a, out = node.inputs[0], node.outputs[0]
    check_rank(node, a)
    axis = int(node.attrs.get("axis", 0))
    rank = len(a.shape)
    if axis < 0 or axis >= rank:
        node.error(f"axis {axis} outside 0..{rank - 1}")
    if tuple(a.shape) != tuple(out.shape):
        node.error(f"output shape {list(out.shape)} != input shape {list(a.shape)}")
    k = node.k
    return lambda x: k.reverse(x, axis)


@register(Op.SLICE, {(t, T.SHAPE, T.SHAPE, t): "PRO-INT" for t in LAYOUT_TYPES},
          operands=("input1", "start", "size"))
def slice_(node):
    a, out = node.inputs[0], node.outputs[0]
    check_rank(node, a)
    check_rank(node, out)
    start = shape_operand(node, 1, "start")
    size = shape_operand(node, 2, "size")
    rank = len(a.shape)
    if len(start) != rank or len(size) != rank:
        node.error(f"start has {len(start)} and size {len(size)} values; rank(input1) is {rank}")
    if len(out.shape) != rank:
        node.error(f"output rank {len(out.shape)} != input rank {rank}")
    for i in range(rank):
        if start[i] < 0:
            node.error(f"start[{i}] = {start[i]} < 0")
        if size[i] <= 0:
            node.error(f"size[{i}] = {size[i]} <= 0")
        if start[i] + size[i] > a.shape[i]:
            node.error(f"start[{i}] + size[{i}] = {start[i] + size[i]} > input dimension "
                       f"{a.shape[i]}")
        if out.shape[i] != size[i]:
            node.error(f"output dimension {i} is {out.shape[i]} != "
                       f"size[{i}] = {size[i]}")
    k = node.k
    return lambda x, _b, _s: k.slice_(x, start, size)


@register(Op.TILE, {(t, T.SHAPE, t): "PRO-INT" for t in LAYOUT_TYPES},
          operands=("input1", "multiples"))
def tile(node):
    a, out = node.inputs[0], node.outputs[0]
    check_rank(node, a)
    check_rank(node, out)
    multiples = shape_operand(node, 1, "multiples")
    rank = len(a.shape)
    if len(multiples) != rank:
        node.error(f"multiples has {len(multiples)} values != "
                   f"rank(input1) {rank}")
    if len(out.shape) != rank:
        node.error(f"output rank {len(out.shape)} != input rank {rank}")
    for i in range(rank):
        if a.shape[i] * multiples[i] != out.shape[i]:
            node.error(f"shape1[{i}] * multiples[{i}] = {a.shape[i]} * {multiples[i]} != output "
                       f"dimension {out.shape[i]}")
    k = node.k
    return lambda x, _m: k.tile(x, multiples)


@register(Op.TRANSPOSE, {(t, t): "PRO-INT" for t in LAYOUT_TYPES}, operands=("input1",))
def transpose(node):
    a, out = node.inputs[0], node.outputs[0]
    check_rank(node, a)
    check_rank(node, out)
    perms = [int(p) for p in node.attrs.get("perms", ())]
    rank = len(a.shape)
    if len(out.shape) != rank:
        node.error(f"output rank {len(out.shape)} != input rank {rank}")
    if len(perms) != rank:
        node.error(f"perms has {len(perms)} values != rank(input1) {rank}")
    used = [False] * rank
    for p in perms:
        if p < 0 or p >= rank:
            node.error(f"perms value {p} outside 0..{rank - 1}")
        if used[p]:
            node.error(f"perms value {p} is used twice in {perms}")
        used[p] = True
    for i in range(rank):
        if a.shape[perms[i]] != out.shape[i]:
            node.error(f"output dimension {i} is {out.shape[i]} != shape1[perms[{i}]] = "
                       f"{a.shape[perms[i]]}")
    k = node.k
    return lambda x: k.transpose(x, perms)
