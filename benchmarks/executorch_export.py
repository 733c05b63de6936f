#!/usr/bin/env python3
"""Export small a16w8 models with the ExecuTorch Arm backend into TOSA test data.

This script documents how ``tests/data/executorch/<name>/`` (the single ops and the conformer
block below) and ``benchmarks/data/executorch/<name>/`` (the zoo models of
``benchmarks/zoo.py``) were made.  It needs a separate ExecuTorch environment (not tosaint's
own):

    python3 -m venv venv-et
    venv-et/bin/pip install torch==2.13.0
    venv-et/bin/pip install "executorch[ethos-u]==1.5.1"
    venv-et/bin/python benchmarks/executorch_export.py --out tests/data/executorch \\
        --refmodel <tosaint's environment>/lib/python3.11/site-packages/bin/tosa_reference_model
    venv-et/bin/python benchmarks/executorch_export.py --out benchmarks/data/executorch \\
        resnet mobilenet_v2 mobilenet_v3 efficientnet vit emg_tcn

For every model it writes:

* ``model.tosa``: the TOSA flatbuffer of the (single) ExecuTorch delegate, as ExecuTorch's
  TOSA backend serializes it (TOSA 1.0.0, a16w8: int16 activations, int8 weights, int48 bias);
* ``input_<i>.npy``: the delegate's inputs, already quantized (int16), in graph-input order;
* ``expected_<i>.npy``: the graph outputs computed by the official TOSA reference model CLI
  (``bin/tosa_reference_model`` of tosa-tools; int48 outputs would be int64);
* ``meta.json``: graph input/output names, dtypes, shapes and the scale / zero point of the
  ``quantize_per_tensor`` / ``dequantize_per_tensor`` nodes around the delegate, the tool
  versions, the seed, and the SNR of the dequantized reference-model output against the float
  torch model (a sanity check of the export, not an acceptance bound).

Everything is seeded (``--seed``, default 0), so a rerun gives the same files for the same tool
versions.
"""
import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402

SEQ, DIM = 16, 32


# ---- models ------------------------------------------------------------------------------
class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(DIM, 16)

    def forward(self, x):
        return self.fc(x)


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, kernel_size=3, padding=1)

    def forward(self, x):
        return self.conv(x)


class Softmax(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=-1)


class LayerNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(DIM)

    def forward(self, x):
        return self.ln(x)


class ConformerBlock(nn.Module):
    """A small conformer-like block: half-step feed-forward, self-attention with an explicit
    bmm/softmax, a depthwise-conv module, residuals and LayerNorms."""

    def __init__(self, dim=DIM, heads=2, kernel=3):
        super().__init__()
        self.heads = heads
        self.ln_ff = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, 2 * dim)
        self.ff2 = nn.Linear(2 * dim, dim)
        self.ln_att = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln_conv = nn.LayerNorm(dim)
        self.pw = nn.Linear(dim, dim)
        self.dw = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.ln_out = nn.LayerNorm(dim)

    def forward(self, x):                          # x: [B, T, D]
        b, t, d = x.shape
        h, dh = self.heads, d // self.heads
        x = x + 0.5 * self.ff2(nn.functional.gelu(self.ff1(self.ln_ff(x))))
        q, k, v = self.qkv(self.ln_att(x)).chunk(3, dim=-1)
        q = q.reshape(b, t, h, dh).transpose(1, 2).reshape(b * h, t, dh)
        k = k.reshape(b, t, h, dh).transpose(1, 2).reshape(b * h, t, dh)
        v = v.reshape(b, t, h, dh).transpose(1, 2).reshape(b * h, t, dh)
        att = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * (dh ** -0.5), dim=-1)
        o = torch.bmm(att, v).reshape(b, h, t, dh).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(o)
        c = self.pw(self.ln_conv(x)).transpose(1, 2)   # [B, D, T]
        c = nn.functional.gelu(self.dw(c)).transpose(1, 2)
        x = x + c
        return self.ln_out(x)


