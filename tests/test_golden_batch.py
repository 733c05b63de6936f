"""tosaint golden --batch: specs, local process pool vs Dask cluster, atomic resumable writes."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tosaint
from tosaint import DType
from tosaint.builder import GraphBuilder
from tosaint.cli import main as cli_main
from tosaint.golden import is_complete
from tosaint.golden_batch import BatchSpecError, Progress, golden_batch, plan_batch, summary

TYPES = (DType.INT4, DType.INT8, DType.INT16, DType.INT32, DType.INT48, DType.BOOL)


def tiny_model(path, dtype, shape=(2, 3)):
    b = GraphBuilder()
    x = b.input(shape, dtype, name="x")
    b.output(b.identity(b.identity(x), name="y"))
    tosaint.save(b.build(), path)
    return path


@pytest.fixture
def models(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    return [tiny_model(d / f"m_{DType(t).name.lower()}.tosa", t) for t in TYPES]


def tree(root):
    """{relative path: bytes} of every case file (temp dirs and the model store excluded)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not rel.parts[0].startswith("."):
            out[str(rel)] = p.read_bytes()
    return out


def case_dirs(root):
    return sorted(p for p in os.listdir(root) if not p.startswith("."))


def check_all_valid(root, names):
    """Every case folder complete, expected == input (identity graphs), nothing extra."""
    assert case_dirs(root) == sorted(names)
    assert not [p for p in os.listdir(root) if p.startswith(".tmp-")]
    for n in names:
        d = Path(root) / n
        assert is_complete(d), n
        desc = json.loads((d / "desc.json").read_text())
        x = np.load(d / desc["ifm_file"][0])
        y = np.load(d / desc["expected_result_file"][0])
        assert x.dtype == y.dtype and np.array_equal(x, y), n


# ---- specs -------------------------------------------------------------------------------
def test_spec_forms_and_errors(tmp_path, models):
    np.save(tmp_path / "x.npy", np.ones((2, 3), np.int16))
    m16 = "models/m_int16.tosa"
    spec = [{"model": "models/m_int8.tosa", "random": {"seed": 4, "count": 3}},
            {"model": m16, "inputs": {"x": "x.npy"}},
            {"model": m16, "inputs": {"x": "x.npy"}},                   # duplicate: once
            "models/m_int32.tosa"]                                      # defaults
    (tmp_path / "s.json").write_text(json.dumps(spec))
    cases = plan_batch(tmp_path / "s.json", seed=9, count=2)
    names = [c.name for c in cases]
    assert len(names) == 3 + 1 + 2 == len(set(names))
    assert [c.seed for c in cases] == [4, 4, 4, None, 9, 9]
    assert plan_batch(tmp_path / "s.json", seed=9, count=2) == cases     # stable
    # a directory: every model, count random cases each
    assert len(plan_batch(tmp_path / "models", count=2)) == 2 * len(TYPES)
    yaml = pytest.importorskip("yaml")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert [c.name for c in plan_batch(tmp_path / "s.yaml", seed=9, count=2)] == names
    bad = {"nolist.json": "{}", "syntax.json": "[{", "nomodel.json": '[{"random": {}}]',
           "missing.json": '[{"model": "nope.tosa"}]',
           "badkey.json": '[{"model": "models/m_int8.tosa", "rnd": 1}]',
           "badinput.json": '[{"model": "models/m_int8.tosa", "inputs": {"x": "no.npy"}}]',
           "badseed.json": '[{"model": "models/m_int8.tosa", "random": {"seed": -1}}]'}
    for f, text in bad.items():
        (tmp_path / f).write_text(text)
        with pytest.raises(BatchSpecError):
            plan_batch(tmp_path / f)
        assert cli_main(["golden", "--batch", str(tmp_path / f), "-o", str(tmp_path / "o")]) == 2
    assert cli_main(["golden", "--batch", str(tmp_path / "none"), "-o", str(tmp_path / "o")]) == 2


