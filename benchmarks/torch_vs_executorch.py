"""tosaint.torch vs ExecuTorch's Arm backend: same models, weights and data, side by side.

    /work/venv/bin/python benchmarks/torch_vs_executorch.py [--et-python /work/venv-et/bin/python]
                                                             [--only NAME[,NAME]] [--json OUT]

For every case (single ops, LayerNorm, softmax, a conformer-like block; a16w8 and a8w8) the
model is built once with a fixed seed; its weights, 8 calibration inputs and one test input are
written to a temporary directory.  tosaint lowers it here (``tosaint.torch.lower``) and runs the
graph with ``tosaint.run_tosa`` (checked bit-exact against the reference model when installed).
ExecuTorch (TOSAQuantizer + TOSAPartitioner, the a16w8 flow of its Arm backend) lowers the same
model in a worker process started with ``--et-python`` (an environment with executorch
[ethos-u]); the worker runs ExecuTorch's TOSA graph on the reference model and sends back the
dequantized output.  Both outputs are compared with the float torch output of the same input
(SNR in dB).  Lowering time is wall time from the torch module to TOSA bytes, including export
and calibration, after one warm-up lowering in each process.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _conformer_module():
    path = ROOT / "tosaint" / "examples" / "conformer_demo.py"
    spec = importlib.util.spec_from_file_location("_conformer_demo", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_conformer_demo"] = mod        # torch.export (strict) imports it by name
    spec.loader.exec_module(mod)
    return mod


class Fn(nn.Module):
    def __init__(self, name):
        super().__init__()
        self.name = name

    def forward(self, x):
        n = self.name
        if n == "gelu":
            return nn.functional.gelu(x)
        if n == "sigmoid":
            return torch.sigmoid(x)
        if n == "tanh":
            return torch.tanh(x)
        if n == "exp":
            return torch.exp(x)
        if n == "mean":
            return x.mean(-1, keepdim=True)
        if n == "var":
            return x.var(-1, keepdim=True)
        if n == "softmax":
            return torch.softmax(x, -1)
        raise ValueError(n)


class SmallCNN(nn.Module):
    """conv-BN-ReLU, a residual conv-SiLU, max pooling, a 1x1 conv, global average pooling."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.c3 = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        y = torch.relu(self.bn(self.c1(x)))
        y = nn.functional.max_pool2d(y + nn.functional.silu(self.c2(y)), 2)
        return self.c3(y).mean((2, 3))


#: name -> (quantization, builder of (model, input shape, input scale))
CASES = {
    "linear": ("a16w8", lambda: (nn.Linear(64, 64), (1, 32, 64), 1.0)),
    "conv2d": ("a16w8", lambda: (nn.Conv2d(8, 16, 3, padding=1), (1, 8, 16, 16), 1.0)),
    "gelu": ("a16w8", lambda: (Fn("gelu"), (1, 32, 64), 2.0)),
    "sigmoid": ("a16w8", lambda: (Fn("sigmoid"), (1, 32, 64), 2.0)),
    "tanh": ("a16w8", lambda: (Fn("tanh"), (1, 32, 64), 1.0)),
    "exp": ("a16w8", lambda: (Fn("exp"), (1, 32, 64), 1.0)),
    "mean": ("a16w8", lambda: (Fn("mean"), (1, 32, 64), 1.0)),
    "var": ("a16w8", lambda: (Fn("var"), (1, 32, 64), 1.0)),
    "softmax": ("a16w8", lambda: (Fn("softmax"), (1, 4, 32, 32), 2.0)),
    "layernorm": ("a16w8", lambda: (nn.LayerNorm(64), (1, 32, 64), 1.0)),
    "conformer": ("a16w8", lambda: (_conformer_module().build()[0], (1, 32, 64), 1.0)),
    "cnn": ("a16w8", lambda: (SmallCNN(), (1, 3, 32, 32), 1.0)),
    "linear_a8w8": ("a8w8", lambda: (nn.Linear(64, 64), (1, 32, 64), 1.0)),
    "conv2d_a8w8": ("a8w8", lambda: (nn.Conv2d(8, 16, 3, padding=1), (1, 8, 16, 16), 1.0)),
}