MODELS = {
    "linear": (Linear, (4, DIM)),
    "conv2d": (Conv, (1, 4, 8, 8)),
    "softmax": (Softmax, (1, SEQ, SEQ)),
    "layernorm": (LayerNorm, (1, SEQ, DIM)),
    "conformer": (ConformerBlock, (1, SEQ, DIM)),
}


# ---- export ------------------------------------------------------------------------------
def lower_to_edge(model, sample, calibration, quantization="a16w8"):
    """ExecuTorch's Arm flow: TOSAQuantizer (a16w8, or a8w8) + calibration + TOSAPartitioner;
    returns the edge program's graph module (delegates as ``lowered_module*`` attributes)."""
    from executorch.backends.arm.quantizer import (TOSAQuantizer,
                                                   get_symmetric_a16w8_quantization_config,
                                                   get_symmetric_quantization_config)
    from executorch.backends.arm.tosa.compile_spec import TosaCompileSpec
    from executorch.backends.arm.tosa.partitioner import TOSAPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if quantization == "a16w8":
        spec = TosaCompileSpec("TOSA-1.0+INT+int16")
        cfg = get_symmetric_a16w8_quantization_config(is_per_channel=True, epsilon=2 ** -16)
    else:
        spec = TosaCompileSpec("TOSA-1.0+INT")
        cfg = get_symmetric_quantization_config(is_per_channel=True)
    q = TOSAQuantizer(spec)
    q.set_global(cfg)
    # check_guards=False: see shared/notes/executorch-anchor.md (a _guards_fn node otherwise)
    gm = torch.export.export(model.eval(), sample, strict=True).module(check_guards=False)
    prepared = prepare_pt2e(gm, q)
    for inputs in calibration:
        prepared(*inputs)
    converted = convert_pt2e(prepared)
    edge = to_edge_transform_and_lower(torch.export.export(converted, sample, strict=True),
                                       partitioner=[TOSAPartitioner(spec)],
                                       compile_config=EdgeCompileConfig(_check_ir_validity=False))
    return edge.exported_program().graph_module


def export(model, sample, calibration):
    """a16w8 quantize + lower with the TOSA partitioner; returns (tosa_bytes, edge graph)."""
    gmod = lower_to_edge(model, sample, calibration)
    lowered = [n for n in gmod.graph.nodes
               if n.op == "get_attr" and n.name.startswith("lowered_module")]
    if len(lowered) != 1:
        raise RuntimeError(f"expected one delegate, got {len(lowered)}")
    return getattr(gmod, lowered[0].target).processed_bytes, gmod


def boundary_qparams(gmod):
    """(input qparams, output qparams) of the delegate, in delegate argument/result order."""
    call = next(n for n in gmod.graph.nodes if n.op == "call_function"
                and "executorch_call_delegate" in str(n.target))
    others = [n for n in gmod.graph.nodes if n.op == "call_function" and n is not call
              and "quantize_per_tensor" not in str(n.target) and "getitem" not in str(n.target)]
    if others:
        raise RuntimeError(f"ops left outside the delegate: {[str(n.target) for n in others]}")

    def qp(node):
        scale, zp, qmin, qmax, dt = node.args[1:6]
        return {"scale": float(scale), "zero_point": int(zp), "qmin": int(qmin),
                "qmax": int(qmax), "torch_dtype": str(dt).replace("torch.", ""),
                "node": node.name}

    ins = []
    for a in call.args[1:]:
        if "quantize_per_tensor" not in str(a.target):
            raise RuntimeError(f"delegate input {a.name} is not a quantize_per_tensor output")
        ins.append(qp(a))
    outs = {}
    for user in call.users:                      # getitem(call, i) -> dequantize
        i = user.args[1]
        deq = [u for u in user.users if "dequantize_per_tensor" in str(u.target)]
        if len(deq) != 1:
            raise RuntimeError(f"delegate output {i} is not dequantized once")
        outs[i] = qp(deq[0])
    return ins, [outs[i] for i in sorted(outs)]


