"""The kernel layer as a whole: the three namespaces export the same names with the same
arguments, ``impl="auto"`` takes the NumPy forms for light calls (and never imports Numba for
them) and the Numba kernels once promoted, the threaded kernels give the same bits for any thread count and block size, the small-tensor
paths equal the large ones, and warmup compiles every kernel."""
import inspect

import numpy as np
import pytest

from tosaint.kernels import _threads, namespace
from tosaint.kernels import compiled as K
from tosaint.kernels import fast as F
from tosaint.kernels import spec as S

from .helpers import check


def _python(f):
    """The Python function behind a kernel (a Numba dispatcher's ``py_func``)."""
    return getattr(f, "py_func", f)


def test_all_sides_export_the_same_names_and_signatures():
    assert sorted(K.__all__) == sorted(S.__all__) == sorted(F.__all__)
    assert len(set(K.__all__)) == len(K.__all__)
    for name in K.__all__:
        compiled, spec, auto = getattr(K, name), getattr(S, name), getattr(F, name)
        assert callable(compiled) and callable(spec) and callable(auto), name
        assert inspect.signature(_python(compiled)) == inspect.signature(_python(spec)) == \
            inspect.signature(auto), name


def test_namespace():
    assert namespace("numba") is K
    assert namespace("auto") is F and namespace() is F
    assert namespace("spec") is S
    with pytest.raises(ValueError, match="impl must be one of"):
        namespace("fortran")


def test_no_module_imports_by_computed_name():
    """The kernel modules are imported explicitly (no importlib, no __all__ scanning)."""
    import pathlib
    import tosaint.kernels as pkg
    for path in pathlib.Path(pkg.__file__).parent.rglob("*.py"):
        text = path.read_text()
        assert "importlib" not in text and "import_module" not in text, path
        assert len(text.splitlines()) <= 700, path


