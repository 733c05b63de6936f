"""The tosaint command line: exit codes, messages, file names that never collide, hostile
test folders, resource limits, a closed pipe, a quiet reference model, and life under a
2 GB address-space limit."""
import json
import os
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
from tosaint.errors import InputError
from tosaint.inputs import coerce, declared_inputs
from tosaint.testcase import read_desc, tensor_map

COLLIDING = ["a/b", "a_b", "A_b", "..", "Conformance-y", "y", "x" * 300, "x" * 300 + "!",
             "ü/ü", "%41"]


def chain(names, dtype=DType.INT16, shape=(2, 3), input_name="x"):
    """x -> IDENTITY names[0] -> IDENTITY names[1] -> ...; every tensor a graph output."""
    b = GraphBuilder()
    t = b.input(shape, dtype, name=input_name)
    outs = []
    for n in names:
        t = b.identity(t, name=n)
        outs.append(t)
    b.output(*outs)
    return b.build()


def save(g, path):
    tosaint.save(g, path)
    return str(path)


def x16(shape=(2, 3)):
    return np.arange(np.prod(shape), dtype=np.int16).reshape(shape) - 3


def run_cli(*args, env=None, timeout=300, preexec_fn=None):
    """``python -m tosaint ARGS`` in a subprocess: (returncode, stdout, stderr)."""
    p = subprocess.run([sys.executable, "-m", "tosaint", *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, env=env, preexec_fn=preexec_fn)
    return p.returncode, p.stdout, p.stderr


# ---- file names ---------------------------------------------------------------------------
def test_run_writes_every_output_under_its_own_file(tmp_path):
    model = save(chain(COLLIDING), tmp_path / "m.tosa")
    np.save(tmp_path / "x.npy", x16())
    out = tmp_path / "out"
    assert cli_main(["run", model, "-i", str(tmp_path / "x.npy"), "-o", str(out),
                     "--capture"]) == 0
    m = tensor_map(out)
    assert set(m) == set(COLLIDING) | {"x"}
    assert len({f.lower() for f in m.values()}) == len(m)            # distinct, any case
    assert all(len(f.encode()) <= 255 and "/" not in f for f in m.values())
    assert sorted(p.name for p in out.glob("*.npy")) == sorted(m.values())
    for n, f in m.items():
        assert np.array_equal(np.load(out / f), x16()), n


def test_diff_against_blames_the_right_op_with_colliding_names(tmp_path):
    names = ["a/b", "a_b", "a:b"]          # the same file name in older versions
    model = save(chain(names), tmp_path / "m.tosa")
    np.save(tmp_path / "x.npy", x16())
    for bad in names:
        out = tmp_path / f"dump{names.index(bad)}"
        assert cli_main(["run", model, "-i", str(tmp_path / "x.npy"), "-o", str(out),
                         "--capture"]) == 0
        f = out / tensor_map(out)[bad]
        np.save(f, np.load(f) + 1)
        from tosaint.diff import diff
        rep = diff(model, {"x": str(tmp_path / "x.npy")}, out)
        assert rep.first is not None and rep.first.tensor == bad, rep.format()
        assert rep.first.op == f"IDENTITY {bad}"


def test_golden_input_named_like_an_expected_output_file(tmp_path, capsys):
    """Input ``Conformance-y`` beside output ``y`` (both ``Conformance-y.npy`` once)."""
    b = GraphBuilder()
    x = b.input((2, 3), DType.INT16, name="Conformance-y")
    b.output(b.identity(b.identity(x), name="y"))
    model = save(b.build(), tmp_path / "m.tosa")
    np.save(tmp_path / "in.npy", x16())
    out = tmp_path / "g"
    assert cli_main(["golden", model, "-i", f"Conformance-y={tmp_path / 'in.npy'}",
                     "-o", str(out)]) == 0
    (case,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    desc = read_desc(case)
    files = desc["ifm_file"] + desc["expected_result_file"] + desc["ofm_file"]
    assert len(set(files)) == len(files)
    capsys.readouterr()
    assert cli_main(["conformance", str(out)]) == 0
    assert "pass 1/1" in capsys.readouterr().out


def test_names_over_the_file_system_limit_write_everything(tmp_path):
    names = ["n" * 400, "n" * 400 + "2", "é" * 200]
    model = save(chain(names), tmp_path / "m.tosa")
    np.save(tmp_path / "x.npy", x16())
    assert cli_main(["run", model, "-i", str(tmp_path / "x.npy"), "-o",
                     str(tmp_path / "o")]) == 0
    assert len(list((tmp_path / "o").glob("*.npy"))) == 3
    assert cli_main(["golden", model, "--random", "-o", str(tmp_path / "g")]) == 0


# ---- conformance on hostile folders -------------------------------------------------------
def _good_folder(tmp_path):
    model = save(chain(["y"]), tmp_path / "m.tosa")
    out = tmp_path / "src"
    assert cli_main(["golden", model, "--random", "-o", str(out)]) == 0
    return next(p for p in out.iterdir() if not p.name.startswith("."))


@pytest.mark.timeout(120)
def test_conformance_counts_a_bad_folder_as_its_error_and_goes_on(tmp_path, capsys):
    import shutil
    good = _good_folder(tmp_path)
    suite = tmp_path / "suite"
    shutil.copytree(good, suite / "0_good")
    bad = {}

    def make(name, edit):
        d = suite / name
        shutil.copytree(good, d)
        edit(d, read_desc(d))
        bad[name] = d

    def write(d, desc):
        (d / "desc.json").write_text(json.dumps(desc))

    make("list", lambda d, desc: (d / "desc.json").write_text("[1, 2]"))
    make("invalid", lambda d, desc: (d / "desc.json").write_text("{nope"))
    make("not_an_output", lambda d, desc: write(d, {**desc, "ofm_name": ["nope"]}))
    make("outside", lambda d, desc: write(d, {**desc, "ifm_file": ["../../src.npy"]}))
    make("absolute", lambda d, desc: write(d, {**desc, "tosa_file": "/etc/passwd"}))
    make("lengths", lambda d, desc: write(d, {**desc, "ifm_file": []}))

    def pickled(d, desc):
        np.save(d / desc["expected_result_file"][0], np.array([{"a": 1}], dtype=object),
                allow_pickle=True)
    make("pickled", pickled)
    make("not_npy", lambda d, desc: (d / desc["expected_result_file"][0]).write_text("hi"))

    def fifo(d, desc):
        f = d / desc["ifm_file"][0]
        f.unlink()
        os.mkfifo(f)
    make("fifo", fifo)
    t0 = time.perf_counter()
    code = cli_main(["conformance", str(suite)])
    out = capsys.readouterr().out
    assert time.perf_counter() - t0 < 60
    assert code == 1
    assert f"pass 1/{1 + len(bad)}" in out
    for name, d in bad.items():
        assert f"FAIL {d}" in out, name
    from tosaint.conformance import run_case
    assert run_case(str(bad["pickled"])).error_type == "bad-test"
    assert "outside the test folder" in run_case(str(bad["outside"])).message


def test_conformance_without_tests_is_bad_input(tmp_path, capsys):
    assert cli_main(["conformance", str(tmp_path / "nonexistent")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert cli_main(["conformance", str(tmp_path)]) == 2
    assert "no test folders" in capsys.readouterr().err


# ---- messages -----------------------------------------------------------------------------
def test_golden_without_inputs_speaks_cli(tmp_path, capsys):
    model = save(chain(["y"]), tmp_path / "m.tosa")
    assert cli_main(["golden", model, "-o", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "--random" in err and "--input" in err and "random=True" not in err
    assert "Traceback" not in err


def test_missing_extras_name_the_pinned_install(tmp_path, monkeypatch, capsys):
    import tosaint.oracle
    monkeypatch.setattr(tosaint.oracle, "available", lambda: False)
    model = save(chain(["y"]), tmp_path / "m.tosa")
    np.save(tmp_path / "x.npy", x16())
    assert cli_main(["golden", model, "--random", "--verify", "-o", str(tmp_path / "g")]) == 2
    assert "pip install tosa-tools==2026.8.0" in capsys.readouterr().err
    assert cli_main(["diff", model, "-i", str(tmp_path / "x.npy"), "--oracle"]) == 2
    assert "pip install tosa-tools==2026.8.0" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "dask.distributed", None)      # as if not installed
    assert cli_main(["golden", "--batch", str(tmp_path), "-o", str(tmp_path / "b"),
                     "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert 'pip install "tosaint[distributed]"' in capsys.readouterr().err


def test_bare_array_for_a_one_input_graph_and_clear_message_otherwise():
    g = chain(["y"])
    out = tosaint.run_tosa(g, x16())
    assert np.array_equal(out["y"], x16())
    two = GraphBuilder()
    a, b = two.input((2, 3), DType.INT16, name="a"), two.input((2, 3), DType.INT16, name="b")
    two.output(two.identity(a, name="p"), two.identity(b, name="q"))
    g2 = two.build()
    with pytest.raises(InputError, match="pass a dict by name or a list"):
        tosaint.run_tosa(g2, x16())
    with pytest.raises(InputError, match="dict by name or a list"):
        coerce(declared_inputs(g2), 5)
    with pytest.raises(InputError, match=r"'b'\] missing"):
        coerce(declared_inputs(g2), {"a": x16()})
    with pytest.raises(InputError, match="astype"):
        coerce(declared_inputs(g2), [x16(), x16().astype(np.int32)])
    got = coerce(declared_inputs(g2), [x16(), x16().astype(np.int32)], cast=True)
    assert got[1].dtype == np.int16
    nc = np.asfortranarray(x16())
    a_, = coerce(declared_inputs(g), [nc])
    assert a_.flags.c_contiguous and not np.shares_memory(a_, nc)
    c = x16()
    assert coerce(declared_inputs(g), [c])[0] is c          # no copy when contiguous


def test_inspect_into_a_closed_pipe_exits_0_quietly(tmp_path):
    model = save(chain(["y%d" % i for i in range(300)]), tmp_path / "m.tosa")
    p = subprocess.Popen([sys.executable, "-m", "tosaint", "inspect", model, "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()                     # like `| head` that has read enough
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err


def test_model_paths_refuse_devices(tmp_path):
    t0 = time.perf_counter()
    assert cli_main(["golden", "/dev/zero", "--random", "-o", str(tmp_path / "g")]) == 2
    assert cli_main(["diff", "/dev/zero", "--against", str(tmp_path)]) == 2
    assert cli_main(["run", "/dev/zero", "-o", str(tmp_path / "o")]) == 2
    assert cli_main(["check", "/dev/zero", "--target", "ethos-u55-128"]) == 2
    assert cli_main(["compile", "/dev/zero", "--target", "ethos-u55-128", "-o",
                     str(tmp_path / "v")]) == 2
    assert time.perf_counter() - t0 < 10


def test_resource_limits_on_the_command_line(tmp_path, capsys):
    from tosaint.errors import ResourceLimitError  # noqa: F401  (the API the flags reach)
    model = save(chain(["y"], shape=(64, 64)), tmp_path / "m.tosa")
    np.save(tmp_path / "x.npy", x16((64, 64)))
    x = str(tmp_path / "x.npy")
    assert cli_main(["run", model, "-i", x, "-o", str(tmp_path / "o"), "--max-memory",
                     "1K"]) == 2
    err = capsys.readouterr().err
    assert "ResourceLimitError" in err and "Traceback" not in err
    assert cli_main(["run", model, "-i", x, "-o", str(tmp_path / "o"), "--max-memory", "1G",
                     "--max-while-iterations", "10"]) == 0
    for cmd in (["golden", model, "--random", "-o", str(tmp_path / "g")],
                ["diff", model, "-i", x, "--against", str(tmp_path / "o")]):
        capsys.readouterr()
        assert cli_main(cmd + ["--max-memory", "1K"]) == 2, cmd
        assert "ResourceLimitError" in capsys.readouterr().err
    assert cli_main(["golden", model, "--random", "-o", str(tmp_path / "g")]) == 0
    assert cli_main(["conformance", str(tmp_path / "g"), "--max-memory", "1K"]) == 1
    assert "ResourceLimitError" in capsys.readouterr().out     # that test's failure
    with pytest.raises(SystemExit):
        cli_main(["run", model, "-o", str(tmp_path / "o"), "--max-memory", "lots"])


# ---- the reference model -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.oracle
def test_golden_verify_says_what_the_reference_model_checked(tmp_path):
    pytest.importorskip("tosa_reference_model")
    model = save(chain(["y"]), tmp_path / "m.tosa")
    args = ["golden", model, "--random", "--count", "2", "--verify", "-o", tmp_path / "g"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "verified on the reference model: 2 ok" in out
    assert "WARNING" not in out + err            # the C++ model's version chatter
    code, out, err = run_cli(*args)
    assert code == 0 and "2 ok (2 finished before, re-verified)" in out, out
    assert "WARNING" not in out + err


@pytest.mark.oracle
def test_oracle_calls_are_quiet_at_the_fd_level(tmp_path):
    """The binding's C++ prints to fds 1/2 directly: nothing may reach the terminal."""
    pytest.importorskip("tosa_reference_model")
    model = save(chain(["y"]), tmp_path / "m.tosa")
    code = ("import numpy as np; from tosaint.oracle import reference_run; "
            f"s, o = reference_run({model!r}, [np.zeros((2, 3), np.int16)]); "
            "assert s == 'TOSA_VALID', s; print('STATUS', s)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "STATUS TOSA_VALID" and p.stderr == ""
    np.save(tmp_path / "x.npy", x16())
    c, out, err = run_cli("diff", model, "-i", tmp_path / "x.npy", "--oracle")
    assert c == 0, err
    assert "WARNING" not in out + err and "no divergence" in out


@pytest.mark.slow
def test_warmup_command(capsys):
    pytest.importorskip("tosaint.warmup")
    assert cli_main(["warmup"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("warmed up in") and "kernels: " in out


# ---- memory -----------------------------------------------------------------------------------
AS_LIMIT = 2_000_000 * 1024         # `ulimit -v 2000000` (KiB)


def _limit_as():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


@pytest.mark.slow
def test_every_command_works_under_ulimit_v_2000000(tmp_path):
    model = save(chain(["y", "z"]), tmp_path / "m.tosa")
    np.save(tmp_path / "x.npy", x16())
    x = tmp_path / "x.npy"
    env = None      # default threads: each worker thread's stack and malloc arena count
    cmds = [["inspect", model], ["run", model, "-i", x, "-o", tmp_path / "o", "--capture"],
            ["golden", model, "--random", "-o", tmp_path / "g"],
            ["conformance", tmp_path / "g"],
            ["diff", model, "-i", x, "--against", tmp_path / "o"],
            ["check", model, "--target", "ethos-u55-128"],
            ["warmup"]]
    try:
        import ethosu.vela  # noqa: F401
        cmds.append(["compile", model, "--target", "ethos-u55-128", "-o", tmp_path / "v"])
    except ImportError:
        pass
    for cmd in cmds:
        code, out, err = run_cli(*cmd, env=env, preexec_fn=_limit_as, timeout=600)
        if cmd[0] == "warmup" and "no ahead-of-time warmup" in err:
            continue
        assert code in (0, 1) and "MemoryError" not in err and "Traceback" not in err, \
            (cmd, code, err[-2000:])
