"""Logical TOSA dtypes versus their NumPy storage: one table.

int4 is held in int8, int48 in int64 (sign-extended from bit 47), bool in numpy bool,
shape values in int64.  ``RANGE`` gives the spec's value range of every integer type
(int4 is -7..7: -8 is excluded to keep weights symmetric).
"""
import numpy as np

from .schema.definition import DType

STORAGE = {
    DType.BOOL: np.dtype(np.bool_),
    DType.INT4: np.dtype(np.int8),
    DType.INT8: np.dtype(np.int8),
    DType.INT16: np.dtype(np.int16),
    DType.INT32: np.dtype(np.int32),
    DType.INT48: np.dtype(np.int64),
    DType.SHAPE: np.dtype(np.int64),
    DType.INT64: np.dtype(np.int64),
    DType.FP32: np.dtype(np.float32),
    DType.FP16: np.dtype(np.float16),
}

#: bytes per element in TosaTensor.data (int4 packs two per byte: see ``schema``)
ENCODED_BITS = {
    DType.BOOL: 8, DType.INT4: 4, DType.INT8: 8, DType.INT16: 16, DType.INT32: 32,
    DType.INT48: 48, DType.SHAPE: 64, DType.INT64: 64, DType.FP32: 32, DType.FP16: 16,
    DType.BF16: 16, DType.FP8E4M3: 8, DType.FP8E5M2: 8,
}

RANGE = {
    DType.BOOL: (0, 1),
    DType.INT4: (-7, 7),
    DType.INT8: (-128, 127),
    DType.INT16: (-32768, 32767),
    DType.INT32: (-(1 << 31), (1 << 31) - 1),
    DType.INT48: (-(1 << 47), (1 << 47) - 1),
    DType.INT64: (-(1 << 63), (1 << 63) - 1),
    DType.SHAPE: (-(1 << 63), (1 << 63) - 1),
}

INTEGER = frozenset({DType.INT4, DType.INT8, DType.INT16, DType.INT32, DType.INT48, DType.INT64})

#: short names used in signatures and messages ("i8", "i48", "bool")
SHORT = {DType.BOOL: "bool", DType.INT4: "i4", DType.INT8: "i8", DType.INT16: "i16",
         DType.INT32: "i32", DType.INT48: "i48", DType.INT64: "i64", DType.SHAPE: "shape",
         DType.FP32: "f32", DType.FP16: "f16", DType.BF16: "bf16"}


def storage(dtype):
    """NumPy storage dtype of a TOSA dtype (raises KeyError for types tosaint cannot hold)."""
    return STORAGE[DType(dtype)]


def short(dtype):
    d = DType(dtype)
    return SHORT.get(d, d.name.lower())


def bitwidth(dtype):
    """Logical width in bits of an integer type (4, 8, 16, 32, 48, 64)."""
    return {DType.INT4: 4, DType.INT8: 8, DType.INT16: 16, DType.INT32: 32,
            DType.INT48: 48, DType.INT64: 64, DType.BOOL: 1}[DType(dtype)]
