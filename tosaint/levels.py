"""Every limit tosaint checks, in one place: the spec's level limits and tosaint's own
resource limits (memory budget, WHILE_LOOP iterations, control-flow depth).

The level limits are the "8K" level of the spec (tosa.xml ``<levels>``); they are checked only
when a plan is prepared for that level (``level="8K"``).  ``MAX_RANK`` is also the highest rank
the reference model instantiates its operators for, so ops reject rank 7 with or without a
level.  The resource limits are tosaint's, not the spec's: they turn a hostile graph (a few
hundred bytes asking for many GiB, or a loop that never ends) into a fast, clear error.
"""
import os

#: the highest tensor rank (the 8K level's MAX_RANK, and the ranks the reference model
#: instantiates its operators for: a rank-7 tensor is rejected even without a level)
MAX_RANK = 6

#: TOSA level "8K" limits (tosa.xml <levels>)
MAX_KERNEL = 8192
MAX_STRIDE = 8192
MAX_SCALE = 256
MAX_LOG2_SIZE = 31
MAX_NESTING = 6
MAX_TENSOR_LIST_SIZE = 64
LEVEL_8K = dict(MAX_RANK=MAX_RANK, MAX_KERNEL=MAX_KERNEL, MAX_STRIDE=MAX_STRIDE,
                MAX_SCALE=MAX_SCALE, MAX_LOG2_SIZE=MAX_LOG2_SIZE, MAX_NESTING=MAX_NESTING,
                MAX_TENSOR_LIST_SIZE=MAX_TENSOR_LIST_SIZE)

#: the accepted spellings of ``level=`` -> the level tosaint checks (None: no level checks)
LEVELS = {None: None, "none": None, "NONE": None, "8K": "8K", "8k": "8K", "EIGHTK": "8K"}


def level_name(level):
    """The canonical level for ``level=`` (None or "8K"); ValueError for anything else."""
    try:
        return LEVELS[level]
    except (KeyError, TypeError):
        raise ValueError(f"level must be None, 'none' or '8K', not {level!r}") from None


def physical_memory():
    """Bytes of physical memory (0 when the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


#: default memory budget of one run, in bytes: the peak of the tensors the run allocates
#: (intermediates, outputs and the large kernel scratch, not the graph's constants), checked
#: at prepare time.  A quarter of physical memory, at most 1 GiB: an int8/int16 network's
#: activations are far smaller, and a few hundred bytes of hostile graph must not be able to
#: ask for more.  Settable per plan: ``prepare(..., max_memory=)``.
DEFAULT_MAX_MEMORY = min(physical_memory() // 4 or (1 << 30), 1 << 30)

#: default WHILE_LOOP iteration limit (the spec has none; a runaway loop ends with a
#: ResourceLimitError).  Settable per plan: ``prepare(..., max_while_iterations=)``.
DEFAULT_MAX_WHILE_ITERATIONS = 100_000

#: control-flow blocks nested deeper than this are refused (without a level): deeper nesting
#: would exhaust the Python stack
MAX_CONTROL_FLOW_DEPTH = 64
