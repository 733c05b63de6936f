"""tosaint diff: first diverging op between tosaint's captured intermediates and a reference
(directory of .npy, reference-model text dump, or the reference model itself)."""
import json
import os
import subprocess

import numpy as np
import pytest

import tosaint
import tosaint.ops  # noqa: F401
from tosaint import DType, Op
from tosaint.builder import GraphBuilder
from tosaint.cli import main as cli_main
from tosaint.diff import Unreadable, diff, parse_text_dump, with_all_outputs
from tosaint.errors import UnpredictableError
from tosaint.registry import REGISTRY

RICH = all(op in REGISTRY for op in (Op.RESCALE, Op.ADD, Op.CLAMP))


def chain_graph(n_ops=300):
    """A long int16 chain of about ``n_ops`` computing operators (plus their CONST operands):
    RESCALE/ADD/RESCALE/CLAMP blocks when those ops are implemented, else IDENTITY.
    Returns (graph, names of the computed tensors in order)."""
    b = GraphBuilder()
    x = b.input((2, 8), DType.INT16, name="x")
    y = x
    rng = np.random.default_rng(0)
    def computed_ops():
        return sum(Op(o.op) not in (Op.CONST, Op.CONST_SHAPE) for o in b.block.operators)

    while computed_ops() < n_ops:
        if RICH:
            # int16 -> int32 (x/2), + bias, -> int16 (x * 0.75), clamp: stays in range
            y32 = b.rescale(y, 1 << 30, 31, DType.INT32)
            y32 = b.add(y32, b.const(rng.integers(-50, 50, (1, 8)), DType.INT32))
            y = b.rescale(y32, 3 << 28, 29, DType.INT16)
            y = b.clamp(y, -20000, 20000)
        else:
            y = b.identity(y)
    b.output(y)
    g = b.build()
    computed = [o.outputs[0] for o in g.operators if Op(o.op) not in (Op.CONST, Op.CONST_SHAPE)]
    return g, computed


def inputs_for():
    return {"x": np.random.default_rng(1).integers(-30000, 30000, (2, 8)).astype(np.int16)}


def dump_with_cli_run(tmp_path, model, x):
    """The reference dump as ``tosaint run --capture`` writes it (one .npy per tensor)."""
    np.save(tmp_path / "x.npy", x)
    d = tmp_path / "dump"
    assert cli_main(["run", str(model), "--input", f"x={tmp_path / 'x.npy'}", "-o", str(d),
                     "--capture"]) == 0
    return d


