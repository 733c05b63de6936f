"""Whole a16w8 graphs exported by the ExecuTorch 1.5.1 Arm backend (tests/data/executorch, made
by benchmarks/executorch_export.py) run bit-exactly: the expected outputs were written by the
official reference model's command-line binary."""
import json
from pathlib import Path

import numpy as np
import pytest

import tosaint

DATA = Path(__file__).parent / "data" / "executorch"
MODELS = sorted(p.name for p in DATA.iterdir() if (p / "model.tosa").exists())


def test_models_present():
    assert {"linear", "conv2d", "softmax", "layernorm", "conformer"} <= set(MODELS)


@pytest.mark.parametrize("impl", ["numba", "spec"])
@pytest.mark.parametrize("model", MODELS)
def test_bit_exact(model, impl):
    d = DATA / model
    meta = json.loads((d / "meta.json").read_text())
    graph = tosaint.load(d / "model.tosa")
    inputs = {i["name"]: np.load(d / i["file"]) for i in meta["inputs"]}
    out = tosaint.run_tosa(graph, inputs, impl=impl)
    assert out.diagnostics == []
    for o in meta["outputs"]:
        got, want = out[o["name"]], np.load(d / o["file"])
        assert got.shape == want.shape
        assert got.dtype == want.dtype
        assert np.array_equal(got, want)
