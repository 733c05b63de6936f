"""Calibration: observers of float activations and the choice of quantization ranges.

The torch front end runs the exported graph in float over the calibration inputs with an
observer (:func:`make_observer`), then asks this module for ranges:

- :func:`act_amax`: the symmetric range of an activation (min/max; int8 refines it by the
  clipping with the least squared quantization error);
- :func:`affine_qparams`: an int8 (scale, zero point) for the calibration values of a tensor;
- :func:`weight_quant`: int8 symmetric per-output-channel weights and their scales.
"""
from __future__ import annotations

import numpy as np
import torch


class Observer:
    """Per-node max |x| over the calibration set, and the float activations themselves."""

    def __init__(self):
        self.amax = {}
        self.acts = {}

    def update(self, env):
        for name, v in env.items():
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                a = float(v.detach().abs().max()) if v.numel() else 0.0
                self.amax[name] = max(self.amax.get(name, 0.0), a)
                self.acts.setdefault(name, []).append(v.detach())


OBSERVERS = {"minmax": Observer}
DEFAULT_OBSERVER = "minmax"


def make_observer(kind=None):
    """A fresh observer of kind ``kind`` (one of :data:`OBSERVERS`; None = the default)."""
    kind = DEFAULT_OBSERVER if kind is None else kind
    if kind not in OBSERVERS:
        raise ValueError(f"observer must be one of {sorted(OBSERVERS)}, not {kind!r}")
    return OBSERVERS[kind]()


def _f64(x):
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


def calib_values(obs, name):
    """The calibration values of ``name``, flat (a fixed random subset of 200000)."""
    xs = torch.cat([t.detach().double().reshape(-1) for t in obs.acts[name]])
    if xs.numel() > 200000:
        xs = xs[torch.randperm(xs.numel(), generator=torch.Generator().manual_seed(0))
                [:200000]]
    return xs


def mse_clip(obs, name, a, qmax):
    """int8: the clipping range (<= max |x|) with the least quantization error."""
    cache = obs.__dict__.setdefault("_clip", {})
    if name not in cache:
        xs = calib_values(obs, name)
        best, best_err = a, None
        for f in np.linspace(1.0, 0.3, 36):
            s = a * f / qmax
            err = float(((torch.clamp(torch.round(xs / s), -qmax, qmax) * s - xs)
                         ** 2).sum())
            if best_err is None or err < best_err:
                best, best_err = a * f, err
        cache[name] = best
    return cache[name]


def act_amax(obs, name, qmax, int8):
    """The symmetric range max |x| of activation ``name`` (0.0 when never observed)."""
    a = float(obs.amax.get(name, 0.0))
    if int8 and a > 0 and obs.acts.get(name):
        a = mse_clip(obs, name, a, qmax)
    return a


def affine_qparams(values):
    """int8 [lo, hi] (containing 0) with the least quantization error: (scale, zp).

    A common shrink factor of the calibrated [min, max] first, then each end alone.
    """
    xs = values
    lo0, hi0 = min(float(xs.min()), 0.0), max(float(xs.max()), 0.0)
    if hi0 - lo0 <= 0:
        return 1.0 / 127, 0

    def qparams(lo, hi):
        s = (hi - lo) / 255
        return s, int(np.clip(round(-128 - lo / s), -128, 127))

    def err(lo, hi):
        s, zp = qparams(lo, hi)
        q = torch.clamp(torch.round(xs / s) + zp, -128, 127)
        return float((((q - zp) * s - xs) ** 2).sum())

    grid = np.linspace(1.0, 0.3, 36)
    f = min(grid, key=lambda f: err(lo0 * f, hi0 * f))
    lo, hi = lo0 * f, hi0 * f
    lo = min(lo0 * grid, key=lambda v: err(v, hi))
    hi = min(hi0 * grid, key=lambda v: err(lo, v))
    return qparams(lo, hi)


def weight_quant(w):
    """int8 symmetric per-output-channel weights: (q int8 array, scales).

    Each channel's clipping range is the one (between 0.6 and 1.0 of max |w|, in steps of
    0.001: the rounding error of a channel is a jagged function of its scale, and a coarse
    grid leaves ~0.3 dB of weight SNR behind) with the least squared quantization error of
    that channel's weights.
    """
    w = _f64(w).numpy()
    flat = w.reshape(w.shape[0], -1)
    amax = np.abs(flat).max(axis=1)
    amax = np.where(amax > 0, amax, 1.0)
    grid = np.linspace(1.0, 0.6, 401)
    best_s, best_e = amax / 127.0, np.full(len(amax), np.inf)
    step = max(1, (1 << 22) // flat.size)        # factors per vectorised pass
    for i in range(0, len(grid), step):
        s = amax[None, :] * grid[i:i + step, None] / 127.0          # [factor, channel]
        e = ((np.clip(np.round(flat[None] / s[..., None]), -127, 127) * s[..., None] -
              flat[None]) ** 2).sum(axis=2)
        k = np.argmin(e, axis=0)            # first (widest) factor on ties
        e, s = e[k, np.arange(len(amax))], s[k, np.arange(len(amax))]
        better = e < best_e
        best_s, best_e = np.where(better, s, best_s), np.where(better, e, best_e)
    sw = best_s
    q = np.clip(np.round(w / sw.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127)
    return q.astype(np.int8), sw
