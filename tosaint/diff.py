"""Find the first operator where tosaint and another implementation diverge.

    from tosaint.diff import diff
    report = diff("net.tosa", {"x": x}, against="dump_dir")     # .npy per tensor
    report = diff("net.tosa", {"x": x}, oracle=True)            # run the reference model
    print(report.format())
    report.first            # TensorDiff of the first diverging op (None: no divergence)

tosaint runs the graph with ``run_tosa(..., capture=True)``, which returns every intermediate
tensor by name, and compares each of them, in execution (topological) order, with the
reference tensor of the same name.  The first tensor that differs names the first diverging
operator; everything after it usually differs as a consequence.

Where reference tensors come from (``against``):

* a directory of ``.npy`` files named by tensor name: ``<name>.npy`` or the file-name-safe form
  that ``tosaint run --capture`` and ``tosaint golden`` write (characters other than letters,
  digits, ``-_.`` replaced by ``_``);
* a ``.npz`` archive keyed by tensor name;
* a text log of the reference model CLI's ``--dump_intermediates 1``.  The 2026.8 CLI writes no
  files for it: it prints every operator's output tensor as text on stderr (or to the
  ``-o/--logfile`` file), int48 as plain integers.  int8, int4 and bool tensors are printed
  as raw characters and cut at the first zero byte, so those are reported as unreadable;
* ``oracle=True``: tosaint runs the reference model CLI (tosa-tools) itself on a copy of the
  graph in which every intermediate tensor is also a graph output, which gives an exact
  ``.npy`` of every tensor, int8/bool/int48 included (``save_oracle=DIR`` keeps them).
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .dtypes import STORAGE
from .errors import BackendError, InputError, TosaError
from .schema.definition import DType, Op
from .schema.loader import read_model_file


def _legacy_names(name):
    """The file names (without .npy) older tosaint versions saved a tensor under (letters,
    digits and ``-_.`` kept, everything else ``_``): ambiguous, so used only without a map."""
    from .golden import safe_name
    cands = []
    if name and "/" not in name and "\0" not in name and name not in (".", ".."):
        cands.append(name)
    run_safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    for c in (run_safe, safe_name(name), safe_name(name, 10_000)):
        if c not in cands:
            cands.append(c)
    return cands


class Unreadable:
    """A reference tensor that exists but cannot be compared (with the reason)."""

    def __init__(self, reason):
        self.reason = reason

    def __repr__(self):
        return f"Unreadable({self.reason!r})"


# ---- reference tensor sources -----------------------------------------------------------------
class NpyDir:
    """Reference tensors stored as one ``.npy`` per tensor in a directory.

    The directory's name -> file map (``tensors.json`` or ``desc.json``, see
    :mod:`tosaint.testcase`) is used when it has one; otherwise a tensor's file is its
    escaped name, or else a name older versions wrote, when no other tensor of the graph
    could have written the same file (then it is reported unreadable, not guessed)."""

    def __init__(self, path, names=()):
        from .testcase import tensor_map
        self.path = Path(path)
        self.map = tensor_map(self.path)
        self.files = {p.name[:-4]: p for p in sorted(self.path.glob("*.npy"))}
        self.used = set()
        self.owners = {}
        for n in names:
            for c in _legacy_names(n):
                self.owners.setdefault(c, set()).add(n)

    def _file(self, name):
        from .testcase import escape
        if self.map is not None:
            f = self.map.get(name)
            return f[:-4] if f and f.endswith(".npy") and f[:-4] in self.files else None
        if escape(name) in self.files:
            return escape(name)
        for c in _legacy_names(name):
            if c in self.files:
                owners = self.owners.get(c, {name})
                if len(owners) > 1:
                    return Unreadable(f"{c}.npy could hold any of {sorted(owners)}")
                return c
        return None

    def get(self, name):
        c = self._file(name)
        if c is None or isinstance(c, Unreadable):
            return c
        self.used.add(c)
        from .testcase import CaseFolderError, load_npy
        try:
            return load_npy(self.path, self.files[c].name)
        except CaseFolderError as e:
            return Unreadable(str(e))

    def extras(self):
        """Tensor names of the files no graph tensor used."""
        from .testcase import unescape
        inverse = {f[:-4]: n for n, f in (self.map or {}).items()}
        out = []
        for stem in sorted(set(self.files) - self.used):
            try:
                out.append(inverse.get(stem) or unescape(stem))
            except UnicodeDecodeError:
                out.append(stem)
        return out


class MapSource:
    """Reference tensors held in a dict (oracle runs, .npz archives, parsed text dumps)."""

    def __init__(self, tensors):
        self.tensors = dict(tensors)
        self.used = set()

    def get(self, name):
        if name in self.tensors:
            self.used.add(name)
            return self.tensors[name]
        return None

    def extras(self):
        return sorted(set(self.tensors) - self.used)


_HEADER = re.compile(rb"^Name: (.*) DType=(\w+) isValid=(\d+) Rank=(\d+) Shape=\[([^\]]*)\]\s*$")
_INT = re.compile(rb"-?\d+")
_RAW_CHAR_TYPES = ("INT8", "INT4", "BOOL", "UINT8")


def parse_text_dump(data: bytes):
    """Tensors printed by ``tosa_reference_model --dump_intermediates 1`` (stderr / logfile).

    Returns {tensor name: array or Unreadable}; a tensor printed more than once (loops) keeps
    its last value."""
    lines = data.split(b"\n")
    out = {}
    i = 0
    while i < len(lines):
        m = _HEADER.match(lines[i])
        i += 1
        if not m:
            continue
        name = m.group(1).decode("utf-8", "replace")
        dtype = m.group(2).decode()
        shape = tuple(int(x) for x in m.group(5).split(b",") if x.strip())
        if dtype in _RAW_CHAR_TYPES:
            out[name] = Unreadable(f"the reference model prints {dtype} tensors as raw "
                                   "characters (use --oracle)")
            continue
        body, depth, started = [], 0, False
        while i < len(lines):
            ln = lines[i]
            if not started and not ln.strip():
                i += 1
                continue
            if not started and not ln.lstrip().startswith(b"["):
                break
            started = True
            body.append(ln)
            depth += ln.count(b"[") - ln.count(b"]")
            i += 1
            if depth <= 0:
                break
        try:
            st = STORAGE[DType[dtype]]
        except KeyError:
            out[name] = Unreadable(f"{dtype} tensors are not compared")
            continue
        if st.kind not in "iu":
            out[name] = Unreadable(f"{dtype} tensors are not compared")
            continue
        vals = [int(v) for v in _INT.findall(b" ".join(body))]
        size = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if len(vals) != size:
            out[name] = Unreadable(f"{len(vals)} values printed for shape {list(shape)}")
            continue
        out[name] = np.array(vals, dtype=st).reshape(shape)
    return out


def open_reference(against, names=()):
    """A reference source for ``against`` (directory, .npz, text dump file, or dict);
    ``names``: the graph's tensor names (to detect ambiguous file names)."""
    if isinstance(against, dict):
        return MapSource(against)
    p = Path(against)
    if p.is_dir():
        return NpyDir(p, names)
    if not p.exists():
        raise InputError(f"--against {against}: no such file or directory")
    from .testcase import CaseFolderError, case_path
    try:
        case_path(p.parent, p.name, what="--against", outside=True)
    except CaseFolderError as e:
        raise InputError(str(e)) from None
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            return MapSource({k: z[k] for k in z.files})
    try:
        data = read_model_file(p)
    except TosaError as e:
        raise InputError(f"--against {against}: {e}") from None
    tensors = parse_text_dump(data)
    if not tensors:
        raise InputError(f"--against {against}: neither a directory of .npy files, a .npz, nor "
                         "a reference model --dump_intermediates log")
    return MapSource(tensors)