def test_failed_cases_exit_1(tmp_path, models, capsys):
    np.save(tmp_path / "x.npy", np.ones((3, 3), np.int16))                # wrong shape
    spec = [{"model": str(models[2]), "inputs": {"x": str(tmp_path / "x.npy")}},
            {"model": str(models[1]), "random": {"count": 2}}]
    (tmp_path / "s.json").write_text(json.dumps(spec))
    rc = cli_main(["golden", "--batch", str(tmp_path / "s.json"), "-o", str(tmp_path / "o"),
                   "--jobs", "1"])
    out = capsys.readouterr().out
    assert rc == 1 and "FAILED" in out and "shape" in out and "2 written" in out
    assert len(case_dirs(tmp_path / "o")) == 2


def test_progress_only_on_a_terminal(tmp_path, models, capsys):
    golden_batch(models[0].parent, output_dir=tmp_path / "o", count=3, jobs=1)
    assert capsys.readouterr().err == ""            # pytest's stderr is not a TTY
    s = io.StringIO()
    bar = Progress(4, stream=s, enabled=True)
    from tosaint.golden import CaseResult
    bar.update([CaseResult("a", "ok"), CaseResult("b", "failed")])
    bar.update([CaseResult("c", "ok"), CaseResult("d", "skipped")])
    bar.close()
    assert "4/4" in s.getvalue() and "fail 1" in s.getvalue()


# ---- local pool vs Dask ------------------------------------------------------------------
@pytest.mark.slow
def test_batch_local_pool_and_dask_cluster_agree(tmp_path, models, capsys):
    spec = [{"model": str(m), "random": {"seed": 7, "count": 40}} for m in models]
    (tmp_path / "s.json").write_text(json.dumps(spec))
    total = 40 * len(models)
    assert total >= 200
    rc = cli_main(["golden", "--batch", str(tmp_path / "s.json"), "-o", str(tmp_path / "local"),
                   "--jobs", "2", "--json"])
    js = json.loads(capsys.readouterr().out)
    assert rc == 0 and js["counts"]["ok"] == total and js["executor"] == "local"
    assert js["jobs"] == 2 and js["cases_per_second"] > 0
    pids = {c["worker"].rsplit(":", 1)[1] for c in js["cases"]}
    assert len(pids - {str(os.getpid())}) >= 1 and len(pids) >= 2   # pool workers did cases

    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  host="127.0.0.1", protocol="tcp://",
                                  dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        rc = cli_main(["golden", "--batch", str(tmp_path / "s.json"), "-o",
                       str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address,
                       "--json"])
        js = json.loads(capsys.readouterr().out)
        assert rc == 0 and js["counts"]["ok"] == total and js["executor"] == "dask"
        # a re-run on the cluster finds everything done
        rep2 = golden_batch(tmp_path / "s.json", output_dir=tmp_path / "dask",
                            scheduler=cluster.scheduler_address)
        assert rep2.counts["skipped"] == total and summary(rep2)["executor"] == "dask"
    a, b = tree(tmp_path / "local"), tree(tmp_path / "dask")
    assert len(a) == total * 4 and a.keys() == b.keys()     # desc, model, input, expected
    assert all(a[k] == b[k] for k in a)
    check_all_valid(tmp_path / "local", [c.name for c in plan_batch(tmp_path / "s.json")])


# ---- kill half-way, re-run ---------------------------------------------------------------
@pytest.mark.slow
def test_killed_batch_is_completed_by_a_rerun(tmp_path, models):
    spec = [{"model": str(m), "random": {"seed": 1, "count": 300}} for m in models[1:4]]
    (tmp_path / "s.json").write_text(json.dumps(spec))
    names = [c.name for c in plan_batch(tmp_path / "s.json")]
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "tosaint", "golden", "--batch", str(tmp_path / "s.json"),
           "-o", str(out), "--jobs", "2", "--no-progress"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        n = 0
        while time.monotonic() < deadline and p.poll() is None:
            n = len(case_dirs(out)) if out.exists() else 0
            if n >= 30:
                break
            time.sleep(0.005)
        assert p.poll() is None, "the batch finished before it could be interrupted"
        os.killpg(p.pid, signal.SIGKILL)          # the run and its worker processes
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    done = case_dirs(out)
    assert 30 <= len(done) < len(names)
    assert all(is_complete(out / d) for d in done)          # atomic: no half-written case
    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout)
    assert js["counts"]["skipped"] >= len(done)
    assert js["counts"]["ok"] + js["counts"]["skipped"] == len(names)
    check_all_valid(out, names)


