"""tosaint.torch on more zoo ops: ``flip`` (test-time augmentation), ``roll`` (Swin's shifted
windows), ``expand_as``, the elementwise extremes ``torch.maximum``/``torch.minimum`` and
``nn.PReLU`` (one slope, or one per channel).

Each zoo-style model lowers unmodified a16w8 and a8w8, gives bit-identical integers on tosaint
and on the official reference model, reaches an SNR floor against the float module (about
6 dB under the measured SNR, calibrated with the test input so that the SNR measures the
integer arithmetic), and lowers for Ethos-U55 to a graph the reference model runs bit-exactly
and the preflight check passes.  flip, roll and expand_as move codes: they are checked exact
against torch on the dequantized input.  A constant 0/-100 (or -10000, -inf) mask added to
softmax scores, as Swin adds it, masks them instead of widening their scale.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tosaint.torch as tt  # noqa: E402
from tosaint.quant import snr_db  # noqa: E402

from .helpers import (check_lowered, check_runs_on_npu, lower_zoo_model,  # noqa: E402
                      snr_of_lowered)

pytestmark = pytest.mark.torch
U55 = "ethos-u55-128"


# ---- zoo-style models -------------------------------------------------------------------------
class ShiftedWindowBlock(nn.Module):   # Swin: roll, window partition, masked window attention
    def __init__(self, c=16, heads=2, window=4, shift=2, size=8):   # with relative position bias
        super().__init__()
        self.h, self.w, self.s = heads, window, shift
        self.norm = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.5)
        xy = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                        indexing="ij")).flatten(1)
        rel = (xy[:, :, None] - xy[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
        self.norm2 = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        img = torch.zeros(1, size, size, 1)             # Swin's attention mask: 0 / -100
        cnt = 0
        for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
                img[:, hs, ws, :] = cnt
                cnt += 1
        mw = self._windows(img).squeeze(-1)
        m = mw.unsqueeze(1) - mw.unsqueeze(2)
        self.register_buffer("mask", m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0))

    def _windows(self, t):             # [B, H, W, C] -> [B * windows, w * w, C]
        b, hh, ww, c = t.shape
        w = self.w
        t = t.view(b, hh // w, w, ww // w, w, c).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(-1, w * w, c)

    def forward(self, x):              # [B, H, W, C]
        b, hh, ww, c = x.shape
        w, s, n = self.w, self.s, self.w * self.w
        t = self._windows(torch.roll(self.norm(x), shifts=(-s, -s), dims=(1, 2)))
        nw = t.shape[0] // b
        q, k, v = self.qkv(t).reshape(-1, n, 3, self.h, c // self.h).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1)) * (c // self.h) ** -0.5
        a = a + self.table[self.index.view(-1)].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        a = a.view(b, nw, self.h, n, n) + self.mask.unsqueeze(1).unsqueeze(0)
        a = a.view(-1, self.h, n, n).softmax(-1)
        t = (a @ v).transpose(1, 2).reshape(-1, n, c)
        t = self.proj(t).view(b, hh // w, ww // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
        x = x + torch.roll(t.reshape(b, hh, ww, c), shifts=(s, s), dims=(1, 2))
        return x + self.mlp(self.norm2(x))


class FlipTTA(nn.Module):              # test-time augmentation: horizontal and vertical flips
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 4, 3, padding=1))

    def forward(self, x):              # [B, 3, H, W]
        y = self.body(x) + self.body(x.flip(-1)).flip(-1)
        y = y + torch.flip(self.body(torch.flip(x, (2,))), (2,))
        return y / 3


class ClippedResidual(nn.Module):     # max/min of activations, constant caps, expand_as gating
    def __init__(self, c=12):
        super().__init__()
        self.fc1 = nn.Linear(c, c)
        self.fc2 = nn.Linear(c, c)
        self.gate = nn.Linear(c, 1)
        self.register_buffer("cap", torch.linspace(1.0, 2.5, c))

    def forward(self, x):              # [B, T, C]
        h = self.fc1(x)
        y = x + torch.maximum(h, -0.25 * x)          # two activations
        y = torch.minimum(y, self.cap)                # a per-channel constant
        y = torch.maximum(y, torch.tensor(-1.5))      # a scalar constant: CLAMP on the codes
        g = torch.sigmoid(self.gate(y.mean(1, keepdim=True))).expand_as(y)
        return self.fc2(y * g)


#: name: (class, input shape, SNR floor a16w8, a8w8); a16w8 is bounded by the int8 weights
class PReLUBlock(nn.Module):           # face-recognition / speech-enhancement: conv, BN, PReLU
    def __init__(self, c=8):
        super().__init__()
        self.conv = nn.Conv2d(4, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.act = nn.PReLU(c)                   # a slope per channel
        self.proj = nn.Conv2d(c, 4, 1)
        self.out_act = nn.PReLU()                # one slope
        with torch.no_grad():
            self.act.weight.copy_(torch.linspace(-0.3, 0.6, c))

    def forward(self, x):
        return self.out_act(self.proj(self.act(self.bn(self.conv(x)))))


MODELS = {
    "shifted_window": (ShiftedWindowBlock, (1, 8, 8, 16), 51, 30),   # measured 57.4, 36.6
    "flip_tta": (FlipTTA, (1, 3, 8, 10), 41, 32),                   # 47.3, 37.9
    "clipped_residual": (ClippedResidual, (2, 5, 12), 46, 34),      # 52.3, 40.2
    "prelu_block": (PReLUBlock, (1, 4, 6, 6), 40, 30),              # 46.0, 36.1
}


def _lower(name, quantization, target=None):
    cls, shape = MODELS[name][:2]
    return lower_zoo_model(cls, lambda g: (torch.randn(shape, generator=g),), quantization,
                           target)


@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_op_model_is_bit_exact_and_reaches_its_snr(name, quantization):
    model, lm, test = _lower(name, quantization)
    s = snr_of_lowered(model, lm, check_lowered(lm, test), test)
    floor = MODELS[name][2] if quantization == "a16w8" else MODELS[name][3]
    assert s >= floor, f"{name} {quantization}: SNR {s:.1f} dB < {floor}"


@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_op_model_lowers_for_ethos_u55(name, quantization):
    """Lowered for Ethos-U55 the reference model gives the same integers as tosaint, and the
    preflight finds nothing the U55 cannot run (a flip of the last axis included)."""
    _, lm, test = _lower(name, quantization, target=U55)
    check_lowered(lm, test)
    from tosaint import vela
    assert vela.format_findings(vela.check(lm.graph, U55)) == ""


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_op_model_compiles_with_vela_for_ethos_u55(name, quantization):
    _, lm, _ = _lower(name, quantization, target=U55)
    check_runs_on_npu(lm.graph, U55)


def test_flip_and_roll_around_convs_stay_nhwc():
    """flip/roll of conv inputs and outputs act on their NHWC twins: no TRANSPOSE beyond the
    graph's input and output ones, also for Ethos-U55 (W is not the NHWC channel axis)."""
    class TTAHead(FlipTTA):
        def __init__(self):
            super().__init__()
            self.head = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            y = super().forward(x)
            return self.head(torch.roll(y, (1, -2), (2, 3)) + y)

    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 10)
    for target in (None, U55):
        lm = tt.lower(TTAHead().eval(), (x,), quantization="a8w8", calibration=[(x,)],
                      target=target)
        check_lowered(lm, (x,))
        ops = [o.op.name for o in lm.graph.main.operators]
        assert ops.count("TRANSPOSE") == 2 and ops.count("REVERSE") == 4
        assert "RESHAPE" not in ops


