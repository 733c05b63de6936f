"""Elementwise binary operators (spec chapter "Elementwise Binary Operators"), TABLE included.

The arithmetic is exact NumPy: values are widened to int64 where the spec computes in a wider
type, checked against the spec's REQUIREs, then narrowed exactly as the spec (and the reference
model) does.  Broadcasting follows broadcast_shape/apply_broadcast: equal ranks, each dimension
equal or 1, and the output shape must be the broadcast shape (ERROR_IF otherwise).
"""
import math

import numpy as np

from ..dtypes import RANGE, STORAGE, short
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op

I8, I16, I32, BOOL = T.INT8, T.INT16, T.INT32, T.BOOL
_NBITS = {I8: 8, I16: 16, I32: 32}
_UNSIGNED = {I8: np.uint8, I16: np.uint16, I32: np.uint32}


# ---- shared helpers (also used by ewise_unary, ewise_ternary, comparison) ---------------------
def broadcast_shape(node, shape1, shape2):
    """The spec's broadcast_shape, with its ERROR_IFs."""
    if len(shape1) != len(shape2):
        node.error(f"input ranks differ: {list(shape1)} vs {list(shape2)}")
    shape = list(shape1)
    for i, d in enumerate(shape):
        if d == 1:
            shape[i] = shape2[i]
        else:
            if shape2[i] != 1 and shape2[i] != d:
                node.error(f"dimension {i}: {d} and {shape2[i]} cannot be broadcast "
                           f"({list(shape1)} vs {list(shape2)})")
    return tuple(shape)


def check_broadcast(node, n_inputs=None):
    """ERROR_IF(shape != broadcast_shape(shape1, shape2, ...)) for the first n inputs."""
    ins = node.inputs[:n_inputs] if n_inputs else node.inputs
    out = tuple(node.outputs[0].shape)
    shape = tuple(ins[0].shape)
    for t in ins[1:]:
        shape = broadcast_shape(node, shape, tuple(t.shape))
    if len(out) != len(shape):
        node.error(f"output rank {len(out)} != input rank {len(shape)}")
    if out != shape:
        node.error(f"output shape {list(out)} != broadcast shape {list(shape)}")
    return out


def check_same_shape(node):
    """Unary operators: the output shape equals the input shape."""
    a, out = node.inputs[0], node.outputs[0]
    if tuple(a.shape) != tuple(out.shape):
        node.error(f"input shape {list(a.shape)} != output shape {list(out.shape)}")
    return tuple(out.shape)


def finish(value, dtype, shape):
    """A C-contiguous ndarray of the declared storage dtype and shape (NumPy returns scalars
    for rank 0, and keeps the memory order of a transposed input)."""
    return np.require(value, STORAGE[dtype], "C").reshape(shape)


def _out_of_range(c, dtype):
    lo, hi = RANGE[dtype]
    return int(np.count_nonzero((c < lo) | (c > hi))) if c.size else 0


def _sigs(types, n_in=2, out=None):
    return {(t,) * n_in + ((out or t),): "PRO-INT" for t in types}


# ---- ADD / SUB ---------------------------------------------------------------------------
def _add_sub(sign, word):
    def build(node):
        shape = check_broadcast(node)

        def run(a, b):
            c = a.astype(np.int64) + sign * b.astype(np.int64)   # apply_add_s / apply_sub_s
            bad = _out_of_range(c, I32)
            node.require(bad == 0, f"{word} result outside int32", count=bad)
            return finish(c.astype(np.int32), I32, shape)
        return run
    return build


register(Op.ADD, _sigs((I32,)), operands=("input1", "input2"))(_add_sub(1, "sum"))
register(Op.SUB, _sigs((I32,)), operands=("input1", "input2"))(_add_sub(-1, "difference"))


# ---- MUL ---------------------------------------------------------------------------------
@register(Op.MUL, {(I8, I8, I8, I32): "PRO-INT", (I16, I16, I8, I32): "PRO-INT",
                   (I32, I32, I8, I32): "PRO-INT"}, operands=("input1", "input2", "shift"))