def make_case(name, seed=0):
    torch.manual_seed(seed)
    q, build = CASES[name]
    model, shape, k = build()
    model.eval()
    if isinstance(model, nn.LayerNorm):
        with torch.no_grad():
            model.weight.uniform_(0.5, 1.5)
            model.bias.uniform_(-0.2, 0.2)
    g = torch.Generator().manual_seed(seed + 1)
    calib = [(k * torch.randn(shape, generator=g),) for _ in range(8)]
    test = (k * torch.randn(shape, generator=g),)
    # the test input is part of the calibration set (for both flows), so that the SNR measures
    # the integer arithmetic rather than how well 8 random inputs cover the range of a 9th
    return q, model, calib + [test], test


def snr(ref, got):
    ref = np.asarray(ref, np.float64)
    e = np.asarray(got, np.float64) - ref
    pe = float(np.sum(e * e))
    return math.inf if pe == 0 else 10 * math.log10(float(np.sum(ref * ref)) / pe)


# ---- ExecuTorch side (runs in the executorch environment) ------------------------------------
def et_lower(model, calib, sample, quantization):
    """(TOSA delegate blobs, input and output (scale, zero point)s) of ExecuTorch's lowering.
    The worker runs this file as a script, so its directory (benchmarks/) is on sys.path."""
    from executorch_export import lower_to_edge
    gmod = lower_to_edge(model, sample, calib, quantization)
    blobs, qin, qout = [], [], []
    for n in gmod.graph.nodes:
        if n.op == "get_attr" and n.name.startswith("lowered_module"):
            blobs.append(getattr(gmod, n.target).processed_bytes)
        if n.op == "call_function":
            t = str(n.target)
            if "quantize_per_tensor" in t and "dequantize" not in t and \
                    n.args[0].op == "placeholder":
                qin.append((float(n.args[1]), int(n.args[2])))
            if "dequantize_per_tensor" in t and getattr(n.args[0], "target", None) is not None \
                    and "getitem" in str(n.args[0].target):
                qout.append((float(n.args[1]), int(n.args[2])))
    return blobs, qin, qout


def et_worker(directory):
    import tosa_reference_model as ref
    d = Path(directory)
    job = torch.load(d / "job.pt", weights_only=False)
    results = {}
    warm = nn.Linear(4, 4)
    et_lower(warm, [(torch.randn(2, 4),)], (torch.randn(2, 4),), "a16w8")
    for name in job["cases"]:
        q, model, calib, test = make_case(name)
        model.load_state_dict(job["state"][name])
        try:
            t0 = time.perf_counter()
            blobs, qin, qout = et_lower(model, calib, test, q)
            dt = time.perf_counter() - t0
            if len(blobs) != 1:
                raise RuntimeError(f"{len(blobs)} delegated partitions (expected 1)")
            (s_in, zp_in), = qin
            (s_out, zp_out), = qout
            lo, hi, dt_np = (-32767, 32767, np.int16) if q == "a16w8" else (-128, 127, np.int8)
            x = test[0].double().numpy()
            xq = np.clip(np.round(x / s_in) + zp_in, lo, hi).astype(dt_np)
            outs, status = ref.run(blobs[0], [xq])
            if int(status) != 0:
                raise RuntimeError(f"reference model status {status}")
            y = (np.asarray(outs[0], np.float64) - zp_out) * s_out
            np.save(d / f"et_{name}.npy", y.reshape(test_shape(model, test)))
            (d / f"et_{name}.tosa").write_bytes(blobs[0])
            np.save(d / f"et_{name}_in.npy", xq)
            np.save(d / f"et_{name}_out.npy", np.asarray(outs[0]))
            results[name] = dict(seconds=dt, ok=True)
        except Exception as e:  # noqa: BLE001  (reported in the table)
            results[name] = dict(ok=False, error=f"{type(e).__name__}: {str(e)[:200]}")
    (d / "et.json").write_text(json.dumps(results))


def test_shape(model, test):
    with torch.no_grad():
        return tuple(model(*test).shape)