@pytest.mark.oracle
def test_batch_verify_on_reference_model(tmp_path, models):
    pytest.importorskip("tosa_reference_model")
    spec = [{"model": str(m), "random": {"seed": 3, "count": 2}} for m in models]
    (tmp_path / "s.json").write_text(json.dumps(spec))
    rep = golden_batch(tmp_path / "s.json", output_dir=tmp_path / "o", jobs=2, verify=True)
    assert rep.ok and rep.counts["ok"] == 2 * len(models)
    assert all(r.verified is True for r in rep)


def _parallel_sum(a):
    s = 0
    for i in prange(a.size):    # noqa: F821  (numba prange, bound below)
        s += a[i]
    return s


@pytest.mark.slow
def test_pool_starts_after_parallel_numba_ran_in_this_process(tmp_path, models):
    """Forking a process whose OpenMP threads are running aborts the child ("fork() called
    from a process already using GNU OpenMP"); the pool must not fork this process."""
    from tosaint.kernels import _jit
    globals()["prange"] = _jit.prange
    f = _jit.numba.njit(parallel=True)(_parallel_sum)
    assert f(np.arange(10_000)) == sum(range(10_000))
    rep = golden_batch(models[0].parent, output_dir=tmp_path / "o", count=4, jobs=2)
    assert rep.ok and rep.counts["ok"] == 4 * len(models)


def test_output_dir_inside_a_directory_spec_is_not_read_as_models(tmp_path, models):
    d = models[0].parent
    rep = golden_batch(d, output_dir=d / "goldens", count=2, jobs=1)
    assert rep.counts["ok"] == 2 * len(models)
    rep = golden_batch(d, output_dir=d / "goldens", count=2, jobs=1)
    assert len(rep) == 2 * len(models) and rep.counts["skipped"] == 2 * len(models)


@pytest.mark.parametrize("entry, match", [
    ({"model": 5}, "must be a path"),
    ({"model": "m.tosa", "random": {"seed": "1"}}, "seed"),
    ({"model": "m.tosa", "random": {"count": [1]}}, "count"),
    ({"model": "m.tosa", "random": {"count": True}}, "count"),
    ({"model": "m.tosa", "random": {"count": -1}}, "count"),
    ({"model": "m.tosa", "random": {"cnt": 1}}, "unknown"),
    ({"model": "m.tosa", "random": {"count": 10 ** 12}}, "more than"),
    ({"model": "m.tosa", "inputs": {"x": 3}}, ".npy"),
    ({"model": "m.tosa", "inputs": [1]}, "inputs"),
])
def test_batch_spec_with_wrong_types_is_a_clear_error(tmp_path, entry, match):
    tiny_model(tmp_path / "m.tosa", DType.INT8)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps([entry]))
    t0 = time.perf_counter()
    with pytest.raises(BatchSpecError, match=match):
        plan_batch(spec)
    assert time.perf_counter() - t0 < 5


def test_batch_spec_deeply_nested_fifo_or_device_is_a_clear_error(tmp_path):
    spec = tmp_path / "deep.json"
    spec.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BatchSpecError):
        plan_batch(spec)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(BatchSpecError, match="regular file"):
        plan_batch(fifo)                       # must not block on the FIFO
    spec.write_text(json.dumps([{"model": "/dev/zero"}]))
    with pytest.raises(BatchSpecError, match="/dev/zero"):
        plan_batch(spec)                       # the one model reader refuses devices
