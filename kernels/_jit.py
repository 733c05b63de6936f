"""The one place where Numba options are set.

Integer kernels never use fastmath; every kernel is cached on disk so a warm process starts
fast.  ``jit`` is for serial kernels, ``pjit`` for kernels that use ``prange`` over both cores.
"""
import numba

OPTIONS = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")

jit = numba.njit(**OPTIONS)
pjit = numba.njit(parallel=True, **OPTIONS)
prange = numba.prange