class CausalScores(nn.Module):
    def __init__(self, fill, n=6, d=8):
        super().__init__()
        self.q, self.k = nn.Linear(d, d), nn.Linear(d, d)
        self.register_buffer("m", torch.full((n, n), fill).triu(1))

    def forward(self, x):
        a = self.q(x) @ self.k(x).transpose(-1, -2) + self.m
        return a.softmax(-1) @ x


@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
def test_constant_additive_mask_before_softmax_is_a_mask(quantization):
    """A constant 0 / large-negative mask added to the scores (Swin's -100, -10000, -inf)
    masks them for softmax instead of stretching their scale over the mask's range: the same
    integers for every such fill, no ADD for it (on Ethos-U55 the masked softmax has one of
    its own), and with Swin's views between the add and the softmax too (a8w8 SNR of the
    shifted-window block without its MLP 38.6 dB, 35.2 with an ADD)."""
    x = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(2))
    outs = {}
    for fill in (float("-inf"), -10000.0, -100.0, -1.0):
        torch.manual_seed(1)
        model = CausalScores(fill).eval()
        for target in (None, U55):
            lm = tt.lower(model, (x,), quantization=quantization, calibration=[(x,)],
                          target=target)
            res = check_lowered(lm, (x,))
            adds = [o.op.name for o in lm.graph.main.operators].count("ADD")
            outs[fill, target] = (list(res.values())[0], adds)
    for target in (None, U55):
        ref, adds = outs[float("-inf"), target]
        for fill in (-10000.0, -100.0):
            assert np.array_equal(outs[fill, target][0], ref)
            assert outs[fill, target][1] == adds
    assert outs[-1.0, None][1] == outs[-100.0, None][1] + 1    # -1 is a value: added
    adds = []
    for zero_mask in (False, True):
        torch.manual_seed(7)
        model = ShiftedWindowBlock().eval()
        if zero_mask:
            model.mask.zero_()
        x = torch.randn(1, 8, 8, 16, generator=torch.Generator().manual_seed(8))
        lm = tt.lower(model, (x,), quantization=quantization, calibration=[(x,)])
        adds.append([o.op.name for o in lm.graph.main.operators].count("ADD"))
    assert adds[0] == adds[1] - 1


