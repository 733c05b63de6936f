"""Data-layout kernels (spec chapter "Data Layout"): CONCAT, PAD, RESHAPE, REVERSE, SLICE, TILE,
TRANSPOSE.

These are pure data movement, so the fast side is plain NumPy (already optimal memory copies;
Numba would only add compile time).  The twins in ``tosaint.kernels.spec.data_layout`` follow
the pseudocode index by index.  Every function returns a new C-contiguous array.
"""
import numpy as np

__all__ = ["concat", "pad", "reshape", "reverse", "slice_", "tile", "transpose"]


def _c(a):
    """``a`` as a C-contiguous array of the same rank (np.ascontiguousarray makes 0-d 1-d)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def concat(arrays, axis):
    return _c(np.concatenate(arrays, axis=axis))


def pad(x, padding, pad_value):
    """``padding``: int64 [2*rank] (before, after) per axis; ``pad_value``: scalar of x.dtype."""
    rank = x.ndim
    out_shape = tuple(int(padding[2 * i]) + x.shape[i] + int(padding[2 * i + 1])
                      for i in range(rank))
    out = np.full(out_shape, pad_value, dtype=x.dtype)
    out[tuple(slice(int(padding[2 * i]), int(padding[2 * i]) + x.shape[i])
              for i in range(rank))] = x
    return out


def reshape(x, shape):
    return _c(x.reshape(tuple(int(s) for s in shape)))


def reverse(x, axis):
    return _c(np.flip(x, axis=axis))


def slice_(x, start, size):
    return _c(x[tuple(slice(int(b), int(b) + int(n))
                                        for b, n in zip(start, size))])


def tile(x, multiples):
    return _c(np.tile(x, tuple(int(m) for m in multiples))
                                if x.ndim else x.copy())


def transpose(x, perms):
    return _c(np.transpose(x, tuple(int(p) for p in perms)))
