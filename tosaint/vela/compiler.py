"""Compile a TOSA graph for an Arm Ethos-U NPU with Vela, in a temporary directory.

Vela (ethos-u-vela >= 5.2, its C++ core "regor") reads ``.tosa`` files directly and, for TOSA,
has no CPU fallback: an operator or configuration the target cannot run is a compile error.
:func:`compile` runs :func:`tosaint.vela.check` first, so that such graphs fail with a list of
named findings instead of Vela's one-line message, then calls Vela in-process
(``ethosu.vela.vela.main``) with the flags ExecuTorch's Arm backend uses, reads the ``.npz``
(raw output format) and the summary CSVs, and removes every file it wrote.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass, field

import numpy as np

from ..errors import BackendError

#: target -> (default system config, default memory mode), as ExecuTorch's
#: ``EthosUCompileSpec`` chooses them.
TARGETS = {}
for _m in (32, 64, 128, 256):
    TARGETS[f"ethos-u55-{_m}"] = ("Ethos_U55_High_End_Embedded", "Shared_Sram")
for _m in (256, 512):
    TARGETS[f"ethos-u65-{_m}"] = ("Ethos_U65_High_End", "Dedicated_Sram_384KB")
for _m in (128, 256, 512, 1024, 2048):
    TARGETS[f"ethos-u85-{_m}"] = ("Ethos_U85_SYS_DRAM_Mid", "Sram_Only")
del _m

#: Vela runs in-process and redirects sys.stdout while it runs: one compile at a time
_LOCK = threading.Lock()

#: the regor OpType name Vela prints -> the TOSA operator it comes from (graph_builder.cpp)
REGOR_OP_NAMES = {
    "ArgMax": "ARGMAX", "AvgPool": "AVG_POOL2D", "Conv2D": "CONV2D", "Conv3D": "CONV3D",
    "DepthwiseConv2D": "DEPTHWISE_CONV2D", "MatMul": "MATMUL", "MaxPool": "MAX_POOL2D",
    "TransposeConv2D": "TRANSPOSE_CONV2D", "Clamp": "CLAMP", "Add": "ADD",
    "Asr": "ARITHMETIC_RIGHT_SHIFT", "And": "BITWISE_AND", "Or": "BITWISE_OR",
    "Xor": "BITWISE_XOR", "Div": "INTDIV", "LogicalAnd": "LOGICAL_AND",
    "SHL": "LOGICAL_LEFT_SHIFT", "SHR": "LOGICAL_RIGHT_SHIFT", "LogicalOr": "LOGICAL_OR",
    "LogicalXor": "LOGICAL_XOR", "Maximum": "MAXIMUM", "Minimum": "MINIMUM", "Mul": "MUL",
    "Sub": "SUB", "Table": "TABLE", "LUT": "TABLE", "Abs": "ABS", "Not": "BITWISE_NOT",
    "CLZ": "CLZ", "LogicalNot": "LOGICAL_NOT", "Neg": "NEGATE", "Select": "SELECT",
    "Equal": "EQUAL", "Greater": "GREATER", "GreaterEqual": "GREATER_EQUAL",
    "ReduceAny": "REDUCE_ANY", "ReduceAll": "REDUCE_ALL", "ReduceMax": "REDUCE_MAX",
    "ReduceMin": "REDUCE_MIN", "ReduceSum": "REDUCE_SUM", "Concat": "CONCAT", "Pad": "PAD",
    "Reshape": "RESHAPE", "Reverse": "REVERSE", "Slice": "SLICE", "Tile": "TILE",
    "Transpose": "TRANSPOSE", "Gather": "GATHER", "Scatter": "SCATTER", "Resize": "RESIZE",
    "Cast": "CAST", "Rescale": "RESCALE", "Identity": "IDENTITY", "If": "COND_IF",
    "While": "WHILE_LOOP",
}


@dataclass
class IOTensor:
    """Placement of one graph input/output in the command stream's memory."""
    shape: tuple        # 6-D, as Vela writes it
    elem_size: int      # bytes per element
    offset: int
    region: int