def mul(node):
    shape = check_broadcast(node, 2)
    st = node.inputs[2]
    if len(st.shape) != 1 or st.shape[0] != 1:
        node.error(f"shift has shape {list(st.shape)}, expected [1]")
    shift = int(node.const(2).reshape(-1)[0])
    is32 = node.inputs[0].dtype == I32

    def run(a, b, _s):
        if not is32:
            # REQUIRE(0 <= shift <= 63) and REQUIRE(shift == 0 unless i32): the reference
            # model ignores the shift of an i8/i16 MUL and returns the product
            node.require(shift == 0, f"shift {shift} != 0 for an "
                         f"{short(node.inputs[0].dtype)} MUL", reference="ignores the shift")
            return finish(a.astype(np.int32) * b.astype(np.int32), I32, shape)
        node.require(shift <= 63, f"shift {shift} outside 0..63")
        # a negative shift: the reference model takes the shift == 0 path (low 32 bits)
        node.require(shift >= 0, f"shift {shift} outside 0..63", reference="ignores the shift")
        product = a.astype(np.int64) * b.astype(np.int64)
        if shift <= 0:
            return finish(product.astype(np.int32), I32, shape)   # low 32 bits (apply_mul_s)
        product = (product + (1 << (shift - 1))) >> shift
        bad = _out_of_range(product, I32)
        node.require(bad == 0, f"rounded product (shift {shift}) outside int32", count=bad)
        return finish(product.astype(np.int32), I32, shape)
    return run


# ---- shifts --------------------------------------------------------------------------------
def _check_shift_amount(node, b, dtype):
    nb = _NBITS[dtype]
    bad = int(np.count_nonzero((b < 0) | (b >= nb))) if b.size else 0
    node.require(bad == 0, f"shift amount outside 0..{nb - 1}", count=bad)


@register(Op.ARITHMETIC_RIGHT_SHIFT, _sigs((I8, I16, I32)), operands=("input1", "input2"))
def arithmetic_right_shift(node):
    shape = check_broadcast(node)
    dtype = node.outputs[0].dtype
    rnd = bool(node.attrs["round"])

    def run(a, b):
        _check_shift_amount(node, b, dtype)
        a64, b64 = a.astype(np.int64), b.astype(np.int64)
        result = a64 >> b64
        if rnd:
            # round: add 1 when the last bit shifted out is set (b > 0)
            half = (a64 >> np.maximum(b64 - 1, 0)) & 1
            result = result + ((b64 > 0) & (half != 0))
        return finish(result.astype(STORAGE[dtype]), dtype, shape)
    return run


@register(Op.LOGICAL_LEFT_SHIFT, _sigs((I8, I16, I32)), operands=("input1", "input2"))
def logical_left_shift(node):
    shape = check_broadcast(node)
    dtype = node.outputs[0].dtype

    def run(a, b):
        _check_shift_amount(node, b, dtype)
        # the low bits of value1 << value2 (truncated to in_out_t)
        r = a.astype(np.int64) << b.astype(np.int64)
        return finish(r.astype(STORAGE[dtype]), dtype, shape)
    return run


@register(Op.LOGICAL_RIGHT_SHIFT, _sigs((I8, I16, I32)), operands=("input1", "input2"))
def logical_right_shift(node):
    shape = check_broadcast(node)
    dtype = node.outputs[0].dtype
    ut = _UNSIGNED[dtype]

    def run(a, b):
        _check_shift_amount(node, b, dtype)
        # shifts happen on the unsigned value of the same width
        r = np.asarray(a).view(ut).astype(np.int64) >> b.astype(np.int64)
        return finish(r.astype(ut).view(STORAGE[dtype]), dtype, shape)
    return run


# ---- bitwise / logical -----------------------------------------------------------------------
def _simple(fn):
    def build(node):
        shape = check_broadcast(node)
        dtype = node.outputs[0].dtype
        return lambda a, b: finish(fn(a, b), dtype, shape)
    return build


for _op, _fn in ((Op.BITWISE_AND, np.bitwise_and), (Op.BITWISE_OR, np.bitwise_or),
                 (Op.BITWISE_XOR, np.bitwise_xor)):
    register(_op, _sigs((I8, I16, I32)), operands=("input1", "input2"))(_simple(_fn))