def quantize(x, p):
    return torch.ops.quantized_decomposed.quantize_per_tensor(
        x, p["scale"], p["zero_point"], p["qmin"], p["qmax"], getattr(torch, p["torch_dtype"]))


def graph_io(tosa_bytes):
    """(inputs, outputs) of the main block as [(name, dtype name, shape)], serialized order."""
    from tosa.DType import DType
    from tosa.TosaGraph import TosaGraph

    names = {v: k for k, v in vars(DType).items() if not k.startswith("_")}
    g = TosaGraph.GetRootAs(bytearray(tosa_bytes), 0)
    blk = g.Regions(0).Blocks(0)
    tensors = {}
    for i in range(blk.TensorsLength()):
        t = blk.Tensors(i)
        tensors[t.Name().decode()] = (names[t.Type()], [int(d) for d in t.ShapeAsNumpy()]
                                      if t.ShapeLength() else [])
    ins = [blk.Inputs(i).decode() for i in range(blk.InputsLength())]
    outs = [blk.Outputs(i).decode() for i in range(blk.OutputsLength())]
    return [(n, *tensors[n]) for n in ins], [(n, *tensors[n]) for n in outs]


def run_refmodel(binary, tosa_bytes, inputs, outputs, arrays):
    """Run the reference model CLI; returns the output arrays (int48 as int64)."""
    with tempfile.TemporaryDirectory(prefix="et_export_") as tmp:
        tmp = Path(tmp)
        (tmp / "model.tosa").write_bytes(tosa_bytes)
        desc = {"tosa_file": "model.tosa",
                "ifm_name": [n for n, _, _ in inputs],
                "ifm_file": [f"in{i}.npy" for i in range(len(inputs))],
                "ofm_name": [n for n, _, _ in outputs],
                "ofm_file": [f"out{i}.npy" for i in range(len(outputs))]}
        for f, a in zip(desc["ifm_file"], arrays):
            np.save(tmp / f, a)
        (tmp / "desc.json").write_text(json.dumps(desc))
        env = {**os.environ, "PATH": "/nonexistent-no-gdb"}   # no gdb backtrace on failure
        p = subprocess.run([str(binary), "--test_desc", str(tmp / "desc.json"),
                            "--flatbuffer_dir", str(tmp), "--output_dir", str(tmp)],
                           capture_output=True, text=True, env=env)
        if p.returncode != 0:
            raise RuntimeError(f"reference model exit {p.returncode}: {p.stdout[-2000:]}"
                               f"{p.stderr[-2000:]}")
        return [np.load(tmp / f) for f in desc["ofm_file"]]


def default_refmodel():
    import tosa_reference_model
    return Path(tosa_reference_model.__file__).resolve().parent.parent / "bin" / \
        "tosa_reference_model"


def snr_db(ref, got):
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    noise = np.sum((ref - got) ** 2)
    return float("inf") if noise == 0 else float(10 * math.log10(np.sum(ref ** 2) / noise))


def export_one(name, out_dir, seed, refmodels):
    if name in zoo.ZOO:             # zoo models: their own seeded weights and inputs
        if len(zoo.ZOO[name][2]) != 1 or name == "conformer":
            raise RuntimeError(f"{name}: only one-input models are exported")
        model = zoo.build(name, seed)
        *calibration, (x,) = zoo.inputs(name, seed + 1, 9)
        calibration.append((x,))
    else:
        cls, shape = MODELS[name]
        torch.manual_seed(seed)
        model = cls().eval()
        gen = torch.Generator().manual_seed(seed + 1)
        calibration = [(torch.randn(shape, generator=gen),) for _ in range(8)]
        x = torch.randn(shape, generator=gen)
        calibration.append((x,))    # the test input is in the calibration set: no clipping
    t0 = time.perf_counter()
    tosa_bytes, gmod = export(model, (x,), calibration)
    return write_export(name, model, x, tosa_bytes, gmod, time.perf_counter() - t0, out_dir,
                        refmodels, {"seed": seed})