# ---- oracle -----------------------------------------------------------------------------------
def with_all_outputs(graph):
    """A copy of ``graph`` whose main block also outputs every tensor an operator computes
    (constants and shape values excepted), so the reference model writes them all."""
    from .graph import Region
    main = graph.main
    outs = list(main.outputs)
    seen = set(outs)
    for o in main.operators:
        if Op(o.op) in (Op.CONST, Op.CONST_SHAPE):
            continue
        for n in o.outputs:
            t = main.tensors.get(n)
            if n in seen or t is None or t.dtype == DType.SHAPE or t.data is not None:
                continue
            seen.add(n)
            outs.append(n)
    new_main = replace(main, outputs=outs)
    regions = [Region(r.name, [new_main if b is main else b for b in r.blocks])
               for r in graph.regions]
    return replace(graph, regions=regions, _plans={})


def oracle_tensors(graph, inputs, *, save_dir=None):
    """Every intermediate tensor of ``graph`` as computed by the reference model CLI."""
    from . import oracle
    if not oracle.available():
        raise BackendError(f"--oracle needs the reference model: {oracle.ORACLE_INSTALL}")
    g2 = with_all_outputs(graph)
    status, outs = oracle.reference_run(g2, inputs, use_cli=True)
    if status != "TOSA_VALID":
        raise BackendError(f"the reference model returned {status} for this graph and input; "
                           "it writes no tensors then")
    if save_dir is not None:
        from .testcase import write_tensors
        write_tensors(save_dir, outs)
    return outs


