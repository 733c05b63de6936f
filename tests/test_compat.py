"""tosaint.compat: the reference model binding's ``run`` on tosaint, the shim that activates it in
every process, ``TOSAINT_REFERENCE=both`` and the failure case folders.

The tests marked ``oracle`` call the real binding (tosa-tools) side by side and compare
statuses, exceptions and output dtypes with it."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tosaint
from tosaint.builder import GraphBuilder
from tosaint.compat import dual, dump
from tosaint.compat import reference_model
from tosaint.diff import diff
from tosaint.errors import TosaError
from tosaint.schema.definition import DType, Op
from tosaint.testcase import read_desc

from .helpers import identity_variable_graph

DATA = Path(__file__).parent / "data" / "executorch"
ET_GRAPHS = sorted(p.name for p in DATA.iterdir() if (p / "model.tosa").exists())


def et_case(name):
    d = DATA / name
    return (d / "model.tosa").read_bytes(), np.load(d / "input_0.npy"), np.load(
        d / "expected_0.npy")


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch):
    for k in ("TOSAINT_REFERENCE", "TOSAINT_COMPAT_DUMP", "TOSAINT_COMPAT_IMPL"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture
def binding(monkeypatch):
    """The real binding, with gdb hidden (it attaches a debugger on graph errors when it
    finds one on PATH)."""
    real = pytest.importorskip("tosa_reference_model")
    if getattr(real, "TOSAINT_COMPAT", False):
        pytest.skip("tosa_reference_model is tosaint's shim here")
    monkeypatch.setenv("PATH", "/nonexistent")
    return real


def outcome(module, data, inputs, **kw):
    """(status name, [(dtype, shape)]) or the exception type, for comparing the two."""
    try:
        outs, status = module.run(data, inputs, **kw)
    except ValueError:
        return "ValueError"
    except TypeError:
        return "TypeError"
    return status.name, [(str(a.dtype), a.shape) for a in outs]


# ---- graphs -------------------------------------------------------------------------------------
def add_graph(dtype=DType.INT32):
    b = GraphBuilder()
    a, c = b.input((4,), dtype, name="a"), b.input((4,), dtype, name="c")
    b.output(b.add(a, c))
    return b.build().to_bytes()


def rescale_graph(shift):
    b = GraphBuilder()
    x = b.input((4,), DType.INT32, name="x")
    b.output(b.rescale(x, [1 << 30], [shift], DType.INT32, scale32=True))
    return b.build().to_bytes()


def greater_graph():
    b = GraphBuilder()
    a, c = b.input((4,), DType.INT32, name="a"), b.input((4,), DType.INT32, name="c")
    b.output(b.op(Op.GREATER, [a, c], (4,), DType.BOOL))
    return b.build().to_bytes()


def int48_graph():
    b = GraphBuilder()
    x = b.input((1, 2, 2, 1), DType.INT16, name="x")
    w = b.const(np.full((1, 1, 1, 1), 3, np.int8), DType.INT8)
    bias = b.const(np.zeros(1, np.int64), DType.INT48)
    b.output(b.conv2d(x, w, bias))
    return b.build().to_bytes()


def variable_graph():
    """A variable with initial data 0..5, read by one IDENTITY and written by another."""
    return identity_variable_graph().to_bytes()


def identity_graph():
    b = GraphBuilder()
    b.output(b.identity(b.input((4,), DType.INT32, name="a")))
    return b.build().to_bytes()


I32 = np.array([5, -7, 1 << 20, -(1 << 20)], np.int32)
BIG = np.array([2 ** 31 - 1, 1, 2, 3], np.int32)

#: (label, graph bytes, inputs, keyword arguments): statuses, exceptions and dtypes compared
CASES = [
    ("valid add", add_graph(), [I32, I32], {}),
    ("add overflow: UNPREDICTABLE", add_graph(), [BIG, BIG], {}),
    ("ADD int8: ERROR_IF at load", add_graph(DType.INT8), [I32.astype(np.int8)] * 2, {}),
    ("rescale shift 70: UNPREDICTABLE", rescale_graph(70), [I32], {}),
    ("rescale value range: UNPREDICTABLE", rescale_graph(30),
     [np.full(4, 1 << 29, np.int32)], {}),
    ("bool output", greater_graph(), [I32, np.zeros(4, np.int32)], {}),
    ("not a TOSA file", b"TOSX" * 8, [I32], {}),
    ("empty graph bytes", b"", [I32], {}),
    ("too few inputs", add_graph(), [I32], {}),
    ("too many inputs", add_graph(), [I32, I32, I32], {}),
    ("wrong byte size", add_graph(), [I32, I32.astype(np.int16)], {}),
    ("same bytes, other dtype and shape", add_graph(),
     [I32.view(np.uint32).reshape(2, 2), I32.view(np.float32)], {}),
    ("non-contiguous input", add_graph(), [np.arange(8, dtype=np.int32)[::2], I32], {}),
    ("tuple of inputs", add_graph(), (I32, I32), {}),
    ("list of lists", add_graph(), [I32.tolist(), I32.tolist()], {}),
    ("dict of inputs", add_graph(), {"a": I32, "c": I32}, {}),
    ("numpy scalar input", identity_graph(), [np.int32(3)], {}),
    ("variable from flatbuffer", variable_graph(), [np.full((2, 3), 7, np.int8)], {}),
    ("variable from numpy", variable_graph(), [np.full((2, 3), 7, np.int8)],
     {"initialize_variable_tensor_from_numpy": True}),
    ("level EIGHTK", add_graph(), [I32, I32], {"tosa_level": "EIGHTK"}),
    ("bad level", add_graph(), [I32, I32], {"tosa_level": "FOO"}),
]


# ---- the exact ExecuTorch call ------------------------------------------------------------------
@pytest.mark.parametrize("name", ET_GRAPHS)
def test_executorch_call_unchanged(name):
    """runner_utils.run_tosa_graph's call and assert, verbatim."""
    graph, x, want = et_case(name)
    inputs_np = [x]
    outputs_np, status = reference_model.run(
        graph,
        inputs_np,
        verbosity="MED",
        initialize_variable_tensor_from_numpy=True,
        debug_mode=None,
    )
    assert status == reference_model.GraphStatus.TOSA_VALID, "Non-valid TOSA given to reference model."
    assert isinstance(outputs_np, list) and len(outputs_np) == 1
    out = outputs_np[0]
    assert out.shape == want.shape and out.dtype == want.dtype
    assert np.array_equal(out, want)
    assert out.flags.writeable and out.flags.c_contiguous
    assert reference_model.last_diagnostics() == []