def write_export(name, model, x, tosa_bytes, gmod, t_export, out_dir, refmodels, data):
    """Write ``out_dir``/``name``/ (model.tosa, input/expected .npy, meta.json) for a lowered
    a16w8 delegate; ``data`` (seeds) goes into meta.json."""
    cls = zoo.ZOO[name][0] if name in zoo.ZOO else MODELS[name][0]
    qin, qout = boundary_qparams(gmod)
    inputs, outputs = graph_io(tosa_bytes)
    if len(inputs) != len(qin) or len(outputs) != len(qout):
        raise RuntimeError("delegate boundary does not match the TOSA graph inputs/outputs")
    q_arrays = []
    for (tname, dt, tshape), p in zip(inputs, qin):
        a = quantize(x, p).numpy()
        if list(a.shape) != tshape:
            raise RuntimeError(f"{name}: input {tname} shape {tshape} != {list(a.shape)}")
        q_arrays.append(np.ascontiguousarray(a))
    expected = run_refmodel(refmodels[0], tosa_bytes, inputs, outputs, q_arrays)
    agree = {}
    for other in refmodels[1:]:
        again = run_refmodel(other, tosa_bytes, inputs, outputs, q_arrays)
        agree[str(other)] = all(a.dtype == b.dtype and np.array_equal(a, b)
                                for a, b in zip(expected, again))
    with torch.no_grad():
        ref_float = model(x)
    ref_float = [ref_float] if torch.is_tensor(ref_float) else list(ref_float)
    d = out_dir / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.tosa").write_bytes(tosa_bytes)
    meta = {"model": name, "description": " ".join((cls.__doc__ or cls.__name__).split()),
            **data, "flow": "ExecuTorch Arm TOSA backend, TOSA-1.0+INT+int16, "
            "get_symmetric_a16w8_quantization_config(is_per_channel=True, epsilon=2**-16)",
            "versions": tool_versions(refmodels[0]), "export_seconds": round(t_export, 1),
            "inputs": [], "outputs": [], "refmodel_cross_check": agree}
    for i, ((tname, dt, tshape), p, a) in enumerate(zip(inputs, qin, q_arrays)):
        np.save(d / f"input_{i}.npy", a)
        meta["inputs"].append({"name": tname, "file": f"input_{i}.npy", "dtype": dt,
                               "shape": tshape, **p})
    for i, ((tname, dt, tshape), p, e) in enumerate(zip(outputs, qout, expected)):
        np.save(d / f"expected_{i}.npy", e)
        deq = (e.astype(np.float64) - p["zero_point"]) * p["scale"]
        meta["outputs"].append({"name": tname, "file": f"expected_{i}.npy", "dtype": dt,
                                "shape": tshape, **p,
                                "snr_db_vs_float": round(snr_db(ref_float[i].numpy(), deq), 2)})
    (d / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def tool_versions(refmodel):
    from importlib.metadata import version
    v = {p: version(p) for p in ("torch", "executorch", "tosa-tools", "torchao")}
    v["refmodel_binary"] = "/".join(Path(refmodel).parts[-2:])     # bin/tosa_reference_model
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("tests/data/executorch"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refmodel", type=Path, action="append", default=[],
                    help="tosa_reference_model binary (repeat: the first one makes the expected "
                         "outputs, the others are cross-checked); default: this environment's")
    ap.add_argument("models", nargs="*", default=list(MODELS),
                    help=f"of {', '.join(MODELS)} or the zoo's {', '.join(zoo.ZOO)}")
    args = ap.parse_args(argv)
    refmodels = args.refmodel or [default_refmodel()]
    for name in args.models:
        meta = export_one(name, args.out, args.seed, refmodels)
        print(f"{name}: {meta['export_seconds']} s, inputs "
              f"{[(i['dtype'], i['shape']) for i in meta['inputs']]}, outputs "
              f"{[(o['dtype'], o['shape'], o['snr_db_vs_float']) for o in meta['outputs']]}, "
              f"cross-check {meta['refmodel_cross_check']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