@dataclass
class VelaResult:
    """What Vela produced for one graph and target.

    ``cmd_data`` is the NPU command stream (starts with ``b"COP1"``); ``weight_data`` the
    encoded weights/scales/biases; ``summary`` the network summary CSV as a dict (numbers as
    int/float; keys such as ``cycles_total``, ``inference_time``, ``nn_macs``,
    ``sram_memory_used``); ``per_layer`` the per-layer CSV rows when asked for.
    """
    target: str
    system_config: str
    memory_mode: str
    cmd_data: bytes
    weight_data: bytes
    weight_region: int
    scratch_size: int
    scratch_region: int
    scratch_fast_size: int
    scratch_fast_region: int
    inputs: list
    outputs: list
    variables: list
    summary: dict
    per_layer: list | None = None
    npz: bytes = field(default=b"", repr=False)      #: the .npz file Vela wrote, unchanged
    log: str = field(default="", repr=False)         #: what Vela printed

    # -- convenience ---------------------------------------------------------------------
    @property
    def cycles(self):
        return self.summary.get("cycles_total")

    @property
    def inference_time(self):
        """Estimated seconds per inference (Vela's estimate, not a measurement)."""
        return self.summary.get("inference_time")

    @property
    def macs(self):
        return self.summary.get("nn_macs")

    def summary_dict(self):
        """A JSON-ready description: target, sizes and the whole summary."""
        return {
            "target": self.target, "system_config": self.system_config,
            "memory_mode": self.memory_mode, "cmd_data_bytes": len(self.cmd_data),
            "weight_data_bytes": len(self.weight_data), "scratch_size": self.scratch_size,
            "scratch_fast_size": self.scratch_fast_size,
            "inputs": [vars(t) | {"shape": list(t.shape)} for t in self.inputs],
            "outputs": [vars(t) | {"shape": list(t.shape)} for t in self.outputs],
            "summary": self.summary,
        }

    def save_npz(self, path):
        with open(path, "wb") as f:
            f.write(self.npz)


def _number(text):
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _read_csv(path):
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _io_list(npz, prefix):
    key = f"{prefix}_shape"
    if key not in npz.files or npz[key].size == 0:
        return []
    shapes = np.asarray(npz[key]).reshape(-1, 6)
    sizes = np.asarray(npz[f"{prefix}_elem_size"]).reshape(-1)
    offs = np.asarray(npz[f"{prefix}_offset"]).reshape(-1)
    regs = np.asarray(npz[f"{prefix}_region"]).reshape(-1)
    return [IOTensor(tuple(int(d) for d in s), int(e), int(o), int(r))
            for s, e, o, r in zip(shapes, sizes, offs, regs)]


def _graph_bytes(graph, required=True):
    """(flatbuffer bytes, Graph) from a Graph, a path or bytes; with ``required=False`` a file
    tosaint cannot read gives (bytes, None), so that Vela still sees it."""
    from ..errors import TosaError
    from ..graph import Graph
    from ..schema.loader import load, read_model_file
    if isinstance(graph, Graph):
        return graph.to_bytes(), graph
    if isinstance(graph, (bytes, bytearray, memoryview)):
        data = bytes(graph)
    else:
        data = read_model_file(graph)
    try:
        return data, load(data)
    except TosaError:
        if required:
            raise
        return data, None


def vela_flags(target, system_config=None, memory_mode=None, extra_flags=()):
    """The Vela command-line flags :func:`compile` uses (without network and output dir)."""
    if target not in TARGETS:
        raise BackendError(f"unknown Ethos-U target {target!r}; choose one of "
                           f"{', '.join(TARGETS)}")
    sc, mm = TARGETS[target]
    return [f"--accelerator-config={target}", "--config=Arm/vela.ini",
            f"--system-config={system_config or sc}", f"--memory-mode={memory_mode or mm}",
            "--output-format=raw", *extra_flags]


def _explain(message, graph):
    """Vela's message plus the graph operators it can be about.

    Vela names operators by its own type names, either as "operation (MatMul)" or, in TOSA
    validation errors, as a "Conv2D:" line; map them back to the TOSA ops of the graph.
    """
    names = re.findall(r"operation \((\w+)\)", message)
    names += re.findall(r"^(\w+):\s*$", message, flags=re.M)
    if not names or graph is None:
        return message
    notes = []
    for regor_name in dict.fromkeys(names):
        tosa = REGOR_OP_NAMES.get(regor_name)
        ops = [o.name for b in graph.blocks() for o in b.operators if o.op.name == tosa]
        if ops:
            shown = ", ".join(ops[:5]) + (f" (+{len(ops) - 5} more)" if len(ops) > 5 else "")
            notes.append(f"TOSA {tosa}: {shown}")
    return f"{message.rstrip()} ({'; '.join(notes)})" if notes else message


