"""MATMUL: a batched exact float GEMM (see conv_dense's docstring for why the float sums are
exact integers), rows of A spread over the worker threads, then ``_epilogue.finalize_rows``.

Same name and arguments as the spec twin in ``tosaint.kernels.spec.tensor_ops``.
"""
import numpy as np

from . import _threads
from ._epilogue import finalize_rows
from ._threads import run_parallel
from .conv_dense import exact_float_type
from .spec import tensor_ops as _spec

__all__ = ["matmul"]


def matmul(A, B, A_zp, B_zp, out48):
    """Batched exact float GEMM.  bound = C * max|A-A_zp| * max|B-B_zp| (see conv_dense):
    int8: C * 255 * 255; int16 x int16 (zero points 0): C * 2**30, float64-exact for C < 2**23."""
    N, H, C = A.shape
    W = B.shape[2]
    amax = max(abs(-128 - int(A_zp)), abs(127 - int(A_zp))) if A.dtype == np.int8 else 32768
    bmax = max(abs(-128 - int(B_zp)), abs(127 - int(B_zp))) if B.dtype == np.int8 else 32768
    ftype = exact_float_type(C * amax * bmax)
    if ftype is None:
        return _spec.matmul(A, B, A_zp, B_zp, out48)
    b = B.astype(ftype)
    if B_zp:
        b -= B_zp
    out = np.empty((N, H, W), np.int64 if out48 else np.int32)
    zero = np.zeros(1, np.int64)
    # blocks of rows of A (per batch), each worker its own
    rows = max(1, min(H, max(64, _threads.BLOCK_ELEMS // max(C, W, 1))))
    per = -(-H // rows)

    def work(tid, blocks):
        count = 0
        for blk in blocks:
            n, h0 = divmod(blk, per)
            h0 *= rows
            h1 = min(H, h0 + rows)
            a = A[n, h0:h1].astype(ftype)
            if A_zp:
                a -= A_zp
            acc = a @ b[n]                                   # exact: see above
            count += finalize_rows(acc, zero, out[n, h0:h1], out48)
        return count

    count = run_parallel(N * per, work)
    return out, int(count)