def test_spec_twins_through_the_environment(monkeypatch):
    graph, x, want = et_case("linear")
    monkeypatch.setenv("TOSAINT_COMPAT_IMPL", "spec")
    outs, status = reference_model.run(graph, [x], initialize_variable_tensor_from_numpy=True)
    assert status == reference_model.GraphStatus.TOSA_VALID
    assert outs[0].dtype == want.dtype and np.array_equal(outs[0], want)


# ---- the binding's surface ----------------------------------------------------------------------
@pytest.mark.oracle
def test_graph_status_same_names_and_values(binding):
    ours, theirs = reference_model.GraphStatus, binding.GraphStatus
    assert {k: int(v) for k, v in ours.__members__.items()} == \
        {k: int(v) for k, v in theirs.__members__.items()}
    for k in ours.__members__:
        assert (ours[k] == int(ours[k])) == (theirs.__members__[k] == int(theirs.__members__[k]))
        assert ours[k].name == theirs.__members__[k].name


@pytest.mark.oracle
@pytest.mark.parametrize("name", ET_GRAPHS)
def test_executorch_graphs_like_the_binding(binding, name):
    graph, x, _ = et_case(name)
    kw = dict(verbosity="MED", initialize_variable_tensor_from_numpy=True, debug_mode=None)
    theirs, status = binding.run(graph, [x], **kw)
    ours, our_status = reference_model.run(graph, [x], **kw)
    assert our_status.name == status.name == "TOSA_VALID"
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.oracle
@pytest.mark.parametrize("label,graph,inputs,kw", CASES, ids=[c[0] for c in CASES])
def test_statuses_exceptions_and_dtypes_like_the_binding(binding, label, graph, inputs, kw):
    want = outcome(binding, graph, inputs, **kw)
    got = outcome(reference_model, graph, inputs, **kw)
    assert got == want
    if isinstance(want, tuple) and want[0] == "TOSA_VALID":
        theirs, _ = binding.run(graph, inputs, **kw)
        ours, _ = reference_model.run(graph, inputs, **kw)
        for a, b in zip(ours, theirs):
            assert np.array_equal(a, b)


