"""tosaint.torch.calib: observers, activation ranges and int8 weight quantization.

The weight search is checked against an exhaustive search (401 clipping factors from 1.0 to
0.6 of max |w| per channel, written here from its definition) of the same error.  Each observer kind lowers a model bit-exactly on the reference model.  The
zoo models of ``benchmarks/zoo.py`` are deterministic in their seeds and their outputs depend on
their inputs.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tosaint.torch as tt  # noqa: E402
from tosaint import quant as Q  # noqa: E402
from tosaint.torch import calib  # noqa: E402

pytestmark = pytest.mark.torch


def grid_scales(w):
    """The exhaustive per-channel search: the least error over 401 clipping factors."""
    flat = np.asarray(w, np.float64).reshape(len(w), -1)
    amax = np.abs(flat).max(axis=1)
    amax = np.where(amax > 0, amax, 1.0)
    best_s, best_e = amax / 127, np.full(len(amax), np.inf)
    for f in np.linspace(1.0, 0.6, 401):
        s = amax * f / 127
        d = np.clip(np.round(flat / s[:, None]), -127, 127) * s[:, None] - flat
        e = (d ** 2).sum(1) + calib.W_BIAS * d.sum(1) ** 2
        better = e < best_e
        best_s, best_e = np.where(better, s, best_s), np.where(better, e, best_e)
    return best_s


def sq_err(w, s):
    """The objective: sum over channels of sum(d**2) + W_BIAS * sum(d)**2."""
    flat = np.asarray(w, np.float64).reshape(len(w), -1)
    d = np.clip(np.round(flat / s[:, None]), -127, 127) * s[:, None] - flat
    return float((d ** 2).sum() + calib.W_BIAS * (d.sum(1) ** 2).sum())


def weights(kind, seed):
    g = torch.Generator().manual_seed(seed)
    if kind == "kaiming_conv":
        w = torch.empty(32, 64, 3, 3)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nn.init.kaiming_uniform_(w, a=5 ** 0.5)
        return w.double().numpy()
    if kind == "randn_linear":
        return torch.randn(48, 700, generator=g).double().numpy()
    if kind == "laplace":
        u = torch.rand(40, 300, generator=g).double() - 0.5
        return (-torch.sign(u) * torch.log1p(-2 * u.abs())).numpy()
    if kind == "depthwise":
        return (torch.randn(64, 1, 3, 3, generator=g) *
                torch.rand(64, 1, 1, 1, generator=g)).double().numpy()
    raise ValueError(kind)


@pytest.mark.parametrize("bias", [0.0, None])
@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("kind", ["kaiming_conv", "randn_linear", "laplace", "depthwise"])
def test_weight_scales_close_to_exhaustive_search(kind, seed, bias, monkeypatch):
    """Plain squared error: within 0.25 % of the exhaustive search; with the bias term (its
    sum over a channel is estimated from the stand-in weights): within 3.5 % (0.15 dB)."""
    if bias is not None:
        monkeypatch.setattr(calib, "W_BIAS", bias)
    w = weights(kind, seed)
    mine, grid = sq_err(w, calib.weight_scales(w)), sq_err(w, grid_scales(w))
    assert mine <= grid * (1.0025 if bias == 0.0 else 1.035), (kind, mine / grid)


def test_weight_quant_codes_and_edge_channels():
    w = weights("randn_linear", 5)[:6].copy()
    w[1] = 0.0                                  # an all-zero channel
    w[2] = 0.0
    w[2, 7] = -3.0                              # a single weight
    q, s = calib.weight_quant(torch.from_numpy(w))
    assert q.dtype == np.int8 and q.shape == w.shape and s.shape == (6,)
    assert np.all(s > 0) and np.all(np.isfinite(s))
    assert q.min() >= -127 and q[1].tolist() == [0] * w.shape[1]
    assert q[2, 7] == -127 and np.count_nonzero(q[2]) == 1
    assert abs(q[2, 7] * s[2] + 3.0) < 1e-12
    # codes are round(w / s) clipped to +-127
    want = np.clip(np.round(w / s[:, None]), -127, 127)
    assert np.array_equal(q.astype(np.float64), want)


def observed(values, kind):
    obs = calib.make_observer(kind)
    for v in values:
        obs.update({"x": v})
    return obs


def test_make_observer_kinds():
    assert calib.make_observer().kind == calib.DEFAULT_OBSERVER
    for kind in calib.OBSERVERS:
        assert calib.make_observer(kind).kind == kind
    with pytest.raises(ValueError, match="observer must be one of"):
        calib.make_observer("kl")


def test_observer_ranges():
    torch.manual_seed(7)
    g = torch.Generator().manual_seed(7)
    xs = [torch.randn(4000, generator=g) for _ in range(4)]
    xs[2][17] = 40.0                            # one far outlier
    amax = max(float(x.abs().max()) for x in xs)
    assert amax == 40.0
    # min/max keeps the outlier in int16; int8 clips by least squared error of the values
    assert calib.act_amax(observed(xs, "minmax"), "x", 32767, False) == amax * calib.HEADROOM16
    assert calib.act_amax(observed(xs, "minmax"), "x", 127, True) < amax
    # histogram: one outlier costs more clipped than the int8 rounding noise of the others
    assert calib.act_amax(observed(xs, "histogram"), "x", 127, True) > 0.9 * amax
    # ... a Laplace tail is clipped in int8, less in int16
    gs = [torch.distributions.Laplace(0.0, 1.0).sample((4000,)) for _ in range(4)]
    ga = max(float(x.abs().max()) for x in gs)
    h8 = calib.act_amax(observed(gs, "histogram"), "x", 127, True)
    assert calib.MIN_CLIP * ga <= h8 < ga
    assert h8 < calib.act_amax(observed(gs, "histogram"), "x", 32767, False) <= \
        ga * calib.HEADROOM16
    # percentile: 99.99 % of |x|, but never below MIN_CLIP of the maximum
    p = calib.act_amax(observed(gs, "percentile"), "x", 32767, False)
    assert p == pytest.approx(float(torch.quantile(torch.cat(gs).abs().double(), 0.9999)) *
                              calib.HEADROOM16)
    assert p < ga * calib.HEADROOM16
    assert calib.act_amax(observed(xs, "percentile"), "x", 127, True) == calib.MIN_CLIP * 40
    # a bounded distribution: the histogram keeps (nearly) all of it in int16
    u = [torch.rand(4000, generator=g) * 2 - 1 for _ in range(2)]
    a = max(float(x.abs().max()) for x in u)
    assert calib.act_amax(observed(u, "histogram"), "x", 32767, False) >= \
        0.999 * a * calib.HEADROOM16
    assert calib.act_amax(observed([torch.zeros(5)], "histogram"), "x", 127, True) == 0.0


def test_histogram_clip_matches_brute_force():
    """The cumulative-sum evaluation equals the expected error computed bin by bin."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(5000, generator=g).abs()
    a, qmax, bins = float(x.max()), 127, 64
    c = calib.histogram_clip(x, a, qmax, bins=bins)
    h = torch.histc(x.double(), bins=bins, min=0, max=a).numpy()
    v = (np.arange(bins) + 0.5) * a / bins
    errs = []
    for k in range(bins):
        e = (k + 1) * a / bins
        errs.append(np.inf if e < calib.MIN_CLIP * a else
                    float(sum(n * ((e / qmax) ** 2 / 12 if vi <= e else (vi - e) ** 2)
                              for n, vi in zip(h, v))))
    assert c == pytest.approx((int(np.argmin(errs)) + 1) * a / bins)


