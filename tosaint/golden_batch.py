"""Golden outputs at scale: many models x many input sets, on every local core or on a Dask
cluster.

    from tosaint.golden_batch import golden_batch
    report = golden_batch("specs.json", output_dir="goldens", jobs=4)
    report = golden_batch("models/", output_dir="goldens", scheduler="tcp://10.0.0.5:8786")

A *spec* is a directory (every ``*.tosa`` below it, each with ``count`` random input sets
drawn from ``seed``) or a JSON file (YAML too, when PyYAML is installed) holding a list of
entries::

    [{"model": "a.tosa", "random": {"seed": 1, "count": 50}},
     {"model": "b.tosa", "inputs": {"x": "x0.npy"}},
     {"model": "b.tosa", "inputs": [{"x": "x1.npy"}, {"x": "x2.npy"}]},
     {"model": "c.tosa", "inputs": {"w": "w.npy"}, "random": {"seed": 2, "count": 5}}]

Relative paths are relative to the spec file.  ``inputs`` with ``random`` keeps the given
inputs fixed and draws the others.  Cases are named as in :mod:`tosaint.golden` (stable), a
case planned twice runs once, and cases whose folder is complete are skipped before anything
is sent to a worker, so re-running an interrupted batch finishes it without duplicates.

Executors: ``jobs=1`` runs in this process, ``jobs=N`` in a pool of N processes, and
``scheduler=ADDRESS`` (or a ``dask.distributed.Client``) on a Dask cluster (extra
``tosaint[distributed]``; Dask is imported only then).  Workers write the case folders
themselves, so with a remote cluster ``output_dir`` must be on a file system every worker
sees.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

from .errors import TosaError
from .golden import (MAX_CASES, STATUSES, Case, CaseResult, GoldenReport, clean_stale_tmp,
                     is_complete, plan_cases, require_oracle, run_cases)
from .inputs import read_model_bytes


#: the one line that says how to get the Dask executor
DASK_INSTALL = 'pip install "tosaint[distributed]"'


class BatchSpecError(ValueError):
    """The batch spec is unreadable or malformed (bad input: exit code 2)."""


# ---- spec -------------------------------------------------------------------------------------
def _read_entries(spec, exclude=None):
    p = Path(spec)
    if p.is_dir():
        ex = Path(exclude).resolve() if exclude else None
        models = sorted(q for q in p.rglob("*.tosa") if not any(
            part.startswith(".") for part in q.relative_to(p).parts)
            and not (ex and q.resolve().is_relative_to(ex)))
        if not models:
            raise BatchSpecError(f"{spec}: no .tosa files in this directory")
        return [{"model": str(m.resolve())} for m in models], p
    if not p.exists():
        raise BatchSpecError(f"{spec}: no such file or directory")
    from .testcase import CaseFolderError, read_json
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise BatchSpecError(f"{spec}: YAML specs need PyYAML (pip install pyyaml); "
                                 "use JSON instead") from None
        try:
            text = _read_text(p, spec)
            data = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError) as e:
            raise BatchSpecError(f"{spec}: invalid YAML: {e}") from None
    else:
        try:
            data = read_json(p, str(spec))
        except CaseFolderError as e:
            raise BatchSpecError(str(e)) from None
    if isinstance(data, dict):
        data = data.get("cases", data.get("models"))
    if not isinstance(data, list):
        raise BatchSpecError(f"{spec}: expected a list of entries "
                             '({"model": ..., "inputs": ... or "random": ...})')
    return data, p.parent


def _read_text(p, spec):
    """The text of a spec file (a regular file of at most MAX_JSON_BYTES)."""
    import stat

    from .testcase import MAX_JSON_BYTES
    st = os.stat(p)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_JSON_BYTES:
        raise BatchSpecError(f"{spec}: not a regular file of at most {MAX_JSON_BYTES} bytes")
    try:
        return p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BatchSpecError(f"{spec}: cannot read it: {e}") from None


def _count(v, what, where):
    """A non-negative int from a spec (bools and other types are refused)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise BatchSpecError(f"{where}: \"{what}\" must be a non-negative integer, not {v!r}")
    return v


