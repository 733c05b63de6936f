"""PyTorch front end: ``lower(module, example_inputs)`` -> calibrated integer TOSA graph.

    import torch, tosaint.torch as tt
    lm = tt.lower(model, (x,), quantization="a16w8", calibration=[(x1,), (x2,)])
    y = lm(x)                 # float torch tensors computed by tosaint.run_tosa
    print(lm.report(x))       # per-op SNR against the float module, worst first
    lm.save("model.tosa")     # + model.tosa.json with every input/output scale
"""
from .module import LoweredModule, Report, load, lower

__all__ = ["LoweredModule", "Report", "load", "lower"]