# ---- comparison -------------------------------------------------------------------------------
@dataclass
class TensorDiff:
    tensor: str
    op: str                    # "ADD add_3", or "input" for graph inputs
    op_index: int              # position in execution order (-1: graph input)
    status: str                # equal | differs | shape | missing | unreadable | not-computed
    size: int = 0
    dtype: str = ""
    shape: list = field(default_factory=list)
    n_diff: int = 0
    max_abs_diff: int | None = None
    first_index: list | None = None
    tosaint_value: int | None = None
    reference_value: int | None = None
    note: str = ""
    location: str | None = None
    op_inputs: list = field(default_factory=list)   # the op's input tensors

    @property
    def diverges(self):
        return self.status in ("differs", "shape")

    def describe(self):
        if self.status == "equal":
            return f"{self.tensor}: equal ({self.size} values)"
        if self.status == "differs":
            return (f"{self.tensor} {self.dtype} {self.shape}: {self.n_diff}/{self.size} values "
                    f"differ, largest |difference| {self.max_abs_diff}, first at "
                    f"{self.first_index}: tosaint {self.tosaint_value} vs reference "
                    f"{self.reference_value}" + (f" ({self.note})" if self.note else ""))
        return f"{self.tensor}: {self.status}" + (f" ({self.note})" if self.note else "")


def _as_int(a):
    a = np.asarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.int64)
    if a.dtype.kind in "iu":
        return a.astype(np.int64) if a.dtype != np.uint64 else a.astype(object)
    return a.astype(np.float64)


def compare_tensor(got, want):
    """(status, fields) comparing tosaint's ``got`` with the reference ``want``."""
    if isinstance(want, Unreadable):
        return "unreadable", {"note": want.reason}
    want = np.asarray(want)
    note = ""
    if got.shape != want.shape:
        if got.size == want.size and got.size == 1:
            want = want.reshape(got.shape)
        else:
            return "shape", {"note": f"tosaint {list(got.shape)} vs reference "
                                     f"{list(want.shape)}"}
    if got.dtype != want.dtype:
        note = f"dtype tosaint {got.dtype} vs reference {want.dtype}"
    g, w = _as_int(got), _as_int(want)
    neq = g != w
    n = int(np.count_nonzero(neq))
    if n == 0:
        return "equal", {"note": note}
    idx = tuple(int(i[0]) for i in np.nonzero(neq)) if got.ndim else ()
    gd, wd = g[neq], w[neq]
    big = 1 << 62
    if g.dtype.kind == "f" or w.dtype.kind == "f":
        max_abs = float(np.abs(gd.astype(np.float64) - wd.astype(np.float64)).max())
    elif all(-big < int(v.min()) and int(v.max()) < big for v in (gd, wd)):
        max_abs = int(np.abs(gd - wd).max())
    else:                                     # int64 values: no overflow in Python ints
        max_abs = max(abs(int(a) - int(b)) for a, b in zip(gd.tolist(), wd.tolist()))
    gv, wv = (g[idx], w[idx]) if got.ndim else (g[()], w[()])
    conv = (lambda v: float(v)) if g.dtype.kind == "f" or w.dtype.kind == "f" else int
    return "differs", {"n_diff": n, "max_abs_diff": max_abs,
                       "first_index": list(idx), "tosaint_value": conv(gv),
                       "reference_value": conv(wv), "note": note}