# ---- flip, roll, expand_as: the codes moved exactly as torch moves the values ----------------
class Fn(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, *xs):
        return self.f(*xs)


SHAPE_OPS = {
    "flip_last": (lambda x: x.flip(-1), (2, 3, 5)),
    "flip_all": (lambda x: torch.flip(x, (0, 1, 2)), (2, 3, 4)),
    "flip_1d": (lambda x: x.flip(0), (7,)),
    "flip_nchw_channels": (lambda x: x.flip(1), (1, 4, 3, 2)),
    "fliplr": (lambda x: torch.fliplr(x), (3, 5)),
    "flipud": (lambda x: torch.flipud(x), (3, 5)),
    "roll_swin": (lambda x: torch.roll(x, (-2, 3), (1, 2)), (1, 5, 6, 3)),
    "roll_flat": (lambda x: torch.roll(x, 4), (3, 5)),
    "roll_shift_past_size": (lambda x: torch.roll(x, 13, -1), (2, 5)),
    "roll_negative_past_size": (lambda x: torch.roll(x, -7, 0), (3, 2)),
    "roll_then_flip": (lambda x: torch.roll(x, 1, 1).flip(1) * 1.0, (2, 4)),
    "expand_as_const": (lambda x: x.expand_as(torch.zeros(2, 3, 4)), (3, 1)),
    "expand_as_act": (lambda x: x[:, :1].expand_as(x), (2, 5)),
}


@pytest.mark.parametrize("name", list(SHAPE_OPS))
def test_flip_roll_expand_as_are_exact_on_the_codes(name):
    f, shape = SHAPE_OPS[name]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=g)
    for quantization in ("a16w8", "a8w8"):
        for target in (None, U55):
            lm = tt.lower(Fn(f), (x,), quantization=quantization, calibration=[(x,)],
                          target=target)
            res = check_lowered(lm, (x,))
            q = lm.inputs[0]
            xq = (lm.quantize_inputs(x)[q["name"]].astype(np.float64) - q["zero_point"]) \
                * q["scale"]
            want = f(torch.from_numpy(xq)).numpy()
            got = lm.dequantize_outputs(res).double().numpy()
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())
            if target == U55:
                from tosaint import vela
                assert vela.format_findings(vela.check(lm.graph, U55)) == ""


def test_roll_and_flip_of_a_boolean_mask_input():
    """flip/roll move integer and boolean values too (a BOOL input, int32 0/1 on U55)."""
    def f(x, m):
        return x.masked_fill(torch.roll(m, 1, -1).flip(-1), float("-inf")).softmax(-1)

    x = torch.randn(2, 5, generator=torch.Generator().manual_seed(4))
    m = torch.zeros(2, 5, dtype=torch.bool)
    m[0, :2] = m[1, 3] = True
    for target in (None, U55):
        lm = tt.lower(Fn(f), (x, m), calibration=[(x, m)], target=target)
        res = check_lowered(lm, (x, m))
        got = lm.dequantize_outputs(res)
        assert torch.equal(got == 0, f(x, m) == 0)
        assert float((got - f(x, m)).abs().max()) < 1e-4


# ---- elementwise maximum/minimum ----------------------------------------------------------------
#: name: (function, input shapes, SNR floor a16w8, a8w8), measured SNRs in the comments
EXTREMES = {
    "maximum": (lambda x, y: torch.maximum(x, 3 * y),
                [(2, 3, 5), (2, 3, 5)], 83, 36),                  # 89.7, 42.9
    "minimum_broadcast": (lambda x, y: torch.minimum(x, y),
                          [(2, 3, 5), (1, 5)], 83, 39),           # 89.7, 45.9
    "maximum_const_first": (lambda x: torch.maximum(torch.linspace(-1, 1, 5), x),
                            [(3, 5)], 90, 41),                    # 96.1, 47.0
    "minimum_scalar": (lambda x: torch.minimum(x, torch.tensor(0.5)),     # CLAMP on the codes
                       [(3, 5)], 89, 41),                         # 95.1, 47.9
    "maximum_scalar_outside": (lambda x: torch.maximum(x, torch.tensor(8.0)) - x,
                               [(3, 5)], 90, 52),                 # 96.9, 58.6
    "fmax": (lambda x, y: torch.fmax(x, y), [(4, 6), (4, 6)], 83, 38),    # 89.9, 44.1
}


