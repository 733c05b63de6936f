"""Lower a small conformer-like block to int16 TOSA (a16w8), run it bit-exactly, report numerics.

    python -m tosaint.examples.conformer_demo

Builds the block with a fixed seed, calibrates on a few random sequences, lowers it with
``tosaint.torch.lower``, runs the integer graph with ``tosaint.run_tosa`` and prints the per-op
numerics report (SNR of every quantized op against the float module, worst first).  When the
official reference model (``tosa_reference_model``) is installed it runs the same graph there
and confirms that every output bit matches.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch
from torch import nn


class FeedForward(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.up = nn.Linear(d, hidden)
        self.down = nn.Linear(hidden, d)

    def forward(self, x):
        return self.down(nn.functional.silu(self.up(self.ln(x))))


class SelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.heads = heads

    def forward(self, x):
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln(x)).chunk(3, dim=-1)
        q = q.reshape(b, t, h, d // h).transpose(1, 2)
        k = k.reshape(b, t, h, d // h).transpose(1, 2)
        v = v.reshape(b, t, h, d // h).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(d // h)), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.out(y)


class ConvModule(nn.Module):
    def __init__(self, d, kernel):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.pw1 = nn.Conv1d(d, 2 * d, 1)
        self.dw = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.bn = nn.BatchNorm1d(d)
        self.pw2 = nn.Conv1d(d, d, 1)

    def forward(self, x):
        y = self.ln(x).transpose(1, 2)
        y = nn.functional.glu(self.pw1(y), dim=1)
        y = nn.functional.silu(self.bn(self.dw(y)))
        return self.pw2(y).transpose(1, 2)


class ConformerBlock(nn.Module):
    """FF/2 -> MHSA -> conv module -> FF/2 -> LayerNorm, each with a residual."""

    def __init__(self, d=64, heads=4, hidden=128, kernel=7):
        super().__init__()
        self.ff1 = FeedForward(d, hidden)
        self.att = SelfAttention(d, heads)
        self.conv = ConvModule(d, kernel)
        self.ff2 = FeedForward(d, hidden)
        self.ln = nn.LayerNorm(d)

    def forward(self, x):
        x = x + 0.5 * self.ff1(x)
        x = x + self.att(x)
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.ln(x)


def build(seed=0, d=64, t=32):
    """The demo block (random but fixed weights, BatchNorm statistics set) and its data."""
    torch.manual_seed(seed)
    model = ConformerBlock(d=d)
    with torch.no_grad():
        model.conv.bn.running_mean.uniform_(-0.2, 0.2)
        model.conv.bn.running_var.uniform_(0.5, 1.5)
        for ln in (model.ff1.ln, model.att.ln, model.conv.ln, model.ff2.ln, model.ln):
            ln.weight.uniform_(0.8, 1.2)
            ln.bias.uniform_(-0.1, 0.1)
    model.eval()
    calibration = [(torch.randn(1, t, d),) for _ in range(32)]
    test = (torch.randn(1, t, d),)
    return model, calibration, test


def main(argv=None):
    import tosaint
    from tosaint.torch import lower
    from tosaint.torch.quant import snr_db

    model, calibration, (x,) = build()
    t0 = time.perf_counter()
    lm = lower(model, (x,), quantization="a16w8", calibration=calibration)
    t_lower = time.perf_counter() - t0
    n_ops = sum(1 for o in lm.graph.operators if o.op.name not in ("CONST", "CONST_SHAPE"))
    print(f"lowered a conformer-like block to {n_ops} TOSA operators in {t_lower:.2f} s")

    t0 = time.perf_counter()
    res = lm.run(x)
    t_run = time.perf_counter() - t0
    y = lm.dequantize_outputs(res)
    with torch.no_grad():
        ref_y = model(x)
    print(f"tosaint.run_tosa: {t_run:.2f} s (first run includes Numba compilation); "
          f"output SNR vs float torch {snr_db(ref_y.numpy(), y.numpy()):.1f} dB")
    print()
    print(lm.report(x))
    print()
    from tosaint.oracle import ORACLE_INSTALL, available, reference_run
    if not available():
        print(f"the reference model is not installed ({ORACLE_INSTALL}): skipping the "
              "bit-exactness check")
        return 0
    status, ref_out = reference_run(lm.graph, lm.quantize_inputs(x))   # quiet: no C++ chatter
    if status != "TOSA_VALID":
        print(f"reference model: {status}")
        return 1
    ok = all(np.array_equal(res[n], ref_out[n]) and res[n].dtype == ref_out[n].dtype
             for n in ref_out)
    print("reference model:", "all output bits identical" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
