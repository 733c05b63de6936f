"""Twins of ``tosaint.kernels.data_layout``, transcribed from the pseudocode
(pseudocode/operators/{CONCAT,PAD,RESHAPE,REVERSE,SLICE,TILE,TRANSPOSE}.tosac).

``for_each_data_position(index in shape)`` is written once for all positions at a time: each
index component is an integer array over the output (``np.indices``), the pseudocode's index
arithmetic is applied to those arrays, and ``tensor_read`` is a fancy-index read.
"""
import numpy as np

__all__ = ["concat", "pad", "reshape", "reverse", "slice_", "tile", "transpose"]


def _c(a):
    """``a`` as a C-contiguous array of the same rank (np.ascontiguousarray makes 0-d 1-d)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def _positions(shape):
    """The index components of every data position of ``shape`` (a list of arrays)."""
    if len(shape) == 0:
        return []
    return list(np.indices(shape, dtype=np.int64))


def _read(x, index, shape):
    if x.ndim == 0:
        return np.full(shape, x[()], dtype=x.dtype)
    return x[tuple(index)]


def concat(arrays, axis):
    shape = list(arrays[0].shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    out = np.zeros(shape, dtype=arrays[0].dtype)
    index1 = _positions(shape)
    index2 = [c.copy() for c in index1]
    for t in arrays:
        sel = (index2[axis] >= 0) & (index2[axis] < t.shape[axis])
        src = [c[sel] for c in index2]
        out[tuple(c[sel] for c in index1)] = t[tuple(src)]
        index2[axis] = index2[axis] - t.shape[axis]
    return out


def pad(x, padding, pad_value):
    rank = x.ndim
    shape = tuple(int(padding[2 * i]) + x.shape[i] + int(padding[2 * i + 1])
                  for i in range(rank))
    index = _positions(shape)
    if rank == 0:
        return x.copy()
    is_pad = np.zeros(shape, dtype=bool)
    index1 = []
    for i in range(rank):
        c = index[i] - int(padding[i * 2])
        is_pad |= (c < 0) | (c >= x.shape[i])
        index1.append(np.clip(c, 0, x.shape[i] - 1))
    value = np.where(is_pad, x.dtype.type(pad_value), x[tuple(index1)])
    return value.astype(x.dtype)


def _offset_to_index(shape, offset):
    index = []
    for d in reversed(shape):
        index.append(offset % d)
        offset = offset // d
    return list(reversed(index))


def reshape(x, shape):
    shape = tuple(int(s) for s in shape)
    index = _positions(shape)
    offset = np.zeros(shape, dtype=np.int64)
    for i, d in enumerate(shape):            # tensor_index_to_offset
        offset = offset * d + index[i]
    tmp_index = _offset_to_index(x.shape, offset)
    return _c(_read(x, tmp_index, shape))


def reverse(x, axis):
    shape = x.shape
    index = _positions(shape)
    tmp_index = list(index)
    tmp_index[axis] = shape[axis] - 1 - index[axis]
    return _read(x, tmp_index, shape)


def slice_(x, start, size):
    shape = tuple(int(s) for s in size)
    index = _positions(shape)
    tmp_index = [index[i] + int(start[i]) for i in range(len(shape))]
    return _c(_read(x, tmp_index, shape))


def tile(x, multiples):
    shape = tuple(x.shape[i] * int(multiples[i]) for i in range(x.ndim))
    index = _positions(shape)
    tmp_index = [index[i] % x.shape[i] for i in range(len(shape))]
    return _c(_read(x, tmp_index, shape))


def transpose(x, perms):
    shape = tuple(x.shape[int(p)] for p in perms)
    index = _positions(shape)
    tmp_index = [None] * len(shape)
    for i in range(len(shape)):
        tmp_index[int(perms[i])] = index[i]
    return _c(_read(x, tmp_index, shape))
