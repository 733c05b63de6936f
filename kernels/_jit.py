"""The one place where Numba options are set, and the scalar integer rules of ``_int``
compiled for the kernels.

Integer kernels never use fastmath; every kernel is cached on disk so a warm process starts
fast.  ``jit`` compiles a serial kernel, ``inline`` a one-line helper that is inlined into its
callers; nothing uses ``parallel=True``: kernels that use both cores split their work
over ``_threads.run_parallel`` (they release the GIL), which compiles far faster than Numba's
``parallel=True``: the prange depthwise kernel took 15.6 s (wall, at load 4.5 on 2 cores) to
compile, its serial row kernel takes about 1.2 s of CPU.
"""
import os

# Numba's default "omp" threading layer (libgomp) spin-waits between parallel regions.  When
# there are more runnable threads than cores (a shared or busy machine), every prange launch
# then costs ~100 ms instead of microseconds (measured: a 1x1x1x16 CONV2D took 78 ms instead of
# 0.04 ms at load 11 on 2 cores).  Passive waiting, unless the user chose a policy, avoids that;
# it must be set before libgomp is loaded (the first parallel kernel call).
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numba  # noqa: E402

from . import _int  # noqa: E402

OPTIONS = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")

jit = numba.njit(**OPTIONS)
#: for one-line helpers called from kernels: inlined into the caller's IR, so they cost no
#: compilation of their own (each separately compiled helper costs ~0.1-0.3 s on a fresh cache)
inline = numba.njit(inline="always", **OPTIONS)

#: the rules of ``_int`` for use inside kernels
wrap32 = inline(_int.wrap32)
sat48 = inline(_int.sat48)

#: for callers that write their own prange loop (none of the kernels does)
prange = numba.prange
