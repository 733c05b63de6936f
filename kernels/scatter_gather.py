"""GATHER and SCATTER (spec chapter "Scatter/Gather") as Numba kernels.

A REQUIRE that fails (index outside 0..K-1, a SCATTER output position written twice) is counted
and returned; the op layer reports it.  Out-of-range positions are skipped, never read or
written out of bounds.
"""
import numpy as np

from ._jit import jit

__all__ = ["gather", "scatter"]


@jit
def gather(values, indices):
    """values[N,K,C], indices[N,W] (int32) -> (output[N,W,C], count of out-of-range indices)."""
    n_, k_, c_ = values.shape
    w_ = indices.shape[1]
    out = np.zeros((n_, w_, c_), dtype=values.dtype)
    bad = 0
    for n in range(n_):
        for w in range(w_):
            k = indices[n, w]
            if k < 0 or k >= k_:
                bad += 1
                continue
            for c in range(c_):
                out[n, w, c] = values[n, k, c]
    return out, bad


@jit
def scatter(values_in, indices, input):
    """(values_out[N,K,C], out-of-range count, count of positions written more than once)."""
    n_, k_, c_ = values_in.shape
    w_ = indices.shape[1]
    out = values_in.copy()
    modified = np.zeros((n_, k_), dtype=np.bool_)
    bad = 0
    dup = 0
    for n in range(n_):
        for w in range(w_):
            k = indices[n, w]
            if k < 0 or k >= k_:
                bad += 1
                continue
            if modified[n, k]:
                dup += 1
            modified[n, k] = True
            for c in range(c_):
                out[n, k, c] = input[n, w, c]
    return out, bad, dup
