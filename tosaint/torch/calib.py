"""Calibration: observers of float activations and the choice of quantization ranges.

The torch front end runs the exported graph in float over the calibration inputs with an
observer (:func:`make_observer`), then asks this module for ranges:

- :func:`act_amax`: the symmetric range of an activation, chosen by the observer's kind:
  ``"minmax"`` (max |x|), ``"histogram"`` (the clipping range with the least expected squared
  error over a histogram of |x|: rounding noise ``scale**2 / 12`` inside, the distance to the
  range outside; what ExecuTorch's HistogramObserver minimises) or ``"percentile"`` (the
  99.99th percentile of |x|);
- :func:`affine_qparams`: the int8 (scale, zero point) of an a8w8 activation;
- :func:`weight_quant`: int8 symmetric per-output-channel weights and their scales.
"""
from __future__ import annotations

import numpy as np
import torch


class Observer:
    """Per-node max |x| over the calibration set, and the float activations themselves.

    ``kind`` says how :func:`act_amax` turns them into a range (see :data:`OBSERVERS`).
    """

    def __init__(self, kind="minmax"):
        if kind not in OBSERVERS:
            raise ValueError(f"observer must be one of {sorted(OBSERVERS)}, not {kind!r}")
        self.kind = kind
        self.amax = {}
        self.acts = {}
        self._range = {}

    def update(self, env):
        for name, v in env.items():
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                a = float(v.detach().abs().max()) if v.numel() else 0.0
                self.amax[name] = max(self.amax.get(name, 0.0), a)
                self.acts.setdefault(name, []).append(v.detach())


#: observer kind -> what it picks as the symmetric range of an activation
OBSERVERS = {
    "minmax": "max |x|",
    "histogram": "least expected squared error over a 2048-bin histogram of |x|",
    "percentile": "99.99th percentile of |x|",
}
DEFAULT_OBSERVER = "minmax"
#: int16 ranges are widened by this factor: a value past the calibrated range saturates, which
#: costs far more than the 0.8 dB of int16 rounding noise (some 90 dB below the signal) the
#: margin adds.  Measured on held-out inputs (calibration seeds 1, 2; evaluation seeds 1001,
#: 1002): ResNet 44.9 -> 46.2 dB, bmm 42.5 -> 59.4, var 59.6 -> 93.4, LayerNorm 54.4 -> 81.7;
#: tables lose 0.5-1 dB (their inputs span a wider range); 1.2 loses 1.5 dB on tables.
HEADROOM16 = 1.1
PERCENTILE = 99.99
HIST_BINS = 2048
MIN_CLIP = 0.3          # no range is clipped below this fraction of max |x|


def make_observer(kind=None):
    """A fresh observer of kind ``kind`` (one of :data:`OBSERVERS`; None = the default)."""
    return Observer(DEFAULT_OBSERVER if kind is None else kind)


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


def histogram_clip(absx, a, qmax, bins=HIST_BINS):
    """The clipping range c in [MIN_CLIP * a, a] with the least expected squared error of
    symmetric ``qmax`` quantization over a histogram of ``absx`` (values in [0, a]).

    A value below c costs the rounding noise (c / qmax)**2 / 12, one above it (v - c)**2 with
    v its bin centre; the candidates are the bin edges, evaluated at once from cumulative sums.
    """
    h = torch.histc(absx.double(), bins=bins, min=0.0, max=a).numpy()
    v = (np.arange(bins) + 0.5) * (a / bins)
    edges = np.arange(1, bins + 1) * (a / bins)
    # above edge k: bins k+1..; suffix sums of n, n*v, n*v**2
    n_gt = np.r_[np.cumsum(h[::-1])[::-1][1:], 0.0]
    s1_gt = np.r_[np.cumsum((h * v)[::-1])[::-1][1:], 0.0]
    s2_gt = np.r_[np.cumsum((h * v * v)[::-1])[::-1][1:], 0.0]
    n_le = h.sum() - n_gt
    err = n_le * (edges / qmax) ** 2 / 12 + s2_gt - 2 * edges * s1_gt + edges ** 2 * n_gt
    ok = edges >= MIN_CLIP * a
    k = int(np.argmin(np.where(ok, err, np.inf)))
    return float(edges[k])


