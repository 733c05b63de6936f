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

Case folders are named ``<model stem>-<model digest>-s<seed>-<index>`` for random inputs and
``<model stem>-<model digest>-in-<inputs digest>`` for given inputs: the same model and seed
always give the same names, and different models (or models of the same file name in
different directories) never collide.  Random input ``index`` of ``seed`` is drawn from
``SeedSequence([seed, index, crc32(input name)])`` over the input's whole value range
(int4 -7..7, int8, int16, int32, int48, bool), so raising ``count`` only adds cases.

A case whose run is unpredictable (``UnpredictableError``, or any REQUIRE diagnostic in
``result.diagnostics``) is reported and not written: a golden must be something every
implementation agrees on.

Writes are atomic: a case is written to ``.tmp-...`` in ``output_dir`` and renamed into
place.  A case whose folder holds a complete ``desc.json`` is skipped, so an interrupted run
can simply be run again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .dtypes import RANGE, STORAGE
from .errors import InputError, TosaError, UnpredictableError
from .schema.definition import DType

#: keys a complete desc.json must have (the conformance layout)
DESC_KEYS = ("tosa_file", "ifm_name", "ifm_file", "ofm_name", "ofm_file",
             "expected_result_file")
MODEL_FILE = "model.tosa"
TMP_PREFIX = ".tmp-"
STATUSES = ("ok", "skipped", "unpredictable", "failed")


# ---- names ------------------------------------------------------------------------------------
def safe_name(name, limit=80):
    """A file-name-safe version of a tensor or model name (stable, ASCII, no separators)."""
    s = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in str(name))
    s = s.lstrip(".") or "_"
    return s[:limit]


def _unique_files(names, prefix, suffix=".npy"):
    """One distinct file name per tensor name (safe names that collide get a counter)."""
    seen, out = set(), []
    for n in names:
        base = f"{prefix}{safe_name(n)}"
        f, i = base + suffix, 1
        while f in seen:
            f, i = f"{base}_{i}{suffix}", i + 1
        seen.add(f)
        out.append(f)
    return out


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
def model_bytes(model):
    """(bytes, Graph) of a model given as a path, bytes or Graph."""
    from .graph import Graph
    from .schema.loader import load
    if isinstance(model, Graph):
        return model.to_bytes(), model
    if isinstance(model, (bytes, bytearray)):
        data = bytes(model)
    else:
        data = Path(model).read_bytes()
    return data, load(data)


def random_inputs(graph, seed, index, fixed=None):
    """Graph inputs for random case ``index`` of ``seed``: each over its dtype's full range.

    Inputs named in ``fixed`` are taken from there.  Deterministic: each input has its own
    stream ``SeedSequence([seed, index, crc32(name)])``.
    """
    fixed = fixed or {}
    out = {}
    for name in graph.inputs:
        if name in fixed:
            out[name] = fixed[name]
            continue
        t = graph.main.tensors[name]
        dt = DType(t.dtype)
        if dt not in RANGE or dt in (DType.SHAPE, DType.INT64):
            raise InputError(f"graph input {name!r} has type {dt.name}: no random inputs for it")
        lo, hi = RANGE[dt]
        rng = np.random.default_rng(np.random.SeedSequence(
            [int(seed), int(index), zlib.crc32(name.encode())]))
        vals = rng.integers(lo, hi, size=tuple(t.shape), dtype=np.int64, endpoint=True)
        out[name] = _contig(vals.astype(STORAGE[dt]))
    return out