@pytest.mark.parametrize("name", list(EXTREMES))
def test_elementwise_max_min_are_bit_exact_and_match_torch(name):
    f, shapes, floor16, floor8 = EXTREMES[name]
    g = torch.Generator().manual_seed(6)
    xs = tuple(torch.randn(s, generator=g) for s in shapes)
    with torch.no_grad():
        want = f(*xs).double().numpy()
    for quantization, floor in (("a16w8", floor16), ("a8w8", floor8)):
        for target in (None, U55):
            lm = tt.lower(Fn(f), xs, quantization=quantization, calibration=[xs],
                          target=target)
            res = check_lowered(lm, xs)
            s = snr_db(want, lm.dequantize_outputs(res).double().numpy())
            assert s >= floor, f"{name} {quantization}: SNR {s:.1f} dB < {floor}"


#: torch.max/min of two tensors (aten.max.other/min.other) and clamp with tensor bounds
#: (aten.clamp.Tensor) are the same lowerings reached through torch.max/min's and clamp's
#: own entries
DELEGATED = {
    "max_of_two": (lambda x, y: torch.max(x, y),
                   [(3, 5), (3, 5)], 89, 39),                     # 95.4, 45.7
    "min_of_two_broadcast": (lambda x, y: torch.min(x, 2 * y),
                             [(2, 3, 5), (3, 1)], 89, 48),        # 95.9, 54.4
    "clamp_between_activations": (lambda x, y: torch.clamp(x, min=y, max=y + 1),
                                  [(4, 6), (4, 6)], 81, 37),      # 87.1, 43.1
    "clamp_max_activation": (lambda x, y: x.clamp(max=y),
                             [(4, 6), (1, 6)], 89, 42),           # 95.7, 48.2
    "clamp_min_per_channel_const": (lambda x: torch.clamp(x, min=torch.linspace(-1, 0, 5)),
                                    [(3, 5)], 86, 38),            # 92.6, 44.6
}


@pytest.mark.parametrize("name", list(DELEGATED))
def test_max_min_of_two_and_clamp_with_tensor_bounds(name):
    f, shapes, floor16, floor8 = DELEGATED[name]
    g = torch.Generator().manual_seed(8)
    xs = tuple(torch.randn(s, generator=g) for s in shapes)
    with torch.no_grad():
        want = f(*xs).double().numpy()
    for quantization, floor in (("a16w8", floor16), ("a8w8", floor8)):
        for target in (None, U55):
            lm = tt.lower(Fn(f), xs, quantization=quantization, calibration=[xs],
                          target=target)
            res = check_lowered(lm, xs)
            s = snr_db(want, lm.dequantize_outputs(res).double().numpy())
            assert s >= floor, f"{name} {quantization}: SNR {s:.1f} dB < {floor}"


def test_subtracted_mask_and_a_scaled_constant_first_add():
    """scores - 10000 * (1 - keep) is a mask too; torch.add(c, x, alpha=a) (a * x) is not."""
    keep = torch.ones(6, 6).tril()
    x = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(3))
    fs = {"sub": lambda s: s - 10000.0 * (1 - keep),
          "add_inf": lambda s: s + torch.full((6, 6), float("-inf")).triu(1),
          "alpha_first": lambda s: torch.add(-10000.0 * (1 - keep), s, alpha=2.0)}
    got = {}
    for name, f in fs.items():
        model = Fn(lambda x, f=f: f(x @ x.transpose(-1, -2)).softmax(-1) @ x)
        lm = tt.lower(model, (x,), calibration=[(x,)])
        got[name] = list(check_lowered(lm, (x,)).values())[0]
        with torch.no_grad():
            want = model(x)
        assert snr_db(want.double().numpy(), lm.dequantize_outputs(
            {lm.outputs[0]["name"]: got[name]}).double().numpy()) > 40, name
    assert np.array_equal(got["sub"], got["add_inf"])


@pytest.mark.parametrize("quantization, floor", [("a16w8", 84), ("a8w8", 36)])   # 90.0, 42.3
def test_prelu_per_channel_alone_is_exact_to_its_output_scale(quantization, floor):
    """PReLU(C) on its own: the positive part is exact, the negative one rounded once on a
    scale 2**-14 of the input's, so the error is the output's rounding."""
    layer = nn.PReLU(6)
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(-0.5, 0.9, 6))
    g = torch.Generator().manual_seed(5)
    xs = [(torch.randn(2, 6, 5, generator=g),) for _ in range(3)]
    lm = tt.lower(layer.eval(), xs[0], quantization=quantization, calibration=xs)
    res = check_lowered(lm, xs[0])
    assert snr_of_lowered(layer, lm, res, xs[0]) >= floor
