"""Failure cases of the compat layer, written as test-case folders (opt-in: TOSAINT_COMPAT_DUMP).

When ``TOSAINT_COMPAT_DUMP=DIR`` is set and a ``reference_model.run`` call ends in a status
other than TOSA_VALID, an invalid graph or (``TOSAINT_REFERENCE=both``) a difference from the
reference model, the call writes one folder under DIR in the conformance layout that
``tosaint golden``, ``tosaint diff`` and ``tosa_reference_model --test_desc`` read::

    DIR/compat-<graph digest>-in-<inputs digest>/
        desc.json                 tosa_file, ifm_name/ifm_file, ofm_name/ofm_file,
                                  expected_result_file (only when the reference model's
                                  outputs are known), "meta": {"tosaint": {"compat": {status,
                                  diagnostics, mode}}}
        model.tosa                the graph, byte for byte as passed to run()
        <input>.npy               the inputs as tosaint ran them (storage dtype, graph shape)
        Conformance-<out>.npy     the reference model's outputs (``both`` mode, when valid)
        tosaint/                  tosaint's outputs (.npy + tensors.json), when it has any
        diagnostics.txt           tosaint's diagnostics and the commands to dig further

The same graph and inputs always give the same folder, which is written atomically (a temp
folder renamed into place), so parallel test workers never see half a case.
"""
from __future__ import annotations

import os
import shlex
import shutil
import uuid
from pathlib import Path

import numpy as np

ENV = "TOSAINT_COMPAT_DUMP"


def dump_dir():
    d = os.environ.get(ENV, "").strip()
    return Path(d) if d else None


def failure(data, inputs, graph, diagnostics, *, status, reference_outputs=None,
            tosaint_outputs=None, mode="tosaint"):
    """Write a case folder when TOSAINT_COMPAT_DUMP is set; returns its path (or None).

    ``inputs``: {name: array} as tosaint ran them, or the raw list when the graph did not
    load; ``graph``: the loaded Graph or None.  Never raises for a write problem: the
    failure being reported matters more than the dump (the reason goes in the return text).
    """
    root = dump_dir()
    if root is None:
        return None
    try:
        return _write(root, data, inputs, graph, diagnostics, status, reference_outputs,
                      tosaint_outputs, mode)
    except OSError as e:
        return f"(nothing: writing under {root} failed: {e})"


def _write(root, data, inputs, graph, diagnostics, status, reference_outputs,
           tosaint_outputs, mode):
    from ..golden import case_name, digest, inputs_digest
    from ..testcase import MODEL_FILE, make_desc, write_desc, write_tensors
    if isinstance(inputs, dict):
        named = inputs
    else:   # the graph did not load: keep the arrays in the order given
        named = {f"input_{i}": np.asarray(x) for i, x in enumerate(inputs)}
    ifm_names = list(graph.inputs) if graph is not None else list(named)
    ofm_names = list(graph.outputs) if graph is not None else []
    name = case_name("compat", digest(data), given=inputs_digest(named))
    final = root / name
    if (final / "desc.json").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        (tmp / MODEL_FILE).write_bytes(data)
        meta = {"tosaint": {"compat": {"status": status, "mode": mode,
                                       "diagnostics": list(diagnostics)}}}
        desc = make_desc(ifm_names, ofm_names, meta=meta)
        for n, f in zip(desc["ifm_name"], desc["ifm_file"]):
            np.save(tmp / f, np.asarray(named[n]), allow_pickle=False)
        if reference_outputs:
            for n, f in zip(desc["ofm_name"], desc["expected_result_file"]):
                np.save(tmp / f, reference_outputs[n], allow_pickle=False)
        else:
            desc.pop("expected_result_file")
        if tosaint_outputs:
            write_tensors(tmp / "tosaint", tosaint_outputs)
        write_desc(tmp, desc)
        (tmp / "diagnostics.txt").write_text(_text(final, desc, status, diagnostics))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "desc.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)   # another worker wrote the same case
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _text(final, desc, status, diagnostics):
    ins = " ".join("--input " + shlex.quote(f"{n}={final / f}")
                   for n, f in zip(desc["ifm_name"], desc["ifm_file"]))
    lines = [f"status: {status}", "", "tosaint's diagnostics:"]
    lines += [f"  {d}" for d in diagnostics] or ["  (none)"]
    lines += ["", "to dig further:",
              f"  tosaint diff {final / 'model.tosa'} {ins} --oracle",
              f"  tosaint run {final / 'model.tosa'} {ins} -o {final / 'rerun'}",
              f"  tosa_reference_model --test_desc {final / 'desc.json'}", ""]
    return "\n".join(lines)