def coerce_inputs(graph, inputs):
    """Check given inputs by name and cast each to its storage dtype when the values fit."""
    out = {}
    for name, v in inputs.items():
        if name not in graph.inputs:
            raise InputError(f"{name!r} is not a graph input; the graph takes {graph.inputs}")
        if isinstance(v, (str, os.PathLike)):
            v = np.load(v)
        v = np.asarray(v)
        t = graph.main.tensors[name]
        want = STORAGE.get(DType(t.dtype))
        if want is not None and v.dtype != want:
            lo, hi = RANGE.get(DType(t.dtype), (None, None))
            if v.dtype.kind not in "biu" or (v.size and lo is not None and
                                              (v.min() < lo or v.max() > hi)):
                raise InputError(f"input {name!r}: {v.dtype} values do not fit "
                                 f"{DType(t.dtype).name}")
            v = v.astype(want)
        out[name] = _contig(v)
    return out


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
        desc = json.loads((p / "desc.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(desc, dict) or any(k not in desc for k in DESC_KEYS):
        return False
    files = [desc["tosa_file"], *desc["ifm_file"], *desc["expected_result_file"]]
    if len(desc["ifm_file"]) != len(desc["ifm_name"]) or \
            len(desc["expected_result_file"]) != len(desc["ofm_name"]):
        return False
    return all((p / f).is_file() for f in files)


def _tmp_dir(output_dir, name):
    host = safe_name(socket.gethostname(), 30)
    return Path(output_dir) / f"{TMP_PREFIX}{name}.{host}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


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
    """Remove temp dirs that a killed run on this host left behind (their pid is gone)."""
    host = safe_name(socket.gethostname(), 30)
    removed = 0
    try:
        entries = list(os.scandir(output_dir))
    except OSError:
        return 0
    for e in entries:
        if not e.name.startswith(TMP_PREFIX) or not e.is_dir():
            continue
        parts = e.name.rsplit(".", 3)
        if len(parts) != 4 or parts[1] != host or not parts[2].isdigit():
            continue
        pid = int(parts[2])
        if pid == os.getpid() or _pid_alive(pid):
            continue                  # ours (another thread may be writing it), or running
        shutil.rmtree(e.path, ignore_errors=True)
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
        tmp = store / f".{dig}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        tmp.write_bytes(data)
        os.replace(tmp, p)
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
        ifm_names = list(graph.inputs)
        ofm_names = list(graph.outputs)
        ifm_files = _unique_files(ifm_names, "")
        ofm_files = _unique_files(ofm_names, "result-")
        exp_files = _unique_files(ofm_names, "Conformance-")
        for n, f in zip(ifm_names, ifm_files):
            np.save(tmp / f, inputs[n])
        for n, f in zip(ofm_names, exp_files):
            np.save(tmp / f, outputs[n])
        desc = {"tosa_file": MODEL_FILE, "ifm_name": ifm_names, "ifm_file": ifm_files,
                "ofm_name": ofm_names, "ofm_file": ofm_files,
                "expected_result_file": exp_files, "expected_failure": False,
                "meta": {"tosaint": meta or {}}}
        (tmp / "desc.json").write_text(json.dumps(desc, indent=1) + "\n")
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


def run_case(case: Case, output_dir, *, impl="numba", verify=False, model=None) -> CaseResult:
    """Generate one case (skipping it when its folder is complete already)."""
    res = _run_case(case, output_dir, impl=impl, verify=verify, model=model)
    res.worker = f"{socket.gethostname()}:{os.getpid()}"
    return res


def _run_case(case, output_dir, *, impl, verify, model):
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
            result = run_tosa(graph, inputs, impl=impl)
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
    res = CaseResult(case.name, "ok" if created else "skipped",
                     "" if created else "written concurrently", time.perf_counter() - t0,
                     str(path))
    if verify and created:
        try:
            problems = check_with_reference(path)
        except Exception as e:  # noqa: BLE001  (a broken oracle fails the case, not the run)
            problems = [f"could not run: {type(e).__name__}: {e}"]
        res.verified = not problems
        if problems:
            res.status, res.message = "failed", "reference model: " + "; ".join(problems)
    return res


def run_cases(cases, output_dir, *, impl="numba", verify=False, numba_threads=None):
    """Run a list of cases in this process (the unit of work of the batch executors).

    ``numba_threads``: threads for parallel Numba kernels in this thread (the batch
    executors pass 1: their workers already fill the cores)."""
    old = set_numba_threads(numba_threads) if numba_threads else None
    try:
        return [run_case(c, output_dir, impl=impl, verify=verify) for c in cases]
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


def _load(v):
    return np.load(v) if isinstance(v, (str, os.PathLike)) else np.asarray(v)


def golden(model, inputs=None, *, random=False, seed=0, count=1, output_dir, impl="numba",
           verify=False) -> GoldenReport:
    """Write conformance-layout golden test folders for ``model`` into ``output_dir``.

    ``model``: a ``.tosa`` path, bytes or a Graph.  ``inputs``: {name: array or .npy path}, or a
    list of such dicts (one case each).  ``random=True`` draws ``count`` input sets from
    ``seed`` (inputs given in ``inputs`` stay fixed).  ``verify=True`` re-runs every new case on
    the reference model CLI and fails it unless the outputs are bit-identical.
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
            raise InputError(f"graph input(s) {missing} not given (use random=True to "
                             "draw them)")
        for n in missing:
            dt = DType(graph.main.tensors[n].dtype)
            if dt not in RANGE or dt in (DType.SHAPE, DType.INT64):
                raise InputError(f"graph input {n!r} has type {dt.name}: give it with inputs")
    results = [run_case(c, output_dir, impl=impl, verify=verify, model=(data, graph))
               for c in cases]
    return GoldenReport(results, time.perf_counter() - t0, str(output_dir))


# ---- checking a folder on the reference model --------------------------------------------------
def require_oracle(verify):
    """``verify`` needs the reference model: say so before any work is done."""
    if verify:
        from .oracle import available
        if not available():
            raise InputError("--verify needs the reference model: pip install tosa-tools")


def check_with_reference(case_dir, *, timeout=600):
    """Run ``case_dir`` with ``tosa_reference_model --test_desc`` and compare its outputs with
    the expected files.  Returns a list of problems (empty: bit-identical)."""
    import subprocess
    import tempfile

    from .oracle import STATUS, executable
    case_dir = Path(case_dir)
    desc = json.loads((case_dir / "desc.json").read_text())
    with tempfile.TemporaryDirectory(prefix="tosaint_golden_") as tmp:
        cmd = [str(executable()), "--test_desc", str(case_dir / "desc.json"),
               "--flatbuffer_dir", str(case_dir), "--output_dir", tmp]
        env = {**os.environ, "PATH": "/nonexistent"}   # no gdb backtraces on errors
        p = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout)
        status = STATUS.get(p.returncode, f"RC_{p.returncode}")
        if status != "TOSA_VALID":
            return [f"graph status {status}"]
        problems = []
        for name, out, exp in zip(desc["ofm_name"], desc["ofm_file"],
                                  desc["expected_result_file"]):
            got_p = Path(tmp) / out
            if not got_p.is_file():
                problems.append(f"{name}: the reference model wrote no {out}")
                continue
            got, want = np.load(got_p), np.load(case_dir / exp)
            if got.shape != want.shape:
                problems.append(f"{name}: shape {list(got.shape)} != expected {list(want.shape)}")
            elif got.dtype != want.dtype:
                problems.append(f"{name}: dtype {got.dtype} != expected {want.dtype}")
            elif not np.array_equal(got, want):
                problems.append(f"{name}: {int((got != want).sum())}/{got.size} values differ")
        return problems


__all__ = ["Case", "CaseResult", "GoldenReport", "golden", "run_case", "run_cases",
           "plan_cases", "random_inputs", "check_with_reference", "is_complete", "safe_name",
           "clean_stale_tmp", "write_case"]