def mse_clip(obs, name, a, qmax):
    """int8: the clipping range (<= max |x|) with the least quantization error of the values."""
    xs = calib_values(obs, name)
    best, best_err = a, None
    for f in np.linspace(1.0, MIN_CLIP, 36):
        s = a * f / qmax
        err = float(((torch.clamp(torch.round(xs / s), -qmax, qmax) * s - xs) ** 2).sum())
        if best_err is None or err < best_err:
            best, best_err = a * f, err
    return best


def act_amax(obs, name, qmax, int8):
    """The symmetric range of activation ``name`` (0.0 when never observed).

    ``minmax`` keeps max |x| for int16; for int8, where rounding noise is 256 times larger,
    it takes the clipping of the calibration values with the least squared error.  Every
    int16 range then gets :data:`HEADROOM16`.
    """
    a = float(obs.amax.get(name, 0.0))
    if a <= 0 or not obs.acts.get(name):
        return a
    key = (name, qmax)
    if key not in obs._range:
        kind = getattr(obs, "kind", "minmax")
        if kind == "histogram":
            xs = torch.cat([t.detach().reshape(-1) for t in obs.acts[name]]).abs()
            r = histogram_clip(xs, a, qmax)
        elif kind == "percentile":
            r = float(torch.quantile(calib_values(obs, name).abs(), PERCENTILE / 100))
            r = min(a, max(r, MIN_CLIP * a))
        else:
            r = mse_clip(obs, name, a, qmax) if int8 else a
        obs._range[key] = r if int8 else r * HEADROOM16
    return obs._range[key]


#: affine int8 ranges: clipping factors of the calibrated min and max, searched together
#: (tuning seeds 1-4, held-out inputs, 21 a8w8 cases: a floor of 0.5 rather than MIN_CLIP
#: gave 38.86 against 38.79 dB mean, within noise; the models moved by up to +-1.2 dB)
AFFINE_GRID = np.linspace(1.0, 0.5, 36)


def affine_qparams(values, f=None, bins=HIST_BINS):
    """int8 (scale, zero point) of [lo, hi] (containing 0) with the least expected squared error
    over a histogram of ``values`` (non-finite values, such as masked -inf scores, ignored).

    lo and hi are searched together on :data:`AFFINE_GRID` x the calibrated min and max: a
    value inside costs the rounding noise scale**2 / 12, one outside its distance to the range
    (as :func:`histogram_clip`, for both ends).  With ``f`` (the function of a TABLE that is
    the tensor's only consumer, on float64 arrays), the errors are those of ``f``'s output:
    the noise times f'(v)**2, and f(v) - f(end) outside.  All 36 x 36 candidates are one
    vectorised evaluation over the histogram.
    """
    xs = values.double()
    xs = xs[torch.isfinite(xs)]
    if xs.numel() == 0:
        return 1.0 / 127, 0
    lo0, hi0 = min(float(xs.min()), 0.0), max(float(xs.max()), 0.0)
    if hi0 - lo0 <= 0:
        return 1.0 / 127, 0
    h = torch.histc(xs, bins=bins, min=lo0, max=hi0).numpy()
    v = lo0 + (np.arange(bins) + 0.5) * ((hi0 - lo0) / bins)
    los, his = lo0 * AFFINE_GRID, hi0 * AFFINE_GRID
    below = (v[None] < los[:, None])                       # [L, bins]
    above = (v[None] > his[:, None])                       # [H, bins]
    weights = _slopes(f, v, los, his, h) if f is not None else None
    if weights is None:
        w_in, fv, f_lo, f_hi = h, v, los, his
    else:
        w_in, fv, f_lo, f_hi = weights       # an end where f is not finite: nothing past it
    with np.errstate(all="ignore"):
        e_lo = np.where(below & (h > 0), h * (fv[None] - f_lo[:, None]) ** 2, 0.0).sum(1)
        e_hi = np.where(above & (h > 0), h * (fv[None] - f_hi[:, None]) ** 2, 0.0).sum(1)
    e_lo, e_hi = np.nan_to_num(e_lo, nan=np.inf), np.nan_to_num(e_hi, nan=np.inf)
    n_in = w_in.sum() - (below * w_in).sum(1)[:, None] - (above * w_in).sum(1)[None]
    s = (his[None] - los[:, None]) / 255
    err = n_in * s * s / 12 + e_lo[:, None] + e_hi[None]
    i, j = np.unravel_index(int(np.argmin(err)), err.shape)
    lo, hi = float(los[i]), float(his[j])
    sc = (hi - lo) / 255
    return sc, int(np.clip(round(-128 - lo / sc), -128, 127))


