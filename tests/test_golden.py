"""tosaint golden: conformance-layout golden folders, their inputs, names, atomic writes, and
bit-identical re-runs on the official reference model CLI (``--test_desc``)."""
import importlib
import json
import os

import numpy as np
import pytest

import tosaint
import tosaint.ops  # noqa: F401  (fills the registry)
from tosaint import DType, Op
from tosaint.builder import GraphBuilder
from tosaint.cli import main as cli_main
from tosaint.errors import InputError, UnpredictableError
from tosaint.golden import (DESC_KEYS, check_with_reference, golden, is_complete,
                            random_inputs, safe_name)
from tosaint.registry import REGISTRY
from tosaint.testcase import read_desc, unescape

ALL_TYPES = (DType.INT4, DType.INT8, DType.INT16, DType.INT32, DType.INT48, DType.BOOL)


def identity_graph(shape=(3, 4), dtypes=ALL_TYPES, names=None):
    """One IDENTITY->IDENTITY path per dtype; inputs in_<t>, outputs out_<t>."""
    b = GraphBuilder()
    outs = []
    for i, dt in enumerate(dtypes):
        t = DType(dt).name.lower()
        name = names[i] if names else f"in_{t}"
        x = b.input(shape, dt, name=name)
        outs.append(b.identity(b.identity(x), name=f"out_{t}"))
    b.output(*outs)
    return b.build()


def richer_graph():
    """A small int16 graph with the richest ops registered right now (RESCALE/ADD/CLAMP/MUL
    when they exist), else an IDENTITY chain."""
    b = GraphBuilder()
    x = b.input((2, 3, 4), DType.INT16, name="x")
    y = b.identity(x)
    if Op.RESCALE in REGISTRY:
        y = b.rescale(y, 1 << 30, 33, DType.INT16)            # x/8, in range
        y = b.rescale(y, [1 << 30, 3 << 28, 1 << 29, 1 << 30], [31, 31, 30, 32], DType.INT32)
        if Op.ADD in REGISTRY:
            y = b.add(y, b.const(np.arange(4, dtype=np.int32).reshape(1, 1, 4) * 1000 - 1500,
                                 DType.INT32))
        y = b.rescale(y, 1 << 30, 31, DType.INT16)
    if Op.CLAMP in REGISTRY:
        y = b.clamp(y, -3000, 2500)
    b.output(b.identity(y, name="result"))
    return b.build()


def conv_graph():
    """a16w8 CONV2D with an int48 bias and int48 graph output, plus a scale16 RESCALE to int16
    (the reference model's Python binding cannot return int48: this needs its CLI)."""
    rng = np.random.default_rng(3)
    b = GraphBuilder()
    x = b.input((1, 5, 6, 3), DType.INT16, name="x")
    w = b.const(rng.integers(-127, 128, (4, 3, 3, 3)), DType.INT8)
    bias = b.const(rng.integers(-(1 << 40), 1 << 40, 4), DType.INT48)
    acc = b.conv2d(x, w, bias, pad=1, name="acc")
    y = b.rescale(acc, [1 << 14, 3 << 13, 1 << 13, 1 << 14], [30, 31, 29, 30], DType.INT16)
    b.output(acc, b.identity(y, name="y"))
    return b.build()


# ---- random inputs -----------------------------------------------------------------------
def test_random_inputs_cover_each_dtype_range_and_are_deterministic():
    g = identity_graph(shape=(64, 64))
    a = random_inputs(g, seed=5, index=0)
    lo_hi = {DType.INT4: (-7, 7), DType.INT8: (-128, 127), DType.INT16: (-32768, 32767),
             DType.INT32: (-(1 << 31), (1 << 31) - 1), DType.INT48: (-(1 << 47), (1 << 47) - 1)}
    for dt in ALL_TYPES:
        v = a[f"in_{dt.name.lower()}"]
        assert v.shape == (64, 64) and v.dtype == tosaint.dtypes.STORAGE[dt]
        if dt == DType.BOOL:
            assert v.any() and not v.all()
            continue
        lo, hi = lo_hi[dt]
        assert lo <= v.min() and v.max() <= hi
        span = hi - lo
        # 4096 uniform draws reach close to both ends of the whole range
        assert v.min() <= lo + span // 50 and v.max() >= hi - span // 50, dt
        if dt in (DType.INT4, DType.INT8):
            assert v.min() == lo and v.max() == hi
    b = random_inputs(g, seed=5, index=0)
    assert all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    c = random_inputs(g, seed=5, index=1)
    d = random_inputs(g, seed=6, index=0)
    assert not np.array_equal(a["in_int16"], c["in_int16"])
    assert not np.array_equal(a["in_int16"], d["in_int16"])
    # a fixed input stays fixed and does not change the others
    fixed = np.zeros((64, 64), np.int16)
    e = random_inputs(g, seed=5, index=0, fixed={"in_int16": fixed})
    assert e["in_int16"] is fixed and np.array_equal(e["in_int8"], a["in_int8"])