for _op, _fn in ((Op.LOGICAL_AND, np.logical_and), (Op.LOGICAL_OR, np.logical_or),
                 (Op.LOGICAL_XOR, np.logical_xor)):
    register(_op, _sigs((BOOL,)), operands=("input1", "input2"))(_simple(_fn))
register(Op.MAXIMUM, _sigs((I32,)), operands=("input1", "input2"))(_simple(np.maximum))
register(Op.MINIMUM, _sigs((I32,)), operands=("input1", "input2"))(_simple(np.minimum))


# ---- INTDIV --------------------------------------------------------------------------------
@register(Op.INTDIV, _sigs((I32,)), operands=("input1", "input2"))
def intdiv(node):
    shape = check_broadcast(node)

    def run(a, b):
        zero = int(np.count_nonzero(b == 0)) if b.size else 0
        node.require(zero == 0, "division by zero", count=zero)
        a64, b64 = np.broadcast_arrays(a.astype(np.int64), b.astype(np.int64))
        q = a64 // b64
        # C division truncates toward zero; floor division rounds toward -inf
        q = q + ((q * b64 != a64) & ((a64 < 0) != (b64 < 0)))
        bad = _out_of_range(q, I32)
        node.require(bad == 0, "quotient outside int32 (-2^31 / -1)", count=bad)
        return finish(q.astype(np.int32), I32, shape)
    return run


# ---- TABLE ---------------------------------------------------------------------------------
#: an int16 TABLE with a constant table gathers from a lookup array of all 65536 inputs when
#: its input has at least this many elements; a smaller input (e.g. the 16 values of a
#: per-token rsqrt) is cheaper to evaluate directly than the array is to build
_LUT_MIN_ELEMENTS = 1 << 12
#: building the lookup array costs about as much as evaluating this many inputs directly: an
#: input smaller than that is evaluated directly on the first run of its plan, and the array is
#: built on the second (a graph run once never builds it)
_LUT_COST_ELEMENTS = 1 << 16


@register(Op.TABLE, {(I8, I8, I8): "PRO-INT", (I16, I16, I32): "EXT-INT16"},
          operands=("input1", "table"))
def table(node):
    shape = check_same_shape(node)
    tt = node.inputs[1]
    is16 = node.inputs[0].dtype == I16
    size = 513 if is16 else 256
    if tuple(tt.shape) != (size,):
        node.error(f"table has shape {list(tt.shape)}, expected [{size}]")
    if node.validating:
        return None
    k = node.k
    if not is16:
        # table[value + 128], indexed through the unsigned view: u = value + 128 mod 256
        rot_const = np.roll(node.const(1), -128) if node.is_const(1) else None

        def run8(x, tbl):
            rot = rot_const if rot_const is not None else np.roll(tbl, -128)
            return finish(rot[np.asarray(x).view(np.uint8)], I8, shape)
        return run8

    def report(bad):
        node.require(bad == 0, "TABLE slope (table[index+1] - table[index]) outside int16",
                     count=int(bad))

    def run16(x, tbl):
        flat = x.reshape(-1)
        out = np.empty(flat.shape, np.int32)
        report(k.table16(flat, np.ascontiguousarray(tbl, np.int16), out))
        return out.reshape(shape)

    elements = math.prod(shape)
    if not (node.is_const(1) and elements >= _LUT_MIN_ELEMENTS):
        return run16
    # constant table: evaluate apply_lookup_s once for all 65536 inputs, then gather; derived
    # once per constant table, shared by every TABLE that uses it (see _LUT_COST_ELEMENTS)
    table_const = np.ascontiguousarray(node.const(1), np.int16)
    key = ("table16_lut", id(node.const(1)))
    # [lut, badmask, any bad] once built; [] while the direct evaluation is cheaper
    built = []
    first = [elements < _LUT_COST_ELEMENTS]

    def run_lut(x, tbl):
        if first[0]:
            first[0] = False
            return run16(x, table_const)
        if not built:
            lut, badmask = node.derive(key, k.table16_lut, table_const)
            built[:] = [lut, badmask, bool(badmask.any())]
        lut, badmask, any_bad = built
        flat = x.reshape(-1)
        if any_bad:
            report(int(np.count_nonzero(badmask[flat.view(np.uint16)])))
        return np.take(lut, flat.view(np.uint16)).reshape(shape)
    return run_lut
