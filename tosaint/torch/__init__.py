"""PyTorch front end: ``lower(module, example_inputs)`` -> calibrated integer TOSA graph.

    import torch, tosaint.torch as tt
    lm = tt.lower(model, (x,), quantization="a16w8", calibration=[(x1,), (x2,)])
    y = lm(x)                 # float torch tensors computed by tosaint.run_tosa
    print(lm.report(x))       # per-op SNR against the float module, worst first
    lm.save("model.tosa")     # + model.tosa.json with every input/output scale

Layers: :mod:`.capture` (torch.export, float runs), :mod:`.calib` (ranges), :mod:`.emit` (the
loop over the ATen nodes), :mod:`.lower` (one module per op family, and the lowering table),
:mod:`.layout` (NHWC, dead code), :mod:`.module` (``lower``, ``LoweredModule``, ``Report``).
"""
try:
    import torch  # noqa: F401
except ImportError:
    raise ModuleNotFoundError('tosaint.torch needs PyTorch: pip install "tosaint[torch]"',
                              name="torch") from None

from .module import LoweredModule, Report, load, lower  # noqa: E402

__all__ = ["LoweredModule", "Report", "load", "lower"]
