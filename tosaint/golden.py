"""Golden outputs: TOSA conformance-style test folders whose expected outputs come from tosaint.

    from tosaint.golden import golden
    report = golden("net.tosa", random=True, seed=7, count=20, output_dir="goldens")
    report.ok          # True when every case was written (or already there)

Each input set becomes one folder in ``output_dir``, laid out like the official conformance
suite, so that the reference model runs it with ``tosa_reference_model --test_desc``::

    <case>/desc.json               tosa_file, ifm_name, ifm_file, ofm_name, ofm_file,
                                   expected_result_file (+ "meta": {"tosaint": {...}})
    <case>/model.tosa              the model, byte for byte as given (a hard link to one copy in
                                   ``output_dir/.models/`` where the file system allows)
    <case>/<input>.npy             one per graph input, in its storage dtype
    <case>/Conformance-<out>.npy   expected output (int48 as int64, int4 as int8, bool as bool)

``result-<out>.npy`` (``ofm_file``) is where the reference model writes its own outputs.
Tensor names become file names through :mod:`tosaint.testcase` (reversibly escaped, distinct
per folder for any names); desc.json's name and file lists are the map.

Case folders are named ``<model stem>-<model digest>-s<seed>-<index>`` for random inputs and
``<model stem>-<model digest>-in-<inputs digest>`` for given inputs: the same model and seed
always give the same names, and different models (or models of the same file name in
different directories) never collide.  Random input ``index`` of ``seed`` is drawn from
``SeedSequence([seed, index, crc32(input name)])`` over the input's whole value range
(int4 -7..7, int8, int16, int32, int48, bool; ``tosaint.inputs.random_inputs``), so raising
``count`` only adds cases.  One run plans at most ``MAX_CASES`` cases.

A case whose run is unpredictable (``UnpredictableError``, or any REQUIRE diagnostic in
``result.diagnostics``) is reported and not written: a golden must be something every
implementation agrees on.

Writes are atomic: a case is written to ``.tmp-...`` in ``output_dir`` and renamed into
place; a failed write (a full disk) removes its temp files, and temp files of a killed run
are removed by the next run.  A case whose folder holds a complete ``desc.json`` is skipped,
so an interrupted run can simply be run again.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .dtypes import RANGE
from .errors import InputError, TosaError, UnpredictableError
from .inputs import coerce, declared_inputs, model_bytes, random_inputs
from .schema.definition import DType
from .testcase import (DESC_KEYS, MODEL_FILE, CaseFolderError, make_desc, read_desc,
                       write_desc)
TMP_PREFIX = ".tmp-"
STATUSES = ("ok", "skipped", "unpredictable", "failed")
#: the most cases one golden run (or batch) plans
MAX_CASES = 1_000_000


# ---- names ------------------------------------------------------------------------------------
def safe_name(name, limit=80):
    """A file-name-safe label for a case folder (model stem, host name): stable, ASCII, no
    separators.  Tensor files are named by :mod:`tosaint.testcase` instead (reversibly)."""
    s = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in str(name))
    s = s.lstrip(".") or "_"
    return s[:limit]


def _contig(a):
    """C-contiguous, keeping rank 0 (np.ascontiguousarray would make it rank 1)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


def digest(data: bytes, n=8):
    return hashlib.sha256(data).hexdigest()[:n]


def inputs_digest(arrays: dict):
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = _contig(np.asarray(arrays[name]))
        h.update(name.encode() + b"\0" + str(a.dtype).encode() + b"\0" +
                 repr(a.shape).encode() + b"\0" + a.tobytes())
    return h.hexdigest()[:8]


def model_stem(model):
    if isinstance(model, (str, os.PathLike)):
        return safe_name(Path(model).stem, 40)
    return "graph"


def case_name(stem, model_digest, *, seed=None, index=None, given=None):
    """The folder name of a case: stable for the same model and seed/inputs."""
    base = f"{stem}-{model_digest}"
    if given is not None and seed is None:
        return f"{base}-in-{given}"
    name = f"{base}-s{seed}-{index:04d}"
    return name if given is None else f"{name}-in-{given}"


# ---- model and inputs -------------------------------------------------------------------------
def _load(v):
    """A given input: an array, or a .npy path (a regular file, no pickles)."""
    if isinstance(v, (str, os.PathLike)):
        from .testcase import load_npy
        p = Path(v)
        return load_npy(p.parent, p.name, what=f"input file {v}", outside=True)
    return np.asarray(v)


def coerce_inputs(graph, inputs):
    """Given inputs by name (arrays or .npy paths), checked and cast to their storage dtype
    when the values fit; inputs not given are left out (random ones fill them)."""
    inputs = dict(inputs or {})
    unknown = [n for n in inputs if n not in graph.inputs]
    if unknown:
        raise InputError(f"{unknown} are not graph inputs; the graph takes {graph.inputs}")
    declared = [t for t in declared_inputs(graph) if t.name in inputs]
    arrays = {n: _load(v) for n, v in inputs.items()}
    return dict(zip((t.name for t in declared), coerce(declared, arrays, cast=True)))


