"""``tosa_reference_model`` as tosaint: the binding's ``run`` and ``GraphStatus``, call for call.

    from tosaint.compat import reference_model
    outputs_np, status = reference_model.run(graph_bytes, inputs_np, verbosity="MED",
                                             initialize_variable_tensor_from_numpy=True,
                                             debug_mode=None)
    assert status == reference_model.GraphStatus.TOSA_VALID
    reference_model.last_diagnostics()     # what tosaint found in this thread's last call

This module owns the binding's calling convention: its arguments, statuses, exceptions and
output dtypes, as the tosa-tools 2026.x binding (``tosa_reference_model.run``) has them:

* ``inputs`` is a list or tuple of ``numpy.ndarray`` in graph-input order (anything else:
  ``TypeError``).  As in the binding, an input is taken as raw bytes: an array whose byte
  size equals the graph input's is accepted whatever its shape and dtype, and reinterpreted
  (noted in ``last_diagnostics()``); a wrong count or byte size raises ``ValueError``
  ("Invalid inputs.").  int48 inputs, which the binding cannot take, are int64 arrays here.
* A graph that does not load, or breaks an ERROR_IF while being prepared, raises
  ``ValueError`` ("Invalid TOSA graph"), as the binding does for both; the exception is a
  ``TosaError`` too and carries ``status = GraphStatus.TOSA_ERROR``.  An ERROR_IF found while
  running gives ``TOSA_ERROR``; a REQUIRE where the reference model reports UNPREDICTABLE
  gives ``TOSA_UNPREDICTABLE``.  With a status other than TOSA_VALID the outputs are arrays of
  the declared shape holding zeros (the binding's values there are unspecified).
* What is not the graph's fault raises as such: ``UnsupportedOp`` for an operator or type
  tosaint does not run (floating-point graphs), ``ResourceLimitError`` past tosaint's limits.
* Outputs come back in graph-output order as new, writable arrays of the storage dtype
  (bool, int8, int16, int32).  int48 outputs are int64 here; the binding returns an empty
  float64 array for them (and for int4 and shape outputs, which are int8 / int64 here).
* ``initialize_variable_tensor_from_numpy=True`` starts every variable tensor (EXT-VARIABLE)
  at zero, as the binding does (it skips the flatbuffer's initial values and has no way to
  pass others); otherwise variables start from their initial values.
* ``tosa_level`` is "NONE" or "EIGHTK"; ``verbosity`` and ``debug_mode`` are checked against
  the binding's values (a bad one raises ``ValueError``; the binding aborts the process) and
  otherwise only decide whether the diagnostics are printed; the other keywords
  (``inst_id``, ``debug_filename``, ``dump_intermediates``, ``fp_format``, ...) and unknown
  ones are accepted and ignored.

The environment chooses what runs (read at every call):

* ``TOSAINT_REFERENCE``: ``tosaint`` (default), ``both`` (run the real binding as well when it
  is installed and fail on any difference, naming the first diverging operator: see
  ``tosaint.compat.dual``) or ``reference`` (the real binding only);
* ``TOSAINT_COMPAT_DUMP=DIR``: on a status other than TOSA_VALID, an invalid graph or a
  difference, write the graph, the inputs and the diagnostics to a case folder under DIR
  (``tosaint.compat.dump``) and name it in the message;
* ``TOSAINT_COMPAT_IMPL``: ``numba`` (default) or ``spec`` (the NumPy twins);
* ``TOSAINT_COMPAT_LOG=FILE``: append one line per call (process id, mode, graph digest), to
  count the graphs a test run sent through the compat layer.
"""
from __future__ import annotations

import hashlib
import os

from . import dual
from .engine import (TOSAINT_COMPAT, GraphStatus, InvalidGraph, InvalidInputs,  # noqa: F401
                     _graph_bytes, _run, last_diagnostics, mode)


def run(tosa_binary, inputs, *, inst_id=0, debug_filename=None, is_unbuffered=False,
        debug_mode=None, verbosity="NONE", dump_intermediates=0,
        initialize_variable_tensor_from_numpy=0, fp_format="0.5", precise_mode=0,
        bounds_mode=False, tosa_level="NONE", **ignored):
    """Run a serialized TOSA graph on ``inputs``: ``(outputs, GraphStatus)`` as the
    reference model binding returns them (see the module docstring for the differences)."""
    m = mode()
    _log_call(tosa_binary, m)
    if m != "tosaint":
        kwargs = dict(inst_id=inst_id, debug_filename=debug_filename,
                      is_unbuffered=is_unbuffered, debug_mode=debug_mode, verbosity=verbosity,
                      dump_intermediates=dump_intermediates,
                      initialize_variable_tensor_from_numpy=initialize_variable_tensor_from_numpy,
                      fp_format=fp_format, precise_mode=precise_mode, bounds_mode=bounds_mode,
                      tosa_level=tosa_level)
        if m == "reference":
            return dual.reference_only(tosa_binary, inputs, kwargs)
        return dual.run_both(tosa_binary, inputs, kwargs)
    return _run(tosa_binary, inputs, verbosity=verbosity, debug_mode=debug_mode,
                tosa_level=tosa_level,
                zero_variables=bool(initialize_variable_tensor_from_numpy))


def _log_call(tosa_binary, m):
    """TOSAINT_COMPAT_LOG=FILE: one line per call (process, mode, graph digest), appended."""
    path = os.environ.get("TOSAINT_COMPAT_LOG")
    if not path:
        return
    try:
        digest = hashlib.sha256(_graph_bytes(tosa_binary)).hexdigest()[:12]
    except TypeError:
        digest = "-"
    try:
        with open(path, "a") as f:
            f.write(f"{os.getpid()} {m} {digest}\n")
    except OSError:
        pass


__all__ = ["GraphStatus", "run", "last_diagnostics"]