@pytest.mark.parametrize("impl", ["numba", "spec"])
def test_diff_names_the_corrupted_op(tmp_path, impl, capsys):
    g, computed = chain_graph()
    assert len(computed) >= 300
    model = tmp_path / "chain.tosa"
    tosaint.save(g, model)
    inputs = inputs_for()
    dump = dump_with_cli_run(tmp_path, model, inputs["x"])
    capsys.readouterr()

    clean = diff(model, inputs, dump, impl=impl)
    assert clean.first is None and clean.exit_code == 0
    assert clean.compared >= len(computed) and not clean.missing

    # corrupt one intermediate two thirds down the chain: 3 values, off by up to 5
    victim = computed[2 * len(computed) // 3]
    f = dump / f"{victim}.npy"
    a = np.load(f)
    a.flat[[1, 4, 9]] += np.array([2, -5, 1], a.dtype)
    np.save(f, a)
    rep = diff(model, inputs, dump, impl=impl)
    first = rep.first
    assert first is not None and rep.exit_code == 1
    producer = next(o for o in g.operators if victim in o.outputs)
    assert first.tensor == victim and first.op == producer.name
    assert first.n_diff == 3 and first.max_abs_diff == 5 and first.first_index == [0, 1]
    assert first.tosaint_value - first.reference_value == -2
    # everything before it matched; the op index is its place in execution order
    before = [e for e in rep.entries if e.op_index < first.op_index and e.op_index >= 0]
    assert before and all(e.status == "equal" for e in before)
    assert rep.counts["differs"] == 1                 # the dump downstream is uncorrupted
    text = rep.format()
    assert f"first divergence: op #{first.op_index} {producer.name}" in text

    # the command line: exit 1, the op named, JSON for machines
    assert cli_main(["diff", str(model), "-i", f"x={tmp_path / 'x.npy'}", "--against",
                     str(dump), "--impl", impl]) == 1
    assert producer.name in capsys.readouterr().out
    assert cli_main(["diff", str(model), "-i", str(tmp_path / "x.npy"), "--against", str(dump),
                     "--json"]) == 1
    js = json.loads(capsys.readouterr().out)
    assert js["diverged"] and js["first_divergence"]["tensor"] == victim

    # missing tensors are listed, not divergences
    (dump / f"{victim}.npy").unlink()
    (dump / f"{computed[5]}.npy").unlink()
    rep = diff(model, inputs, dump, impl=impl)
    assert rep.first is None and set(rep.missing) == {victim, computed[5]}


def test_diff_shape_mismatch_and_extras(tmp_path):
    g, computed = chain_graph(12)
    inputs = inputs_for()
    ref = dict(tosaint.run_tosa(g, inputs, capture=True))
    ref[computed[3]] = ref[computed[3]][:1]
    ref["not_in_graph"] = np.zeros(3, np.int8)
    rep = diff(g, inputs, ref)
    assert rep.first.tensor == computed[3] and rep.first.status == "shape"
    assert rep.extras == ["not_in_graph"]


def test_diff_when_tosaint_stops_unpredictable(tmp_path):
    g, computed = chain_graph(20)
    inputs = inputs_for()
    ref = dict(tosaint.run_tosa(g, inputs, capture=True))
    plan = tosaint.prepare(g)
    k = next(i for i, s in enumerate(plan.main.steps) if s.outs[0] == computed[10])

    def boom(*a):
        raise UnpredictableError(f"{plan.main.steps[k].node.name}: overflow")

    plan.main.steps[k].fn = boom
    rep = diff(g, inputs, ref)
    assert "overflow" in rep.tosaint_error and rep.exit_code == 1
    st = {e.tensor: e.status for e in rep.entries}
    assert all(st[n] == "equal" for n in computed[:10])
    assert st[computed[10]] == "not-computed"


def test_parse_text_dump_format():
    text = (b"Node type: IDENTITY ID: 0 Eval Count: 1 On next node list: 0 Evaluated: 1\n"
            b"    Input[0]  Name: x DType=INT16 isValid=1 Rank=2 Shape=[2, 3, ]\n"
            b"   Output[0]  Name: y DType=INT16 isValid=1 Rank=2 Shape=[2, 3, ]\n"
            b"Name: y DType=INT16 isValid=1 Rank=2 Shape=[2, 3, ]\n"
            b"[[ 0  -1  2 ]\n[ 3  4  -32768 ]\n]\n\n"
            b"Name: a b:c DType=INT48 isValid=1 Rank=0 Shape=[]\n"
            b"[ -140737488355328 ]\n\n"
            b"Name: q DType=INT8 isValid=1 Rank=1 Shape=[3, ]\n"
            b"[ \x80  \n"
            b"Name: short DType=INT32 isValid=1 Rank=1 Shape=[4, ]\n"
            b"[ 1  2  3 ]\n\n"
            b"Name: y DType=INT16 isValid=1 Rank=2 Shape=[2, 3, ]\n"
            b"[[ 9  9  9 ]\n[ 9  9  9 ]\n]\n")
    t = parse_text_dump(text)
    assert set(t) == {"y", "a b:c", "q", "short"}
    assert t["y"].dtype == np.int16 and np.array_equal(t["y"], np.full((2, 3), 9))  # last wins
    assert t["a b:c"].shape == () and t["a b:c"].dtype == np.int64
    assert int(t["a b:c"]) == -(1 << 47)
    assert isinstance(t["q"], Unreadable) and isinstance(t["short"], Unreadable)


def test_cli_bad_input(tmp_path):
    g, _ = chain_graph(4)
    model = tmp_path / "m.tosa"
    tosaint.save(g, model)
    np.save(tmp_path / "x.npy", inputs_for()["x"])
    x = f"x={tmp_path / 'x.npy'}"
    assert cli_main(["diff", str(model), "-i", x]) == 2                         # no reference
    assert cli_main(["diff", str(model), "-i", x, "--against", str(tmp_path / "no")]) == 2
    (tmp_path / "junk.txt").write_text("hello")
    assert cli_main(["diff", str(model), "-i", x, "--against", str(tmp_path / "junk.txt")]) == 2
    assert cli_main(["diff", str(model), "--against", str(tmp_path)]) == 2      # no input


# ---- against the reference model ---------------------------------------------------------
def mixed_graph():
    """int8, int16, int32, int48 and bool intermediates (IDENTITY paths)."""
    b = GraphBuilder()
    outs = []
    for dt in (DType.INT8, DType.INT16, DType.INT32, DType.INT48, DType.BOOL):
        x = b.input((3, 4), dt, name=f"in_{dt.name.lower()}")
        outs.append(b.identity(b.identity(b.identity(x)), name=f"out_{dt.name.lower()}"))
    b.output(*outs)
    return b.build()


@pytest.mark.slow
@pytest.mark.oracle
def test_oracle_dump_and_corruption(tmp_path):
    pytest.importorskip("tosa_reference_model")
    g, computed = chain_graph()
    inputs = inputs_for()
    rep = diff(g, inputs, oracle=True, save_oracle=tmp_path / "oracle")
    assert rep.first is None and rep.compared == len(computed) and not rep.missing
    victim = computed[len(computed) // 2]
    p = tmp_path / "oracle" / f"{victim}.npy"
    a = np.load(p)
    a[1, 7] ^= 1
    np.save(p, a)
    rep = diff(g, inputs, tmp_path / "oracle")
    assert rep.first.tensor == victim and rep.first.n_diff == 1

    m = mixed_graph()
    from tosaint.golden import random_inputs
    mi = random_inputs(m, 0, 0)
    rep = diff(m, mi, oracle=True)
    assert rep.first is None and rep.compared == 15 and rep.counts == {"equal": 15}
    assert len(with_all_outputs(m).outputs) == 15 and m.outputs == [f"out_{t}" for t in
                                                                    ("int8", "int16", "int32",
                                                                     "int48", "bool")]


@pytest.mark.oracle
def test_against_reference_model_dump_intermediates_log(tmp_path):
    pytest.importorskip("tosa_reference_model")
    from tosaint.golden import golden
    from tosaint.oracle import executable
    m = mixed_graph()
    model = tmp_path / "m.tosa"
    tosaint.save(m, model)
    rep = golden(model, random=True, seed=2, output_dir=tmp_path / "g")
    case = tmp_path / "g" / rep.results[0].name
    log = tmp_path / "dump.log"
    (tmp_path / "out").mkdir()
    subprocess.run([str(executable()), "--test_desc", str(case / "desc.json"), "--output_dir",
                    str(tmp_path / "out"), "--dump_intermediates", "1", "-o", str(log)],
                   capture_output=True, check=True,
                   env={**os.environ, "PATH": "/nonexistent"})   # no gdb on errors
    desc = json.loads((case / "desc.json").read_text())
    inputs = {n: str(case / f) for n, f in zip(desc["ifm_name"], desc["ifm_file"])}
    r = diff(model, inputs, log)
    st = {e.tensor: e.status for e in r.entries}
    assert r.first is None
    # the CLI prints int16/int32/int48 tensors as numbers, int8/bool as raw characters
    assert {st[n] for n in st if "int16" in n or "int32" in n or "int48" in n} <= {"equal"}
    assert r.counts["equal"] == 9 and r.counts["unreadable"] == 6
    # a corrupted value in the log is found
    text = log.read_bytes()
    i = text.index(b"Name: identity_", text.index(b"DType=INT32 isValid=1 Rank=2 Shape=[3, 4, ]\n"))
    j = text.index(b"[[ ", i) + 3
    k = text.index(b" ", j)
    bad = text[:j] + str(int(text[j:k]) + 7).encode() + text[k:]
    log.write_bytes(bad)
    r = diff(model, inputs, log)
    assert r.first is not None and r.first.dtype == "int32" and r.first.max_abs_diff == 7


def test_compare_tensor_edges():
    from tosaint.diff import compare_tensor
    st, f = compare_tensor(np.array([True, False]), np.array([True, True]))
    assert st == "differs" and f["n_diff"] == 1 and f["first_index"] == [1]
    st, f = compare_tensor(np.array(5, np.int64), np.array(-7, np.int64))
    assert st == "differs" and f["max_abs_diff"] == 12 and f["first_index"] == []
    # int48 storage extremes and int64 extremes: no overflow in the largest difference
    st, f = compare_tensor(np.array([-(1 << 47)], np.int64), np.array([(1 << 47) - 1], np.int64))
    assert f["max_abs_diff"] == (1 << 48) - 1
    st, f = compare_tensor(np.array([-(1 << 63), 3], np.int64), np.array([0, 3], np.int64))
    assert f["max_abs_diff"] == 1 << 63 and f["n_diff"] == 1
    st, f = compare_tensor(np.array([1, 2], np.int16), np.array([1, 2], np.int32))
    assert st == "equal" and "dtype" in f["note"]
    assert compare_tensor(np.array([1, 2], np.int16), np.array([[1, 2]], np.int16))[0] == "shape"


def test_diff_reaches_into_sub_blocks(tmp_path):
    """The one run loop captures what a COND_IF branch computes: a corrupted branch tensor is
    the first divergence, named with its block."""
    from tests.test_control_flow import cond_if_graph
    g = cond_if_graph()
    inputs = {"c": np.array(True), "x": np.arange(6, dtype=np.int16).reshape(2, 3)}
    ref = dict(tosaint.run_tosa(g, inputs, capture=True))
    inner = [n for n in ref if n not in ("c", "x", "y")]
    assert inner, "the captured run holds the branch's tensors"
    ref[inner[0]] = ref[inner[0]] + 1
    rep = diff(g, inputs, ref)
    assert rep.first.tensor == inner[0] and "block THEN" in rep.first.location
    assert diff(g, inputs, dict(tosaint.run_tosa(g, inputs, capture=True))).first is None