def test_random_rank0_input_keeps_rank0():
    g = identity_graph(shape=(), dtypes=(DType.INT48, DType.INT8))
    a = random_inputs(g, 0, 0)
    assert a["in_int48"].shape == () and a["in_int8"].shape == ()


# ---- folder layout -----------------------------------------------------------------------
def test_golden_folder_layout_and_expected_outputs(tmp_path):
    g = identity_graph()
    model = tmp_path / "net.tosa"
    tosaint.save(g, model)
    rep = golden(model, random=True, seed=3, count=3, output_dir=tmp_path / "out")
    assert rep.ok and rep.counts["ok"] == 3 and rep.exit_code == 0
    names = sorted(r.name for r in rep)
    assert all(n.startswith("net-") and "-s3-" in n for n in names)
    for r in rep:
        d = tmp_path / "out" / r.name
        desc = json.loads((d / "desc.json").read_text())
        assert set(DESC_KEYS) <= set(desc)
        assert desc["ifm_name"] == g.inputs and desc["ofm_name"] == g.outputs
        assert (d / desc["tosa_file"]).read_bytes() == model.read_bytes()
        inputs = {n: np.load(d / f) for n, f in zip(desc["ifm_name"], desc["ifm_file"])}
        want = tosaint.run_tosa(g, inputs)
        for n, f in zip(desc["ofm_name"], desc["expected_result_file"]):
            e = np.load(d / f)
            assert e.shape == want[n].shape and e.dtype == want[n].dtype
            assert np.array_equal(e, want[n])
        assert np.load(d / desc["expected_result_file"][desc["ofm_name"].index("out_int48")]
                       ).dtype == np.int64
        assert len(set(desc["ifm_file"] + desc["ofm_file"] + desc["expected_result_file"])) \
            == len(desc["ifm_file"]) + 2 * len(desc["ofm_file"])
        assert desc["meta"]["tosaint"]["seed"] == 3
    assert not [p for p in os.listdir(tmp_path / "out") if p.startswith(".tmp-")]
    # tosaint's own conformance runner accepts the folders
    from tosaint.conformance import run_suite
    res = run_suite(str(tmp_path / "out"))
    assert len(res) == 3 and all(r.passed for r in res)
    # stable names; a second run skips; a larger count only adds cases
    rep2 = golden(model, random=True, seed=3, count=4, output_dir=tmp_path / "out")
    assert sorted(r.name for r in rep2)[:3] == names
    assert rep2.counts == {"ok": 1, "skipped": 3, "unpredictable": 0, "failed": 0}


def test_given_inputs_and_safe_names(tmp_path):
    names = ["in/a:b", "../x", "sp ace"]
    g = identity_graph(dtypes=(DType.INT16, DType.INT8, DType.INT32), names=names)
    model = tmp_path / "we!rd name.tosa"
    tosaint.save(g, model)
    inputs = {n: np.full((3, 4), i + 1, dt) for i, (n, dt) in
              enumerate(zip(names, (np.int16, np.int8, np.int32)))}
    rep = golden(model, inputs, output_dir=tmp_path / "o")
    (r,) = rep.results
    assert r.status == "ok"
    assert r.name.startswith("we_rd_name-") and "-in-" in r.name
    files = os.listdir(tmp_path / "o" / r.name)
    assert all("/" not in f and not f.startswith("..") for f in files)
    assert len(files) == 1 + 1 + 3 + 3
    desc = read_desc(tmp_path / "o" / r.name)
    assert [unescape(f[:-4]) for f in desc["ifm_file"]] == names
    for n, f in zip(desc["ifm_name"], desc["ifm_file"]):
        assert np.array_equal(np.load(tmp_path / "o" / r.name / f), inputs[n])
    # the same inputs again: same folder, skipped; other inputs: another folder
    assert golden(model, inputs, output_dir=tmp_path / "o").results[0].status == "skipped"
    inputs2 = {**inputs, names[0]: np.zeros((3, 4), np.int16)}
    r2 = golden(model, inputs2, output_dir=tmp_path / "o").results[0]
    assert r2.status == "ok" and r2.name != r.name
    # values that fit are cast to the storage dtype, values that do not are bad input
    ok = golden(model, {**inputs, names[1]: np.full((3, 4), 5, np.int64)},
                output_dir=tmp_path / "o")
    assert ok.ok
    with pytest.raises(InputError):
        golden(model, {**inputs, names[1]: np.full((3, 4), 500, np.int64)},
               output_dir=tmp_path / "o")
    with pytest.raises(InputError, match="not given"):
        golden(model, {names[0]: inputs[names[0]]}, output_dir=tmp_path / "o")


