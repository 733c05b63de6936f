"""The official TOSA reference model (``pip install tosa-tools==2026.8.0``) as an oracle.

``reference_run(graph, inputs)`` runs a graph on the reference model and returns
``(status, outputs)``, status being "TOSA_VALID", "TOSA_UNPREDICTABLE" or "TOSA_ERROR".  The
python binding is used when it can be (it cannot pass int48/int4 graph inputs or outputs);
otherwise the ``tosa_reference_model`` executable shipped in the same wheel, which writes int48
outputs as int64 ``.npy``.  Nothing here is needed at run time by tosaint itself.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .schema.definition import DType

STATUS = {0: "TOSA_VALID", 1: "TOSA_UNPREDICTABLE", 2: "TOSA_ERROR"}
#: the one line that says how to get the reference model
ORACLE_INSTALL = "pip install tosa-tools==2026.8.0"
_BINDING_CANNOT = (DType.INT48, DType.INT4)


def available():
    try:
        import tosa_reference_model  # noqa: F401
    except ImportError:
        return False
    return True


def executable():
    """Path of the reference model command-line binary in the tosa-tools wheel."""
    import tosa_reference_model
    return Path(tosa_reference_model.__file__).resolve().parent.parent / "bin" / \
        "tosa_reference_model"


@contextlib.contextmanager
def _quiet():
    """Silence the C++ model's stdout/stderr chatter (version warnings) around a call."""
    import sys
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _as_graph_and_bytes(graph):
    from .inputs import model_bytes
    data, g = model_bytes(graph)
    return g, data


def reference_run(graph, inputs, *, use_cli=None, level="NONE", quiet=True, timeout=None):
    """Run ``graph`` (Graph, path or bytes) on the reference model.

    ``inputs``: dict by graph-input name or list in graph-input order.  Returns
    ``(status, {output name: array})``; outputs are empty unless the status is TOSA_VALID.
    ``quiet`` keeps the C++ model's version warnings off the terminal; ``timeout`` (seconds)
    bounds a CLI run.
    """
    g, data = _as_graph_and_bytes(graph)
    names = g.inputs
    if isinstance(inputs, dict):
        inputs = [inputs[n] for n in names]
    inputs = [np.asarray(x) for x in inputs]
    io_types = [g.main.tensors[n].dtype for n in g.inputs + g.outputs]
    if use_cli is None:
        use_cli = any(t in _BINDING_CANNOT for t in io_types)
    if not use_cli:
        import tosa_reference_model as trm
        kw = {} if level == "NONE" else {"tosa_level": level}
        ctx = _quiet() if quiet else contextlib.nullcontext()
        with ctx:
            try:
                outs, status = trm.run(data, inputs, **kw)
            except ValueError:        # the binding's "Invalid TOSA graph" (an ERROR_IF)
                return "TOSA_ERROR", {}
        status = getattr(status, "name", str(status)).split(".")[-1]
        return status, (dict(zip(g.outputs, outs)) if status == "TOSA_VALID" else {})
    from .testcase import make_desc, write_desc
    with tempfile.TemporaryDirectory(prefix="tosaint_ref_") as tmp:
        tmp = Path(tmp)
        desc = make_desc(names, g.outputs)
        (tmp / desc["tosa_file"]).write_bytes(data)
        for f, x in zip(desc["ifm_file"], inputs):
            np.save(tmp / f, x, allow_pickle=False)
        write_desc(tmp, desc)
        out_dir = tmp / "out"
        out_dir.mkdir()
        cmd = [str(executable()), "--test_desc", str(tmp / "desc.json"), "--flatbuffer_dir",
               str(tmp), "--output_dir", str(out_dir), "--tosa_level", level]
        # the binary tries to attach gdb on errors when it finds it on PATH: hide it
        env = {**os.environ, "PATH": "/nonexistent"}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        status = STATUS.get(p.returncode, f"RC_{p.returncode}")
        outs = {}
        if status == "TOSA_VALID":
            for n, f in zip(g.outputs, desc["ofm_file"]):
                outs[n] = np.load(out_dir / f, allow_pickle=False)
        return status, outs