@pytest.mark.oracle
def test_int48_output_is_int64_where_the_binding_returns_nothing(binding):
    x = np.arange(4, dtype=np.int16).reshape(1, 2, 2, 1)
    theirs, status = binding.run(int48_graph(), [x])
    ours, our_status = reference_model.run(int48_graph(), [x])
    assert status.name == our_status.name == "TOSA_VALID"
    assert theirs[0].size == 0                           # the binding cannot return int48
    assert ours[0].dtype == np.int64 and np.array_equal(ours[0], 3 * x.astype(np.int64))


def test_invalid_graph_is_a_value_error_and_a_tosa_error():
    with pytest.raises(ValueError, match="Invalid TOSA graph") as e:
        reference_model.run(add_graph(DType.INT8), [I32.astype(np.int8)] * 2)
    assert isinstance(e.value, TosaError)
    assert e.value.status == reference_model.GraphStatus.TOSA_ERROR
    assert "ADD" in reference_model.last_diagnostics()[0]


def test_unpredictable_status_carries_the_diagnosis(capfd):
    outs, status = reference_model.run(add_graph(), [BIG, BIG])
    assert status == reference_model.GraphStatus.TOSA_UNPREDICTABLE
    assert status != reference_model.GraphStatus.TOSA_VALID
    assert outs[0].shape == (4,) and outs[0].dtype == np.int32
    diag = reference_model.last_diagnostics()
    assert len(diag) == 1 and diag[0].startswith("TOSA_UNPREDICTABLE: ADD")
    assert "TOSA_UNPREDICTABLE: ADD" in capfd.readouterr().err


def test_bad_options_raise_instead_of_aborting():
    for kw in ({"verbosity": "LOUD"}, {"debug_mode": "EVERYTHING"}, {"tosa_level": "8K"}):
        with pytest.raises(ValueError):
            reference_model.run(add_graph(), [I32, I32], **kw)
    # every keyword of the binding is accepted, and unknown ones are ignored
    outs, status = reference_model.run(add_graph(), [I32, I32], inst_id=3, debug_filename=None,
                                       is_unbuffered=True, debug_mode="ALL", verbosity="HIGH",
                                       dump_intermediates=1, fp_format="0.3", precise_mode=1,
                                       bounds_mode=True, tosa_level="NONE", future_option=1)
    assert status == reference_model.GraphStatus.TOSA_VALID
    assert np.array_equal(outs[0], I32 + I32)


def test_reinterpreted_input_is_noted():
    outs, status = reference_model.run(identity_graph(), [I32.view(np.uint32).reshape(2, 2)])
    assert status == reference_model.GraphStatus.TOSA_VALID and np.array_equal(outs[0], I32)
    assert "taken as the bytes" in reference_model.last_diagnostics()[0]


def test_outputs_are_new_arrays():
    x = I32.copy()
    outs, _ = reference_model.run(identity_graph(), [x])
    assert not np.shares_memory(outs[0], x)
    outs[0][:] = 0
    again, _ = reference_model.run(identity_graph(), [x])
    assert np.array_equal(again[0], I32) and np.array_equal(x, I32)


