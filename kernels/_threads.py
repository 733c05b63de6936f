"""Threads for the heavy kernels: our own small worker pool, with OpenBLAS single-threaded.

OpenBLAS's worker threads (like libgomp's) spin-wait between calls; alternating them with our
other work on a busy 2-core machine made one int8 CONV2D take ~1 s instead of ~3 ms.  So while
a kernel runs, OpenBLAS is set to one thread (``single_threaded_blas``: the setting is
process-wide in OpenBLAS, so it is restored when the last kernel running leaves) and the work
blocks are spread over the calling thread plus a small thread pool (NumPy and the Numba kernels
release the GIL).  Every kernel computes exact integers per block, so results do not depend on
the number of threads.  The thread count is Numba's (``NUMBA_NUM_THREADS``,
``numba.set_num_threads``).
"""
import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

#: work block size in elements, per worker thread (float64: 1 MiB): peak memory stays near
#: the operands' while a block stays in cache
BLOCK_ELEMS = 1 << 17

_POOL = None
_POOL_LOCK = threading.Lock()
_BLAS_LOCK = threading.Lock()
_BLAS_DEPTH = 0
_BLAS_SAVED = None


def _blas_thread_functions():
    """(get, set) of the OpenBLAS bundled with numpy, or (None, None)."""
    here = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(here, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in (("scipy_openblas_get_num_threads64_",
                           "scipy_openblas_set_num_threads64_"),
                          ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                          ("openblas_get_num_threads", "openblas_set_num_threads")):
            try:
                g, s = getattr(lib, get), getattr(lib, set_)
            except AttributeError:
                continue
            g.restype = ctypes.c_int
            g.argtypes = []
            s.restype = None
            s.argtypes = [ctypes.c_int]
            return g, s
    return None, None


_BLAS_GET, _BLAS_SET = _blas_thread_functions()


class single_threaded_blas:
    """Context manager: OpenBLAS runs on one thread while any kernel is inside it."""

    def __enter__(self):
        global _BLAS_DEPTH, _BLAS_SAVED
        if _BLAS_SET is None:
            return
        with _BLAS_LOCK:
            if _BLAS_DEPTH == 0:
                _BLAS_SAVED = _BLAS_GET()
                if _BLAS_SAVED != 1:
                    _BLAS_SET(1)
            _BLAS_DEPTH += 1

    def __exit__(self, *exc):
        global _BLAS_DEPTH
        if _BLAS_SET is None:
            return
        with _BLAS_LOCK:
            _BLAS_DEPTH -= 1
            if _BLAS_DEPTH == 0 and _BLAS_SAVED not in (None, 1):
                _BLAS_SET(_BLAS_SAVED)


def threads():
    """The number of threads a kernel called from this thread may use."""
    return max(1, numba.get_num_threads())


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                       thread_name_prefix="tosaint-kernel")
    return _POOL


def _forget_pool():
    """A forked child inherits the pool object but not its threads: start a new one there."""
    global _POOL, _POOL_LOCK, _BLAS_LOCK, _BLAS_DEPTH
    _POOL = None
    _POOL_LOCK = threading.Lock()
    _BLAS_LOCK = threading.Lock()
    _BLAS_DEPTH = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def run_parallel(nblocks, work):
    """work(tid, blocks) for tid in 0..nt-1 (blocks tid, tid+nt, ...): tid 0 in the calling
    thread, the others on the pool, BLAS single-threaded; returns the sum of the results."""
    if nblocks <= 1:      # small problems: no thread hand-off (per-call overhead matters)
        with single_threaded_blas():
            return work(0, range(nblocks))
    nt = max(1, min(threads(), nblocks))
    with single_threaded_blas():
        futures = [_pool().submit(work, t, range(t, nblocks, nt)) for t in range(1, nt)]
        total = work(0, range(0, nblocks, nt))
        return total + sum(f.result() for f in futures)