def _slopes(f, v, los, his, h):
    """(h * f'(v)**2, f(v), f(los), f(his)) for :func:`affine_qparams` (NaN at an end where ``f``
    is not finite), or None where ``f`` or its slope is not finite on an occupied bin (then the
    plain errors are used)."""
    with np.errstate(all="ignore"):
        fv, f_lo, f_hi = f(v), f(los), f(his)
        d = np.gradient(fv, v) if len(v) > 1 else np.zeros_like(v)
    occupied = h > 0
    if not (np.all(np.isfinite(fv[occupied])) and np.all(np.isfinite(d[occupied]))):
        return None
    fv = np.where(occupied, fv, 0.0)
    f_lo, f_hi = (np.where(np.isfinite(e), e, np.nan) for e in (f_lo, f_hi))
    return np.where(occupied, h * d * d, 0.0), fv, f_lo, f_hi


#: an int8 activation whose calibrated range is balanced (the smaller side at least this
#: fraction of the larger) stays symmetric; a skewed one is affine.  Tuning seeds 1-4,
#: held-out inputs: always affine 36.0 dB mean on 12 single-op cases and 39.2 on 8 zoo
#: models; 0.5: 37.2 and 39.5; 0.7: 37.2 and 39.8 (0.85: 36.4 on the single ops).  An
#: asymmetric clipping of a balanced tensor biases what follows (a mean lost 8 dB)
AFFINE_SKEW = 0.7


def int8_qparams(obs, name, f=None):
    """(scale, zero point) of the int8 activation ``name``: symmetric (:func:`act_amax`) when
    its calibrated range is balanced (see :data:`AFFINE_SKEW`), else :func:`affine_qparams`.
    ``f``: the function of the TABLE that is its only consumer (always affine then: the table
    absorbs the zero point, and the range follows the errors of ``f``'s output).  A small
    tensor is then widened past its calibration (:func:`small_tensor_gaps`)."""
    key = (name, "int8", f is not None)
    if key not in obs._range:
        xs = calib_values(obs, name)
        xs = xs[torch.isfinite(xs)]
        lo, hi = (-float(xs.min()), float(xs.max())) if xs.numel() else (0.0, 0.0)
        if f is not None:
            qp = affine_qparams(xs, f)
        elif min(lo, hi) >= AFFINE_SKEW * max(lo, hi) > 0:
            a = act_amax(obs, name, 127, True)
            qp = ((a if a > 0 else 1.0) / 127, 0)
        else:
            qp = affine_qparams(xs)
        obs._range[key] = _widen(qp, small_tensor_gaps(obs, name), symmetric=f is None and
                                 qp[1] == 0)
    return obs._range[key]