def test_variables_follow_the_flag():
    x = np.full((2, 3), 7, np.int8)
    from_fb, _ = reference_model.run(variable_graph(), [x])
    from_np, _ = reference_model.run(variable_graph(), [x],
                                     initialize_variable_tensor_from_numpy=True)
    assert np.array_equal(from_fb[0], np.arange(6, dtype=np.int8).reshape(2, 3))
    assert np.array_equal(from_np[0], np.zeros((2, 3), np.int8))


# ---- failure case folders -----------------------------------------------------------------------
def test_unpredictable_case_is_written(monkeypatch, tmp_path):
    monkeypatch.setenv(dump.ENV, str(tmp_path))
    _, status = reference_model.run(add_graph(), [BIG, BIG])
    assert status == reference_model.GraphStatus.TOSA_UNPREDICTABLE
    note = reference_model.last_diagnostics()[-1]
    folder = Path(note.split("case written to ", 1)[1])
    assert folder.parent == tmp_path
    desc = read_desc(folder)
    assert desc["ifm_name"] == ["a", "c"] and "expected_result_file" not in desc
    assert desc["meta"]["tosaint"]["compat"]["status"] == "TOSA_UNPREDICTABLE"
    assert (folder / "model.tosa").read_bytes() == add_graph()
    for f in desc["ifm_file"]:
        assert np.array_equal(np.load(folder / f), BIG)
    assert "ADD" in (folder / "diagnostics.txt").read_text()
    # the same call again finds the case already there
    reference_model.run(add_graph(), [BIG, BIG])
    assert len(list(tmp_path.iterdir())) == 1


def test_invalid_graph_case_is_named_in_the_error(monkeypatch, tmp_path):
    monkeypatch.setenv(dump.ENV, str(tmp_path))
    with pytest.raises(ValueError, match=f"case written to {tmp_path}"):
        reference_model.run(b"TOSX" * 8, [I32])
    (folder,) = tmp_path.iterdir()
    assert (folder / "model.tosa").read_bytes() == b"TOSX" * 8


# ---- TOSAINT_REFERENCE=both ---------------------------------------------------------------------
@pytest.mark.oracle
@pytest.mark.parametrize("name", ET_GRAPHS)
def test_both_mode_agrees_on_executorch_graphs(binding, monkeypatch, name):
    graph, x, want = et_case(name)
    monkeypatch.setenv("TOSAINT_REFERENCE", "both")
    outs, status = reference_model.run(graph, [x], initialize_variable_tensor_from_numpy=True)
    assert status == reference_model.GraphStatus.TOSA_VALID and np.array_equal(outs[0], want)


@pytest.mark.oracle
def test_both_mode_agrees_on_errors(binding, monkeypatch):
    monkeypatch.setenv("TOSAINT_REFERENCE", "both")
    _, status = reference_model.run(add_graph(), [BIG, BIG])
    assert status == reference_model.GraphStatus.TOSA_UNPREDICTABLE
    with pytest.raises(ValueError, match="Invalid TOSA graph"):
        reference_model.run(add_graph(DType.INT8), [I32.astype(np.int8)] * 2)


class Perturbed:
    """The real binding, except that it adds 1 to one element of ``tensor`` and of every graph
    output computed from it (an injected bug)."""

    def __init__(self, real, graph, tensor):
        self.real, self.tensor, self.final = real, tensor, set(graph.outputs)

    def run(self, data, inputs, **kw):
        outs, status = self.real.run(data, inputs, **kw)
        names = tosaint.load(data).outputs
        outs = [a.copy() for a in outs]
        for i, n in enumerate(names):
            if n == self.tensor or n in self.final:
                outs[i].flat[3] += 1
        return outs, status