@dataclass
class DiffReport:
    model: str
    entries: list = field(default_factory=list)   # TensorDiff, in execution order
    n_ops: int = 0
    source: str = ""
    extras: list = field(default_factory=list)    # reference tensors the graph does not have
    tosaint_error: str = ""                       # when tosaint stopped early (unpredictable)

    def _with(self, status):
        return [e for e in self.entries if e.status == status]

    @property
    def first(self):
        """The first diverging tensor (its op is the first diverging op), or None."""
        return next((e for e in self.entries if e.diverges), None)

    @property
    def counts(self):
        c = {}
        for e in self.entries:
            c[e.status] = c.get(e.status, 0) + 1
        return c

    @property
    def compared(self):
        return sum(e.status in ("equal", "differs", "shape") for e in self.entries)

    @property
    def missing(self):
        return [e.tensor for e in self.entries if e.status == "missing"]

    @property
    def exit_code(self):
        return 1 if self.first is not None or self.tosaint_error else 0

    def as_dict(self):
        first = self.first
        return {"model": self.model, "reference": self.source, "ops": self.n_ops,
                "tensors": len(self.entries), "compared": self.compared,
                "counts": self.counts, "diverged": first is not None,
                "first_divergence": asdict(first) if first else None,
                "missing": self.missing,
                "unreadable": [e.tensor for e in self.entries if e.status == "unreadable"],
                "extra_reference_tensors": self.extras,
                "tosaint_error": self.tosaint_error,
                "entries": [asdict(e) for e in self.entries]}

    def format(self, max_list=10):
        c = self.counts
        lines = [f"{self.model}: {self.n_ops} operators, {len(self.entries)} tensors in execution "
                 f"order; compared {self.compared} against {self.source}: "
                 f"{c.get('equal', 0)} equal, {c.get('differs', 0) + c.get('shape', 0)} differ, "
                 f"{c.get('missing', 0)} missing, {c.get('unreadable', 0)} unreadable"]
        if self.tosaint_error:
            lines.append(f"tosaint stopped: {self.tosaint_error}")
        first = self.first
        if first is None:
            lines.append("no divergence" + ("" if self.compared else
                                            " (but nothing could be compared)"))
        else:
            where = f" at {first.location}" if first.location else ""
            lines.append(f"first divergence: op #{first.op_index} {first.op}{where}")
            lines.append(f"  {first.describe()}")
            if first.op_inputs:
                status = {e.tensor: e.status for e in self.entries}
                lines.append("  its inputs: " + ", ".join(
                    f"{n} ({status.get(n, 'not compared')})" for n in first.op_inputs))
            later = [e for e in self.entries if e.diverges and e is not first]
            if later:
                lines.append(f"  then {len(later)} more tensor(s) differ, e.g. "
                             + ", ".join(e.tensor for e in later[:max_list]))
        for label, names in (("missing from the reference", self.missing),
                             ("unreadable", [e.tensor for e in self.entries
                                             if e.status == "unreadable"]),
                             ("reference tensors not in the graph", self.extras)):
            if names:
                more = f" (+{len(names) - max_list} more)" if len(names) > max_list else ""
                lines.append(f"{label}: " + ", ".join(names[:max_list]) + more)
        return "\n".join(lines)

    __str__ = format