#: an int8 activation with at most this many values per calibration input (pooled features,
#: squeeze-excitation vectors, logits) is widened by :func:`small_tensor_gaps`.  Its range is
#: the extreme of a few samples per position, which new inputs pass: MobileNetV3 a8w8 at
#: calibration seed 3 had 1.9% of its held-out logits and 0.15% of its pooled features outside
#: the calibrated range (held-out maxima 1.4x and 2x the calibrated ones).  Tuning seeds 1-4,
#: 32 held-out inputs per zoo model: MobileNetV3 +1.8 dB, MobileNetV2 +0.3, ResNet +0.25,
#: EfficientNet +0.1, ViT, EMG TCN and the conformer +-0.02; the single ops with small outputs:
#: var +0.6, mean -0.6, the small CNN (a spatial mean out) -0.4.  A fixed 1.25x widening of
#: the same tensors gave MobileNetV3 +2.9 but the mean -1.0 and the small CNN -1.6; widening
#: every int8 tensor by its gaps lost 0.3 dB on average (ViT -2.7)
SMALL_TENSOR = 256


def small_tensor_gaps(obs, name):
    """(gap below, gap above) to add to the range of a small int8 activation (see
    :data:`SMALL_TENSOR`), (0, 0) for others: the distance between the two largest per-input
    maxima, and between the two smallest minima, over the calibration inputs (the expected
    step to the next order statistic: close to 0 when every input reaches about the same
    extreme, as for a mean of many values)."""
    acts = [t.detach().double().reshape(-1) for t in obs.acts.get(name, ())]
    acts = [t[torch.isfinite(t)] for t in acts]
    acts = [t for t in acts if t.numel()]
    if len(acts) < 2 or max(t.numel() for t in acts) > SMALL_TENSOR:
        return 0.0, 0.0
    hi = sorted(float(t.max()) for t in acts)
    lo = sorted(float(t.min()) for t in acts)
    return max(lo[1] - lo[0], 0.0), max(hi[-1] - hi[-2], 0.0)


def _widen(qp, gaps, symmetric):
    """int8 (scale, zero point) ``qp`` with its range extended by ``gaps`` (below, above); a
    symmetric one stays symmetric (by the larger gap)."""
    g_lo, g_hi = gaps
    if g_lo <= 0 and g_hi <= 0:
        return qp
    s, zp = qp
    if symmetric:
        return (127 * s + max(g_lo, g_hi)) / 127, 0
    lo, hi = min((-128 - zp) * s - g_lo, 0.0), (127 - zp) * s + g_hi
    s = (hi - lo) / 255
    return s, int(np.clip(round(-128 - lo / s), -128, 127))


# ---- weights ----------------------------------------------------------------------------------
W_GRID = np.linspace(1.0, 0.6, 41)     # coarse clipping factors of max |w| (steps of 0.01)
W_FINE = 0.001 * np.arange(-5, 6)      # refinement around the best two coarse factors
W_SAMPLE = 512                         # stand-in weights per channel for the searches
W_KEEP = 4                             # candidates re-ranked on all the weights
W_POLISH = 2                           # least-squares scale refinements


#: weight of the squared sum of a channel's rounding errors: inputs of a convolution or linear
#: layer are correlated (neighbouring pixels, post-ReLU means), so errors of one sign add up;
#: over 3 weight seeds x 6 CNN/ViT models (tuning seeds, held-out inputs) the mean SNR was
#: 48.6 dB with 0, 49.4 dB with 0.5 and 47.7 dB with plain max |w| / 127 (no search)
W_BIAS = 0.5


def _sq_err(w, s, weight=1.0):
    """[k, c] error of rounding each row of ``w`` [c, n] to int8 at scales ``s`` [k, c]:
    sum(d**2) + W_BIAS * sum(d)**2 of the errors d (``weight``: per-column multiplicity of
    stand-in weights)."""
    r = w[None] * (1 / s)[..., None]
    r -= np.clip(np.round(r), -127, 127)
    rw = r * weight
    tot = np.einsum("kcn->kc", rw, dtype=np.float64)
    return (np.einsum("kcn,kcn->kc", r, rw) + W_BIAS * tot * tot) * s.astype(np.float64) ** 2