@pytest.mark.parametrize("q", ["a16w8", "a8w8"])
@pytest.mark.parametrize("kind", sorted(calib.OBSERVERS))
def test_lower_with_each_observer_bit_exact(kind, q):
    pytest.importorskip("tosa_reference_model")
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8)).eval()
    g = torch.Generator().manual_seed(12)
    cal = [(torch.randn(2, 16, generator=g),) for _ in range(4)]
    test = (torch.randn(2, 16, generator=g),)
    lm = tt.lower(model, test, quantization=q, calibration=cal, observer=kind)
    res = lm.run(*test)
    ref = lm.run_reference(*test)
    for name, want in ref.items():
        assert res[name].shape == want.shape and res[name].dtype == want.dtype
        assert np.array_equal(res[name], want), name
    with torch.no_grad():
        f = model(*test)
    s = Q.snr_db(f.double().numpy(), lm.dequantize_outputs(res).double().numpy())
    assert s > (30 if q == "a8w8" else 40), s


def test_lower_rejects_unknown_observer():
    with pytest.raises(ValueError, match="observer"):
        tt.lower(nn.Linear(4, 4), (torch.randn(2, 4),), observer="entropy")


def test_zoo_models_are_deterministic():
    zoo = pytest.importorskip("benchmarks.zoo")
    for name in zoo.ZOO:
        a, b = zoo.build(name, seed=3), zoo.build(name, seed=3)
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb), (name, ka)
        c = zoo.build(name, seed=4)
        assert any(not torch.equal(va, vc) for va, vc in
                   zip(a.state_dict().values(), c.state_dict().values())), name
        x1, x2 = zoo.inputs(name, 5, 2, "heavy"), zoo.inputs(name, 5, 2, "heavy")
        assert all(torch.equal(u, v) for s, t in zip(x1, x2) for u, v in zip(s, t))
        with torch.no_grad():
            y = a(*x1[0])
        y = y[0] if isinstance(y, tuple) else y
        assert torch.isfinite(y).all(), name