def run_vela(graph, target="ethos-u85-256", *, system_config=None, memory_mode=None,
             extra_flags=(), per_layer=False) -> VelaResult:
    """Run Vela on ``graph`` WITHOUT the preflight check; errors become BackendError."""
    try:
        from ethosu.vela import vela as _vela
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise BackendError('Vela is not installed: pip install "tosaint[vela]"') from e
    data, g = _graph_bytes(graph, required=False)
    flags = vela_flags(target, system_config, memory_mode, extra_flags)
    if per_layer:
        flags.append("--verbose-performance")
    sc = next(f.split("=", 1)[1] for f in flags if f.startswith("--system-config="))
    mm = next(f.split("=", 1)[1] for f in flags if f.startswith("--memory-mode="))
    log = io.StringIO()
    limit = sys.getrecursionlimit()
    with tempfile.TemporaryDirectory(prefix="tosaint-vela-") as tmp:
        model = os.path.join(tmp, "model.tosa")
        out = os.path.join(tmp, "output")
        with open(model, "wb") as f:
            f.write(data)
        argv = flags + [f"--output-dir={out}", model]
        try:
            with _LOCK, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                rc = _vela.main(argv)
        except SystemExit:               # argparse errors (bad flag values)
            raise BackendError(f"Vela ({target}) rejected its arguments "
                               f"{' '.join(flags)}: {log.getvalue().strip()[-500:]}") from None
        except Exception as e:           # regor RuntimeError, Vela's own error classes
            msg = _explain(str(e) or type(e).__name__, g)
            raise BackendError(f"Vela ({target}) cannot compile the graph: "
                               f"{type(e).__name__}: {msg}") from None
        finally:
            sys.setrecursionlimit(limit)
        if rc not in (None, 0):
            raise BackendError(f"Vela ({target}) exited with {rc}: "
                               f"{log.getvalue().strip()[-500:]}")
        npz_path = os.path.join(out, "model_vela.npz")
        if not os.path.exists(npz_path):
            raise BackendError(f"Vela ({target}) wrote no model_vela.npz: "
                               f"{log.getvalue().strip()[-500:]}")
        with open(npz_path, "rb") as f:
            npz_bytes = f.read()
        summaries = [p for p in os.listdir(out) if p.startswith("model_summary_")]
        summary = _read_csv(os.path.join(out, summaries[0]))[0] if summaries else {}
        layers = None
        if per_layer:
            p = os.path.join(out, "model_per-layer.csv")
            layers = _read_csv(p) if os.path.exists(p) else []
    with np.load(io.BytesIO(npz_bytes), allow_pickle=True) as npz:
        def scalar(key, default=0):
            return int(np.asarray(npz[key]).reshape(-1)[0]) if key in npz.files and \
                np.asarray(npz[key]).size else default
        return VelaResult(
            target=target, system_config=sc, memory_mode=mm,
            cmd_data=bytes(npz["cmd_data"].item()), weight_data=bytes(npz["weight_data"].item()),
            weight_region=scalar("weight_region"), scratch_size=scalar("scratch_size"),
            scratch_region=scalar("scratch_region"),
            scratch_fast_size=scalar("scratch_fast_size"),
            scratch_fast_region=scalar("scratch_fast_region"),
            inputs=_io_list(npz, "input"), outputs=_io_list(npz, "output"),
            variables=_io_list(npz, "variable"), summary=summary, per_layer=layers,
            npz=npz_bytes, log=log.getvalue())


def compile(graph, target="ethos-u85-256", *, system_config=None, memory_mode=None,
            extra_flags=(), per_layer=False, preflight=True) -> VelaResult:
    """Compile ``graph`` (a Graph, a path or flatbuffer bytes) for ``target`` with Vela.

    Targets: ethos-u55-32/64/128/256, ethos-u65-256/512, ethos-u85-128/256/512/1024/2048.
    ``system_config``/``memory_mode`` default per target as in ExecuTorch (U55:
    Ethos_U55_High_End_Embedded + Shared_Sram, U65: Ethos_U65_High_End + Dedicated_Sram_384KB,
    U85: Ethos_U85_SYS_DRAM_Mid + Sram_Only); ``extra_flags`` are passed to Vela verbatim;
    ``per_layer`` adds Vela's per-layer performance table.

    Raises BackendError listing every :func:`~tosaint.vela.check` finding before Vela is
    called (``preflight=False`` skips the check), or wrapping Vela's own error (with the TOSA
    operators it concerns).
    """
    from .preflight import check, format_findings
    if target not in TARGETS:
        raise BackendError(f"unknown Ethos-U target {target!r}; choose one of "
                           f"{', '.join(TARGETS)}")
    data, g = _graph_bytes(graph)
    findings = check(g, target) if preflight else []
    if findings:
        raise BackendError(f"{target} cannot run this graph ({len(findings)} finding(s)):\n"
                           + format_findings(findings))
    return run_vela(data, target, system_config=system_config, memory_mode=memory_mode,
                    extra_flags=extra_flags, per_layer=per_layer)
