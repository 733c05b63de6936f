"""The real reference model binding beside tosaint: ``TOSAINT_REFERENCE=both`` and ``=reference``.

``real_binding()`` finds the tosa-tools binding even while ``import tosa_reference_model``
resolves to tosaint's shim (``tosaint.compat.shim``): it searches ``sys.path`` for a
``tosa_reference_model`` package that is not a shim and loads it under a private module
name.  It returns None when the binding is not installed.

``run_both`` runs one ``reference_model.run`` call on tosaint and on the binding and compares
exceptions, statuses and outputs (shape, dtype, then every value; int48, int4 and shape
outputs, which the binding returns empty, are not compared).  On any difference it runs the
binding once more on a copy of the graph in which every intermediate tensor is an output,
lets ``tosaint.diff`` name the first diverging operator, writes a case folder when
``TOSAINT_COMPAT_DUMP`` is set, and raises ``ReferenceMismatch``, an AssertionError, so the
calling test fails with that message.  Without the binding it warns once and runs tosaint.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.machinery import PathFinder
from pathlib import Path

import numpy as np

from ..errors import TosaError
from ..schema.definition import DType
from . import engine as rm

NAME = "tosa_reference_model"
PRIVATE_NAME = "_tosaint_real_tosa_reference_model"
#: a file in the shim package that marks it as tosaint's stand-in
SHIM_MARKER = "TOSAINT_SHIM"
_NOT_COMPARED = ("INT48", "INT4", "SHAPE")

_real = None
_warned = False


class ReferenceMismatch(TosaError, AssertionError):
    """tosaint and the reference model binding disagree on a graph (``TOSAINT_REFERENCE=both``)."""


def is_shim(package_dir) -> bool:
    return (Path(package_dir) / SHIM_MARKER).exists()


def real_binding():
    """The tosa-tools ``tosa_reference_model`` module, or None when it is not installed."""
    global _real
    if _real is not None:
        return _real or None
    loaded = sys.modules.get(NAME)
    if loaded is not None and not getattr(loaded, "TOSAINT_COMPAT", False):
        _real = loaded
        return loaded
    for entry in sys.path:
        spec = PathFinder.find_spec(NAME, [entry or "."])
        if spec is None or not spec.submodule_search_locations or spec.origin is None:
            continue
        pkg = Path(list(spec.submodule_search_locations)[0])
        if is_shim(pkg):
            continue
        plain = importlib.util.find_spec(NAME) if loaded is None else None
        if plain is not None and plain.origin == spec.origin:
            _real = importlib.import_module(NAME)      # no shim in the way: import it as is
        else:
            spec = importlib.util.spec_from_file_location(
                PRIVATE_NAME, spec.origin, submodule_search_locations=[str(pkg)])
            module = importlib.util.module_from_spec(spec)
            sys.modules[PRIVATE_NAME] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(PRIVATE_NAME, None)
                raise
            _real = module
        return _real
    _real = False
    return None


def reference_only(tosa_binary, inputs, kwargs):
    """``TOSAINT_REFERENCE=reference``: the binding's own answer, status as ours."""
    real = real_binding()
    if real is None:
        raise TosaError("TOSAINT_REFERENCE=reference, but the reference model binding "
                        "(tosa_reference_model from tosa-tools) is not installed")
    outs, status = real.run(tosa_binary, inputs, **kwargs)
    return outs, rm.GraphStatus[status.name]


def _outcome(fn):
    try:
        return fn(), None
    except (TypeError, ValueError) as e:
        return None, e


def _describe(res, exc):
    if exc is not None:
        return f"raised {type(exc).__name__}: {exc}"
    return f"returned {res[1].name}"