def test_zoo_models_depend_on_their_input():
    """The benchmark's SNR measures the network, not a constant: on the evaluation inputs the
    variance across inputs is at least a tenth of every zoo model's output power (with drawn
    BatchNorm statistics the MobileNets' and EfficientNet's was 1e-13 to 1e-9)."""
    zoo = pytest.importorskip("benchmarks.zoo")
    for name in zoo.ZOO:
        model = zoo.build(name, seed=0)
        with torch.no_grad():
            ys = [model(*x) for x in zoo.inputs(name, 202, 4)]
        y = torch.stack([(v[0] if isinstance(v, tuple) else v).double() for v in ys])
        share = float(((y - y.mean(0)) ** 2).sum() / (y ** 2).sum())
        assert share >= 0.1, (name, share)


# ---- a8w8 activation ranges ---------------------------------------------------------------
def _observed(values):
    obs = calib.make_observer()
    obs.update({"t": values})
    return obs


def test_int8_activations_symmetric_when_balanced_affine_when_one_sided():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4096, generator=g)
    s, zp = calib.int8_qparams(_observed(x), "t")
    assert zp == 0 and 2.0 / 127 < s <= float(x.abs().max()) / 127
    s, zp = calib.int8_qparams(_observed(x.abs()), "t")            # [0, max]: all 256 codes
    assert zp == -128 and s < float(x.abs().max()) / 200
    s, zp = calib.int8_qparams(_observed(x - 1.5), "t")            # skewed: a zero point
    assert 0 < zp < 127
    lo, hi = (-128 - zp) * s, (127 - zp) * s
    assert lo < float((x - 1.5).min()) * 0.5 and hi > 0


def test_affine_qparams_ignore_masked_scores():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(2)).abs()
    x[::7] = -float("inf")
    s, zp = calib.affine_qparams(x)
    assert np.isfinite(s) and s > 0 and zp == -128


def test_table_aware_range_clips_where_the_function_is_flat():
    """The input range of a tanh TABLE: clipped where tanh saturates, so the held-out error of
    tanh's output is lower than with the range chosen for the input's own error."""
    g = torch.Generator().manual_seed(3)
    cal, held = 3 * torch.randn(20000, generator=g), 3 * torch.randn(20000, generator=g)
    plain = calib.affine_qparams(cal)
    aware = calib.affine_qparams(cal, np.tanh)
    assert (127 - aware[1]) * aware[0] < 0.75 * (127 - plain[1]) * plain[0]

    def err(qp):
        s, zp = qp
        q = torch.clamp(torch.round(held.double() / s) + zp, -128, 127)
        return float(((torch.tanh((q - zp) * s) - torch.tanh(held.double())) ** 2).mean())
    assert err(aware) < 0.6 * err(plain)
    # a function that is not finite at an end (1/x at 0) still gets a range over x > 0
    s, zp = calib.affine_qparams(cal.abs() + 0.25, np.reciprocal)
    assert s > 0 and zp == -128


def test_small_int8_tensor_range_reaches_past_its_calibration():
    """A tensor of a few values per input (logits, pooled features) is widened by the gap
    between the two largest per-input maxima; a large one, or one whose inputs all reach the
    same extreme, keeps its calibrated range."""
    g = torch.Generator().manual_seed(4)
    small = [torch.randn(1, 10, generator=g) * (1 + i % 5) for i in range(16)]
    obs = calib.make_observer()
    for t in small:
        obs.update({"t": t})
    top = sorted(float(t.max()) for t in small)
    s, zp = calib.int8_qparams(obs, "t")
    assert (127 - zp) * s >= top[-1] + 0.99 * (top[-1] - top[-2])
    assert calib.small_tensor_gaps(obs, "t")[1] == top[-1] - top[-2] > 0

    same = calib.make_observer()          # every input reaches 1.0 and -1.0
    for t in small:
        same.update({"t": torch.cat([t.clamp(-1, 1), torch.tensor([[1.0, -1.0]])], 1)})
    assert calib.small_tensor_gaps(same, "t") == (0.0, 0.0)
    big = calib.make_observer()
    for i in range(16):
        big.update({"t": torch.randn(1, 8, 8, 8, generator=g) * (1 + i % 5)})
    assert calib.small_tensor_gaps(big, "t") == (0.0, 0.0)