@pytest.mark.oracle
def test_both_mode_names_the_first_diverging_operator(binding, monkeypatch, tmp_path):
    graph_bytes, x, _ = et_case("conv2d")
    graph = tosaint.load(graph_bytes)
    rescale = next(o for o in graph.main.operators if Op(o.op) == Op.RESCALE)
    target = rescale.outputs[0]
    monkeypatch.setattr(dual, "_real", Perturbed(binding, graph, target))
    monkeypatch.setenv("TOSAINT_REFERENCE", "both")
    monkeypatch.setenv(dump.ENV, str(tmp_path))
    with pytest.raises(AssertionError) as e:
        reference_model.run(graph_bytes, [x], verbosity="MED",
                            initialize_variable_tensor_from_numpy=True, debug_mode=None)
    msg = str(e.value)
    assert isinstance(e.value, dual.ReferenceMismatch) and isinstance(e.value, TosaError)
    assert "first diverging operator: #" in msg and f"RESCALE {target}" in msg
    assert "1/512 values differ" in msg
    folder = Path(msg.split("case written to ", 1)[1])
    desc = read_desc(folder)
    assert desc["meta"]["tosaint"]["compat"]["status"] == "mismatch"
    ref = np.load(folder / desc["expected_result_file"][0])
    ours = tosaint.run_tosa(graph, [x])[graph.outputs[0]]
    assert np.count_nonzero(ref != ours) == 1
    # and `tosaint diff` takes the folder's inputs as they are
    report = diff(folder / "model.tosa",
                               {n: folder / f for n, f in zip(desc["ifm_name"],
                                                               desc["ifm_file"])},
                               against={graph.outputs[0]: ref})
    assert report.first is not None and report.first.tensor == graph.outputs[0]


def test_both_mode_without_the_binding_runs_tosaint(monkeypatch, capfd):
    monkeypatch.setattr(dual, "_real", False)
    monkeypatch.setattr(dual, "_warned", False)
    monkeypatch.setenv("TOSAINT_REFERENCE", "both")
    graph, x, want = et_case("linear")
    outs, status = reference_model.run(graph, [x])
    assert status == reference_model.GraphStatus.TOSA_VALID and np.array_equal(outs[0], want)
    assert "not installed" in capfd.readouterr().err


# ---- activation in every process ----------------------------------------------------------------
PROBE = '''
import subprocess, sys
import tosa_reference_model as t
print("child", getattr(t, "TOSAINT_COMPAT", False))
code = "import tosa_reference_model as t; print('grandchild', getattr(t, 'TOSAINT_COMPAT', False))"
sys.stdout.flush()
subprocess.run([sys.executable, "-c", code], check=True)
'''


def _env():
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.pop("TOSAINT_COMPAT_SHIM", None)
    return env


@pytest.mark.slow
def test_module_runner_reaches_grandchildren(tmp_path):
    (tmp_path / "compat_probe.py").write_text(PROBE)
    p = subprocess.run([sys.executable, "-m", "tosaint.compat", "compat_probe"], cwd=tmp_path,
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["child", "True", "grandchild", "True"]


@pytest.mark.slow
def test_module_runner_usage_and_exit_codes(tmp_path):
    (tmp_path / "compat_exit.py").write_text("import sys; sys.exit(3)\n")
    run = [sys.executable, "-m", "tosaint.compat"]
    assert subprocess.run(run + ["compat_exit"], cwd=tmp_path, env=_env(),
                          timeout=120).returncode == 3
    p = subprocess.run(run, env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "usage" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run(run + ["compat_exit"], cwd=tmp_path, capture_output=True, text=True,
                       env={**_env(), "TOSAINT_REFERENCE": "sometimes"}, timeout=120)
    assert p.returncode == 2 and "TOSAINT_REFERENCE" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_pytest_plugin_reaches_the_session_and_its_children(tmp_path):
    (tmp_path / "test_probe.py").write_text(
        "import subprocess, sys\n"
        "def test_probe():\n"
        "    import tosa_reference_model as t\n"
        "    assert t.TOSAINT_COMPAT\n"
        "    code = 'import tosa_reference_model as t; assert t.TOSAINT_COMPAT'\n"
        "    subprocess.run([sys.executable, '-c', code], check=True)\n")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-p", "tosaint.compat.pytest_plugin", "test_probe.py"],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 passed" in p.stdout