def plan_batch(spec, *, seed=0, count=1, exclude=None):
    """Expand a spec into cases (deduplicated by name, in spec order).

    ``seed``/``count`` are the defaults for entries that name neither inputs nor random;
    ``exclude``: a directory whose models a directory spec skips (the output directory)."""
    entries, base = _read_entries(spec, exclude)
    cases, seen = [], set()
    for i, e in enumerate(entries):
        where = f"{spec}: entry {i}"
        if isinstance(e, str):
            e = {"model": e}
        if not isinstance(e, dict) or "model" not in e:
            raise BatchSpecError(f"{where}: an entry needs a \"model\"")
        unknown = set(e) - {"model", "inputs", "random"}
        if unknown:
            raise BatchSpecError(f"{where}: unknown key(s) {sorted(unknown)}")
        if not isinstance(e["model"], str):
            raise BatchSpecError(f"{where}: \"model\" must be a path, not {e['model']!r}")
        model = Path(e["model"])
        if not model.is_absolute():
            model = base / model
        model = model.resolve()
        try:
            data = read_model_bytes(model)
        except (TosaError, OSError) as err:
            raise BatchSpecError(f"{where}: cannot read model {model}: {err}") from None
        inputs = e.get("inputs")
        sets = inputs if isinstance(inputs, list) else ([inputs] if inputs else [])
        for s in sets:
            if not isinstance(s, dict):
                raise BatchSpecError(f"{where}: \"inputs\" must map input names to .npy files")
        sets = [{k: _resolve(base, v, where) for k, v in s.items()} for s in sets]
        rnd = e.get("random")
        if rnd is None and not sets:
            rnd = {}
        if rnd is not None and not isinstance(rnd, dict):
            raise BatchSpecError(f"{where}: \"random\" must be {{\"seed\": S, \"count\": N}}")
        if rnd is not None:
            unknown = set(rnd) - {"seed", "count"}
            if unknown:
                raise BatchSpecError(f"{where}: unknown key(s) {sorted(unknown)} in \"random\"")
            n = _count(rnd.get("count", count), "count", where)
            if len(cases) + n * max(len(sets), 1) > MAX_CASES:
                raise BatchSpecError(f"{where}: the batch would plan more than {MAX_CASES} "
                                     "cases; split it")
        try:
            if rnd is not None:
                planned = plan_cases(model, data, inputs=sets or None, random=True,
                                     seed=_count(rnd.get("seed", seed), "seed", where),
                                     count=n)
            else:
                planned = plan_cases(model, data, inputs=sets)
        except (TosaError, ValueError, OSError) as err:
            raise BatchSpecError(f"{where}: {err}") from None
        for c in planned:
            if c.name not in seen:
                seen.add(c.name)
                cases.append(c)
    return cases


def _resolve(base, v, where):
    if not isinstance(v, (str, os.PathLike)):
        raise BatchSpecError(f"{where}: input files must be paths to .npy files, not {v!r}")
    p = Path(v)
    p = (p if p.is_absolute() else base / p).resolve()
    if not p.is_file():
        raise BatchSpecError(f"{where}: no input file {p}")
    return str(p)


# ---- progress ---------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total, stream=None, enabled=None):
        self.stream = stream or sys.stderr
        self.enabled = (self.stream.isatty() if enabled is None else enabled) and total > 0
        self.total, self.done = total, 0
        self.counts = dict.fromkeys(STATUSES, 0)
        self.t0 = time.perf_counter()
        self._last = 0.0

    def update(self, results):
        for r in results:
            self.done += 1
            self.counts[r.status] = self.counts.get(r.status, 0) + 1
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        width = 30
        fill = int(width * self.done / self.total)
        rate = self.done / max(now - self.t0, 1e-9)
        c = self.counts
        self.stream.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} "
                          f"ok {c['ok']} skip {c['skipped']} unpred {c['unpredictable']} "
                          f"fail {c['failed']}  {rate:.1f}/s ")
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


