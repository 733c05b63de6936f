"""The one place where Numba options are set.

Integer kernels never use fastmath; every kernel is cached on disk so a warm process starts
fast.  ``jit`` is for serial kernels, ``pjit`` for kernels that use ``prange`` over both cores.
"""
import os

# Numba's default "omp" threading layer (libgomp) spin-waits between parallel regions.  When
# there are more runnable threads than cores (a shared or busy machine), every prange launch
# then costs ~100 ms instead of microseconds (measured: a 1x1x1x16 CONV2D took 78 ms instead of
# 0.04 ms at load 11 on 2 cores).  Passive waiting, unless the user chose a policy, avoids that;
# it must be set before libgomp is loaded (the first parallel kernel call).
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numba  # noqa: E402

OPTIONS = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")

jit = numba.njit(**OPTIONS)
pjit = numba.njit(parallel=True, **OPTIONS)
prange = numba.prange
