"""``lower``: torch module -> calibrated integer TOSA graph, and the ``LoweredModule`` wrapper."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..dtypes import STORAGE
from ..schema.definition import DType
from . import calib
from .capture import FloatRunner, export, functionalize
from .emit import Emitter
from .values import QT
from ..quant import snr_db


def _as_tuple(x):
    if isinstance(x, torch.Tensor):
        return (x,)
    return tuple(x)


class _one_thread:
    """torch intra-op threads off while lowering: the graphs are small, and OpenMP workers
    spinning on a busy machine made each calibration run ~100x slower."""

    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


def lower(module, example_inputs, *, quantization="a16w8", calibration=None, target=None,
          observer=None):
    """Capture ``module`` with torch.export, calibrate it and emit an integer TOSA graph.

    ``example_inputs``: a tuple of tensors (or one tensor).  ``calibration``: an iterable of
    input tuples run through the observer (the example alone when None).  ``observer``: the
    kind of calibration observer (see :func:`tosaint.torch.calib.make_observer`; None = its
    default).
    ``quantization``: "a16w8" (int16 activations, int8 per-channel weights, int48
    accumulators) or "a8w8".  ``target``: e.g. "ethos-u55-128" / "ethos-u85-256"; for
    ethos-u55/u65 the emitter asks ``tosaint.vela.u55.torch_hooks(target)`` for replacement
    emitters (a dict such as {"matmul": fn(emitter, a, b, a_scale, b_scale, out_scale) ->
    int16 tensor name}) where the U55 lacks an operator form.
    """
    with _one_thread():
        return _lower(module, example_inputs, quantization, calibration, target, observer)


def _check_target(target):
    if target is None:
        return None
    t = str(target).lower()
    try:
        from ..vela.compiler import TARGETS
    except ImportError:       # pragma: no cover  (the vela package is part of tosaint)
        TARGETS = None
    if TARGETS is not None and t not in TARGETS:
        raise ValueError(f"unknown target {target!r}; known: {', '.join(sorted(TARGETS))}")
    return t


def _lower(module, example_inputs, quantization, calibration, target, observer):
    t0 = time.perf_counter()
    target = _check_target(target)
    example_inputs = _as_tuple(example_inputs)
    ep = functionalize(export(module, example_inputs))
    runner = FloatRunner(ep)
    obs = calib.make_observer(observer)
    for inputs in (calibration if calibration is not None else [example_inputs]):
        env, _ = runner.run(*_as_tuple(inputs))
        obs.update(env)
    em = Emitter(ep, obs, quantization, target)
    outs = em.emit()
    graph = em.b.build()
    ins = [_io(em.env[name]) for name in em.input_names]
    outputs = [_io(q) for q in outs]
    lm = LoweredModule(graph, ins, outputs, quantization=quantization, target=target)
    lm._runner = runner
    lm._records = em.records
    lm._example = example_inputs
    lm.lowering_seconds = time.perf_counter() - t0
    return lm


def _io(v):
    """The sidecar entry of a graph input/output (an integer one has scale 1)."""
    if isinstance(v, QT):
        return dict(name=v.name, scale=v.scale, zero_point=v.zp, dtype=v.dtype.name,
                    shape=list(v.shape))
    return dict(name=v.name, scale=1.0, zero_point=0, dtype=v.dtype.name, shape=list(v.shape),
                integer=True, **({"boolean": True} if v.boolean else {}))


class LoweredModule:
    """An integer TOSA graph with the quantization parameters of its inputs and outputs."""

    def __init__(self, graph, inputs, outputs, *, quantization="a16w8", target=None):
        self.graph = graph
        self.inputs = inputs        # [{name, scale, zero_point, dtype, shape}]
        self.outputs = outputs
        self.quantization = quantization
        self.target = target
        self._runner = None
        self._records = None
        self._example = None
        self.lowering_seconds = None

    # ---- quantization at the boundary -------------------------------------------------------
    def quantize_inputs(self, *tensors):
        if len(tensors) != len(self.inputs):
            raise TypeError(f"the graph takes {len(self.inputs)} inputs, {len(tensors)} given")
        out = {}
        for t, q in zip(tensors, self.inputs):
            dt = DType[q["dtype"]]
            if q.get("integer"):            # passed through exactly, or refused
                a = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
                if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
                    raise TypeError(f"input {q['name']!r} is an integer input; got {a.dtype}")
                a = a.astype(np.int64)
                lo, hi = (0, 1) if dt == DType.BOOL or q.get("boolean") else \
                    (np.iinfo(STORAGE[dt]).min, np.iinfo(STORAGE[dt]).max)
                if a.size and (a.min() < lo or a.max() > hi):
                    raise ValueError(f"input {q['name']!r} has values outside {dt.name}"
                                     f"{' (a mask: 0 or 1)' if hi == 1 else ''}")
                out[q["name"]] = a.astype(STORAGE[dt])
                continue
            info = np.iinfo(STORAGE[dt])
            a = t.detach().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(
                t, np.float64)
            v = np.round(a / q["scale"]) + q["zero_point"]
            lo = info.min if q["zero_point"] else -info.max     # affine int8: all 256 codes
            out[q["name"]] = np.clip(v, lo, info.max).astype(STORAGE[dt])
        return out

    def dequantize_outputs(self, outputs):
        """Graph outputs (RunResult / dict by name / list) -> float torch tensors."""
        if isinstance(outputs, dict):
            vals = [outputs[q["name"]] for q in self.outputs]
        else:
            vals = list(outputs)
        res = [torch.from_numpy(np.asarray(v, bool)) if q.get("boolean") else
               torch.from_numpy(np.asarray(v, np.int64)) if q.get("integer") else
               torch.from_numpy((np.asarray(v, np.float64) - q["zero_point"]) * q["scale"])
               .float() for v, q in zip(vals, self.outputs)]
        return res[0] if len(res) == 1 else tuple(res)

    def run(self, *tensors, impl="numba", capture=False):
        from .. import run_tosa
        return run_tosa(self.graph, self.quantize_inputs(*tensors), impl=impl, capture=capture)

    def __call__(self, *tensors, impl="numba"):
        return self.dequantize_outputs(self.run(*tensors, impl=impl))

    def run_reference(self, *tensors):
        """Run on the official reference model (tosa_reference_model); raw integer outputs."""
        from ..oracle import reference_run
        q = self.quantize_inputs(*tensors)
        status, outs = reference_run(self.graph, [q[i["name"]] for i in self.inputs])
        if status != "TOSA_VALID":
            raise RuntimeError(f"reference model status {status}")
        return {o["name"]: np.asarray(outs[o["name"]]) for o in self.outputs}

    def _reference_capture(self, *tensors):
        """Every recorded int8/int16 tensor, computed by the reference model."""
        import copy

        from ..interpreter import RunResult
        from ..oracle import reference_run
        g = copy.deepcopy(self.graph)
        g._plans = {}
        blk = g.main
        names = []
        for rec in self._records.values():
            outs = rec["out"] if isinstance(rec["out"], (list, tuple)) else [rec["out"]]
            for q in outs:
                if not isinstance(q, QT):
                    continue
                n = q.name if q.name in blk.tensors else rec.get("twin", {}).get(q.name)
                if n and n in blk.tensors and n not in names and n not in blk.inputs:
                    names.append(n)
        extra = [n for n in names if n not in blk.outputs]
        blk.outputs = list(blk.outputs) + extra
        q = self.quantize_inputs(*tensors)
        status, outs = reference_run(g, [q[i["name"]] for i in self.inputs])
        if status != "TOSA_VALID":
            raise RuntimeError(f"reference model status {status}")
        vals = {n: np.asarray(outs[n]) for n in blk.outputs}
        vals.update(q)
        return RunResult(vals, [o["name"] for o in self.outputs], [])

    # ---- files ----------------------------------------------------------------------------
    def sidecar(self):
        return dict(format="tosaint.torch/1", quantization=self.quantization,
                    target=self.target, inputs=self.inputs, outputs=self.outputs)

    def save(self, path):
        path = Path(path)
        self.graph.save(path)
        json_path = path.with_suffix(path.suffix + ".json")
        json_path.write_text(json.dumps(self.sidecar(), indent=1))
        return path, json_path

    # ---- numerics report ----------------------------------------------------------------
    def report(self, *tensors, impl="numba"):
        """Per-op numerics on ``tensors`` (default: the example inputs given to lower()).

        ``impl``: "numba" / "spec" (tosaint.run_tosa) or "reference" (the official reference
        model, every recorded tensor made a graph output).
        """
        if self._runner is None:
            raise RuntimeError("report() needs the torch module: it is only available on the "
                               "LoweredModule returned by lower(), not on a loaded one")
        tensors = tensors or tuple(self._example)
        with _one_thread():
            env, _ = self._runner.run(*tensors)
        if impl == "reference":
            res = self._reference_capture(*tensors)
        else:
            res = self.run(*tensors, impl=impl, capture=True)
        rows = []
        moves = {"RESHAPE", "TRANSPOSE", "SLICE", "CONCAT", "IDENTITY", "TILE", "PAD"}
        for name, rec in self._records.items():
            if not set(rec["ops"]) - moves:
                continue          # pure data movement (or a free rescaling of the scale)
            outs = rec["out"]
            if isinstance(outs, QT):
                outs = [outs]
            elif isinstance(outs, (list, tuple)):
                outs = [o for o in outs if isinstance(o, QT)]
            else:
                continue
            fl = env.get(rec.get("ref") or name)     # a fused clamp's values: its own
            fls = [fl] if isinstance(fl, torch.Tensor) else list(fl or [])
            for i, (q, f) in enumerate(zip(outs, fls)):
                if not isinstance(f, torch.Tensor):
                    continue
                if q.name in res:
                    raw = np.asarray(res[q.name], np.float64)
                elif rec.get("twin", {}).get(q.name) in res:     # only its NHWC twin is left
                    raw = np.asarray(res[rec["twin"][q.name]], np.float64).transpose(0, 3, 1, 2)
                else:
                    continue
                ref = f.detach().double().numpy()
                if raw.shape != ref.shape:
                    raw = raw.reshape(ref.shape)
                got = (raw - q.zp) * q.scale
                qmax = np.iinfo(STORAGE[q.dtype]).max
                err = np.abs(got - ref) / q.scale
                rows.append(dict(
                    node=name + (f"[{i}]" if len(outs) > 1 else ""), aten=rec["aten"],
                    source=rec["source"], tosa_ops=rec["ops"], snr_db=snr_db(ref, got),
                    max_err_lsb=float(err.max()) if err.size else 0.0,
                    saturated=int(np.sum(np.abs(ref / q.scale + q.zp + 0.5) > qmax + 1)),
                    scale=q.scale, tensor=q.name))
        rows.sort(key=lambda r: r["snr_db"])
        outs = [res[o["name"]] for o in self.outputs]
        return Report(rows, diagnostics=list(res.diagnostics), outputs=outs)

    def plot(self, path, *tensors):
        """Bar chart of the per-op SNR written to ``path`` (needs matplotlib); returns
        ``path``."""
        _matplotlib()                   # before the report: fail fast without matplotlib
        return self.report(*tensors).plot(path)


class Report:
    """Per-op numerics of a lowered module against its float torch module, worst first."""

    def __init__(self, rows, diagnostics=(), outputs=()):
        self.rows = rows
        self.diagnostics = diagnostics
        self.outputs = outputs

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def by_node(self, name):
        return next(r for r in self.rows if r["node"] == name)

    def __str__(self):
        head = ["SNR dB", "max err LSB", "sat", "torch node", "aten op", "TOSA ops", "source"]
        lines = []
        for r in self.rows:
            ops = _compress(r["tosa_ops"])
            snr = "inf" if math.isinf(r["snr_db"]) else f"{r['snr_db']:.1f}"
            lines.append([snr, f"{r['max_err_lsb']:.2f}", str(r["saturated"]), r["node"],
                          r["aten"].replace("aten.", ""), ops, r["source"]])
        for line in lines:
            line[5] = _cut_list(line[5], 48)
            line[6] = _cut(line[6], 72)
        widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h)
                  for i, h in enumerate(head)]

        def fmt(cols):
            return "  ".join(c.ljust(w) if i > 2 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cols, widths))).rstrip()
        out = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(l) for l in lines]
        for d in self.diagnostics:
            out.append(f"diagnostic: {d}")
        return "\n".join(out)

    def plot(self, path):
        """Bar chart of the per-op SNR written to ``path``; returns ``path``."""
        plt = _matplotlib()
        rows = list(reversed(self.rows))
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1))
        vals = [min(r["snr_db"], 120) for r in rows]
        ax.barh([r["node"] for r in rows], vals)
        ax.set_xlabel("SNR vs float torch (dB)")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return path


def _matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ModuleNotFoundError('plotting needs matplotlib: pip install "tosaint[plot]"',
                                  name="matplotlib") from None
    return plt


def _cut_list(text, width):
    """A comma-separated list cut at an item boundary to ``width``, with a count of the rest."""
    if len(text) <= width:
        return text
    items = text.split(",")
    for k in range(len(items) - 1, 0, -1):
        out = ",".join(items[:k]) + f",+{len(items) - k} more"
        if len(out) <= width:
            return out
    return f"{items[0]},+{len(items) - 1} more"


def _cut(text, width):
    return text if len(text) <= width else text[:width - 3] + "..."


def _compress(ops):
    out = []
    for o in ops:
        if out and out[-1][0] == o:
            out[-1][1] += 1
        else:
            out.append([o, 1])
    return ",".join(o if n == 1 else f"{o}x{n}" for o, n in out)


def load(path):
    """Read a ``.tosa`` written by ``LoweredModule.save`` and its JSON sidecar."""
    from ..schema.loader import load as load_graph
    path = Path(path)
    meta = json.loads(path.with_suffix(path.suffix + ".json").read_text())
    graph = load_graph(str(path))
    return LoweredModule(graph, meta["inputs"], meta["outputs"],
                         quantization=meta.get("quantization", "a16w8"),
                         target=meta.get("target"))