def _dw_case(rng, x_dt, m, pad, stride, dilation, n=2, ih=9, iw=11, c=5, kh=3, kw=3):
    info = np.iinfo(x_dt)
    x = rng.integers(info.min, info.max, (n, ih, iw, c), endpoint=True).astype(x_dt)
    w = rng.integers(-128, 128, (kh, kw, c, m)).astype(np.int8)
    oh = (ih + pad[0] + pad[1] - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    ow = (iw + pad[2] + pad[3] - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    return x, w, (n, oh, ow, c * m)


@pytest.mark.parametrize("x_dt,m", [(np.int16, 1), (np.int8, 2), (np.int16, 3)])
def test_depthwise_any_block_size_and_thread_count(monkeypatch, x_dt, m):
    """Row blocks of 1 row and of every row, on 1 or 2 threads: the twin's bits."""
    from tosaint.kernels import conv_depthwise
    rng = np.random.default_rng(5)
    pad, stride, dilation = (1, 0, 2, 1), (1, 2), (2, 1)
    x, w, out_shape = _dw_case(rng, x_dt, m, pad, stride, dilation)
    out48 = x_dt == np.int16
    bias = rng.integers(-1000, 1000, (out_shape[3],))
    args = (bias, 0, pad, stride, dilation, out_shape, out48)
    want = S.depthwise_conv2d(x, S.depthwise_weights(w, 0, 32768), *args)
    prep = K.depthwise_weights(w, 0, 32768)
    for block in (1, 1 << 30):
        monkeypatch.setattr(conv_depthwise, "_BLOCK_MACS", block)
        for n in (1, 2):
            monkeypatch.setattr(_threads, "threads", lambda n=n: n)
            got = K.depthwise_conv2d(x, prep, *args)
            check(got[0], want[0])
            assert got[1] == want[1]


def test_depthwise_rescale_any_block_size(monkeypatch):
    """The fused DEPTHWISE_CONV2D + RESCALE in blocks of one row equals the twin."""
    from tosaint.kernels import conv_depthwise
    rng = np.random.default_rng(6)
    pad, stride, dilation = (1, 1, 1, 1), (1, 1), (1, 1)
    x, w, out_shape = _dw_case(rng, np.int16, 1, pad, stride, dilation)
    cm = out_shape[3]
    m = rng.integers(1, 1 << 14, cm).astype(np.int64)
    sh = np.full(cm, 30, np.int64)
    rnd = np.int64(1) << (sh - 1)
    lo, hi = np.full(cm, -(1 << 40), np.int64), np.full(cm, 1 << 40, np.int64)
    rescale = (m, rnd, rnd, sh, np.full(cm, 1 << 62, np.int64), lo, hi, 3, -32768, 32767)
    args = (np.zeros(1, np.int64), 0, pad, stride, dilation, out_shape, True, rescale,
            np.int16)
    want = S.depthwise_conv2d_rescale(x, S.depthwise_weights(w, 0, 32768), *args)
    for block in (1, 1 << 30):
        monkeypatch.setattr(conv_depthwise, "_BLOCK_MACS", block)
        got = K.depthwise_conv2d_rescale(x, K.depthwise_weights(w, 0, 32768), *args)
        check(got[0], want[0])
        assert got[1] == want[1] == 0


@pytest.mark.parametrize("bilinear", [False, True])
def test_resize_any_block_size_and_thread_count(monkeypatch, bilinear):
    from tosaint.kernels import image
    rng = np.random.default_rng(7)
    x = rng.integers(-32768, 32768, (2, 5, 6, 3)).astype(np.int32)
    args = (9, 11, 4, 2, 4, 2, -1, 1, bilinear)
    want = S.resize(x, *args)
    for block in (1, 1 << 30):
        monkeypatch.setattr(image, "_BLOCK", block)
        for n in (1, 2):
            monkeypatch.setattr(_threads, "threads", lambda n=n: n)
            check(K.resize(x, *args), want)


@pytest.mark.parametrize("in_dt,out_dt", [(np.int8, np.int8), (np.int16, np.int16),
                                          (np.int32, np.int8), (np.int64, np.int16)])
def test_rescale_small_and_large_paths_agree(monkeypatch, in_dt, out_dt):
    """Small tensors go through int64 buffers, large ones run on their own types: same bits,
    same counts, including elements that fail a REQUIRE."""
    from tosaint.kernels import type_conversion
    rng = np.random.default_rng(8)
    info = np.iinfo(in_dt if in_dt != np.int64 else np.int32)
    x = rng.integers(info.min, info.max, (40, 3), endpoint=True).astype(in_dt)
    if in_dt == np.int64:
        x *= 1 << 16                                       # int48 values
    cols = 3
    mult = rng.integers(1 << 10, 1 << 14, cols).astype(np.int64)
    shift = np.array([20, 31, 40], np.int64)
    base = np.int64(1) << (shift - 1)
    extra = np.where(shift > 31, 1 << 30, 0)
    half = base if in_dt != np.int64 else np.full(cols, 1 << 62, np.int64)
    o = np.iinfo(out_dt)
    results = []
    for small in (0, 1 << 30):
        monkeypatch.setattr(type_conversion, "SMALL", small)
        out = np.empty(x.shape, out_dt)
        bad = K.rescale_exact(x, 0, 1, mult, base + extra, base - extra, shift, half, o.min,
                              o.max, out)
        res = np.empty(x.shape, np.int32)
        counts = K.rescale(x, 0, 0, 1, mult, shift, np.exp2(-shift).astype(np.float32), 2,
                           o.min, o.max, res)
        results.append((out, bad, res, counts))
    want = np.empty(x.shape, out_dt)
    bad = S.rescale_exact(x, 0, 1, mult, base + extra, base - extra, shift, half, o.min, o.max,
                          want)
    for out, b, res, counts in results:
        check(out, want)
        assert b == bad
        wres = np.empty(x.shape, np.int32)
        assert counts == S.rescale(x, 0, 0, 1, mult, shift, np.exp2(-shift).astype(np.float32),
                                   2, o.min, o.max, wres)
        check(res, wres)


def test_table16_vectorised_equals_twin():
    rng = np.random.default_rng(9)
    table = rng.integers(-32768, 32768, 513).astype(np.int16)
    x = rng.integers(-32768, 32768, 1000).astype(np.int16)
    x[:2] = (-32768, 32767)
    got, want = np.empty(x.shape, np.int32), np.empty(x.shape, np.int32)
    assert K.table16(x, table, got) == S.table16(x, table, want) > 0
    check(got, want)


@pytest.mark.slow
def test_warmup_compiles_every_kernel(tmp_path):
    """In a fresh process with an empty Numba cache, warmup compiles every kernel (with a warm
    cache, kernels called only from other kernels are never loaded on their own)."""
    import json
    import os
    import subprocess
    import sys
    code = ("import json; from tosaint.warmup import _dispatchers, warmup; info = warmup(); "
            "print(json.dumps([info, [n for n, d in _dispatchers().items() "
            "if not d.signatures]]))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    info, missing = json.loads(out.stdout.strip().splitlines()[-1])
    assert missing == []
    assert info["graphs"] > 20 and info["kernels"] >= 20 and info["signatures"] >= info["kernels"]
    from tosaint.warmup import warmup
    assert warmup("spec")["kernels"] == 0


@pytest.mark.parametrize("x_dt,izp,pad", [(np.int8, -7, (0, 0, 0, 0)), (np.int16, 0, (0, 0, 0, 0)),
                                          (np.int8, 5, (0, 1, 0, 2))])
def test_pointwise_conv_without_im2col_equals_twin(x_dt, izp, pad):
    """A 1x1 stride-1 CONV2D without padding takes its im2col matrix straight from the input;
    with padding it takes the general path.  Both equal the twin."""
    rng = np.random.default_rng(10)
    info = np.iinfo(x_dt)
    x = rng.integers(info.min, info.max, (2, 3, 4, 6), endpoint=True).astype(x_dt)
    w = rng.integers(-128, 128, (5, 1, 1, 6)).astype(np.int8)
    xa = max(abs(info.min - izp), abs(info.max - izp))
    out_shape = (2, 3 + pad[1], 4 + pad[3], 5)
    out48 = x_dt == np.int16
    args = (rng.integers(-99, 99, (5,)), izp, pad, (1, 1), (1, 1), out_shape, out48)
    got = K.conv2d(x, K.conv_weights(w, 3, "conv2d", xa), *args)
    want = S.conv2d(x, S.conv_weights(w, 3, "conv2d", xa), *args)
    check(got[0], want[0])
    assert got[1] == want[1]


def test_auto_runs_a_small_graph_once_without_numba(tmp_path):
    """A fresh process that runs a small real export once never imports Numba (the NumPy
    forms are light), and its outputs are the Numba kernels' bits."""
    import subprocess
    import sys
    from pathlib import Path
    model = Path(__file__).parent / "data" / "executorch" / "conformer" / "model.tosa"
    code = f"""
import sys, numpy as np, tosaint
from tosaint.inputs import random_inputs
g = tosaint.load({str(model)!r})
x = random_inputs(g, 3, 0)
auto = tosaint.run_tosa(g, x)
assert "numba" not in sys.modules, "numba was imported"
jit = tosaint.run_tosa(g, x, impl="numba")
for k in jit:
    assert auto[k].dtype == jit[k].dtype and auto[k].shape == jit[k].shape, k
    assert np.array_equal(auto[k], jit[k]), k
print("ok")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stdout + p.stderr


def test_auto_takes_numba_for_heavy_calls_and_once_promoted(monkeypatch):
    """The cost model: a heavy call goes to Numba, a light one to the spec twin until the
    process is promoted (by a second run of a plan, or by the light calls adding up)."""
    from tosaint.kernels import fast
    calls = []
    monkeypatch.setattr(fast, "_state", {"promoted": False, "spent": 0})
    monkeypatch.setattr(fast, "compiled", lambda: calls.append("numba") or K)
    rng = np.random.default_rng(0)
    small = rng.integers(-128, 128, (1, 4, 4, 8)).astype(np.int8)
    w = rng.integers(-128, 128, (8, 1, 1, 8)).astype(np.int8)
    args = (np.zeros(8, np.int64), 0, (0, 0, 0, 0), (1, 1), (1, 1), (1, 4, 4, 8), False)
    out_light = fast.conv2d(small, fast.conv_weights(w, 0, "conv2d", 128), *args)
    assert not calls
    big = rng.integers(-128, 128, (1, 256, 256, 64)).astype(np.int8)
    wb = rng.integers(-128, 128, (64, 3, 3, 64)).astype(np.int8)
    fast.conv2d(big, fast.conv_weights(wb, 0, "conv2d", 128), np.zeros(64, np.int64), 0,
                (1, 1, 1, 1), (1, 1), (1, 1), (1, 256, 256, 64), False)
    assert calls                      # the kernel and its weights' layout
    n = len(calls)
    fast.promote()
    out_jit = fast.conv2d(small, fast.conv_weights(w, 0, "conv2d", 128), *args)
    assert len(calls) > n
    check(out_light[0], out_jit[0])
    assert out_light[1] == out_jit[1]
    # the light calls of a process are bounded: past PROCESS_NS it is promoted
    monkeypatch.setattr(fast, "_state", {"promoted": False, "spent": fast.PROCESS_NS})
    fast.matmul(small.reshape(1, 16, 8), small.reshape(1, 8, 16), 0, 0, False)
    assert fast.promoted()