def _stand_ins(a, size):
    """(values, multiplicity): a per-row stratified sample of ``a`` [c, n] ordered by |w| that
    keeps the largest eighth exactly (the clipped ones) and evenly spaced order statistics of
    the rest (signs kept)."""
    c, n = a.shape
    if n <= size:
        return a, np.float32(1.0)
    a = np.take_along_axis(a, np.argsort(np.abs(a), axis=1), axis=1)
    tail = size // 8
    rest = np.linspace(0, n - tail - 1, size - tail).round().astype(np.int64)
    values = np.ascontiguousarray(np.concatenate([a[:, rest], a[:, n - tail:]], axis=1))
    weight = np.r_[np.full(size - tail, (n - tail) / (size - tail)), np.ones(tail)]
    return values, weight.astype(np.float32)


def weight_scales(w):
    """Per-output-channel int8 scales of ``w`` [c, ...] with (near) least error
    ``sum(d**2) + W_BIAS * sum(d)**2`` of the channel's rounding errors ``d``.

    The error of a channel is a jagged function of its scale, so no single formula
    finds its minimum: the clipping factor (0.6..1.0 of max |w|) is searched on a coarse grid,
    refined in steps of 0.001 around the two best, both on 512 stand-in weights per channel
    (the largest 64 exactly, order statistics of the rest); the best four candidates are
    re-ranked on all the weights, and the winner's scale is refined by least squares
    (s = <w, q> / <q, q> for its codes q, kept only where the error drops).  All channels and
    candidates of a step are one vectorised pass, so the cost is a few passes over the weights
    (a 401-point search on the same weights and error has equal or larger error in
    measurements: see tests/test_torch_calib.py).
    """
    w64 = _f64(w).numpy().reshape(len(w), -1)
    c = w64.shape[0]
    rows = np.arange(c)
    w32 = w64.astype(np.float32)
    amax = np.abs(w64).max(axis=1)
    amax = np.where(amax > 0, amax, 1.0)
    sub, mult = _stand_ins(w32, W_SAMPLE)
    e = _sq_err(sub, (amax[None] * W_GRID[:, None] / 127).astype(np.float32), mult)
    best = W_GRID[np.argsort(e, axis=0, kind="stable")[:2]]                   # [2, c]
    f = np.clip((best[:, None, :] + W_FINE[None, :, None]).reshape(-1, c), 0.6, 1.0)
    s = amax[None] * f / 127
    e = _sq_err(sub, s.astype(np.float32), mult)
    if sub.shape[1] < w32.shape[1]:
        k = np.argsort(e, axis=0, kind="stable")[:W_KEEP]
        s = s[k, rows]
        e = _sq_err(w32, s.astype(np.float32))
    k = np.argmin(e, axis=0)
    bs, be = s[k, rows], e[k, rows]
    for _ in range(W_POLISH):
        q = np.clip(np.round(w64 / bs[:, None]), -127, 127)
        qq = np.einsum("ij,ij->i", q, q)
        s2 = np.where(qq > 0, np.einsum("ij,ij->i", q, w64) / np.maximum(qq, 1e-300), bs)
        d = np.clip(np.round(w64 / s2[:, None]), -127, 127) * s2[:, None] - w64
        e2 = np.einsum("ij,ij->i", d, d) + W_BIAS * d.sum(axis=1) ** 2
        better = (e2 < be) & (s2 > 0)
        bs, be = np.where(better, s2, bs), np.where(better, e2, be)
    return bs


def weight_quant(w):
    """int8 symmetric per-output-channel weights: (q int8 array, scales); see
    :func:`weight_scales`."""
    w = _f64(w).numpy()
    sw = weight_scales(w)
    q = np.clip(np.round(w / sw.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127)
    return q.astype(np.int8), sw