# ---- one case ---------------------------------------------------------------------------------
@dataclass
class Case:
    """What to generate: a model file and either a seed/index or given input files."""
    model: str                 # path of the .tosa file
    name: str                  # folder name
    seed: int | None = None
    index: int | None = None
    inputs: dict | None = None  # {input name: .npy path or array} (fixed inputs)


@dataclass
class CaseResult:
    name: str
    status: str                # ok | skipped | unpredictable | failed
    message: str = ""
    seconds: float = 0.0
    path: str = ""
    verified: bool | None = None  # reference model re-run matched (None: not checked)
    worker: str = ""           # host:pid of the process that ran it

    def as_dict(self):
        return asdict(self)


@dataclass
class GoldenReport:
    results: list = field(default_factory=list)
    seconds: float = 0.0
    output_dir: str = ""

    def count(self, status):
        return sum(r.status == status for r in self.results)

    @property
    def counts(self):
        return {s: self.count(s) for s in STATUSES}

    @property
    def ok(self):
        return all(r.status in ("ok", "skipped") for r in self.results)

    @property
    def exit_code(self):
        return 0 if self.ok else 1

    def as_dict(self):
        return {"output_dir": self.output_dir, "seconds": round(self.seconds, 3),
                "total": len(self.results), "counts": self.counts, "all_ok": self.ok,
                "cases": [r.as_dict() for r in self.results]}

    def __iter__(self):
        return iter(self.results)

    def __len__(self):
        return len(self.results)


def is_complete(case_dir):
    """True when ``case_dir`` holds a complete desc.json and every file it names."""
    p = Path(case_dir)
    try:
        desc = read_desc(p)
    except CaseFolderError:
        return False
    if any(k not in desc for k in DESC_KEYS):
        return False
    files = [desc["tosa_file"], *desc["ifm_file"], *desc["expected_result_file"]]
    return all((p / f).is_file() for f in files)


def _host():
    return safe_name(platform.node(), 30)


def _tmp_dir(output_dir, name):
    return Path(output_dir) / f"{TMP_PREFIX}{name}.{_host()}.{os.getpid()}.{os.urandom(4).hex()}"


def _pid_alive(pid):
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def clean_stale_tmp(output_dir):
    """Remove temp dirs and files that a killed or failed run on this host left behind in
    ``output_dir`` and its model store (their pid is gone)."""
    host = _host()
    removed = 0
    for d in (Path(output_dir), Path(output_dir) / ".models"):
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if not e.name.startswith(TMP_PREFIX):
                continue
            parts = e.name.rsplit(".", 3)
            if len(parts) != 4 or parts[1] != host or not parts[2].isdigit():
                continue
            pid = int(parts[2])
            if pid == os.getpid() or _pid_alive(pid):
                continue              # ours (another thread may be writing it), or running
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                try:
                    os.unlink(e.path)
                except OSError:
                    continue
            removed += 1
    return removed


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _model_store(output_dir, data, dig):
    """The model's bytes once per output dir (``.models/<digest>.tosa``), for hard links."""
    store = Path(output_dir) / ".models"
    store.mkdir(parents=True, exist_ok=True)
    p = store / f"{dig}.tosa"
    if not p.is_file():
        tmp = store / f"{TMP_PREFIX}{dig}.{_host()}.{os.getpid()}.{os.urandom(3).hex()}"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)    # a full disk must not leave a partial copy
            raise
    return p


def write_case(output_dir, name, model_data, graph, inputs, outputs, meta=None):
    """Write one conformance folder atomically; returns (path, created)."""
    output_dir = Path(output_dir)
    final = output_dir / name
    tmp = _tmp_dir(output_dir, name)
    tmp.mkdir(parents=True)
    try:
        dig = digest(model_data, 16)
        try:
            _link_or_copy(_model_store(output_dir, model_data, dig), tmp / MODEL_FILE)
        except OSError:
            (tmp / MODEL_FILE).write_bytes(model_data)
        desc = make_desc(graph.inputs, graph.outputs, meta={"tosaint": meta or {}})
        for n, f in zip(desc["ifm_name"], desc["ifm_file"]):
            np.save(tmp / f, inputs[n], allow_pickle=False)
        for n, f in zip(desc["ofm_name"], desc["expected_result_file"]):
            np.save(tmp / f, outputs[n], allow_pickle=False)
        write_desc(tmp, desc)
        if final.exists():
            if is_complete(final):
                shutil.rmtree(tmp, ignore_errors=True)
                return final, False
            # an incomplete folder (not written by us: our writes are atomic) is replaced
            trash = _tmp_dir(output_dir, name + ".old")
            os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if is_complete(final):   # another worker finished the same case first
                shutil.rmtree(tmp, ignore_errors=True)
                return final, False
            raise
        return final, True
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# a few prepared graphs per thread (a Plan is not safe to run from two threads at once)
_local = threading.local()