def test_unpredictable_cases_are_reported_not_written(tmp_path, monkeypatch):
    import tosaint.interpreter as interp
    g = identity_graph(dtypes=(DType.INT16,))
    real = interp.run_tosa
    calls = []

    def fake(graph, inputs, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise UnpredictableError("ADD add_1: int32 overflow")
        res = real(graph, inputs, **kw)
        if len(calls) == 2:
            res.diagnostics.append(interp.Diagnostic("CONV2D", "conv_1", "int48 saturates", 3))
        return res

    monkeypatch.setattr(interp, "run_tosa", fake)
    rep = golden(g, random=True, count=3, output_dir=tmp_path / "o")
    st = [r.status for r in rep]
    assert st == ["unpredictable", "unpredictable", "ok"]
    assert "overflow" in rep.results[0].message and "saturates" in rep.results[1].message
    assert not rep.ok and rep.exit_code == 1
    written = [p for p in os.listdir(tmp_path / "o") if not p.startswith(".")]
    assert written == [rep.results[2].name]


@pytest.mark.skipif(Op.ADD not in REGISTRY, reason="ADD not implemented yet")
def test_real_int32_overflow_is_not_a_golden(tmp_path):
    b = GraphBuilder()
    x = b.input((64,), DType.INT32, name="x")
    y = b.input((64,), DType.INT32, name="y")
    b.output(b.add(x, y))
    rep = golden(b.build(), random=True, seed=1, count=2, output_dir=tmp_path / "o")
    # full-range int32 operands overflow somewhere in 64 lanes: unpredictable, not written
    assert [r.status for r in rep] == ["unpredictable"] * 2
    assert not [p for p in os.listdir(tmp_path / "o") if not p.startswith(".")]


def _temp_files(out):
    return [p for d in (out, out / ".models") if d.is_dir() for p in os.listdir(d)
            if p.startswith(".tmp-")]


def test_interrupted_write_leaves_no_case(tmp_path, monkeypatch):
    import tosaint.testcase as tc
    g = identity_graph(dtypes=(DType.INT8,))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(tc.json, "dumps", boom)
    rep = golden(g, random=True, count=1, output_dir=tmp_path / "o")
    assert rep.results[0].status == "failed" and "disk full" in rep.results[0].message
    assert [p for p in os.listdir(tmp_path / "o") if p != ".models"] == []
    assert _temp_files(tmp_path / "o") == []
    monkeypatch.undo()
    rep = golden(g, random=True, count=1, output_dir=tmp_path / "o")
    assert rep.ok and is_complete(tmp_path / "o" / rep.results[0].name)


def test_disk_full_leaves_no_temp_files(tmp_path, monkeypatch):
    """A full disk while the model store is written leaves no partial copy, and temp files
    of a dead run are removed by the next run."""
    from pathlib import Path
    g = identity_graph(dtypes=(DType.INT8,))
    real = Path.write_bytes

    def half(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half)
    rep = golden(g, random=True, count=1, output_dir=tmp_path / "o")
    monkeypatch.undo()
    assert rep.results[0].status == "failed" and "No space" in rep.results[0].message
    assert _temp_files(tmp_path / "o") == []
    gmod = importlib.import_module("tosaint.golden")
    stale = tmp_path / "o" / ".models" / f".tmp-x.{gmod._host()}.999999999.abc"
    stale.write_bytes(b"partial")
    rep = golden(g, random=True, count=1, output_dir=tmp_path / "o")
    assert rep.ok and _temp_files(tmp_path / "o") == []


def test_incomplete_folder_is_redone(tmp_path):
    g = identity_graph(dtypes=(DType.INT8,))
    rep = golden(g, random=True, count=1, output_dir=tmp_path / "o")
    d = tmp_path / "o" / rep.results[0].name
    os.remove(d / "Conformance-out_int8.npy")
    assert not is_complete(d)
    rep = golden(g, random=True, count=1, output_dir=tmp_path / "o")
    assert rep.results[0].status == "ok" and is_complete(d)


# ---- command line ------------------------------------------------------------------------
def test_cli_exit_codes(tmp_path, capsys):
    g = identity_graph(dtypes=(DType.INT16,))
    model = tmp_path / "m.tosa"
    tosaint.save(g, model)
    x = tmp_path / "x.npy"
    np.save(x, np.arange(12, dtype=np.int16).reshape(3, 4))
    out = tmp_path / "o"
    assert cli_main(["golden", str(model), "--input", f"in_int16={x}", "-o", str(out)]) == 0
    assert "1 written" in capsys.readouterr().out
    assert cli_main(["golden", str(model), "--input", str(x), "-o", str(out), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["counts"]["skipped"] == 1 and js["all_ok"]
    assert cli_main(["golden", str(model), "--random", "--count", "2", "-o", str(out)]) == 0
    assert cli_main(["golden", str(model), "-o", str(out)]) == 2              # no inputs
    assert cli_main(["golden", str(tmp_path / "nope.tosa"), "-o", str(out)]) == 2
    (tmp_path / "bad.tosa").write_bytes(b"not a flatbuffer")
    assert cli_main(["golden", str(tmp_path / "bad.tosa"), "--random", "-o", str(out)]) == 2
    assert cli_main(["golden", "-o", str(out)]) == 2
    assert cli_main(["golden", str(model), "--random", "--seed", "-1", "-o", str(out)]) == 2
    with pytest.raises(SystemExit):
        cli_main(["golden", "--help"])
    assert "exit codes" in capsys.readouterr().out


# ---- the oracle --------------------------------------------------------------------------
@pytest.mark.oracle
def test_golden_folders_rerun_bit_identically_on_reference_model(tmp_path):
    pytest.importorskip("tosa_reference_model")
    graphs = {"identity_all_types": identity_graph(),
              "identity_rank0": identity_graph(shape=(), dtypes=(DType.INT48, DType.INT16)),
              "richer": richer_graph()}
    if Op.CONV2D in REGISTRY and Op.RESCALE in REGISTRY:
        graphs["conv_int48"] = conv_graph()
    for name, g in graphs.items():
        model = tmp_path / f"{name}.tosa"
        tosaint.save(g, model)
        rep = golden(model, random=True, seed=11, count=2, output_dir=tmp_path / "o",
                     verify=True)
        assert rep.ok, [r.message for r in rep]
        for r in rep:
            assert r.verified is True
            assert check_with_reference(r.path) == []
    # the check can fail: a wrong expected value is caught
    r = rep.results[0]
    desc = json.loads((tmp_path / "o" / r.name / "desc.json").read_text())
    p = tmp_path / "o" / r.name / desc["expected_result_file"][0]
    e = np.load(p)
    e.flat[0] += 1
    np.save(p, e)
    problems = check_with_reference(r.path)
    assert problems and "1/" in problems[0]


def test_verify_without_the_reference_model_is_bad_input(tmp_path, monkeypatch):
    import tosaint.oracle
    monkeypatch.setattr(tosaint.oracle, "available", lambda: False)
    g = identity_graph(dtypes=(DType.INT8,))
    with pytest.raises(InputError, match="tosa-tools"):
        golden(g, random=True, output_dir=tmp_path / "o", verify=True)
    assert not (tmp_path / "o").exists()


def test_a_crashing_case_fails_alone(tmp_path, monkeypatch):
    import tosaint.interpreter as interp
    real = interp.run_tosa
    calls = []

    def flaky(graph, inputs, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise IndexError("bug in some op")
        return real(graph, inputs, **kw)

    monkeypatch.setattr(interp, "run_tosa", flaky)
    rep = golden(identity_graph(dtypes=(DType.INT8,)), random=True, count=3,
                 output_dir=tmp_path / "o")
    assert [r.status for r in rep] == ["ok", "failed", "ok"]
    assert rep.results[1].message == "CRASH IndexError: bug in some op"


def test_random_needs_a_drawable_dtype(tmp_path):
    b = GraphBuilder()
    s = b.input((2,), DType.SHAPE, name="s")
    x = b.input((2,), DType.INT8, name="x")
    b.output(b.identity(x), s)
    with pytest.raises(InputError, match="SHAPE"):
        golden(b.build(), random=True, output_dir=tmp_path / "o")
