"""Whole a16w8 graphs exported by the ExecuTorch 1.5.1 Arm backend run bit-exactly: the single
ops and conformer block of tests/data/executorch and the model-zoo networks of
benchmarks/data/executorch (ResNet, MobileNetV2/V3, EfficientNet, ViT), all made by
benchmarks/executorch_export.py; the expected outputs were written by the official reference
model."""
import json
from pathlib import Path

import numpy as np
import pytest

import tosaint

ROOTS = (Path(__file__).parent / "data" / "executorch",
         Path(__file__).parent.parent / "benchmarks" / "data" / "executorch")
MODELS = {p.name: p for root in ROOTS for p in sorted(root.iterdir()) if (p / "model.tosa").exists()}


def test_models_present():
    assert {"linear", "conv2d", "softmax", "layernorm", "conformer", "resnet", "mobilenet_v2",
            "mobilenet_v3", "efficientnet", "vit"} <= set(MODELS)


@pytest.mark.parametrize("impl", ["numba", "spec"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_bit_exact(model, impl):
    d = MODELS[model]
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