# ---- tosaint side --------------------------------------------------------------------------
def _et_graph_on_tosaint(tmp, name):
    """Run ExecuTorch's TOSA graph with tosaint: bit-identical to the reference model?"""
    import tosaint
    try:
        graph = tosaint.load((tmp / f"et_{name}.tosa").read_bytes())
        xq = np.load(tmp / f"et_{name}_in.npy")
        want = np.load(tmp / f"et_{name}_out.npy")
        res = tosaint.run_tosa(graph, [xq])
        got = res[graph.outputs[0]]
        same = got.dtype == want.dtype and np.array_equal(got, want.reshape(got.shape))
        n_ops = sum(1 for o in graph.operators if o.op.name not in ("CONST", "CONST_SHAPE"))
        return f"{'bit-exact' if same else 'MISMATCH'} ({n_ops} ops)"
    except Exception as ex:  # noqa: BLE001  (reported in the table)
        return f"{type(ex).__name__}: {str(ex)[:80]}"
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--et-python", default="/work/venv-et/bin/python")
    ap.add_argument("--only", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--et-worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.et_worker:
        return et_worker(a.et_worker)

    import tosaint
    import tosaint.torch as tt
    names = a.only.split(",") if a.only else list(CASES)
    tmp = Path(tempfile.mkdtemp(prefix="tosaint_vs_et_"))
    state, cases = {}, {}
    for name in names:
        q, model, calib, test = make_case(name)
        state[name] = model.state_dict()
        cases[name] = (q, model, calib, test)
    torch.save(dict(cases=names, state=state), tmp / "job.pt")

    et_proc = None
    if a.et_python and os.path.exists(a.et_python):
        et_proc = subprocess.Popen([a.et_python, str(Path(__file__).resolve()), "--et-worker",
                                    str(tmp)], stdout=subprocess.DEVNULL,
                                   stderr=open(tmp / "et.log", "w"))
    try:
        import tosa_reference_model as ref
    except ImportError:
        ref = None
    tt.lower(nn.Linear(4, 4), (torch.randn(2, 4),))        # warm-up (torch.export init)
    rows = {}
    for name in names:
        q, model, calib, test = cases[name]
        with torch.no_grad():
            f = model(*test).double().numpy()
        t0 = time.perf_counter()
        lm = tt.lower(model, test, quantization=q, calibration=calib)
        dt = time.perf_counter() - t0
        exact = None
        try:
            res = lm.run(*test)
        except tosaint.UnsupportedOp as e:      # an operator not implemented (yet)
            res, exact = lm.run_reference(*test), f"n/a ({str(e).split(':')[-1].strip()})"
        y = lm.dequantize_outputs(res).double().numpy()
        if ref is not None and exact is None:
            r = lm.run_reference(*test)
            exact = all(np.array_equal(res[k], r[k]) and res[k].dtype == r[k].dtype
                        for k in r)
        n_ops = sum(1 for o in lm.graph.operators if o.op.name not in ("CONST", "CONST_SHAPE"))
        rows[name] = dict(q=q, tosaint_snr=snr(f, y), tosaint_s=dt, tosaint_ops=n_ops,
                          bit_exact=exact, float=f)
    et = {}
    if et_proc is not None:
        et_proc.wait()
        if (tmp / "et.json").exists():
            et = json.loads((tmp / "et.json").read_text())
        else:
            print("ExecuTorch worker failed; see", tmp / "et.log")
    out = {}
    head = (f"{'case':<12} {'quant':<6} {'tosaint SNR':>11} {'ET SNR':>7} {'tosaint s':>9} "
            f"{'ET s':>6} {'ops':>4}  bit-exact  ET graph on tosaint")
    print(head)
    print("-" * len(head))
    for name in names:
        r = rows[name]
        e = et.get(name, {})
        et_snr = et_s = None
        et_on_tosaint = "-"
        if e.get("ok"):
            y = np.load(tmp / f"et_{name}.npy")
            et_snr, et_s = snr(r["float"], y), e["seconds"]
            et_on_tosaint = _et_graph_on_tosaint(tmp, name)
        out[name] = dict(quantization=r["q"], tosaint_snr_db=r["tosaint_snr"],
                         tosaint_lower_s=r["tosaint_s"], tosaint_ops=r["tosaint_ops"],
                         executorch_snr_db=et_snr, executorch_lower_s=et_s,
                         bit_exact_vs_reference=r["bit_exact"],
                         executorch_error=e.get("error"))
        print(f"{name:<12} {r['q']:<6} {r['tosaint_snr']:>11.1f} "
              f"{'-' if et_snr is None else f'{et_snr:.1f}':>7} {r['tosaint_s']:>9.2f} "
              f"{'-' if et_s is None else f'{et_s:.2f}':>6} {r['tosaint_ops']:>4}  "
              f"{str(r['bit_exact']):<10} {et_on_tosaint}" +
              (f"  (ET: {e['error']})" if e.get("error") else ""))
        out[name]["executorch_graph_on_tosaint"] = et_on_tosaint
    if not et_proc:
        print(f"(no ExecuTorch environment at {a.et_python}: tosaint column only)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
