"""``gc_paused``: the cyclic garbage collector paused while a graph is loaded or prepared.

Loading and preparing allocate thousands of small objects (tensors, operators, nodes, steps)
and free almost none, so every collection the allocations trigger finds nothing, yet a full
one walks every object of the process (in a test harness that has imported torch, millions).
``schema.loader.load`` and ``interpreter.Plan`` run under ``gc_paused()``; reference cycles they
leave are collected after it, as usual.  Concurrent and nested pauses count: the collector is
enabled again when the last one ends, and only if it was enabled when the first began.
"""
import gc
from _thread import allocate_lock

_lock = allocate_lock()
_depth = 0
_was_enabled = False


class gc_paused:
    """Context manager: no automatic collection inside (see the module docstring)."""

    __slots__ = ()

    def __enter__(self):
        global _depth, _was_enabled
        with _lock:
            if _depth == 0:
                _was_enabled = gc.isenabled()
                gc.disable()
            _depth += 1
        return self

    def __exit__(self, *exc):
        global _depth
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
        return False