def run_both(tosa_binary, inputs, kwargs):
    """Run on tosaint and on the binding; return tosaint's answer when they agree."""
    global _warned
    rm.check_options(kwargs["verbosity"], kwargs["debug_mode"], kwargs["tosa_level"])
    real = real_binding()
    zero = bool(kwargs["initialize_variable_tensor_from_numpy"])

    def ours():
        return rm._run(tosa_binary, inputs, verbosity=kwargs["verbosity"],
                       debug_mode=kwargs["debug_mode"], tosa_level=kwargs["tosa_level"],
                       zero_variables=zero)
    if real is None:
        if not _warned:
            _warned = True
            print("tosaint: TOSAINT_REFERENCE=both, but the reference model binding is not "
                  "installed: running tosaint only", file=sys.stderr)
        return ours()
    t_res, t_exc = _outcome(ours)
    notes = rm.last_diagnostics()
    r_res, r_exc = _outcome(lambda: real.run(tosa_binary, inputs, **kwargs))
    problems = []
    if (t_exc is None) != (r_exc is None) or (
            t_exc is not None and isinstance(t_exc, TypeError) != isinstance(r_exc, TypeError)):
        problems.append(f"tosaint {_describe(t_res, t_exc)}; the reference model "
                        f"{_describe(r_res, r_exc)}")
    elif t_exc is not None:
        raise t_exc                                   # both rejected the call: agreed
    elif t_res[1].name != r_res[1].name:
        problems.append(f"tosaint returned {t_res[1].name}, the reference model "
                        f"{r_res[1].name}")
    elif t_res[1] == rm.GraphStatus.TOSA_VALID:
        problems += _compare_outputs(tosa_binary, t_res[0], r_res[0])
    if not problems:
        rm._local.diagnostics = notes
        return t_res
    raise _mismatch(real, tosa_binary, inputs, kwargs, problems, notes, t_res, r_res)


def _compare_outputs(tosa_binary, ours, theirs):
    from ..schema.loader import load
    graph = load(rm._graph_bytes(tosa_binary))
    problems = []
    if len(ours) != len(theirs):
        return [f"tosaint returned {len(ours)} outputs, the reference model {len(theirs)}"]
    for name, a, b in zip(graph.outputs, ours, theirs):
        dt = DType(graph.main.tensors[name].dtype)
        if b.size == 0 and a.size != 0 and dt.name in _NOT_COMPARED:
            continue
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"output {name!r}: tosaint {a.dtype} {list(a.shape)}, the "
                            f"reference model {b.dtype} {list(b.shape)}")
        elif not np.array_equal(a, b):
            n = int(np.count_nonzero(a != b))
            problems.append(f"output {name!r}: {n}/{a.size} values differ")
    return problems


def reference_tensors(real, graph, named, kwargs):
    """Every tensor of ``graph`` as the binding computes it (int48/int4 ones, which it
    cannot return, are left out), or {} when it does not run the expanded graph."""
    from ..diff import with_all_outputs
    g2 = with_all_outputs(graph)
    try:
        outs, status = real.run(g2.to_bytes(), [named[n] for n in graph.inputs], **kwargs)
    except (TypeError, ValueError):
        return {}
    if status.name != "TOSA_VALID":
        return {}
    return {n: a for n, a in zip(g2.outputs, outs)
            if not (a.size == 0 and DType(g2.main.tensors[n].dtype).name in _NOT_COMPARED)}


def _mismatch(real, tosa_binary, inputs, kwargs, problems, notes, t_res, r_res):
    from . import dump
    from ..diff import diff
    data = rm._graph_bytes(tosa_binary)
    lines = ["TOSAINT_REFERENCE=both: tosaint and the reference model differ on this graph:"]
    lines += [f"  {p}" for p in problems]
    graph = named = None
    try:
        graph, _ = rm.prepared(data, level=rm.LEVELS[kwargs["tosa_level"]], zero_variables=bool(
            kwargs["initialize_variable_tensor_from_numpy"]), impl="numba")
        named = rm.graph_inputs(graph, list(inputs), [])
    except (TosaError, TypeError, ValueError) as e:
        lines.append(f"  (no operator-level comparison: {e})")
    ref_outs = None
    if graph is not None:
        ref = reference_tensors(real, graph, named, kwargs)
        if r_res is not None and r_res[1].name == "TOSA_VALID":
            ref_outs = dict(zip(graph.outputs, r_res[0]))
        if ref:
            report = diff(graph, named, against=ref)
            first = report.first
            if first is not None:
                where = f" at {first.location}" if first.location else ""
                lines.append(f"first diverging operator: #{first.op_index} {first.op}{where}: "
                             f"{first.describe()}")
            else:
                lines.append("no intermediate tensor differs (the difference is in the "
                             "status or in values the binding cannot return)")
            if report.tosaint_error:
                lines.append(f"tosaint stopped: {report.tosaint_error}")
    lines += [f"tosaint: {n}" for n in notes]
    t_outs = (dict(zip(graph.outputs, t_res[0])) if graph is not None and t_res is not None
              else None)
    where = dump.failure(data, named if named is not None else list(inputs), graph,
                         [ln.strip() for ln in lines[1:]], status="mismatch", reference_outputs=ref_outs,
                         tosaint_outputs=t_outs, mode="both")
    if where:
        lines.append(f"case written to {where}")
    return ReferenceMismatch("\n".join(lines))