# ---- executors --------------------------------------------------------------------------------
def _chunks(cases, jobs, max_chunk=16):
    """Cases grouped by model, in chunks small enough to keep every worker busy."""
    if not cases:
        return []
    size = max(1, min(max_chunk, math.ceil(len(cases) / (max(jobs, 1) * 4))))
    by_model = {}
    for c in cases:
        by_model.setdefault(c.model, []).append(c)
    out = []
    for group in by_model.values():
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def _run_local(chunks, output_dir, jobs, impl, verify, limits, on_done):
    if jobs <= 1:
        for ch in chunks:
            on_done(run_cases(ch, output_dir, impl=impl, verify=verify, limits=limits))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    # not "fork": a process that ran a parallel Numba kernel (GNU OpenMP threads) must not
    # fork.  The forkserver starts clean and preloads tosaint once for every worker.
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["tosaint.golden", "tosaint.ops"])
    else:
        ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        # one Numba thread per worker: the workers already fill the cores
        futs = [pool.submit(run_cases, ch, output_dir, impl=impl, verify=verify,
                            numba_threads=1, limits=limits) for ch in chunks]
        try:
            # Starting the workers takes a while (imports, Numba kernels loaded from the
            # cache): until the first of them delivers, this process works from the back of
            # the queue, taking at most the share of one more worker, so a small batch does
            # not wait for the pool to start.
            share = len(chunks) // (jobs + 1)
            for f, ch in zip(reversed(futs[len(futs) - share:]),
                             reversed(chunks[len(chunks) - share:])):
                if any(g.done() and not g.cancelled() for g in futs) or not f.cancel():
                    break
                on_done(run_cases(ch, output_dir, impl=impl, verify=verify, numba_threads=1,
                                  limits=limits))
            for f in as_completed([f for f in futs if not f.cancelled()]):
                on_done(f.result())
        except BaseException:
            for f in futs:
                f.cancel()
            raise


def _run_dask(chunks, output_dir, scheduler, impl, verify, limits, on_done):
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise BatchSpecError(f"--scheduler needs Dask: {DASK_INSTALL}") from None
    own = not isinstance(scheduler, Client)
    client = Client(scheduler, set_as_default=False) if own else scheduler
    try:
        futs = [client.submit(run_cases, ch, output_dir, impl=impl, verify=verify,
                              numba_threads=1, limits=limits, pure=False) for ch in chunks]
        for f in as_completed(futs, loop=client.loop):
            on_done(f.result())
    finally:
        if own:
            client.close()


def golden_batch(spec=None, *, output_dir, cases=None, jobs=None, scheduler=None, seed=0,
                 count=1, impl="auto", verify=False, progress=None, max_memory=None,
                 max_while_iterations=None) -> GoldenReport:
    """Generate every case of ``spec`` (or the given ``cases``) into ``output_dir``.

    ``jobs``: local worker processes (default: all cores); ``scheduler``: a Dask scheduler
    address or Client instead.  ``progress``: True/False to force the stderr progress bar
    (default: only when stderr is a terminal).  Returns a GoldenReport whose results follow
    the planned order; ``report.executor``/``report.jobs`` say where it ran.  ``verify``
    checks every case, finished ones too, on the reference model; ``max_memory`` and
    ``max_while_iterations`` are passed to ``prepare``.
    """
    limits = {"max_memory": max_memory, "max_while_iterations": max_while_iterations}
    t0 = time.perf_counter()
    require_oracle(verify)
    if cases is None:
        if spec is None:
            raise BatchSpecError("give a spec (directory or JSON/YAML file) or cases")
        cases = plan_batch(spec, seed=seed, count=count, exclude=output_dir)
    output_dir = os.path.abspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    clean_stale_tmp(output_dir)
    jobs = int(jobs or os.cpu_count() or 1)
    if jobs < 1:
        raise BatchSpecError(f"--jobs must be >= 1, not {jobs}")
    bar = Progress(len(cases), enabled=progress)
    results = {}

    def on_done(rs):
        for r in rs:
            results[r.name] = r
        bar.update(rs)

    pending = []
    done_already = []
    for c in cases:
        if not verify and is_complete(os.path.join(output_dir, c.name)):
            done_already.append(CaseResult(c.name, "skipped", "complete already", 0.0,
                                           os.path.join(output_dir, c.name)))
        else:
            pending.append(c)
    on_done(done_already)
    chunks = _chunks(pending, jobs)
    try:
        if scheduler is not None:
            _run_dask(chunks, output_dir, scheduler, impl, verify, limits, on_done)
        else:
            _run_local(chunks, output_dir, jobs, impl, verify, limits, on_done)
    finally:
        bar.close()
    report = GoldenReport([results[c.name] for c in cases if c.name in results],
                          time.perf_counter() - t0, output_dir)
    report.executor = "dask" if scheduler is not None else ("local" if jobs > 1 else "inline")
    report.jobs = None if scheduler is not None else jobs
    return report


def summary(report):
    """A JSON-ready summary of a batch report (``tosaint golden --json``)."""
    d = report.as_dict()
    made = report.count("ok")
    d["executor"] = getattr(report, "executor", "inline")
    d["jobs"] = getattr(report, "jobs", 1)
    d["cases_per_second"] = round(made / report.seconds, 2) if report.seconds > 0 else None
    return d


__all__ = ["BatchSpecError", "Case", "Progress", "golden_batch", "plan_batch", "summary"]