def _capture(plan, inputs):
    """Every tensor tosaint computes, in execution order, from the one run loop; when the
    run stops part-way (a TosaError), what was computed before it and the error."""
    try:
        return dict(plan.run(inputs, capture=True)), ""
    except InputError:
        raise
    except TosaError as e:
        return dict(getattr(e, "captured", None) or {}), f"{type(e).__name__}: {e}"


def _producers(graph):
    """{tensor name: (operator, index in its block, block name)}: main block first."""
    out = {}
    for block in [graph.main] + [b for b in graph.blocks() if b is not graph.main]:
        for i, o in enumerate(block.operators):
            for n in o.outputs:
                out.setdefault(n, (o, i, block.name))
    return out


def diff(model, inputs, against=None, *, oracle=False, impl="auto", save_oracle=None,
         include_consts=False, max_memory=None, max_while_iterations=None) -> DiffReport:
    """Compare every tensor tosaint computes for ``inputs`` with a reference.

    ``model``: path, bytes or Graph.  ``inputs``: {name: array or .npy path}.  ``against``: a
    directory of .npy files, a .npz, a reference model ``--dump_intermediates`` log or a dict;
    or ``oracle=True`` to run the reference model CLI (``save_oracle=DIR`` keeps its tensors).
    ``max_memory``/``max_while_iterations``: as for ``prepare``.
    """
    from .golden import coerce_inputs
    from .inputs import model_bytes
    from .interpreter import prepare
    _, graph = model_bytes(model)
    inputs = coerce_inputs(graph, dict(inputs or {}))
    if against is None and not oracle:
        raise InputError("give a reference (against=DIR/file) or oracle=True")
    plan = prepare(graph, impl=impl, max_memory=max_memory,
                   max_while_iterations=max_while_iterations)
    if oracle:
        ref = MapSource(oracle_tensors(graph, inputs, save_dir=save_oracle))
        source = "the reference model (tosa_reference_model CLI)"
    else:
        names = [n for b in graph.blocks() for n in b.tensors]
        ref = open_reference(against, names)
        source = str(against) if not isinstance(against, dict) else "given tensors"
    got, err = _capture(plan, inputs)
    label = str(model) if isinstance(model, (str, os.PathLike)) else "graph"
    report = DiffReport(label, n_ops=len(graph.main.operators), source=source,
                        tosaint_error=err)
    producers = _producers(graph)

    def add(name, op, idx, location=None, const=False, op_inputs=()):
        t = graph.main.tensors.get(name)
        want = ref.get(name)
        if name not in got:
            if want is not None:
                report.entries.append(TensorDiff(name, op, idx, "not-computed",
                                                 note="tosaint stopped before this op",
                                                 location=location))
            return
        a = got[name]
        base = dict(size=int(a.size), dtype=DType(t.dtype).name.lower() if t else str(a.dtype),
                    shape=list(a.shape), location=location, op_inputs=list(op_inputs))
        if want is None:
            if not const:
                report.entries.append(TensorDiff(name, op, idx, "missing", **base))
            return
        status, fields = compare_tensor(a, want)
        report.entries.append(TensorDiff(name, op, idx, status, **base, **fields))

    graph_inputs = set(graph.main.inputs)
    order = list(got) + [n for n, (o, i, b) in producers.items()
                         if n not in got and b == graph.main.name]
    for n in order:
        if n in graph_inputs:
            add(n, "input", -1, const=True)
            continue
        if n not in producers:      # a constant tensor, not produced by an operator
            if include_consts or ref.get(n) is not None:
                add(n, "constant", -1, const=True)
            continue
        o, i, block = producers[n]
        const = Op(o.op) in (Op.CONST, Op.CONST_SHAPE)
        if const and not include_consts and ref.get(n) is None:
            continue
        where = o.location if block == graph.main.name else \
            f"block {block}" + (f", {o.location}" if o.location else "")
        add(n, o.name, i, where, const=const, op_inputs=o.inputs)
    report.extras = [n for n in ref.extras() if n not in got]
    return report


__all__ = ["DiffReport", "TensorDiff", "diff", "compare_tensor", "open_reference",
           "parse_text_dump", "oracle_tensors", "with_all_outputs", "NpyDir", "MapSource"]