def _cached_model(path):
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    cache = getattr(_local, "models", None)
    if cache is None:
        cache = _local.models = {}
    if key not in cache:
        if len(cache) > 8:
            cache.clear()
        data, graph = model_bytes(path)
        cache[key] = (data, graph)
    return cache[key]


def run_case(case: Case, output_dir, *, impl="auto", verify=False, model=None,
             limits=None) -> CaseResult:
    """Generate one case (skipping it when its folder is complete already).  ``verify``
    checks the case on the reference model, a finished one too; ``limits``: resource-limit
    keywords of ``prepare`` (max_memory, max_while_iterations)."""
    res = _run_case(case, output_dir, impl=impl, model=model, limits=limits or {})
    if verify and res.status in ("ok", "skipped"):
        _verify(res)
    res.worker = f"{platform.node()}:{os.getpid()}"
    return res


def _verify(res):
    """Check a written case on the reference model (``res.verified``); a mismatch fails it."""
    try:
        problems = check_with_reference(res.path)
    except Exception as e:  # noqa: BLE001  (a broken oracle fails the case, not the run)
        problems = [f"could not run: {type(e).__name__}: {e}"]
    res.verified = not problems
    if problems:
        res.status, res.message = "failed", "reference model: " + "; ".join(problems)


def _run_case(case, output_dir, *, impl, model, limits):
    from .interpreter import run_tosa
    t0 = time.perf_counter()
    final = Path(output_dir) / case.name
    if is_complete(final):
        return CaseResult(case.name, "skipped", "complete already", 0.0, str(final))
    try:
        data, graph = model if model is not None else _cached_model(case.model)
        fixed = coerce_inputs(graph, case.inputs or {})
        if case.seed is not None:
            inputs = random_inputs(graph, case.seed, case.index, fixed)
        else:
            inputs = fixed
        try:
            result = run_tosa(graph, inputs, impl=impl, **limits)
        except UnpredictableError as e:
            return CaseResult(case.name, "unpredictable", str(e), time.perf_counter() - t0)
        if result.diagnostics:
            msg = "; ".join(str(d) for d in result.diagnostics)
            return CaseResult(case.name, "unpredictable", msg, time.perf_counter() - t0)
        meta = {"generator": "tosaint golden", "model": os.path.basename(str(case.model)),
                "model_sha256": hashlib.sha256(data).hexdigest(), "impl": impl}
        if case.seed is not None:
            meta.update(seed=case.seed, index=case.index)
        path, created = write_case(output_dir, case.name, data, graph, inputs, result, meta)
    except (TosaError, OSError, ValueError, KeyError) as e:
        return CaseResult(case.name, "failed", f"{type(e).__name__}: {e}",
                          time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001  (a crash in one case must not stop a batch)
        return CaseResult(case.name, "failed", f"CRASH {type(e).__name__}: {e}",
                          time.perf_counter() - t0)
    return CaseResult(case.name, "ok" if created else "skipped",
                      "" if created else "written concurrently", time.perf_counter() - t0,
                      str(path))


def run_cases(cases, output_dir, *, impl="auto", verify=False, numba_threads=None,
              limits=None):
    """Run a list of cases in this process (the unit of work of the batch executors).

    ``numba_threads``: threads for parallel Numba kernels in this thread (the batch
    executors pass 1: their workers already fill the cores)."""
    old = set_numba_threads(numba_threads) if numba_threads else None
    try:
        return [run_case(c, output_dir, impl=impl, verify=verify, limits=limits)
                for c in cases]
    finally:
        if old:
            set_numba_threads(old)


def set_numba_threads(n):
    """Limit parallel Numba kernels run from the calling thread to ``n`` threads; returns
    the previous setting (None when Numba would not say)."""
    try:
        import numba
        old = numba.get_num_threads()
        numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
        return old
    except Exception:  # noqa: BLE001  (only a performance setting)
        return None


# ---- planning ---------------------------------------------------------------------------------
def plan_cases(model_path, model_data, *, inputs=None, random=False, seed=0, count=1):
    """The cases for one model: one per given input set, or ``count`` random ones."""
    if seed is None or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if int(count) < 0:
        raise ValueError(f"count must be >= 0, not {count!r}")
    if int(count) > MAX_CASES:
        raise ValueError(f"count {count} is more than {MAX_CASES} cases per run; split the "
                         "run into several seeds")
    stem, dig = model_stem(model_path), digest(model_data)
    sets = inputs if isinstance(inputs, (list, tuple)) else ([inputs] if inputs else [])
    cases = []
    if random:
        for given in sets or [None]:
            gd = None
            if given:
                gd = inputs_digest({k: _load(v) for k, v in given.items()})
            for i in range(int(count)):
                cases.append(Case(str(model_path), case_name(stem, dig, seed=int(seed), index=i,
                                                             given=gd),
                                  int(seed), i, given or None))
    else:
        if not sets:
            sets = [{}]     # a graph without inputs (or whose inputs are all missing)
        for given in sets:
            gd = inputs_digest({k: _load(v) for k, v in given.items()})
            cases.append(Case(str(model_path), case_name(stem, dig, given=gd), inputs=given))
    return cases


def golden(model, inputs=None, *, random=False, seed=0, count=1, output_dir, impl="auto",
           verify=False, max_memory=None, max_while_iterations=None) -> GoldenReport:
    """Write conformance-layout golden test folders for ``model`` into ``output_dir``.

    ``model``: a ``.tosa`` path, bytes or a Graph.  ``inputs``: {name: array or .npy path}, or a
    list of such dicts (one case each).  ``random=True`` draws ``count`` input sets from
    ``seed`` (inputs given in ``inputs`` stay fixed).  ``verify=True`` re-runs every new case on
    the reference model and fails it unless the outputs are bit-identical (finished cases
    are re-verified).  ``max_memory``/``max_while_iterations``: as for ``prepare``.  An
    invalid graph or one over a resource limit raises its TosaError before any case runs.
    Returns a GoldenReport (``.ok``, ``.counts``, ``.results``, ``.exit_code``).
    """
    t0 = time.perf_counter()
    require_oracle(verify)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(output_dir)
    data, graph = model_bytes(model)
    label = model if isinstance(model, (str, os.PathLike)) else "graph"
    cases = plan_cases(label, data, inputs=inputs, random=random, seed=seed, count=count)
    for c in cases:   # check given inputs now: wrong names, dtypes, shapes are bad input
        given = coerce_inputs(graph, c.inputs or {})
        for n, v in given.items():
            want = tuple(graph.main.tensors[n].shape)
            if v.shape != want:
                raise InputError(f"input {n!r} has shape {list(v.shape)}; the graph takes "
                                 f"{list(want)}")
        missing = [n for n in graph.inputs if n not in given]
        if missing and not random:
            raise InputError(f"graph input(s) {missing} not given: give them in inputs, or "
                             "draw them at random with random=True")
        for n in missing:
            dt = DType(graph.main.tensors[n].dtype)
            if dt not in RANGE or dt in (DType.SHAPE, DType.INT64):
                raise InputError(f"graph input {n!r} has type {dt.name}: give it with inputs")
    from .interpreter import prepare
    limits = {"max_memory": max_memory, "max_while_iterations": max_while_iterations}
    prepare(graph, impl=impl, **limits)   # an invalid graph or a resource limit: bad input
    results = [run_case(c, output_dir, impl=impl, verify=verify, model=(data, graph),
                        limits=limits) for c in cases]
    return GoldenReport(results, time.perf_counter() - t0, str(output_dir))


# ---- checking a folder on the reference model --------------------------------------------------
def require_oracle(verify):
    """``verify`` needs the reference model: say so before any work is done."""
    if verify:
        from .oracle import ORACLE_INSTALL, available
        if not available():
            raise InputError(f"--verify needs the reference model: {ORACLE_INSTALL}")


def check_with_reference(case_dir, *, timeout=600):
    """Run the case in ``case_dir`` on the reference model (``oracle.reference_run``) and
    compare its outputs with the expected files.  Returns a list of problems (empty:
    bit-identical)."""
    from .conformance import compare
    from .oracle import reference_run
    from .testcase import case_path, load_npy
    case_dir = Path(case_dir)
    desc = read_desc(case_dir)
    data, _ = model_bytes(case_path(case_dir, desc["tosa_file"]))
    inputs = {n: load_npy(case_dir, f) for n, f in zip(desc["ifm_name"], desc["ifm_file"])}
    status, outs = reference_run(data, inputs, timeout=timeout)
    if status != "TOSA_VALID":
        return [f"graph status {status}"]
    problems = []
    for name, exp in zip(desc["ofm_name"], desc.get("expected_result_file") or []):
        if name not in outs:
            problems.append(f"{name}: the reference model gave no such output")
            continue
        msg = compare(name, np.asarray(outs[name]), load_npy(case_dir, exp))
        if msg:
            problems.append(msg)
    return problems


__all__ = ["Case", "CaseResult", "GoldenReport", "golden", "run_case", "run_cases",
           "plan_cases", "random_inputs", "check_with_reference", "is_complete", "safe_name",
           "clean_stale_tmp", "write_case"]
